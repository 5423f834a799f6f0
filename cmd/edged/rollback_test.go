package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRollbackRefusesAGenerationThatNoLongerLoads: the history holds the
// .toml files, never the certificates they name. A generation whose
// certificate has since been removed (renewed under another name) would
// not load: rollback says so, naming the file, line and certificate, and
// changes nothing (it used to write the files and move the others aside,
// leaving a conf.d that neither a reload nor a restart could load).
func TestRollbackRefusesAGenerationThatNoLongerLoads(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)

	// The certificate is renewed under a new name, the old one removed.
	groups := filepath.Join(ex.confDir, "groups.toml")
	was, err := os.ReadFile(groups)
	require.NoError(t, err)
	for _, ext := range []string{".pem", ".key"} {
		require.NoError(t, os.Rename(filepath.Join(ex.certDir, "test.acme.com"+ext), filepath.Join(ex.certDir, "test-2027"+ext)))
	}
	now := strings.ReplaceAll(string(was), "certs/test.acme.com.", "certs/test-2027.")
	require.NotEqual(t, string(was), now)
	require.NoError(t, os.WriteFile(groups, []byte(now), 0o644))
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	require.Equal(t, gen+1, p.generation(t))

	for _, args := range [][]string{{}, {"--no-wait"}} {
		code, out, errOut := runEdged(t, append([]string{"rollback", fmt.Sprint(gen), "-c", ex.confDir}, args...)...)
		assert.Equal(t, 1, code, out)
		assert.NotContains(t, out, "restored")
		assert.NotContains(t, out, "moved aside")
		assert.Contains(t, errOut, groups+":")
		assert.Contains(t, errOut, filepath.Join(ex.certDir, "test.acme.com.pem"))
		assert.Contains(t, errOut, fmt.Sprintf("edged rollback: generation %d would not load with the files it names as they are now; nothing written", gen))

		b, err := os.ReadFile(groups)
		require.NoError(t, err)
		assert.Equal(t, now, string(b), "nothing written")
		_, err = os.Stat(ex.home("test", "orders.toml"))
		assert.NoError(t, err, "nothing moved aside")
		aside, _ := filepath.Glob(ex.home("test", ".orders.toml.rolled-back-*"))
		assert.Empty(t, aside)
		assert.Equal(t, gen+1, p.generation(t))
	}
}
