//go:build unix

package owner

import (
	"os"
	"syscall"
)

// IDs returns the uid and gid owning a file; ok is false where the
// platform's file information carries none.
func IDs(fi os.FileInfo) (uid, gid uint32, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Uid, st.Gid, true
}
