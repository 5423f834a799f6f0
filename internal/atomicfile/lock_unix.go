//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockWait bounds the wait for another writer's lock: every writer holds
// it only from its check to its rename, but any user who may read the
// directory may take it too, and must not hang edged's commands.
var lockWait = 5 * time.Second

// lockDir takes an exclusive flock(2) on dir, which every writer of this
// package takes for its check and rename: two writers' checks and
// renames then never interleave. Where the directory cannot be opened or
// its filesystem has no flock, it locks nothing: the check still runs,
// without that guarantee against another writer in the same instant.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return func() {}, nil
	}
	for deadline := time.Now().Add(lockWait); ; {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { d.Close() }, nil // closing releases it
		case errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR):
			if time.Now().After(deadline) {
				d.Close()
				return nil, fmt.Errorf("%s: another process has held its lock (flock) for more than %s: nothing written", dir, lockWait)
			}
			time.Sleep(10 * time.Millisecond)
		default: // ENOLCK, EOPNOTSUPP, EINVAL: no locks here
			d.Close()
			return func() {}, nil
		}
	}
}
