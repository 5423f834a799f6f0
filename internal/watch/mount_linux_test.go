package watch

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// A config directory that is a file system of its own (an NFS export
// that autofs unmounts when idle and mounts again, a tmpfs) loses its
// inotify watch when it is unmounted: the kernel drops it with no event
// in any watched directory. Mounted again, the directory is watched again
// once the next rescan has looked, rather than left to the rescan for
// good. Needs root (CAP_SYS_ADMIN) to mount.
func TestWatchingResumesAfterARemount(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "prod")
	a := filepath.Join(sub, "a.toml")
	write(t, filepath.Join(sub, ".keep"), "")
	mount := func() error {
		if err := syscall.Mount("edged-test", sub, "tmpfs", 0, "size=1m"); err != nil {
			return err
		}
		write(t, a, "a = 1\n")
		return nil
	}
	if err := mount(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = syscall.Unmount(sub, 0)
		}
	})
	w := start(t, Options{Dir: dir, Rescan: time.Second})

	write(t, a, "a = 2\n")
	ev := next(t, w)
	require.Equal(t, []string{a}, ev.Paths)
	require.False(t, ev.Rescan, "inotify sees the mounted directory")

	require.NoError(t, syscall.Unmount(sub, 0))
	mounted = false
	assert.Equal(t, []string{a}, await(t, w, a), "the rescan finds a.toml gone with the mount")
	require.NoError(t, mount())
	mounted = true
	assert.Equal(t, []string{a}, await(t, w, a), "the rescan finds a.toml back")

	// The rescan that found it has looked at the watches. An edit is seen
	// by inotify again, within the debounce; the next rescan, a second
	// later, would say Rescan. Five edits, so that one late on a busy
	// machine does not decide.
	byEvent := 0
	for i := range 5 {
		f := filepath.Join(sub, "b.toml")
		write(t, f, "b = "+string(rune('0'+i))+"\n")
		ev := next(t, w)
		assert.Contains(t, ev.Paths, f)
		if !ev.Rescan {
			byEvent++
		}
		settle(w)
	}
	assert.Positive(t, byEvent, "edits seen by inotify after the remount, of 5")
}

// inotifyWatches counts the inotify watches the process holds, as the
// kernel lists them in /proc/self/fdinfo.
func inotifyWatches(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err != nil || l != "anon_inode:inotify" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + fd.Name())
		if err != nil {
			continue
		}
		n += strings.Count(string(info), "inotify wd:")
	}
	return n
}

// The loader reads no more than config.MaxWalkDirs directories of the
// config tree, and the watcher's walk of the whole tree stops there too.
// A directory that appears in the tree (a symlink to a large directory
// made under some team's directory) is walked on its own: its walk must
// not start the count again, or each such link adds as many watches, each
// kernel memory, up to the user's max_user_watches shared with every
// other watch of edged.
func TestWatchedTreeIsBoundedAcrossNewDirectories(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "conf.d")
	write(t, filepath.Join(dir, "team", "a.toml"), "a = 1\n")
	var bigs []string
	for _, name := range []string{"big1", "big2"} {
		big := filepath.Join(base, name)
		for i := range config.MaxWalkDirs {
			require.NoError(t, os.MkdirAll(filepath.Join(big, strconv.Itoa(i)), 0o755))
		}
		write(t, filepath.Join(big, "x.toml"), "x = 1\n")
		bigs = append(bigs, big)
	}
	before := inotifyWatches(t)
	w := start(t, Options{Dir: dir})
	for i, big := range bigs {
		link := filepath.Join(dir, "team", "link"+strconv.Itoa(i))
		require.NoError(t, os.Symlink(big, link))
		await(t, w, filepath.Join(link, "x.toml"))
	}
	n := inotifyWatches(t) - before
	// One more: base, where the links lead, is watched for their
	// targets' removal and return (see treeLink).
	assert.LessOrEqual(t, n, config.MaxWalkDirs+1, "inotify watches of a tree the loader reads %d directories of at most", config.MaxWalkDirs)
}
