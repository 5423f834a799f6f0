//go:build !unix

package history

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"edged/internal/atomicfile"
)

// OpenNoForeignLink opens rel below dir for reading unless foreignLink
// refuses the way; without openat here the check is made by name before
// the open (see the unix version).
func OpenNoForeignLink(dir, rel string) (*os.File, error) {
	if err := foreignLink(dir, rel); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(dir, rel))
}

// OpenDirNoForeignLink opens the directory rel below dir unless
// foreignLink refuses the way, making it first with mkdir.
func OpenDirNoForeignLink(dir, rel string, mkdir bool) (*os.File, error) {
	if err := foreignLink(dir, rel); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, rel)
	if mkdir {
		if err := atomicfile.MkdirAll(p); err != nil {
			return nil, err
		}
	}
	return atomicfile.OpenDir(p)
}

// foreignLink returns a *ForeignLinkError for the first symbolic link on
// the way from dir down to rel (rel's last part included) that sits in a
// directory that someone other than this process's user and root may
// write to; nil when there is none, or when a part of the way does not
// exist.
func foreignLink(dir, rel string) error {
	cur := dir
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		if c == "" || c == "." {
			continue
		}
		p := filepath.Join(cur, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			parent, err := os.Stat(cur)
			if err != nil {
				return err
			}
			if othersMayWrite(parent) {
				return foreignLinkError(p, cur, parent)
			}
		}
		cur = p
	}
	return nil
}

// openIn opens name in the directory cur unless foreignLink refuses it.
func openIn(cur *os.File, name string, dir bool) (*os.File, error) {
	if err := foreignLink(cur.Name(), name); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(cur.Name(), name))
}
