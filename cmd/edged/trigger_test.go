package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFileChangeTriggerIsBounded: a directory of 2000 files moved into
// conf.d at once is one reload, whose trigger (in every log line of the
// reload, /status, the audit log and the history) names a few of the
// files and counts the others, rather than holding every path.
func TestFileChangeTriggerIsBounded(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)

	staged := filepath.Join(ex.root, "staged")
	require.NoError(t, os.MkdirAll(staged, 0o755))
	for i := range 2000 {
		name := fmt.Sprintf("note-with-a-long-descriptive-name-%04d.toml", i)
		require.NoError(t, os.WriteFile(filepath.Join(staged, name), []byte("# nothing yet\n"), 0o644))
	}
	require.NoError(t, os.Rename(staged, filepath.Join(ex.confDir, "notes")))

	var last map[string]any
	require.Eventually(t, func() bool {
		st := p.status(t)
		last, _ = st["last_reload"].(map[string]any)
		return int(st["generation"].(float64)) > gen && last != nil
	}, 10*time.Second, 20*time.Millisecond)
	trigger := last["trigger"].(string)
	assert.Less(t, len(trigger), 2048, "trigger: %.300s…", trigger)
	assert.Contains(t, trigger, "more")
}
