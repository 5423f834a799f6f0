//go:build unix

package config

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNotRegularFile: a FIFO named *.toml would block the reader; it is an
// error instead.
func TestNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.toml"), 0o644))
	paths, errs, _ := listFiles(dir)
	assert.Empty(t, paths)
	require.Len(t, errs, 1)
	assert.Equal(t, "is a named pipe, not a regular file", errs[0].Msg)
}
