package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A state_dir owned by another user than the one edged runs as (nor root)
// is that user's to change whatever its mode: they may replace the
// history records that edged rollback restores into conf.d, and the
// control socket that edged reload asks. Made 0755 by someone who created
// it first (a state_dir under a shared directory), it passed the check of
// group and others' write bits, and edged served on it (as root, writing
// its history there; as another user, unable to write, with the history
// and the control socket off). serve refuses it, as ssh refuses a key
// file that another user owns.
func TestServeRefusesAStateDirOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the state_dir to another user")
	}
	ex := newExample(t)
	state := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.Mkdir(state, 0o755))
	require.NoError(t, os.Chown(state, 65534, 65534))
	ex.setServer(t, "state_dir", strconv.Quote(state))

	code, _, stderr := runBounded(t, "serve", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "owned by")
	ents, err := os.ReadDir(state)
	require.NoError(t, err)
	assert.Empty(t, ents, "edged wrote nothing into the other user's directory")

	// Root's own, or the user's edged runs as, is fine.
	require.NoError(t, os.Chown(state, 0, 0))
	p := startServe(t, ex.confDir)
	assert.Positive(t, p.generation(t))
}
