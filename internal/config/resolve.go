package config

import (
	"errors"
	"io/fs"
	"os"

	"edged/internal/realpath"
)

// resolver resolves paths as filepath.EvalSymlinks does, except that it
// reads each symbolic link once (realpath.Resolver): a path through a
// link it met before leads where that one led then. A load resolves
// every file it reads through one resolver, the configuration files and
// the certificates, keys and CA bundles they name alike, so that a link
// a deploy re-points while the load runs (a release link, current ->
// releases/v2 by ln -sfn; a Kubernetes volume's "..data", swapped to a
// new timestamped directory) leads all of them into the version it led
// to first: a load never pairs one release's configuration with the
// other's certificate, nor a certificate with another version's key. A
// directory that is no link (removed and made again, or replaced by a
// rename) cannot be held so.
type resolver struct {
	*realpath.Resolver
	// vanished is set when a file or directory found through it was
	// gone when it was read: the version the links led to is being
	// removed.
	vanished bool
}

func newResolver() *resolver {
	return &resolver{Resolver: realpath.NewResolver(lstat)}
}

// lstat is os.Lstat; a test counts the path components resolved.
var lstat = os.Lstat

// readTLS reads a certificate, key or CA file (readTLSFile) where path
// leads through the links this resolver met before; its errors name path.
func (r *resolver) readTLS(path string) ([]byte, error) {
	real, err := r.Eval(path)
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
