package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// MkdirAll creates dir and the parents it lacks, each with the mode and
// owner of the directory it is made in (as ReplaceFile gives a new file
// its directory's; the user only when this process is root, as only root
// may give a directory away): a sudo'd rollback that brings back an
// environment's home leaves it the home's owners, not root's. A directory
// that exists, or that another process creates meanwhile, is left as it is.
func MkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if !errors.Is(err, fs.ErrNotExist) || parent == dir {
		return err
	}
	if err := MkdirAll(parent); err != nil {
		return err
	}
	d, like, err := mkdirIn(parent, filepath.Base(dir))
	if err != nil || d == nil {
		return err
	}
	defer d.Close()
	// The directory opened must be the one just made: a writer of parent
	// may have renamed another directory (of someone else, with content)
	// onto the new name, which root's chmod and chown would then hand over.
	if err := isFresh(d); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := d.Chmod(like.Mode() & (fs.ModePerm | fs.ModeSetgid)); err != nil {
		return err
	}
	if err := sameOwner(d, like, false); err != nil {
		return fmt.Errorf("%s: cannot give it the owner of %s: %w", dir, parent, err)
	}
	// The new entry must outlive a crash, or the files written into the
	// new directory would be lost with it.
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// WriteFile writes b to path through a dot-named temp file in the same
// directory and renames it over path, with the given mode.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	return writeFile(path, b, func(tmp *os.File) error { return tmp.Chmod(mode) }, nil)
}

// ReplaceFile is WriteFile giving path the mode and owner of the file it
// replaces or, when there is none, of its directory (the mode less its
// execute bits): a file written with sudo into a service's configuration
// stays readable by the service. The owner is set before the rename, so
// when this process may not give it (only root may give a file to another
// user), path is left as it was and the error says which owner. It is
// ReplaceFileIn in path's directory, opened once: what it looks at,
// writes, checks and renames is in the same directory, whatever is
// renamed above it meanwhile.
func ReplaceFile(path string, b []byte) error {
	return inDirOf(path, func(d *os.File, name string) error { return ReplaceFileIn(d, name, b) })
}

// ErrChanged is returned by ReplaceFileIf when the file no longer holds
// what the caller read.
var ErrChanged = errors.New("changed since it was read")

// ReplaceFileIf is ReplaceFile for a content worked out from old, what
// path held when the caller read it: it replaces path only if path still
// holds old just before the rename, so that an edit made meanwhile (by
// hand, or by another edged command) is not silently undone. Otherwise it
// leaves path as it is and returns an error wrapping ErrChanged.
func ReplaceFileIf(path string, old, b []byte) error {
	return inDirOf(path, func(d *os.File, name string) error { return ReplaceFileIfIn(d, name, old, b) })
}

// inDirOf runs write with path's directory, opened, and path's name in it.
func inDirOf(path string, write func(d *os.File, name string) error) error {
	d, err := OpenDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return write(d, filepath.Base(path))
}

// stillHolds is ReplaceFileIf's check on f, the file at path opened
// again just before the rename: nil while it holds old, else an error
// wrapping ErrChanged.
func stillHolds(f *os.File, path string, old []byte) error {
	same, err := holdsOpened(f, old)
	if err != nil {
		return err
	}
	if !same {
		return fmt.Errorf("%s: %w", path, ErrChanged)
	}
	return nil
}

// holdsOpened reports whether f is a regular file holding b, reading no
// more than one byte past len(b) of it.
func holdsOpened(f *os.File, b []byte) (bool, error) {
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, err
	}
	now, err := io.ReadAll(io.LimitReader(f, int64(len(b))+1))
	if err != nil {
		return false, err
	}
	return bytes.Equal(now, b), nil
}

