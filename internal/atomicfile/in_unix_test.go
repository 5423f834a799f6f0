//go:build unix

package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/asnobody"
)

// TestReplaceIsSyncedInItsDirectory is TestRenameIsSyncedInItsDirectory
// for ReplaceFile and ReplaceFileIf, which write in the directory they
// hold open (ReplaceFileIn, ReplaceFileIfIn) and sync it there.
func TestReplaceIsSyncedInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	var synced []string
	was := syncOpenDir
	t.Cleanup(func() { syncOpenDir = was })
	syncOpenDir = func(d *os.File) error {
		synced = append(synced, d.Name())
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "new", string(b), "synced after the rename, not before")
		return was(d)
	}

	require.NoError(t, ReplaceFileIf(p, []byte("old"), []byte("new")))
	assert.Equal(t, []string{dir}, synced)
	synced = nil
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	require.NoError(t, ReplaceFile(p, []byte("new")))
	assert.Equal(t, []string{dir}, synced)

	// A directory that cannot be synced: the file is replaced, and the
	// error says so.
	syncOpenDir = func(*os.File) error { return errors.New("injected") }
	err := ReplaceFile(p, []byte("newer"))
	require.ErrorContains(t, err, "injected")
	assert.ErrorContains(t, err, p+" is written, but")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "newer", string(b))
}

// TestReplaceFileOfAFileItMayNotRead: a user who may write the directory
// replaces a file of its own it may not read (mode 0200), as ReplaceFile
// by path did, looking at the file with stat(2): the look in the
// directory held open needs no read either (O_PATH), where Linux has it.
func TestReplaceFileOfAFileItMayNotRead(t *testing.T) {
	if p := os.Getenv("EDGED_REPLACE_UNREADABLE_AS_NOBODY"); p != "" {
		if err := ReplaceFile(p, []byte("new")); err != nil {
			t.Fatal(err)
		}
		return
	}
	if runtime.GOOS != "linux" {
		t.Skip("without O_PATH, the file must be readable")
	}
	dir := asnobody.Dir(t, 0o777)
	p := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o200))
	require.NoError(t, os.Chown(p, 65534, 65534))
	asnobody.Run(t, dir, "TestReplaceFileOfAFileItMayNotRead", "EDGED_REPLACE_UNREADABLE_AS_NOBODY="+p)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o200), fi.Mode().Perm(), "its mode kept")
}
