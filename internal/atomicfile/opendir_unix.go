//go:build unix

package atomicfile

import (
	"os"
	"syscall"
)

// OpenDir opens the directory d (to list it, lock it, sync it or make a
// directory in it). O_DIRECTORY refuses at once (ENOTDIR) anything else
// found there by now: a named pipe above all (a symbolic link turned
// after a look at d), whose plain open would wait for a writer for ever;
// a directory below conf.d is an environment's home, which its operators
// may turn into anything. O_NONBLOCK as for files.
func OpenDir(d string) (*os.File, error) {
	return os.OpenFile(d, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}
