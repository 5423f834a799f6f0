//go:build !unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Without openat here, the *In functions work by path below d's name
// (see in_unix.go).

// ReplaceFileIn is ReplaceFile for name in the directory d.
func ReplaceFileIn(d *os.File, name string, b []byte) error {
	return replaceFile(filepath.Join(d.Name(), name), b, nil)
}

// ReplaceFileIfIn is ReplaceFileIf for name in the directory d.
func ReplaceFileIfIn(d *os.File, name string, old, b []byte) error {
	path := filepath.Join(d.Name(), name)
	return replaceFile(path, b, func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return stillHolds(f, path, old)
	})
}

// ReplaceFileIfAbsentIn is ReplaceFileIfIn for a file the caller found
// missing: written only if path has no entry just before the rename.
func ReplaceFileIfAbsentIn(d *os.File, name string, b []byte) error {
	path := filepath.Join(d.Name(), name)
	return replaceFile(path, b, func() error {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, ErrChanged)
		}
		return nil
	})
}

// replaceFile is ReplaceFileIn by path, with writeFile's check.
func replaceFile(path string, b []byte, check func() error) error {
	if err := IsFileOrNothing(path); err != nil {
		return err
	}
	like := path
	fi, err := os.Stat(path)
	if err != nil {
		like = filepath.Dir(path)
		if fi, err = os.Stat(like); err != nil {
			return err
		}
	}
	return writeFile(path, b, func(tmp *os.File) error {
		if err := takeModeOf(tmp, fi, like); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}, check)
}

// RenameIn is Rename for oldname and newname in the directory d.
func RenameIn(d *os.File, oldname, newname string) error {
	return Rename(filepath.Join(d.Name(), oldname), filepath.Join(d.Name(), newname))
}

// LinkIn gives the file oldname of the directory d a second name there.
func LinkIn(d *os.File, oldname, newname string) error {
	return os.Link(filepath.Join(d.Name(), oldname), filepath.Join(d.Name(), newname))
}

// ExistsIn reports whether the directory d has an entry name.
func ExistsIn(d *os.File, name string) bool {
	_, err := os.Lstat(filepath.Join(d.Name(), name))
	return err == nil
}

// MkdirIn makes the directory name in the directory d (MkdirAll) and
// opens it. It returns a nil file when name already exists.
func MkdirIn(d *os.File, name string) (*os.File, error) {
	p := filepath.Join(d.Name(), name)
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := MkdirAll(p); err != nil {
		return nil, err
	}
	return OpenDir(p)
}

// readDirIn reads the entries of the directory d.
func readDirIn(d *os.File) ([]fs.DirEntry, error) { return os.ReadDir(d.Name()) }

// removeIn removes the entry name of the directory d.
func removeIn(d *os.File, name string) error { return os.Remove(filepath.Join(d.Name(), name)) }
