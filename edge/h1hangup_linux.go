//go:build linux

package edge

import (
	"syscall"
	"unsafe"
)

const canWatchHangup = true

// poll(2) events (golang.org/x/sys/unix has them; the syscall package
// does not).
const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// peerHungUp reports whether the client shut its side of the connection,
// or the socket failed: POLLRDHUP is set even while unread bytes come
// before the FIN, which a read or a MSG_PEEK would meet first. It never
// waits.
func peerHungUp(fd uintptr) bool {
	pfd := struct {
		fd              int32
		events, revents int16
	}{fd: int32(fd), events: pollRDHUP}
	var ts syscall.Timespec // zero: do not wait
	n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return errno == 0 && n == 1 && pfd.revents&(pollRDHUP|pollHUP|pollERR) != 0
}
