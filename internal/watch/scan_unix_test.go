//go:build unix

package watch

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A FIFO in the tree or among the extra files (a cert_file pointing at
// one) must not stop the rescan: opening it to read would wait for a
// writer for ever.
func TestDigestDoesNotBlockOnFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.toml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.toml"), []byte("x = 1\n"), 0o644))
	done := make(chan scan)
	go func() { done <- takeScan(dir, []string{fifo, "/dev/zero"}) }()
	select {
	case s := <-done:
		assert.Contains(t, s.extra[fifo], "not a regular file")
		assert.Contains(t, s.extra["/dev/zero"], "not a regular file")
		assert.Len(t, s.config[filepath.Join(dir, "a.toml")], 64)
	case <-time.After(10 * time.Second):
		t.Fatal("the scan blocked on a FIFO")
	}
}
