package edge

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/upstream"
)

// A reload that rebuilds an environment keeps its upstreams' health: a
// node ejected by the passive check stays out until its eject time has
// passed; a node with a new URL, or one removed and added again, starts
// healthy.
func TestRebuiltEnvironmentKeepsUpstreamHealth(t *testing.T) {
	const eject = 4 * time.Second
	testCertDir(t)
	failing := func() *backend {
		return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
		}))
	}
	bad, bad2 := failing(), failing()
	good, good2 := nameBackend(t, "good"), nameBackend(t, "good2")
	envFile := func(workers string, nodes ...string) string {
		return strings.Replace(envTOML("test", ""), "workers = 16", "workers = "+workers, 1) +
			groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", nodes...) +
			"\n[upstream.health.passive]\nfailures = 1\neject = \"" + eject.String() + "\"\n"
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envFile("16", bad.addr, bad2.addr, good.addr),
	})
	nodes := func() map[string]*upstream.Node {
		m := map[string]*upstream.Node{}
		for _, n := range te.srv.Snapshot().Env("test").upstreams["p-up"].Nodes() {
			m[n.Addr()] = n
		}
		return m
	}
	first := nodes()
	start := time.Now() // the ejections come after it
	for range 30 {
		if first[bad.addr].Stats().Ejections > 0 && first[bad2.addr].Stats().Ejections > 0 {
			break
		}
		te.get("test.acme.com", "/x")
	}
	require.False(t, first[bad.addr].Healthy(), "the failing node is ejected")
	require.False(t, first[bad2.addr].Healthy(), "the second failing node is ejected")

	// Something else of the environment changes: it is rebuilt.
	oldEnv := te.srv.Snapshot().Env("test")
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile("17", bad.addr, bad2.addr, good.addr)})
	ch := te.reload()
	require.Equal(t, []string{"test"}, ch.Changed)
	require.NotSame(t, oldEnv, te.srv.Snapshot().Env("test"), "a new runtime")
	rebuilt := nodes()
	assert.False(t, rebuilt[bad.addr].Healthy(), "still ejected after the rebuild")
	assert.True(t, rebuilt[bad.addr].Stats().Ejected)
	assert.False(t, rebuilt[bad2.addr].Healthy(), "still ejected after the rebuild")
	assert.True(t, rebuilt[good.addr].Healthy())
	// The node's counters continue from the replaced runtime's.
	sent := rebuilt[bad.addr].Stats().Requests
	for range 6 {
		resp, body := te.get("test.acme.com", "/x")
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	assert.Equal(t, sent, rebuilt[bad.addr].Stats().Requests, "no request to the ejected node")

	// bad2's place gets a new URL: that node starts healthy.
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile("18", bad.addr, good2.addr, good.addr)})
	te.reload()
	moved := nodes()
	assert.True(t, moved[good2.addr].Healthy(), "a new URL starts healthy")
	assert.False(t, moved[bad.addr].Healthy(), "still ejected")

	// bad2 comes back after a generation without it: it starts fresh.
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile("19", bad.addr, good2.addr, good.addr, bad2.addr)})
	te.reload()
	readded := nodes()
	assert.True(t, readded[bad2.addr].Healthy(), "a node removed and added again starts fresh")
	assert.False(t, readded[bad.addr].Healthy(), "still ejected")
	require.Less(t, time.Since(start), eject, "the test ran within the eject time; its checks meant something")

	// The ejection ends when it would have without the reloads.
	back := readded[bad.addr]
	require.Eventually(t, back.Healthy, eject+5*time.Second, 20*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), eject, "not before the eject time")
}

// A name-based backend (a virtual host that answers 404 to any other
// Host) behind pass_host = "rewrite" is probed with the Host its requests
// carry, upstream_host, as nginx plus and Envoy send the configured host:
// probed as its address, it answered 404 and was taken out, and every
// request was answered 503 upstream.unavailable.
func TestHealthProbeSendsTheRewrittenHost(t *testing.T) {
	testCertDir(t)
	var probes, wrongHost atomic.Int64
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
		}
		if r.Host != "users.internal" {
			wrongHost.Add(1)
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			`
[[upstream]]
name = "users"
environment = "test"
nodes = [{ url = "http://` + be.addr + `" }]
pass_host = "rewrite"
upstream_host = "users.internal"
[upstream.health.active]
path = "/healthz"
interval = "20ms"
unhealthy = 1

[[proxy]]
name = "p"
environment = "test"
base_path = "/"
upstream = "users"
`,
	})
	require.Eventually(t, func() bool { return probes.Load() >= 3 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, wrongHost.Load(), "requests with another Host than upstream_host")
	resp, body := te.get("test.acme.com", "/")
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
}
