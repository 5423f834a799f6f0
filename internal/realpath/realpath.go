// Package realpath resolves a path through its symbolic links a name at
// a time, as the kernel does: a ".." after a link is taken from where the
// link leads, never cancelled against the link's own name as
// filepath.Clean would. A load resolves through it every file it reads
// (internal/config), and edge where an access log's open would write
// (the state_dir check). It only looks names up and reads links: it
// never opens, makes or changes a file.
package realpath

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// walk resolves paths a name at a time. Its fields are the two ways its
// callers differ: whether a link is read once or each time it is met,
// and whether a name that cannot be followed is an error or the file an
// open would create.
type walk struct {
	lstat func(string) (fs.FileInfo, error)
	// links are the links read, each once: the real path of a link →
	// the real path it leads to. nil: a link is read each time.
	links map[string]string
	// create takes a name that cannot be followed (not there, no
	// directory, a link past max) as the file an open would create,
	// and the names after it as below it, rather than fail.
	create bool
	max    int // how many links one resolution follows
}

var errTooManyLinks = errors.New("too many links")

// from resolves path in the real directory dir (absolute paths from the
// root), counting in links the links followed.
func (w *walk) from(dir, path string, links *int) (string, error) {
	cur := dir
	if vol := filepath.VolumeName(path); filepath.IsAbs(path) {
		cur, path = vol+string(filepath.Separator), path[len(vol):]
	}
	for rest := path; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, string(filepath.Separator))
		switch name {
		case "", ".":
			continue
		case "..":
			// cur holds no link: its parent is where ".." leads.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		if real, ok := w.links[next]; ok {
			cur = real
			continue
		}
		real, err := w.follow(cur, next, rest, links)
		if err != nil {
			if !w.create {
				return "", err
			}
			real = next
		}
		cur = real
	}
	return cur, nil
}

// follow is where next, a name in the real directory cur with rest
// still to resolve after it, leads.
func (w *walk) follow(cur, next, rest string, links *int) (string, error) {
	fi, err := w.lstat(next)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if !fi.IsDir() && strings.Trim(rest, string(filepath.Separator)) != "" {
			return "", &fs.PathError{Op: "lstat", Path: next, Err: syscall.ENOTDIR}
		}
		return next, nil
	}
	if *links >= w.max {
		return "", &fs.PathError{Op: "lstat", Path: next, Err: errTooManyLinks}
	}
	*links++
	target, err := os.Readlink(next)
	if err != nil {
		return "", err
	}
	real, err := w.from(cur, target, links)
	if err != nil {
		return "", err
	}
	if w.links != nil {
		w.links[next] = real
	}
	return real, nil
}

// ForCreate is the path an open of p that creates its file would write:
// every link on the way followed, the last one included when its target
// does not exist yet. A name that is not there, or cannot be followed,
// is the file to make, and the names after it are taken below it.
// Relative paths are taken from the working directory, as open(2) takes
// them. At most 40 links are followed, the kernel's bound; past it a
// link is taken as a name.
func ForCreate(p string) string {
	if !filepath.IsAbs(p) {
		if wd, err := os.Getwd(); err == nil {
			p = wd + string(filepath.Separator) + p
		}
	}
	w := walk{lstat: os.Lstat, create: true, max: 40}
	links := 0
	real, _ := w.from(string(filepath.Separator), p, &links) // never fails
	return real
}

// Resolver resolves paths as filepath.EvalSymlinks does, except that it
// reads each symbolic link once: a path through a link it met before
// leads where that one led then, though the link has been re-pointed
// since. A directory that is no link (removed and made again, or
// replaced by a rename) cannot be held so. It is not safe for use by
// several goroutines at once.
type Resolver struct{ w walk }

// NewResolver returns a Resolver that looks names up with lstat
// (os.Lstat; a test counts the names looked up).
func NewResolver(lstat func(string) (fs.FileInfo, error)) *Resolver {
	return &Resolver{walk{lstat: lstat, links: make(map[string]string), max: 255}}
}

// Eval is filepath.EvalSymlinks of path, made absolute first, through
// the links r read before: an error when a name on the way is not there,
// is no directory though names follow it, or a resolution follows more
// than 255 links, as EvalSymlinks.
func (r *Resolver) Eval(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	links := 0
	return r.w.from("", abs, &links)
}
