package rawconn

import (
	"os"
	"sync"
	"syscall"
)

const supported = true

// rawIO makes a connection's reads and writes with syscall.RawSyscall
// inside its RawConn: a step returns false on EAGAIN, and the RawConn
// waits in the poller (or returns at a deadline or a close) before calling
// it again. The steps are method values made once (init) and their state
// lives here, so a read or write allocates nothing; a mutex per direction
// keeps concurrent callers, which net.Conn allows, from sharing it.
type rawIO struct {
	rc syscall.RawConn

	rmu    sync.Mutex
	rp     []byte
	rn     int
	rerrno syscall.Errno
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wp      []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(uintptr) bool
}

func (r *rawIO) init(rc syscall.RawConn) {
	r.rc = rc
	r.readFn, r.writeFn = r.readStep, r.writeStep
}

func (r *rawIO) read(p []byte) (int, error) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.rp, r.rn, r.rerrno = p, 0, 0
	err := r.rc.Read(r.readFn)
	r.rp = nil
	if err != nil {
		return 0, err
	}
	if r.rerrno != 0 {
		return 0, os.NewSyscallError("read", r.rerrno)
	}
	return r.rn, nil
}

func (r *rawIO) readStep(fd uintptr) bool {
	p := r.rp
	for {
		n, e := sysRead(fd, p)
		switch e {
		case 0:
			r.rn = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.rerrno = e
			return true
		}
	}
}

func (r *rawIO) write(p []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.wp, r.wn, r.werrno = p, 0, 0
	err := r.rc.Write(r.writeFn)
	n := r.wn
	r.wp = nil
	if err != nil {
		return n, err
	}
	if r.werrno != 0 {
		return n, os.NewSyscallError("write", r.werrno)
	}
	return n, nil
}

func (r *rawIO) writeStep(fd uintptr) bool {
	p := r.wp
	for r.wn < len(p) {
		n, e := sysWrite(fd, p[r.wn:])
		switch e {
		case 0:
			r.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.werrno = e
			return true
		}
	}
	return true
}

// WriteFD writes p to the non-blocking fd with one raw system call, as
// syscall.Write's signature has it (a non-nil error is a syscall.Errno),
// for a caller already inside the func of the RawConn of a connection
// that Wrap wrapped: the upstream client's write-and-wait (one P only,
// as Wrap).
func WriteFD(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno := sysWrite(uintptr(fd), p)
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// SyscallConn returns the RawConn the connection's reads and writes use,
// made once by Wrap (a TCPConn makes a new one at every call).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rw.rc, nil }
