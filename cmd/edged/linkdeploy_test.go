package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLinkedHomeMadeAgainAtOnceIsServed: an environment's home is a link
// out of conf.d (conf.d/test -> /srv/rel/test), and each deploy removes
// the target with its parents and makes it again at once (rm -rf
// /srv/rel; mkdir -p /srv/rel/test; its files), with the proxy at another
// base path. The rescan is off: each deploy is served by the reload its
// events make, one generation for each.
func TestLinkedHomeMadeAgainAtOnceIsServed(t *testing.T) {
	ex := newExample(t)
	server := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(server)
	require.NoError(t, err)
	s := strings.Replace(string(b), `reload_debounce = "200ms"`, `reload_debounce = "200ms"`+"\nrescan_interval = \"0s\"", 1)
	require.NotEqual(t, string(b), s)
	require.NoError(t, os.WriteFile(server, []byte(s), 0o644))

	envFile, err := os.ReadFile(ex.home("test", "test.toml"))
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(filepath.Join(ex.confDir, "test")))
	rel := filepath.Join(ex.root, "srv", "rel")
	home := filepath.Join(rel, "test")
	deploy := func(basePath string) {
		require.NoError(t, os.RemoveAll(rel))
		require.NoError(t, os.MkdirAll(home, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(home, "test.toml"), envFile, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(home, "orders.toml"), []byte(orderedProxy(basePath)), 0o644))
	}
	deploy("/orders0")
	require.NoError(t, os.Symlink(home, filepath.Join(ex.confDir, "test")))

	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/orders0/1")
	require.Equal(t, 200, code, body)

	for round := 1; round <= 5; round++ {
		gen := p.generation(t)
		deploy(fmt.Sprintf("/orders%d", round))
		awaitCode(t, c, fmt.Sprintf("https://test.acme.com/orders%d/1", round), 200, servedWithin)
		code, body := getBody(t, c, fmt.Sprintf("https://test.acme.com/orders%d/1", round-1))
		assert.Equal(t, 404, code, "round %d: the old base path: %s", round, body)
		// Whatever else its events make is one burst: no reload of a
		// half-made home, none after.
		time.Sleep(time.Second)
		assert.Equal(t, gen+1, p.generation(t), "round %d: one generation for the deploy", round)
	}
}
