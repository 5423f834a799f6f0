package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A second SIGTERM or SIGINT during the drain ends it: an operator who
// pressed Ctrl-C twice, or ran kill again, wants the process gone now,
// not after drain_timeout (Caddy: "send the signal again to force quit").
func TestSecondSignalEndsTheDrain(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	p := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Contains(t, string(b), `drain_timeout = "30s"`)

	arrived := ex.slowProxy(t, 20*time.Second)

	proc := startServe(t, ex.confDir)
	c := proc.client(t, filepath.Join(ex.certDir, "ca.pem"))
	go func() { _, _, _ = try(c, "https://test.acme.com/slow/x") }()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the slow backend")
	}

	require.NoError(t, proc.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(proc.stderr.String(), `"msg":"shutting down"`) }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // the drain is under way
	start := time.Now()
	require.NoError(t, proc.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-proc.done:
		proc.done <- err
		require.NoError(t, err)
		assert.Less(t, time.Since(start), 3*time.Second)
	case <-time.After(5 * time.Second):
		t.Fatal("a second signal did not end the drain")
	}
	assert.Contains(t, proc.stderr.String(), `"msg":"drain cut short","signal":"interrupt"`)
}
