// Package rawconn reads and writes TCP connections without the Go
// runtime's system call bookkeeping.
//
// A read or write of a net.TCPConn enters the runtime's system call state
// around the call: the P is marked in a system call, a parked sysmon
// thread is woken, and a call that outlasts one sysmon tick (20 µs; a
// loopback write delivers to the receiver inside the call and often does)
// has its P handed to another thread, which then spins for work. The
// sockets are non-blocking, so none of that is needed: a read or write
// returns at once, or with EAGAIN, and then the connection waits in the
// network poller as before. Conn makes the same calls as raw system calls
// inside the connection's syscall.RawConn, which keeps the poller's
// deadlines, its close handling and its one-reader, one-writer locks.
// Built with the race detector, the calls are syscall.Read and
// syscall.Write (sys_race.go), whose annotations order I/O for it.
package rawconn

import (
	"io"
	"net"
	"runtime"
)

// Conn is a *net.TCPConn whose Read and Write are raw system calls; every
// other method (deadlines, CloseWrite, addresses) is the TCPConn's.
type Conn struct {
	*net.TCPConn
	rw rawIO
}

// Wrap returns c as a *Conn when it is a *net.TCPConn on a platform with
// raw reads and writes and the process runs one P (GOMAXPROCS=1), and c
// itself otherwise. With more Ps a thread the kernel sets aside inside a
// long raw write keeps its P, and the goroutines queued on it, until it
// runs again, where the runtime would have handed the P to another
// thread; on a box where edged's Ps shared a CPU with other work that
// cost a quarter of the requests a second (bench/README, "What one of A's
// answers costs, and raw system calls").
func Wrap(c net.Conn) net.Conn {
	if runtime.GOMAXPROCS(0) != 1 {
		return c
	}
	return wrap(c)
}

// wrap is Wrap whatever GOMAXPROCS is.
func wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil || !supported {
		return c
	}
	rw := &Conn{TCPConn: tc}
	rw.rw.init(rc)
	return rw
}

// Read reads as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.rw.read(p)
	if err != nil {
		return n, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, as net.Conn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.rw.write(p)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// opError wraps err as the net package does for a TCPConn's reads and
// writes: a *net.OpError whose Err is net.ErrClosed,
// os.ErrDeadlineExceeded or the system call's error.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok { // from the RawConn: "raw-read", "raw-write"
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
