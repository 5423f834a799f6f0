package control

import (
	"fmt"

	"edged/internal/owner"
)

// Peer is the process at the other end of a control connection.
type Peer struct {
	Known    bool // false where the platform cannot tell (not Linux)
	PID      int
	UID, GID uint32
}

// User names who sent a request: the peer's user, resolved to a name
// where the user database knows it ("alice", else "1001", as ls -l shows it). sudoUser
// is what the client said SUDO_USER was; the kernel vouches only for the
// uid, so both are shown: "alice (via sudo, uid 0)". "" when the peer is
// unknown and no sudo user was given.
func (p Peer) User(sudoUser string) string {
	if !p.Known {
		if sudoUser != "" && validName(sudoUser) {
			return sudoUser + " (via sudo, uid unknown)"
		}
		return ""
	}
	if sudoUser != "" && validName(sudoUser) {
		return fmt.Sprintf("%s (via sudo, uid %d)", sudoUser, p.UID)
	}
	return owner.User(p.UID)
}

// validName keeps what a client says its sudo user is to what a user name
// can be: it ends up in the history and the audit log, one line each.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' || r == '@' || r == '$') {
			return false
		}
	}
	return true
}
