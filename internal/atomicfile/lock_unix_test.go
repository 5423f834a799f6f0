//go:build unix

package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestALockHeldElsewhereIsWaitedForABoundedTime: any user who may read
// the directory may take its lock; a writer waits lockWait for it, then
// writes nothing and says why.
func TestALockHeldElsewhereIsWaitedForABoundedTime(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "uat.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	d, err := os.Open(dir)
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, syscall.Flock(int(d.Fd()), syscall.LOCK_EX))
	was := lockWait
	lockWait = 100 * time.Millisecond
	t.Cleanup(func() { lockWait = was })

	start := time.Now()
	err = ReplaceFileIf(p, []byte("old"), []byte("new"))
	require.ErrorContains(t, err, dir+": another process has held its lock")
	assert.Less(t, time.Since(start), 2*time.Second)
	b, _ := os.ReadFile(p)
	assert.Equal(t, "old", string(b))
	ents, _ := os.ReadDir(dir)
	assert.Len(t, ents, 1, "no temp file left")

	// Released, the write goes through.
	require.NoError(t, syscall.Flock(int(d.Fd()), syscall.LOCK_UN))
	require.NoError(t, ReplaceFileIf(p, []byte("old"), []byte("new")))
}

// TestADirectoryTurnedIntoAPipeIsNotWaitedOn: edged promote and edged
// rollback lock, sync and make directories below conf.d, in homes whose
// operators may put a named pipe where a directory was. A plain open of
// it waited for a writer for ever, root's command holding the lock on
// conf.d meanwhile; each refuses it at once now (or locks nothing).
func TestADirectoryTurnedIntoAPipeIsNotWaitedOn(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "home")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	for name, call := range map[string]func() error{
		"LockTree": func() error { unlock, err := LockTree(fifo, nil); unlock(); return err },
		"lockDir":  func() error { unlock, err := lockDir(fifo); unlock(); return err },
		"syncDir":  func() error { return syncDir(fifo) },
		"mkdirIn":  func() error { _, _, err := mkdirIn(fifo, "x"); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			t.Logf("%s: %v", name, err)
		case <-time.After(5 * time.Second):
			// Let the open return (a writer comes), so the test ends.
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			<-done
			t.Errorf("%s waited on a named pipe where a directory was", name)
		}
	}
}
