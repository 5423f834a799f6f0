//go:build unix && !linux

package atomicfile

import "golang.org/x/sys/unix"

// lookFlags open a file only to see what it is and whose (fstat), never
// waiting on a named pipe; without O_PATH, it must be readable (see
// look_linux.go).
const lookFlags = unix.O_RDONLY | unix.O_NONBLOCK
