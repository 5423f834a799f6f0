//go:build unix

package history

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// TestRestoreKeepsModeAndOwner: a rollback run with sudo must leave files
// the service (another user, reading through its group) can read: each
// restored file takes the mode and owner of the file it replaces, a new
// one those of its directory, and a directory it brings back those of the
// one it is made in.
func TestRestoreKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(a, []byte("a1"), 0o644))
	files, err := FilesOf(dir, []config.File{loaded(t, a)})
	require.NoError(t, err)
	files = append(files,
		File{Path: "sub/new.toml", SHA256: strings.Repeat("0", 64), Content: "n1"},
		File{Path: "sub/gone/back.toml", SHA256: strings.Repeat("1", 64), Content: "b1"})
	rec := &Record{Generation: 3, Files: files}

	require.NoError(t, os.WriteFile(a, []byte("a2"), 0o604))
	require.NoError(t, os.Chmod(a, 0o604)) // not what a umask makes
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o750))
	require.NoError(t, os.Chmod(sub, 0o705))
	// The service's user: only root may give files to it.
	const uid, gid = 65534, 65533
	root := os.Geteuid() == 0
	if root {
		require.NoError(t, os.Chown(a, uid, gid))
		require.NoError(t, os.Chown(sub, uid+1, gid+1))
	}

	written, _, err := Restore(rec, dir, []string{a})
	require.NoError(t, err)
	require.Len(t, written, 3)
	check := func(p string, mode os.FileMode, uid, gid int) {
		t.Helper()
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), p)
		if root {
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, []int{uid, gid}, []int{int(st.Uid), int(st.Gid)}, "%s: owner", p)
		}
	}
	check(a, 0o604, uid, gid)
	check(filepath.Join(sub, "new.toml"), 0o604, uid+1, gid+1) // the directory's, less x
	check(filepath.Join(sub, "gone"), 0o705, uid+1, gid+1)
	check(filepath.Join(sub, "gone", "back.toml"), 0o604, uid+1, gid+1)
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	assert.Equal(t, "a1", string(b))
}
