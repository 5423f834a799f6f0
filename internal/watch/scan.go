package watch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"slices"

	"edged/internal/config"
)

// scan is the content of every relevant file at one moment, for the
// periodic rescan to compare with the previous one.
type scan struct {
	config map[string]string // config files found in the tree → content digest
	extra  map[string]string // every extra file → content digest
}

const missing = "missing"

// takeScan hashes the config tree under dir and the extra files. Of the
// config files it reads, in the loader's order, no more than a load does:
// a load fails once they add up to more than config.MaxTotalSize, and
// what the files past that point hold does not change its outcome, so
// they are not read (pastTotal). A file that changes before that point,
// or one that brings the total back under it, is still a change.
func takeScan(dir string, extra []string) scan {
	s := scan{config: make(map[string]string), extra: make(map[string]string, len(extra))}
	files, problems := config.Walk(dir, nil)
	budget := int64(config.MaxTotalSize)
	for _, p := range files {
		s.config[p] = digest(p, &budget)
	}
	// A dangling link named *.toml is still a file the loader will trip
	// over: a change of it is one.
	for _, p := range problems {
		if p.Kind == config.BrokenLink {
			s.config[p.Path] = digest(p.Path, nil)
		}
	}
	for _, p := range extra {
		s.extra[p] = digest(p, nil)
	}
	return s
}

// pastTotal is the digest of a config file at or past the one with which
// the files read add up to more than config.MaxTotalSize.
const pastTotal = "past the total size"

// digest names a file's content; a file that cannot be read gets a value
// that differs from any content, so becoming unreadable is a change too.
// The file is opened as the loader opens it (config.OpenRegular: a FIFO a
// config or certificate name points at would otherwise stop the watcher
// for good, and a device like /dev/zero is never read), and read up to
// the loader's limit for a configuration file, config.MaxFileSize, which
// is above that for certificate files: a change it misses is between two
// contents the loader refuses, before and after. A file over that limit by
// its size is not read, as the loader does not read it. budget, when not
// nil, is what is left of config.MaxTotalSize for a config file: those
// over the limit do not count toward it, as they do not for the loader.
func digest(path string, budget *int64) string {
	if budget != nil && *budget < 0 {
		return pastTotal
	}
	f, fi, err := config.OpenRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return missing
	}
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	if fi.Size() > config.MaxFileSize {
		return tooLarge
	}
	if budget != nil && fi.Size() > *budget {
		*budget = -1
		return pastTotal
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, config.MaxFileSize+1))
	if err != nil {
		return "error: " + err.Error()
	}
	if n > config.MaxFileSize {
		return tooLarge
	}
	if budget != nil {
		// What was read, not the size stat gave: it may have grown.
		if *budget -= n; *budget < 0 {
			return pastTotal
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

const tooLarge = "too large"

// changed lists, sorted, the files whose digest differs between prev and
// cur: config files added, removed or changed, and extra files changed.
// An extra file that is new in the list (SetExtra) or left it is not a
// change of its content.
func changed(prev, cur scan) []string {
	var out []string
	for p, d := range cur.config {
		if prev.config[p] != d {
			out = append(out, p)
		}
	}
	for p := range prev.config {
		if _, ok := cur.config[p]; !ok {
			out = append(out, p)
		}
	}
	for p, d := range cur.extra {
		if pd, ok := prev.extra[p]; ok && pd != d {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
