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
