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

// WriteFD is not used where Wrap wraps nothing.
func WriteFD(int, []byte) (int, error) { panic("rawconn: unsupported platform") }
