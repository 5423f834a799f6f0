package watch

import "golang.org/x/sys/unix"

// birth is when the directory d was made (statx's btime, in ns), or 0
// where the file system does not say. A directory made right after
// another's removal may get its inode number (ext4 reuses them at once):
// the birth tells the two apart where the inode does not.
func birth(d string) int64 {
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, d, 0, unix.STATX_BTIME, &st) != nil || st.Mask&unix.STATX_BTIME == 0 {
		return 0
	}
	return st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
}
