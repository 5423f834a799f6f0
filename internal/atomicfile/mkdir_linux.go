package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// mkdirIn makes name in the directory parent and opens it, working from
// one descriptor of parent: the mode and owner to copy (like) are those
// of the directory the new one is made in, whatever a writer of parent's
// own parent renames meanwhile, and the new name is opened without
// following a link. It returns a nil file when name already exists.
func mkdirIn(parent, name string) (*os.File, os.FileInfo, error) {
	p, err := OpenDir(parent)
	if err != nil {
		return nil, nil, err
	}
	defer p.Close()
	like, err := p.Stat()
	if err != nil {
		return nil, nil, err
	}
	pfd := int(p.Fd())
	path := filepath.Join(parent, name)
	if err := syscall.Mkdirat(pfd, name, 0o700); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return nil, nil, nil
		}
		return nil, nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	fd, err := syscall.Openat(pfd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), like, nil
}
