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

// takeScan hashes the config tree under dir and the extra files.
func takeScan(dir string, extra []string) scan {
	s := scan{config: make(map[string]string), extra: make(map[string]string, len(extra))}
	files, problems := config.Walk(dir, nil)
	for _, p := range files {
		s.config[p] = digest(p)
	}
	// A dangling link named *.toml is still a file the loader will trip
	// over: a change of it is one.
	for _, p := range problems {
		if p.Kind == config.BrokenLink {
			s.config[p.Path] = digest(p.Path)
		}
	}
	for _, p := range extra {
		s.extra[p] = digest(p)
	}
	return s
}

// digest names a file's content; a file that cannot be read gets a value
// that differs from any content, so becoming unreadable is a change too.
// The file is opened as the loader opens it (config.OpenRegular: a FIFO a
// config or certificate name points at would otherwise stop the watcher
// for good, and a device like /dev/zero is never read), and read up to
// the loader's limit for a configuration file, config.MaxFileSize, which
// is above that for certificate files: a change it misses is between two
// contents the loader refuses, before and after.
func digest(path string) string {
	f, _, err := config.OpenRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return missing
	}
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, config.MaxFileSize+1))
	if err != nil {
		return "error: " + err.Error()
	}
	if n > config.MaxFileSize {
		return "too large"
	}
	return hex.EncodeToString(h.Sum(nil))
}

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