// takeModeOf gives tmp, written to take the place of the file like
// describes (at likePath), that file's mode and owner; where there is no
// such file, like is its directory, whose mode it takes without the
// execute bits.
func takeModeOf(tmp *os.File, like os.FileInfo, likePath string) error {
	mode := like.Mode().Perm()
	if like.IsDir() {
		mode &^= 0o111
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := sameOwner(tmp, like, !like.IsDir()); err != nil {
		return fmt.Errorf("cannot give it the owner of %s: %w", likePath, err)
	}
	return nil
}

// IsFileOrNothing reports, as an error saying what to do, a path that
// holds something ReplaceFile must not replace: a directory, which a
// rename cannot replace (a caller writing several files would stop half
// way), a symbolic link, which the rename would replace by a file,
// leaving the file it names as it was and the operator's layout (a
// conf.d file linked into a checkout) broken, or another kind of file.
func IsFileOrNothing(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().IsRegular():
		return nil
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, where a file is to be written: move it away first", path)
	case fi.Mode()&fs.ModeSymlink != 0:
		to, _ := os.Readlink(path)
		return fmt.Errorf("%s is a symbolic link (to %s): edged replaces files, never links, nor writes through one; edit the file it names by hand, or put the file itself in place of the link", path, to)
	}
	return fmt.Errorf("%s is not a regular file (%s), where a file is to be written: move it away first", path, fi.Mode().Type())
}

// RemoveLeftTempsIn removes the temp files a writer of name in the
// directory d left when it was killed between writing one and renaming it
// (".NAME.tmp-N", regular files only), reading and removing them in d (on
// Unix: unlinkat, following no link; a sudo'd promotion or rollback walks
// to d one name at a time, as it then writes there), and returns their
// paths. Call it only while holding LockTree on a directory above d: then
// no other writer is between the two steps, and every such file is a dead
// one's.
func RemoveLeftTempsIn(d *os.File, name string) ([]string, error) {
	ents, err := readDirIn(d)
	if err != nil {
		return nil, err
	}
	prefix := "." + name + ".tmp-"
	var removed []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" || !e.Type().IsRegular() {
			continue
		}
		if err := removeIn(d, e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, filepath.Join(d.Name(), e.Name()))
	}
	return removed, nil
}

// testHookWritten, when set by a test, runs once the temp file is written.
var testHookWritten func(tmpName string)

// testHookChecked, when set by a test, runs between a passed check and
// the rename.
var testHookChecked func()

// writeFile writes b to a temp file beside path, lets prepare set its
// mode (and owner), and renames it over path, then syncs path's directory
// so that the rename survives a crash; check, when set, runs last before
// the rename, which it may stop with its error. The check and the rename
// hold the directory's lock (lockDir).
//
// prepare works on the open file, never on its name: the directory may be
// writable by others (an environment's home, by its operators' group),
// who could swap the name for a symbolic link between two calls, and a
// chmod or chown by name, run as root, would then change the link's
// target.
func writeFile(path string, b []byte, prepare func(tmp *os.File) error, check func() error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if testHookWritten != nil {
		testHookWritten(tmp.Name())
	}
	if err := prepare(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The check and the rename are one step for every writer (an edged
	// promote and a rollback writing the same file): otherwise two could
	// each find the file as they read it, and the second rename would
	// silently undo the first.
	unlock, err := lockDir(filepath.Dir(path))
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s is written, but its directory could not be synced: a crash may yet undo it: %w", path, err)
	}
	return nil
}

// Rename renames oldpath to newpath, in the same directory, and syncs
// that directory, so that the rename outlives a crash (a rollback moving
// a file aside).
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(newpath)); err != nil {
		return fmt.Errorf("%s is renamed %s, but its directory could not be synced: a crash may yet undo it: %w", oldpath, newpath, err)
	}
	return nil
}

// syncDir makes the entries made in dir (a rename over a file, a new
// directory) durable: a rename is only recorded in dir, and a crash before
// dir reaches the disk may bring back the old file, or lose a new one,
// whatever fsync did for the file's content. A variable, so a test can
// see when it is called.
var syncDir = func(dir string) error {
	d, err := OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil // a filesystem that cannot sync directories (fsync(2): EINVAL)
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
