package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStateDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf.d")
	assert.Equal(t, DefaultStateDir, StateDir(dir), "missing directory")

	writeTree(t, dir, map[string]string{
		"00-broken.toml": "[server]\nstate_dir = \"/first\"\nthis is not toml\n",
		"10-ok.toml":     "[[environment]]\nname = \"x\"\nbogus = true\n",
	})
	assert.Equal(t, "/first", StateDir(dir), "a broken [server] file still names its state_dir")

	writeTree(t, dir, map[string]string{"00-broken.toml": "server.state_dir = \"../elsewhere\" # comment\n[server\n"})
	assert.Equal(t, filepath.Join(root, "elsewhere"), StateDir(dir), "a dotted key ahead of any table, relative to its file")

	writeTree(t, dir, map[string]string{"00-broken.toml": "[server]\nhttps = \"x\"\n[[proxy]]\nstate_dir = \"/not-server\"\nbroken\n"})
	assert.Equal(t, DefaultStateDir, StateDir(dir), "a state_dir outside [server] does not count")

	require.NoError(t, os.Remove(filepath.Join(dir, "00-broken.toml")))
	writeTree(t, dir, map[string]string{
		"20-server.toml": "[server]\nworkers = \"unknown keys do not matter\"\nstate_dir = \"../state\"\n",
		"zz-server.toml": "[server]\nstate_dir = \"/later\"\n",
	})
	assert.Equal(t, filepath.Join(root, "state"), StateDir(dir), "first in path order, relative to its file")

	// A home's writer cannot point edged's commands elsewhere: files below
	// the top are not read for it (and validation refuses [server] there).
	writeTree(t, dir, map[string]string{"00-prod/evil.toml": "[server]\nstate_dir = \"/tmp/mine\"\n"})
	assert.Equal(t, filepath.Join(root, "state"), StateDir(dir), "a [server] below the top does not count")
}
