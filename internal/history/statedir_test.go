package history

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckStateDir(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	assert.NoError(t, CheckStateDir(state), "a state_dir that does not exist yet is made private")

	st, err := Open(state, 3)
	require.NoError(t, err)
	require.NoError(t, st.Audit([]byte(`{"event":"test"}`)))
	for _, p := range []string{state, filepath.Join(state, "history")} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Zero(t, fi.Mode().Perm()&0o027, "%s is created without group write nor access for others: %v", p, fi.Mode())
	}
	require.NoError(t, os.MkdirAll(filepath.Join(state, "history", "blobs"), 0o750))
	require.NoError(t, os.MkdirAll(filepath.Join(state, "audit"), 0o750))
	assert.NoError(t, CheckStateDir(state))

	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{state, 0o777, "state_dir " + state + " is writable by group or others (mode 0777); run: chmod go-w " + state},
		{state, 0o770, "(mode 0770)"},
		{filepath.Join(state, "history"), 0o757, "state_dir " + state + ": " + filepath.Join(state, "history") + " is writable by group or others (mode 0757); run: chmod go-w " + filepath.Join(state, "history")},
		{filepath.Join(state, "history", "blobs"), 0o775, "blobs is writable"},
		{filepath.Join(state, "audit.log"), 0o666, "audit.log is writable"},
		{filepath.Join(state, "audit"), 0o777, "audit is writable"},
	} {
		fi, err := os.Stat(tc.path)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(tc.path, tc.mode))
		err = CheckStateDir(state)
		if assert.Error(t, err, tc.path) {
			assert.Contains(t, err.Error(), tc.want)
		}
		require.NoError(t, os.Chmod(tc.path, fi.Mode().Perm()))
	}
	assert.NoError(t, CheckStateDir(state))
	require.NoError(t, os.Chmod(state, 0o755))
	assert.NoError(t, CheckStateDir(state), "readable by others is not the danger")
}

// A state_dir, or a part of it, owned by another user than edged's and
// root is refused whatever its mode.
func TestCheckStateDirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	state := filepath.Join(t.TempDir(), "state")
	assert.NoError(t, CheckStateDirOwner(state, 1000), "not there yet: edged makes it")
	st, err := Open(state, 3)
	require.NoError(t, err)
	require.NoError(t, st.Audit(map[string]string{"event": "test"}))
	assert.NoError(t, CheckStateDirOwner(state, 1000), "root's")
	for _, p := range []string{state, filepath.Join(state, "history"), filepath.Join(state, "audit.log")} {
		require.NoError(t, os.Chown(p, 65534, 65534))
		assert.NoError(t, CheckStateDirOwner(state, 65534), "the user edged runs as")
		err := CheckStateDirOwner(state, 1000)
		if assert.Error(t, err, p) {
			assert.Contains(t, err.Error(), p+" is owned by ")
			assert.Contains(t, err.Error(), "not by the user edged runs as")
		}
		require.NoError(t, os.Chown(p, 0, 0))
	}
	assert.NoError(t, CheckStateDirOwner(state, 1000))
}
