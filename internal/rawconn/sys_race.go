//go:build linux && race

package rawconn

import "syscall"

// With the race detector, reads and writes go through syscall.Read and
// syscall.Write, which tell the detector that a write to any descriptor
// happens before a read that follows it, as the net package's reads and
// writes do: a test that changes state and then sends a request relies
// on it. The rest of Conn (the RawConn's waits, the state, the errors)
// is the same as without it.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) { return errnoOf(syscall.Read(int(fd), p)) }

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) { return errnoOf(syscall.Write(int(fd), p)) }

func errnoOf(n int, err error) (int, syscall.Errno) {
	if err != nil {
		if e, ok := err.(syscall.Errno); ok {
			return 0, e
		}
		return 0, syscall.EIO
	}
	return n, 0
}
