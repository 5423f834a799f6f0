//go:build unix

package config

import (
	"os"
	"syscall"
)

// fileIdentity is the device and inode of the file at path, symlinks
// followed: every link to one file, symbolic or hard, has the same.
func fileIdentity(path string) (dev, ino uint64, ok bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	// Dev and Ino are not uint64 on every system.
	return uint64(st.Dev), uint64(st.Ino), true
}
