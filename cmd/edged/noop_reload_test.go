package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
	"edged/internal/history"
)

// noWatch makes `edged reload` the only trigger: a file event would apply
// a change before the reload that is to report it.
func (ex *example) noWatch(t *testing.T) {
	server := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(server)
	require.NoError(t, err)
	s := strings.Replace(string(b), `reload_debounce = "200ms"`, `reload_debounce = "1h"`+"\nreload_max_wait = \"1h\"\nrescan_interval = \"0s\"", 1)
	require.NotEqual(t, string(b), s)
	require.NoError(t, os.WriteFile(server, []byte(s), 0o644))
}

func TestReloadWithoutAChangeMakesNoGeneration(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)
	stateDir := filepath.Join(ex.root, "var", "state")
	generations := func() int {
		st, err := history.Open(stateDir, 0)
		require.NoError(t, err)
		recs, _, err := st.List()
		require.NoError(t, err)
		return len(recs)
	}
	kept := generations()
	require.Equal(t, 1, kept, "the start is generation %d", gen)

	for i := 0; i < 5; i++ {
		code, out, errOut := runEdged(t, "reload", "--control", ex.controlPath())
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, fmt.Sprintf("reloaded: nothing changed, generation %d serves\n", gen), out)
	}
	assert.Equal(t, gen, p.generation(t), "no generation for nothing")
	assert.Equal(t, kept, generations(), "nothing recorded in the history")
	last := p.status(t)["last_reload"].(map[string]any)
	assert.Equal(t, true, last["ok"])
	assert.Equal(t, true, last["unchanged"])
	audit, err := os.ReadFile(filepath.Join(stateDir, "audit.log"))
	require.NoError(t, err)
	assert.Equal(t, 5, strings.Count(string(audit), `"result":"unchanged"`), "each attempt is audited")

	// A real change after them is the next generation.
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, out, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, fmt.Sprintf("reloaded: generation %d ", gen+1)), out)
	assert.Equal(t, kept+1, generations())

	// New certificates and keys under the same file names are a change
	// too, though no config file is.
	fresh := t.TempDir()
	require.NoError(t, devcert.Generate(fresh, map[string][]string{"test.acme.com": {"test.acme.com", "*.test.acme.com"}}))
	for _, name := range []string{"test.acme.com.pem", "test.acme.com.key"} {
		b, err := os.ReadFile(filepath.Join(fresh, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(ex.certDir, name), b, 0o600))
	}
	code, out, errOut = runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, fmt.Sprintf("reloaded: generation %d ", gen+2)), out)
	assert.Equal(t, gen+2, p.generation(t))
}
