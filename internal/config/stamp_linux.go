package config

import (
	"os"
	"syscall"
)

// stampOf is what stat(2) says of path (symlinks followed). It says
// nothing (false) for a file on a filesystem that is not known to stamp
// times with this machine's clock: on NFS or SMB, the server's clock may
// lag ours, which would defeat the slack readDirSince allows. local
// remembers, by device, what statfs(2) said (statfs is the dearer call).
func stampOf(path string, local map[uint64]bool) (fileStamp, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	isLocal, known := local[st.Dev]
	if !known {
		var fs syscall.Statfs_t
		isLocal = syscall.Statfs(path, &fs) == nil && localFS[int64(fs.Type)]
		local[st.Dev] = isLocal
	}
	if !isLocal {
		return fileStamp{}, false
	}
	return fileStamp{
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		ino:   st.Ino,
		dev:   st.Dev,
	}, true
}

// localFS are the statfs(2) magic numbers of local filesystems, whose file
// times come from this kernel's clock.
var localFS = map[int64]bool{
	0xEF53:     true, // ext2, ext3, ext4
	0x58465342: true, // xfs
	0x9123683E: true, // btrfs
	0x01021994: true, // tmpfs (Kubernetes ConfigMap volumes among others)
	0x794C7630: true, // overlayfs (container images)
	0x2FC12FC1: true, // zfs
	0xF2F52010: true, // f2fs
}
