package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A mistyped -c is an error, not an empty (or another directory's) history.
func TestHistoryOnAMissingDirectoryFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "conf.d")
	code, out, errOut := runEdged(t, "history", "-c", missing)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "edged history: config directory "+missing+" does not exist (-c names the directory of the .toml files)\n", errOut)

	file := filepath.Join(t.TempDir(), "server.toml")
	require.NoError(t, os.WriteFile(file, []byte("[server]\n"), 0o644))
	code, _, errOut = runEdged(t, "history", "-c", file)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, file+" is not a directory")
}
