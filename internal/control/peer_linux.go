package control

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf asks the kernel who connected (SO_PEERCRED): the uid, gid and
// pid of the client when it called connect(2).
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return Peer{}
	}
	return Peer{Known: true, PID: int(cred.Pid), UID: cred.Uid, GID: cred.Gid}
}
