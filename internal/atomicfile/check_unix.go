//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"edged/internal/owner"
)

// CanReplace reports, changing nothing, whether ReplaceFile(path) could
// write path and give it its owner, and whether path's directory lets
// entries be added, renamed and removed: a caller that changes several
// files (a rollback) checks them all first rather than stop half way.
// A directory that does not exist yet is judged by the nearest one that
// does, in which MkdirAll would make it. It errs only where ReplaceFile
// would fail (as root, only what IsFileOrNothing refuses).
func CanReplace(path string) error {
	if err := IsFileOrNothing(path); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return nil
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		fi = nil
	}
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(dir) == dir {
			return err
		}
		dir = filepath.Dir(dir)
	}
	if err := CanRenameIn(dir); err != nil {
		return err
	}
	like, likePath, user := fi, path, true
	if like == nil {
		if like, err = os.Stat(dir); err != nil {
			return err
		}
		likePath, user = dir, false
	}
	wantUID, wantGID, ok := owner.IDs(like)
	if !ok {
		return nil
	}
	if user && int(wantUID) != os.Geteuid() {
		return fmt.Errorf("%s: cannot give it the owner of %s: uid %d gid %d: only root may give a file to another user", path, likePath, wantUID, wantGID)
	}
	// A new file takes this process's group, or a setgid directory's.
	gid := os.Getegid()
	if d, err := os.Stat(filepath.Dir(path)); err == nil && d.Mode()&fs.ModeSetgid != 0 {
		if _, dgid, ok := owner.IDs(d); ok {
			gid = int(dgid)
		}
	}
	if int(wantGID) != gid {
		groups, _ := os.Getgroups()
		if int(wantGID) != os.Getegid() && !slices.Contains(groups, int(wantGID)) {
			return fmt.Errorf("%s: cannot give it the group of %s: gid %d: this user is not in that group", path, likePath, wantGID)
		}
	}
	return nil
}

// CanRenameIn reports whether this process may add, rename and remove
// entries of the directory dir (for a rollback, moving a file aside).
func CanRenameIn(dir string) error {
	if err := syscall.Access(dir, 0o3); err != nil { // W_OK|X_OK
		return &fs.PathError{Op: "write into", Path: dir, Err: err}
	}
	return nil
}
