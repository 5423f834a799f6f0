package atomicfile

import (
	"errors"
	"fmt"
	"os"

	"edged/internal/owner"
)

// sameOwner gives tmp the group of like and, when user is set or this
// process is root, its user too (a new file takes its directory's group;
// its user only from root, as only root may give it away). Only what
// differs is changed, so replacing one's own file needs no privilege.
// Where files have no uid and gid, there is nothing to carry over.
func sameOwner(tmp *os.File, like os.FileInfo, user bool) error {
	wantUID, wantGID, ok := owner.IDs(like)
	if !ok {
		return nil
	}
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	haveUID, haveGID, ok := owner.IDs(fi)
	if !ok {
		return nil
	}
	uid, gid := -1, -1
	if (user || os.Geteuid() == 0) && haveUID != wantUID {
		uid = int(wantUID)
	}
	if haveGID != wantGID {
		gid = int(wantGID)
	}
	if uid == -1 && gid == -1 {
		return nil
	}
	if err := tmp.Chown(uid, gid); err != nil {
		return fmt.Errorf("uid %d gid %d: %w", wantUID, wantGID, err)
	}
	return nil
}

// errReplaced: the directory MkdirAll opened is not the one it made.
var errReplaced = errors.New("replaced while it was being made; not changed")

// isFresh reports errReplaced unless d is an empty directory this
// process owns: the one MkdirAll has just made.
func isFresh(d *os.File) error {
	fi, err := d.Stat()
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errReplaced
	}
	if uid, _, ok := owner.IDs(fi); ok && int(uid) != os.Geteuid() {
		return errReplaced
	}
	if names, err := d.Readdirnames(1); len(names) > 0 || err == nil {
		return errReplaced
	}
	return nil
}
