package main

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// A second edged whose files name the state_dir a running one uses (a copy
// of the directory, other ports) refuses to start: it would add its
// generations to the other's history, and `edged reload -c` of either
// directory would reach the first process only.
func TestSecondServeOnTheSameStateDirIsRefused(t *testing.T) {
	first := newExample(t)
	p := startServe(t, first.confDir)
	state := filepath.Join(first.root, "var", "state")
	st, err := history.Open(state, config.DefaultHistoryKeep)
	require.NoError(t, err)
	last, err := st.Last()
	require.NoError(t, err)

	second := newExample(t)
	second.setServer(t, "state_dir", strconv.Quote(state))
	code, _, stderr := runBounded(t, "serve", "-c", second.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "another edged")
	assert.Contains(t, stderr, control.Path(state))

	now, err := st.Last()
	require.NoError(t, err)
	assert.Equal(t, last, now, "the second edged recorded nothing in the first's history")
	var out struct{ Generation uint64 }
	require.NoError(t, control.Call(control.Path(state), "generation", 5*time.Second, &out), "the first still answers on its socket")
	assert.Equal(t, uint64(p.generation(t)), out.Generation)
}
