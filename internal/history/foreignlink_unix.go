//go:build unix

package history

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"edged/internal/atomicfile"
)

// OpenNoForeignLink opens rel below dir for reading, with O_NONBLOCK as
// config.OpenRegular does, following no symbolic link that sits in a
// directory someone other than this process's user and root may write
// to (a *ForeignLinkError): whoever may write there chose where the link
// leads, and this process (root, under sudo) may read or write what they
// may not. The way is walked one name at a time from the directory the
// walk holds open, whose permissions decide whether a link in it is
// followed: a link renamed over a name between a check by name and an
// open by name would be followed, and this one is never made.
func OpenNoForeignLink(dir, rel string) (*os.File, error) {
	return walk(dir, rel, false, false)
}

// OpenDirNoForeignLink opens the directory rel below dir as
// OpenNoForeignLink opens a file; with mkdir, it makes the directories
// missing on the way (atomicfile.MkdirIn), each in the one the walk holds.
// A rollback writes and renames in the directory it returns, and a
// promotion writes its file there (atomicfile's *In functions).
func OpenDirNoForeignLink(dir, rel string, mkdir bool) (*os.File, error) {
	return walk(dir, rel, true, mkdir)
}

func walk(dir, rel string, lastDir, mkdir bool) (*os.File, error) {
	cur, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	var parts []string
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	for i, c := range parts {
		isDir := lastDir || i < len(parts)-1
		next, err := openIn(cur, c, isDir)
		if mkdir && isDir && errors.Is(err, fs.ErrNotExist) {
			if next, err = atomicfile.MkdirIn(cur, c); next == nil && err == nil {
				next, err = openIn(cur, c, true) // made meanwhile
			}
		}
		cur.Close()
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// openIn opens name in the directory cur holds, following no link there
// when others may write to cur (a *ForeignLinkError).
func openIn(cur *os.File, name string, dir bool) (*os.File, error) {
	fi, err := cur.Stat()
	if err != nil {
		return nil, err
	}
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC
	if dir {
		flags |= unix.O_DIRECTORY
	}
	foreign := othersMayWrite(fi)
	if foreign {
		flags |= unix.O_NOFOLLOW
	}
	p := filepath.Join(cur.Name(), name)
	fd, err := unix.Openat(int(cur.Fd()), name, flags, 0)
	if err != nil && foreign {
		var st unix.Stat_t
		if unix.Fstatat(int(cur.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return nil, foreignLinkError(p, cur.Name(), fi)
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
