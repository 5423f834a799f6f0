package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/devcert"
)

// TestCertificateArrivingAfterAFailedReloadIsPickedUp: a file names a
// certificate that is not there yet, so its reload fails; when the
// certificate arrives, the reload is retried by itself and serves.
func TestCertificateArrivingAfterAFailedReloadIsPickedUp(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))

	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "orders.toml"), []byte(`
[[env_group]]
name = "orders-group"
hostnames = ["orders.acme.com"]
environments = ["test"]

[[virtual_host]]
name = "orders-group"
cert_file = "../certs/orders.acme.com.pem"
key_file = "../certs/orders.acme.com.key"
`), 0o644))
	require.Eventually(t, func() bool {
		last, _ := p.status(t)["last_reload"].(map[string]any)
		return last != nil && last["ok"] == false
	}, 5*time.Second, 20*time.Millisecond, "the reload naming a missing certificate fails")
	assert.Equal(t, gen, p.generation(t), "and changes nothing")

	require.NoError(t, devcert.Generate(ex.certDir, map[string][]string{"orders.acme.com": {"orders.acme.com"}}))
	require.Eventually(t, func() bool {
		// Until the reload applies, the handshake for this name fails.
		resp, err := c.Get("https://orders.acme.com/users/1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == 200 && strings.Contains(string(body), `"backend":"test"`)
	}, 5*time.Second, 20*time.Millisecond, "no SIGHUP or edged reload: the certificate's arrival retried it")
	assert.Greater(t, p.generation(t), gen)
}

// changedOnDisk is the startup re-check: a file written, added or removed
// between the first load and the watcher's start is noticed.
func TestChangedOnDisk(t *testing.T) {
	ex := newExample(t)
	load := func() *config.Config {
		cfg, err := config.Load(ex.confDir)
		require.NoError(t, err)
		return cfg
	}
	files, err := filepath.Glob(filepath.Join(ex.confDir, "*.toml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)

	assert.False(t, changedOnDisk(ex.confDir, load()), "as loaded")

	cfg := load()
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(files[0], append(b, "\n# edited\n"...), 0o644))
	assert.True(t, changedOnDisk(ex.confDir, cfg), "a file edited")

	cfg = load()
	extra := filepath.Join(ex.confDir, "zz-extra.toml")
	require.NoError(t, os.WriteFile(extra, []byte("# nothing yet\n"), 0o644))
	assert.True(t, changedOnDisk(ex.confDir, cfg), "a file added")

	cfg = load()
	require.NoError(t, os.Remove(extra))
	assert.True(t, changedOnDisk(ex.confDir, cfg), "a file removed")
	assert.False(t, changedOnDisk(ex.confDir, load()))
}

// TestChangedOnDiskSeesCertificates: a certificate renewed between the
// first load and the watcher's start is noticed too. The watcher's rescan
// takes what it first finds as its reference, so without this the renewed
// certificate would not be served until it changed again.
func TestChangedOnDiskSeesCertificates(t *testing.T) {
	ex := newExample(t)
	load := func() *config.Config {
		cfg, err := config.Load(ex.confDir)
		require.NoError(t, err)
		return cfg
	}
	leaf := filepath.Join(ex.certDir, "test.acme.com.pem")
	key := filepath.Join(ex.certDir, "test.acme.com.key")

	cfg := load()
	assert.False(t, changedOnDisk(ex.confDir, cfg), "as loaded")
	oldKey, err := os.ReadFile(key)
	require.NoError(t, err)
	require.NoError(t, os.Remove(leaf))
	require.NoError(t, devcert.Generate(ex.certDir, map[string][]string{"test.acme.com": {"test.acme.com", "*.test.acme.com"}}))
	assert.True(t, changedOnDisk(ex.confDir, cfg), "certificate and key renewed")

	cfg = load()
	assert.False(t, changedOnDisk(ex.confDir, cfg), "as loaded")
	require.NoError(t, os.WriteFile(key, oldKey, 0o600))
	assert.True(t, changedOnDisk(ex.confDir, cfg), "a key that no longer matches the certificate")
}
