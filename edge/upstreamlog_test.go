package edge

import (
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// upstreamFailedLines are edged's "upstream failed" log lines.
func upstreamFailedLines(t *testing.T, logs *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"upstream failed"`) {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// An environment whose backend is down answers every request 502, and
// logs the failures on stderr within its budget, not a line per request:
// stderr is every environment's (and the process's own: reloads, health
// verdicts), and a journald that rate-limits edged for one environment's
// outage would drop the others' lines with it. The lines written, with
// the count each says was left out before it, account for every failure.
func TestUpstreamFailureLogIsBudgeted(t *testing.T) {
	testCertDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close()) // connections to it are refused
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("down", "") + groupTOML("down", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("down", "p", "/", dead),
	})
	c := te.client("test.acme.com", nil)
	get := func() {
		resp, err := c.Get("https://test.acme.com/x")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 502, resp.StatusCode)
	}
	const flood, clients = 600, 8
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range flood / clients {
				get()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	lines := upstreamFailedLines(t, logs)
	bound := upstreamLinesBurst + int(elapsed.Seconds()*upstreamLinesPerSec) + 1
	assert.LessOrEqual(t, len(lines), bound, "at most the burst and the rate over %v", elapsed)
	require.GreaterOrEqual(t, len(lines), upstreamLinesBurst, "the burst is logged")
	first := lines[0]
	assert.Equal(t, "down", first["env"])
	assert.Equal(t, "p", first["proxy"])
	assert.NotEmpty(t, first["request_id"])
	assert.EqualValues(t, 0, first["suppressed"])

	time.Sleep(time.Second/upstreamLinesPerSec + 50*time.Millisecond)
	get()
	after := upstreamFailedLines(t, logs)
	require.Len(t, after, len(lines)+1)
	total := 0
	for _, l := range after {
		n, _ := l["suppressed"].(float64)
		total += 1 + int(n)
	}
	assert.Equal(t, flood+1, total, "lines written + lines they say were left out")
}

// An upstream's own log lines (health verdicts) name its environment and
// upstream once each: the environment's logger carries env, and the
// upstream added env and upstream again, so every such line held both
// keys twice, which log tools read as two fields or refuse.
func TestUpstreamLogLinesNameEnvAndUpstreamOnce(t *testing.T) {
	testCertDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + `
[[upstream]]
name = "sick"
environment = "test"
nodes = [{ url = "http://` + dead + `" }]
[upstream.health.active]
path = "/healthz"
interval = "50ms"
unhealthy = 1
[[proxy]]
name = "p"
environment = "test"
base_path = "/"
upstream = "sick"
`,
	})
	var line string
	require.Eventually(t, func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"upstream node unhealthy"`) {
				line = l
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, strings.Count(line, `"env":`), line)
	assert.Equal(t, 1, strings.Count(line, `"upstream":`), line)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &m), line)
	assert.Equal(t, "test", m["env"])
	assert.Equal(t, "sick", m["upstream"])
}
