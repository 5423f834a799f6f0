//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The *In functions work in the directory d holds open (openat, renameat,
// linkat, mkdirat, fsync of d), never by a path: a caller that walked to
// d one name at a time (a rollback run with sudo, in an environment's
// home) writes where it looked, whatever a writer of a directory above d
// renames meanwhile.

// ReplaceFileIn is ReplaceFile for name in the directory d.
func ReplaceFileIn(d *os.File, name string, b []byte) error {
	return replaceFileIn(d, name, b, nil)
}

// ReplaceFileIfIn is ReplaceFileIf for name in the directory d: the
// check reads name in d, under d's lock, as the rename then replaces it.
func ReplaceFileIfIn(d *os.File, name string, old, b []byte) error {
	path := filepath.Join(d.Name(), name)
	return replaceFileIn(d, name, b, func() error {
		f, err := openIn(d, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ELOOP) {
			// A link put in the file's place since it was looked at.
			return fmt.Errorf("%s: %w", path, ErrChanged)
		}
		if err != nil {
			return err
		}
		defer f.Close()
		return stillHolds(f, path, old)
	})
}

// ReplaceFileIfAbsentIn is ReplaceFileIfIn for a file the caller found
// missing: name is written only if the directory d still has no entry of
// that name just before the rename; otherwise the error wraps ErrChanged.
func ReplaceFileIfAbsentIn(d *os.File, name string, b []byte) error {
	path := filepath.Join(d.Name(), name)
	return replaceFileIn(d, name, b, func() error {
		if ExistsIn(d, name) {
			return fmt.Errorf("%s: %w", path, ErrChanged)
		}
		return nil
	})
}

// replaceFileIn is ReplaceFileIn with writeFile's check: run last before
// the rename, under d's lock, it may stop it with its error.
func replaceFileIn(d *os.File, name string, b []byte, check func() error) error {
	path := filepath.Join(d.Name(), name)
	var like os.FileInfo
	likePath := path
	f, err := openIn(d, name, lookFlags|unix.O_NOFOLLOW)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if like, err = d.Stat(); err != nil {
			return err
		}
		likePath = d.Name()
	case err != nil:
		// A link (ELOOP, without O_PATH), or what may not be opened:
		// say what it is.
		if ierr := IsFileOrNothing(path); ierr != nil {
			return ierr
		}
		return err
	default:
		like, err = f.Stat()
		f.Close()
		if err != nil {
			return err
		}
		if !like.Mode().IsRegular() {
			if ierr := IsFileOrNothing(path); ierr != nil {
				return ierr
			}
			return fmt.Errorf("%s is not a regular file, where a file is to be written: move it away first", path)
		}
	}
	var tmp *os.File
	var tmpName string
	for {
		tmpName = "." + name + ".tmp-" + strconv.FormatUint(uint64(rand.Uint32()), 10)
		tmp, err = openIn(d, tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer unix.Unlinkat(int(d.Fd()), tmpName, 0)
	err = writeTemp(tmp, b, like, likePath)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	unlock, err := lockDirIn(d)
	if err != nil {
		return err
	}
	defer unlock()
	if check != nil {
		if err := check(); err != nil {
			return err
		}
		if testHookChecked != nil {
			testHookChecked()
		}
	}
	if err := unix.Renameat(int(d.Fd()), tmpName, int(d.Fd()), name); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.Name(), tmpName), New: path, Err: err}
	}
	if err := syncOpenDir(d); err != nil {
		return fmt.Errorf("%s is written, but its directory could not be synced: a crash may yet undo it: %w", path, err)
	}
	return nil
}

// writeTemp writes b to tmp with the mode and owner of like (at
// likePath, takeModeOf), and syncs it.
func writeTemp(tmp *os.File, b []byte, like os.FileInfo, likePath string) error {
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if testHookWritten != nil {
		testHookWritten(tmp.Name())
	}
	if err := takeModeOf(tmp, like, likePath); err != nil {
		return err
	}
	return tmp.Sync()
}

// RenameIn is Rename for oldname and newname in the directory d.
func RenameIn(d *os.File, oldname, newname string) error {
	if err := unix.Renameat(int(d.Fd()), oldname, int(d.Fd()), newname); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.Name(), oldname), New: filepath.Join(d.Name(), newname), Err: err}
	}
	if err := syncOpenDir(d); err != nil {
		return fmt.Errorf("%s is renamed %s, but its directory could not be synced: a crash may yet undo it: %w", filepath.Join(d.Name(), oldname), newname, err)
	}
	return nil
}

// LinkIn gives the file oldname of the directory d a second name there,
// following no link.
func LinkIn(d *os.File, oldname, newname string) error {
	if err := unix.Linkat(int(d.Fd()), oldname, int(d.Fd()), newname, 0); err != nil {
		return &os.LinkError{Op: "link", Old: filepath.Join(d.Name(), oldname), New: filepath.Join(d.Name(), newname), Err: err}
	}
	return nil
}

// ExistsIn reports whether the directory d has an entry name (a link is
// not followed); what cannot be known counts as none.
func ExistsIn(d *os.File, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// MkdirIn makes the directory name in the directory d, as MkdirAll makes
// each (d's mode and owner), and opens it. It returns a nil file when
// name already exists.
func MkdirIn(d *os.File, name string) (*os.File, error) {
	path := filepath.Join(d.Name(), name)
	like, err := d.Stat()
	if err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(int(d.Fd()), name, 0o700); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, nil
		}
		return nil, &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	n, err := openIn(d, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	err = isFresh(n)
	if err == nil {
		err = n.Chmod(like.Mode() & (fs.ModePerm | fs.ModeSetgid))
	}
	if err == nil {
		if err = sameOwner(n, like, false); err != nil {
			err = fmt.Errorf("cannot give it the owner of %s: %w", d.Name(), err)
		}
	}
	if err == nil {
		err = syncOpenDir(d)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// readDirIn reads the entries of the directory d, through a descriptor
// of its own (d's offset is left as it was).
func readDirIn(d *os.File) ([]fs.DirEntry, error) {
	l, err := openIn(d, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.ReadDir(-1)
}

// removeIn removes the entry name of the directory d (a link itself, not
// what it names).
func removeIn(d *os.File, name string) error {
	if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.Name(), name), Err: err}
	}
	return nil
}

// openIn opens name in the directory d with flags (O_CLOEXEC added).
func openIn(d *os.File, name string, flags int) (*os.File, error) {
	fd, err := unix.Openat(int(d.Fd()), name, flags|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(d.Name(), name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.Name(), name)), nil
}

// lockDirIn is lockDir for the directory d, through a descriptor of its
// own (closing it releases the lock; d stays open).
func lockDirIn(d *os.File) (unlock func(), err error) {
	l, err := openIn(d, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK)
	if err != nil {
		return func() {}, nil
	}
	return lockOpened(l)
}

// syncOpenDir is syncDir for the directory d. A variable, so a test can
// see when it is called.
var syncOpenDir = func(d *os.File) error {
	err := d.Sync()
	if errors.Is(err, unix.EINVAL) {
		err = nil // a filesystem that cannot sync directories (fsync(2): EINVAL)
	}
	return err
}
