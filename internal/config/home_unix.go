//go:build unix

package config

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// ownerNames names the owners and groups of paths, looking each uid and
// gid up once.
type ownerNames struct {
	users, groups map[uint32]string
}

func newOwnerNames() *ownerNames {
	return &ownerNames{users: map[uint32]string{}, groups: map[uint32]string{}}
}

// of returns the owner and group of path by name, or by number when the
// system has no name for them; "", "" when path cannot be stat'ed.
func (n *ownerNames) of(path string) (owner, group string) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", ""
	}
	owner, ok = n.users[st.Uid]
	if !ok {
		id := strconv.FormatUint(uint64(st.Uid), 10)
		owner = id
		if u, err := user.LookupId(id); err == nil {
			owner = u.Username
		}
		n.users[st.Uid] = owner
	}
	group, ok = n.groups[st.Gid]
	if !ok {
		id := strconv.FormatUint(uint64(st.Gid), 10)
		group = id
		if g, err := user.LookupGroupId(id); err == nil {
			group = g.Name
		}
		n.groups[st.Gid] = group
	}
	return owner, group
}
