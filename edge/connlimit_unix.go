//go:build unix

package edge

import "syscall"

// openFiles is the soft RLIMIT_NOFILE (Go raises it to the hard limit at
// start); 0 when unlimited or unknown.
func openFiles() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<40 {
		return 0
	}
	return int64(rl.Cur)
}
