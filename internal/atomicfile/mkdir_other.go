//go:build !linux

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// mkdirIn makes name in the directory parent and opens it, by path here
// (mkdir_linux.go works from a descriptor of parent): what was opened
// must be what the name holds itself, not a link's target. It returns a
// nil file when name already exists.
func mkdirIn(parent, name string) (*os.File, os.FileInfo, error) {
	like, err := os.Stat(parent)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(parent, name)
	if err := os.Mkdir(path, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	d, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	opened, err := d.Stat()
	if err == nil {
		var here os.FileInfo
		if here, err = os.Lstat(path); err == nil && !os.SameFile(opened, here) {
			err = errReplaced
		}
	}
	if err != nil {
		d.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return d, like, nil
}
