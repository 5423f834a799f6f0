package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// TestRenameIsSyncedInItsDirectory: a rename is durable only once the
// directory holding it is synced; until then a crash may bring back the
// old file (or none). No test can pull the power, so this one watches the
// seam: the directory is synced, after the rename, for every write, and
// a new directory's entry is synced in its parent (for ReplaceFile, see
// TestReplaceIsSyncedInItsDirectory).
func TestRenameIsSyncedInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	var synced []string
	was := syncDir
	t.Cleanup(func() { syncDir = was })
	syncDir = func(d string) error {
		synced = append(synced, d)
		if d == dir {
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, "new", string(b), "synced after the rename, not before")
		}
		return was(d)
	}

	require.NoError(t, WriteFile(p, []byte("new"), 0o600))
	assert.Equal(t, []string{dir}, synced)

	synced = nil
	sub := filepath.Join(dir, "sub", "deeper")
	require.NoError(t, MkdirAll(sub))
	assert.Equal(t, []string{dir, filepath.Join(dir, "sub")}, synced, "each new directory's entry")

	// A directory that cannot be synced: the file is replaced, and the
	// error says so.
	syncDir = func(string) error { return errors.New("injected") }
	err := WriteFile(p, []byte("newer"), 0o600)
	require.ErrorContains(t, err, "injected")
	assert.ErrorContains(t, err, p+" is written, but")
}

// TestReplaceFileIfIsOneStepForEveryWriter: two writers that read the
// same content (two edged promote into one file) each check that the file
// still holds it, then rename. Were the check and the rename apart, the
// second writer could check between the first one's check and rename,
// and both would report success with one change lost. The first is held
// between its check and its rename while the second runs: the second
// must then fail with ErrChanged, and the file hold the first's content.
func TestReplaceFileIfIsOneStepForEveryWriter(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "uat.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	checked, release := make(chan struct{}), make(chan struct{})
	testHookChecked = func() {
		testHookChecked = nil // the second writer runs on
		close(checked)
		<-release
	}
	t.Cleanup(func() { testHookChecked = nil })

	first := make(chan error, 1)
	go func() { first <- ReplaceFileIf(p, []byte("old"), []byte("first")) }()
	<-checked
	second := make(chan error, 1)
	go func() { second <- ReplaceFileIf(p, []byte("old"), []byte("second")) }()
	select {
	case err := <-second:
		// It did not wait: it must at least not have succeeded.
		close(release)
		require.NoError(t, <-first)
		require.ErrorIs(t, err, ErrChanged, "both writers succeeded; one change is lost")
	case <-time.After(200 * time.Millisecond):
		close(release)
		require.NoError(t, <-first)
		require.ErrorIs(t, <-second, ErrChanged)
	}
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "first", string(b))
}

// TestRenameSyncsItsDirectory: a rollback's moving a file aside is a
// rename too, and must outlive a crash like a write (through the seam, as
// TestRenameIsSyncedInItsDirectory).
func TestRenameSyncsItsDirectory(t *testing.T) {
	dir := t.TempDir()
	p, aside := filepath.Join(dir, "orders.toml"), filepath.Join(dir, ".orders.toml.rolled-back")
	require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	var synced []string
	was := syncDir
	t.Cleanup(func() { syncDir = was })
	syncDir = func(d string) error {
		synced = append(synced, d)
		_, err := os.Stat(aside)
		assert.NoError(t, err, "synced after the rename")
		return was(d)
	}
	require.NoError(t, Rename(p, aside))
	assert.Equal(t, []string{dir}, synced)
	_, err := os.Stat(p)
	assert.True(t, os.IsNotExist(err))
}
