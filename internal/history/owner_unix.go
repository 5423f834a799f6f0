//go:build unix

package history

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// ownerOf names the user owning a file ("uid N" when the user database
// does not know it).
func ownerOf(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	id := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + id
}
