package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// resolver resolves paths as filepath.EvalSymlinks does, except that it
// reads each symbolic link once: a path through a link it met before
// leads where that one led then. A load resolves every file it reads
// through one resolver, the configuration files and the certificates,
// keys and CA bundles they name alike, so that a link a deploy re-points
// while the load runs (a release link, current -> releases/v2 by ln -sfn;
// a Kubernetes volume's "..data", swapped to a new timestamped directory)
// leads all of them into the version it led to first: a load never pairs
// one release's configuration with the other's certificate, nor a
// certificate with another version's key. A directory that is no link
// (removed and made again, or replaced by a rename) cannot be held so.
type resolver struct {
	links map[string]string // the real path of a link → the real path it leads to
	// vanished is set when a file or directory found through it was
	// gone when it was read: the version the links led to is being
	// removed.
	vanished bool
}

func newResolver() *resolver {
	return &resolver{links: make(map[string]string)}
}

// lstat is os.Lstat; a test counts the path components resolved.
var lstat = os.Lstat

// maxLinks is how many links one resolution follows, as EvalSymlinks.
const maxLinks = 255

var errTooManyLinks = errors.New("too many links")

// eval is filepath.EvalSymlinks of path, made absolute first.
func (r *resolver) eval(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	links := 0
	return r.from("", abs, &links)
}

// from resolves path in the real directory dir (absolute paths from the
// root), counting in links the links followed.
func (r *resolver) from(dir, path string, links *int) (string, error) {
	sep := string(filepath.Separator)
	cur := dir
	if vol := filepath.VolumeName(path); filepath.IsAbs(path) {
		cur, path = vol+sep, path[len(vol):]
	}
	for rest := path; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, sep)
		switch name {
		case "", ".":
			continue
		case "..":
			// cur holds no link: its parent is where ".." leads.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		if real, ok := r.links[next]; ok {
			cur = real
			continue
		}
		fi, err := lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.IsDir() && strings.Trim(rest, sep) != "" {
				return "", &fs.PathError{Op: "lstat", Path: next, Err: syscall.ENOTDIR}
			}
			cur = next
			continue
		}
		if *links++; *links > maxLinks {
			return "", &fs.PathError{Op: "lstat", Path: next, Err: errTooManyLinks}
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		real, err := r.from(cur, target, links)
		if err != nil {
			return "", err
		}
		r.links[next] = real
		cur = real
	}
	return cur, nil
}

// readTLS reads a certificate, key or CA file (readTLSFile) where path
// leads through the links this resolver met before; its errors name path.
func (r *resolver) readTLS(path string) ([]byte, error) {
	real, err := r.eval(path)
	if err != nil {
		// Read by its name: the error says why, of that name.
		return readTLSFile(path)
	}
	data, err := readTLSFile(real)
	r.gone(err)
	if err != nil && real != path {
		err = &renamedError{err: err, msg: renamed(err.Error(), real, path)}
	}
	return data, err
}

// gone notes err, of the read of a path found through r, when it says
// that the path is gone (see vanished).
func (r *resolver) gone(err error) {
	if errors.Is(err, fs.ErrNotExist) {
		r.vanished = true
	}
}

// renamedError is err said of a file by the name a configuration gave
// it rather than by the path it was read at.
type renamedError struct {
	err error
	msg string
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }
