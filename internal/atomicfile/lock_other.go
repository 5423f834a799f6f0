//go:build !unix

package atomicfile

import "time"

// lockDir locks nothing where there is no flock(2): the check of
// ReplaceFileIf still runs, without the guarantee against another writer
// in the same instant (see lock_unix.go).
func lockDir(dir string) (unlock func(), err error) { return func() {}, nil }

// TreeLockWait is LockTree's wait where there is flock (lock_unix.go).
var TreeLockWait = 30 * time.Second

// LockTree locks nothing where there is no flock(2) (see lock_unix.go).
func LockTree(dir string, waiting func()) (unlock func(), err error) { return func() {}, nil }
