//go:build unix

package history

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenNoForeignLink opens rel below dir for reading, with O_NONBLOCK as
// config.OpenRegular does, following no link ForeignLink would refuse (a
// *ForeignLinkError). The way is walked one name at a time from the
// directory the walk holds open, whose permissions decide whether a link
// in it is followed: a link renamed over a name between a check by name
// and an open by name would be followed, and this one is never made.
func OpenNoForeignLink(dir, rel string) (*os.File, error) {
	cur, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	curName := dir
	var parts []string
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	for i, c := range parts {
		fi, err := cur.Stat()
		if err != nil {
			cur.Close()
			return nil, err
		}
		flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= unix.O_DIRECTORY
		}
		foreign := othersMayWrite(fi)
		if foreign {
			flags |= unix.O_NOFOLLOW
		}
		p := filepath.Join(curName, c)
		fd, err := unix.Openat(int(cur.Fd()), c, flags, 0)
		if err != nil && foreign {
			var st unix.Stat_t
			if unix.Fstatat(int(cur.Fd()), c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				cur.Close()
				return nil, &ForeignLinkError{Link: p, Dir: curName, Mode: fi.Mode().Perm(), Owner: ownerOf(fi)}
			}
		}
		cur.Close()
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		cur, curName = os.NewFile(uintptr(fd), p), p
	}
	return cur, nil
}
