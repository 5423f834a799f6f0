//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package upstream

import "syscall"

// peek runs through RawConn.Control: an idle connection is alive when a
// non-blocking MSG_PEEK finds nothing to read (EAGAIN). Data (a stray
// response, a TLS close_notify) or EOF means the server is done with it.
func (c *conn) peek(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
