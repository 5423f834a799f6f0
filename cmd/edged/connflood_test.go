package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A flood of connections held open cannot take the file descriptors an
// environment needs to reach its nodes: with an open-file limit of 1100,
// max_connections defaults to 64, and a request on a connection opened
// before the flood still gets a fresh connection to its node. Without the
// limit edged accepted until EMFILE, and the node's dial failed (502).
func TestConnectionFloodLeavesDescriptorsForNodes(t *testing.T) {
	proc, c := startWithFewDescriptors(t)
	flood := floodOf(t, proc.https)
	defer closeAll(flood)

	// The client's kept-alive connection, opened before the flood.
	status, body := getBody(t, c, "https://test.acme.com/users/2")
	assert.Equal(t, 200, status, "the node could not be reached during the flood: %s", body)
	assert.Contains(t, proc.stderr.String(), "max_connections reached")
}

// The admin listener is on loopback, open to every local user: a flood of
// connections to it (held open, or opened faster than its 5 s header
// timeout closes them) must not take the descriptors an environment needs
// to reach its nodes either. It serves a bounded number at once; the rest
// wait in the kernel's listen queue, and a scrape after the flood is
// answered.
func TestAdminConnectionFloodLeavesDescriptorsForNodes(t *testing.T) {
	proc, c := startWithFewDescriptors(t)
	flood := floodOf(t, proc.admin)

	status, body := getBody(t, c, "https://test.acme.com/users/2")
	assert.Equal(t, 200, status, "the node could not be reached during the admin flood: %s", body)

	// Once the flood goes, the admin listener answers again.
	closeAll(flood)
	require.Eventually(t, func() bool {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + proc.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 100*time.Millisecond)
}

// startWithFewDescriptors runs the example's edged with an open-file limit
// of 1100 (max_connections then defaults to 64), a connection to the node
// per request and no retry to hide a failed dial, and returns it with a
// client whose kept-alive connection was opened first.
func startWithFewDescriptors(t *testing.T) (*proc, *http.Client) {
	t.Helper()
	ex := newExample(t)
	p := filepath.Join(ex.confDir, "test", "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	conf := strings.Replace(string(b), "weight = 1 }]\n", "weight = 1 }]\nmax_idle_per_node = 0\nretries = 0\n", 1)
	require.NotEqual(t, string(b), conf, "the example's test upstream has one node of weight 1")
	require.NoError(t, os.WriteFile(p, []byte(conf), 0o644))

	exe, err := os.Executable()
	require.NoError(t, err)
	// sh's ulimit -n sets the hard limit too: Go raises only the soft
	// one to the hard one at start.
	cmd := exec.Command("sh", "-c", `ulimit -n 1100 && exec "$0" "$@"`, exe, "serve", "-c", ex.confDir)
	cmd.Env = append(os.Environ(), "EDGED_TEST_MAIN=1")
	proc := startServeCmd(t, cmd)

	c := proc.client(t, filepath.Join(ex.certDir, "ca.pem"))
	status, _ := getBody(t, c, "https://test.acme.com/users/1")
	require.Equal(t, 200, status)
	return proc, c
}

// floodOf opens up to 1150 connections to addr and holds them, until the
// listen queue is full; then it gives edged a moment to accept what it
// will. The caller closes them (closeAll).
func floodOf(t *testing.T, addr string) []net.Conn {
	t.Helper()
	var flood []net.Conn
	for range 1150 {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the listen queue is full: the limit holds the rest there
		}
		flood = append(flood, nc)
	}
	if len(flood) <= 1000 {
		closeAll(flood)
		require.Greater(t, len(flood), 1000, "the flood reached edged")
	}
	time.Sleep(200 * time.Millisecond)
	return flood
}

func closeAll(conns []net.Conn) {
	for _, nc := range conns {
		nc.Close()
	}
}
