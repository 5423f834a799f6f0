package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriteFileReplacesWithModeAndLeavesNoTemp: the new content under the
// given mode, and nothing else in the directory.
func TestWriteFileReplacesWithModeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rec.json")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	require.NoError(t, WriteFile(p, []byte("new"), 0o640))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "no temp file left")
}

// TestWriteFileIntoMissingDirectoryFails: an error, and no file made.
func TestWriteFileIntoMissingDirectoryFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "a.toml")
	require.Error(t, WriteFile(p, []byte("x"), 0o640))
	require.Error(t, ReplaceFile(p, []byte("x")))
	_, err := os.Stat(p)
	assert.True(t, os.IsNotExist(err))
}
