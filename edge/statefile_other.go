//go:build !linux

package edge

import (
	"errors"
	"os"
)

// openOutsideState opens path with flags unless the file it leads to is
// one edged keeps in stateDir. Without Linux's /proc and openat here, the
// check is made on the path before the open (see the Linux version).
func openOutsideState(path, stateDir string, flags int, perm uint32) (*os.File, error) {
	if msg := StateFileProblem(path, stateDir); msg != "" {
		return nil, errors.New(msg)
	}
	return os.OpenFile(path, flags, os.FileMode(perm))
}
