//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package upstream

import (
	"net"
	"syscall"

	"edged/internal/rawconn"
)

// canWriteWait: a plain TCP connection's request can be written from
// inside RawConn.Read (writeWait).
const canWriteWait = true

// writeWait writes p, the whole request, and waits for the node's answer
// in one RawConn.Read: the read that follows then finds the answer,
// where a read right after an ordinary write almost always returns
// EAGAIN first (a wasted system call and a trip through the poller).
// RawConn.Read resets the poller's readiness before it calls the func,
// and the func writes before it asks to wait, so anything the node sends
// after the write wakes the wait. A short write, EAGAIN, an error, or a
// wait that could not begin (a past deadline) leaves the rest to nc.Write,
// which reports any error the ordinary way. An error of the wait itself
// (the response deadline, an abort) is met again by the read.
func (c *conn) writeWait(p []byte) (int, error) {
	w := &c.ww
	w.p, w.n, w.tried, w.written = p, 0, false, false
	_ = c.raw.Read(w.stepFn)
	w.p = nil
	if w.written {
		return len(p), nil
	}
	n, err := c.nc.Write(p[w.n:])
	return w.n + n, err
}

// step is writeWait's func: its first call writes (w.write: a raw system
// call when the connection's own writes are) and asks to wait for
// readability; the next one, once the fd is readable, ends the wait.
func (w *waitWriter) step(fd uintptr) bool {
	if w.tried {
		return true
	}
	w.tried = true
	for w.n < len(w.p) {
		n, err := w.write(int(fd), w.p[w.n:])
		if n > 0 {
			w.n += n
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return true
		}
	}
	w.written = true
	return false
}

// writeFunc is how writeWait writes on nc: as nc's own writes do, with
// raw system calls when rawconn wrapped it (one P).
func writeFunc(nc net.Conn) func(fd int, p []byte) (int, error) {
	if _, ok := nc.(*rawconn.Conn); ok {
		return rawconn.WriteFD
	}
	return syscall.Write
}
