package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A file edged cannot read fails the reload and keeps what serves; the
// chmod that lets edged read it is applied, as an edit would be, without
// waiting for the rescan (off here). `sudo tee conf.d/test/orders.toml`
// under root's umask 077 makes such a file; so does certbot, whose new
// private key a deploy hook then gives to the service's group.
func TestFileMadeReadableIsApplied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run edged as a user a file can be kept from")
	}
	ex := newExample(t)
	ex.fastReloads(t)
	server := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(server)
	require.NoError(t, err)
	conf := strings.Replace(string(b), `reload_debounce = "50ms"`, `reload_debounce = "50ms"`+"\nrescan_interval = \"0s\"", 1)
	require.NotEqual(t, string(b), conf)
	require.NoError(t, os.WriteFile(server, []byte(conf), 0o644))
	exe := exampleAsUser(t, ex)
	cmd := exec.Command(exe, "serve", "-c", ex.confDir)
	cmd.Env = []string{"EDGED_TEST_MAIN=1", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: hogUID, Gid: hogUID, Groups: []uint32{}}}
	p := startServeCmd(t, cmd)
	gen := p.generation(t)

	f := filepath.Join(ex.confDir, "test", "orders.toml")
	require.NoError(t, os.WriteFile(f, []byte(ordersProxy), 0o600)) // root's
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "permission denied") }, 10*time.Second, 20*time.Millisecond,
		"the reload fails on the file edged cannot read")
	assert.Equal(t, gen, p.generation(t), "what serves is kept")

	require.NoError(t, os.Chmod(f, 0o644))
	require.Eventually(t, func() bool { return p.generation(t) > gen }, 10*time.Second, 20*time.Millisecond,
		"the file made readable is applied: %s", p.stderr.String())
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 200, code, body)
}
