package watch

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
