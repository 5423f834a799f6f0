//go:build !linux

package edge

import (
	"errors"
	"os"

	"edged/internal/realpath"
)

// openOutsideState opens path with flags unless the file it leads to is
// not in place (logPlace.problem). Without Linux's /proc and openat here,
// the check is made on the path before the open (see the Linux version).
func openOutsideState(path string, place logPlace, flags int, perm uint32) (*os.File, error) {
	if msg := place.problem(path, realpath.ForCreate(path)); msg != "" {
		return nil, errors.New(msg)
	}
	return os.OpenFile(path, flags, os.FileMode(perm))
}
