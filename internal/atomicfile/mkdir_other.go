//go:build !linux

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// mkdirIn makes name in the directory parent and opens it (by path here:
// see mkdir_linux.go for the descriptor-based version). It returns a nil
// file when name already exists.
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
	d, err := openDir(path)
	return d, like, err
}
