//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// sameOwner gives tmp the group of like and, when user is set or this
// process is root, its user too (a new file takes its directory's group;
// its user only from root, as only root may give it away). Only what
// differs is changed, so replacing one's own file needs no privilege.
func sameOwner(tmp *os.File, like os.FileInfo, user bool) error {
	want, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	have, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid, gid := -1, -1
	if (user || os.Geteuid() == 0) && have.Uid != want.Uid {
		uid = int(want.Uid)
	}
	if have.Gid != want.Gid {
		gid = int(want.Gid)
	}
	if uid == -1 && gid == -1 {
		return nil
	}
	if err := tmp.Chown(uid, gid); err != nil {
		return fmt.Errorf("uid %d gid %d: %w", want.Uid, want.Gid, err)
	}
	return nil
}

// isFresh reports an error unless d is an empty directory this process
// owns: the one MkdirAll has just made.
func isFresh(d *os.File) error {
	fi, err := d.Stat()
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if !fi.IsDir() || int(st.Uid) != os.Geteuid() {
		return errors.New("replaced while it was being made; not changed")
	}
	names, err := d.Readdirnames(1)
	if len(names) > 0 || err == nil {
		return errors.New("replaced while it was being made; not changed")
	}
	return nil
}
