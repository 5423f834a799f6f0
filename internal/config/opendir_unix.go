//go:build unix

package config

import (
	"os"
	"syscall"
)

// openDir opens the directory d to list it. O_DIRECTORY refuses at once
// (ENOTDIR) anything else found there by now: a named pipe above all (a
// symbolic link turned after the walk looked at d), whose plain open
// would wait for a writer for ever. O_NONBLOCK as for files (readRegular).
func openDir(d string) (*os.File, error) {
	return os.OpenFile(d, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}
