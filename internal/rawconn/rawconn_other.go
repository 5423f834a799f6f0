//go:build !linux

package rawconn

import "syscall"

const supported = false

// rawIO is not used where raw system calls are not implemented: Wrap
// returns the TCPConn itself.
type rawIO struct{}

func (*rawIO) init(syscall.RawConn)      {}
func (*rawIO) read([]byte) (int, error)  { panic("rawconn: unsupported platform") }
func (*rawIO) write([]byte) (int, error) { panic("rawconn: unsupported platform") }

// WriteFD writes p to fd with syscall.Write: the bytes written (0 on an
// error) and the call's errno.
func WriteFD(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return 0, e
		}
		return 0, syscall.EIO
	}
	return n, 0
}
