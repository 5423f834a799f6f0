//go:build unix

package atomicfile

import (
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

// openDir opens the directory dir itself, never what a link there names.
func openDir(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
}
