// Package owner names users and groups the one way edged shows them
// everywhere (history, audit lines, edged routes, /status): the name the
// system's database gives, else the bare number, as ls -l and ps show it
// (a table's column stays one word).
package owner

import (
	"os/user"
	"strconv"
)

// User names uid: its user name, or the uid when the database has none.
func User(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return u.Username
	}
	return id
}

// Group names gid: its group name, or the gid when the database has none.
func Group(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil && g.Name != "" {
		return g.Name
	}
	return id
}

// Names names the owners of many files, looking each uid and gid up
// once: a lookup may read /etc/passwd or ask NSS.
type Names struct {
	users, groups map[uint32]string
}

// NewNames returns an empty cache.
func NewNames() *Names {
	return &Names{users: map[uint32]string{}, groups: map[uint32]string{}}
}

// User is User(uid), looked up once.
func (n *Names) User(uid uint32) string { return cached(n.users, uid, User) }

// Group is Group(gid), looked up once.
func (n *Names) Group(gid uint32) string { return cached(n.groups, gid, Group) }

func cached(m map[uint32]string, id uint32, name func(uint32) string) string {
	s, ok := m[id]
	if !ok {
		s = name(id)
		m[id] = s
	}
	return s
}
