//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// lockWait bounds the wait for another writer's lock: every writer holds
// it only from its check to its rename, but any user who may read the
// directory may take it too, and must not hang edged's commands.
var lockWait = 5 * time.Second

// TreeLockWait bounds the wait for another command's LockTree: it holds
// the lock while it loads and validates the whole configuration.
var TreeLockWait = 30 * time.Second

// held is the directories this process holds with LockTree: a write into
// one of them is already alone, and taking the directory's flock again
// (through another open file) would wait for this process itself.
var held struct {
	sync.Mutex
	dirs []os.FileInfo
}

// lockDir takes an exclusive flock(2) on dir, which every writer of this
// package takes for its check and rename: two writers' checks and
// renames then never interleave. Where the directory cannot be opened or
// its filesystem has no flock, it locks nothing: the check still runs,
// without that guarantee against another writer in the same instant.
func lockDir(dir string) (unlock func(), err error) {
	d, err := OpenDir(dir)
	if err != nil {
		return func() {}, nil
	}
	return lockOpened(d)
}

// lockOpened takes lockDir's lock through d, a descriptor of the
// directory that is the lock's own (closing it releases the lock).
func lockOpened(d *os.File) (unlock func(), err error) {
	if fi, err := d.Stat(); err == nil && treeHeld(fi) {
		d.Close()
		return func() {}, nil
	}
	return flockWait(d, lockWait, nil)
}

// LockTree takes the lock of lockDir on dir, the config directory, for a
// command that reads the files below it, validates them as they will be
// after its change, and then writes (edged promote, edged rollback): two
// such commands at once would each validate the directory without the
// other's change, and together could leave one that neither validated.
// It waits at most TreeLockWait, calling waiting first when another holds
// the lock. Where dir cannot be opened (the command's own reading says
// why) or there is no flock, it locks nothing (see lockDir).
func LockTree(dir string, waiting func()) (unlock func(), err error) {
	d, err := OpenDir(dir)
	if err != nil {
		return func() {}, nil
	}
	fi, err := d.Stat()
	if err != nil {
		d.Close()
		return func() {}, nil
	}
	release, err := flockWait(d, TreeLockWait, waiting)
	if err != nil {
		return nil, err
	}
	held.Lock()
	held.dirs = append(held.dirs, fi)
	held.Unlock()
	return func() {
		held.Lock()
		held.dirs = slices.DeleteFunc(held.dirs, func(h os.FileInfo) bool { return h == fi })
		held.Unlock()
		release()
	}, nil
}

// treeHeld reports whether this process holds the directory fi with LockTree.
func treeHeld(fi os.FileInfo) bool {
	held.Lock()
	defer held.Unlock()
	return slices.ContainsFunc(held.dirs, func(h os.FileInfo) bool { return os.SameFile(h, fi) })
}

// flockWait takes an exclusive flock on the open directory d, waiting at
// most wait (calling waiting, when set, once it has to), and closes d
// when it fails; closing d releases the lock.
func flockWait(d *os.File, wait time.Duration, waiting func()) (unlock func(), err error) {
	for deadline := time.Now().Add(wait); ; {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { d.Close() }, nil // closing releases it
		case errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR):
			if time.Now().After(deadline) {
				d.Close()
				return nil, fmt.Errorf("%s: another process has held its lock (flock) for more than %s: nothing written", d.Name(), wait)
			}
			if waiting != nil {
				waiting()
				waiting = nil
			}
			time.Sleep(10 * time.Millisecond)
		default: // ENOLCK, EOPNOTSUPP, EINVAL: no locks here
			d.Close()
			return func() {}, nil
		}
	}
}
