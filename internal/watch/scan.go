package watch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// scan is the content of every relevant file at one moment, for the
// periodic rescan to compare with the previous one.
type scan struct {
	config map[string]string // config files found in the tree → content digest
	extra  map[string]string // every extra file → content digest
}

const missing = "missing"

// maxDigest bounds what digest reads of a file: far above what the loader
// accepts (config.MaxFileSize), so a change it misses is of a file that
// is refused before and after it.
const maxDigest = 64 << 20

// takeScan hashes the config tree under dir and the extra files.
func takeScan(dir string, extra []string) scan {
	s := scan{config: make(map[string]string), extra: make(map[string]string, len(extra))}
	walkTree(dir, nil, func(p string) { s.config[p] = digest(p) })
	for _, p := range extra {
		s.extra[p] = digest(p)
	}
	return s
}

// digest names a file's content; a file that cannot be read gets a value
// that differs from any content, so becoming unreadable is a change too.
// Only regular files are read, and only their first maxDigest bytes: the
// open does not wait (O_NONBLOCK) on a FIFO that a config or certificate
// name may point at, which would stop the watcher for good, and a device
// like /dev/zero is never read.
func digest(path string) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return missing
	}
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "error: " + err.Error()
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file: " + fi.Mode().String()
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxDigest)); err != nil {
		return "error: " + err.Error()
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
