package edge

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSamplerBucketCount(t *testing.T) {
	assert.Equal(t, len(latencyBuckets)+1, histogramBuckets, "counts must hold every slot of a leHistogram")
}

func TestP99Interpolates(t *testing.T) {
	var c counts
	assert.Zero(t, p99ms(&c), "no requests, no p99")
	// 100 requests between 2.5 and 5 ms: the 99th is 99% into the bucket.
	c.buckets[3] = 100
	assert.InDelta(t, 2.5+0.99*2.5, p99ms(&c), 1e-9)
	// 98 fast ones and 2 between 100 and 250 ms: the 99th is half way
	// into the slow bucket.
	c = counts{}
	c.buckets[0], c.buckets[8] = 98, 2
	assert.InDelta(t, 100+0.5*150, p99ms(&c), 1e-9)
	// Beyond the last bound: the last bound.
	c = counts{}
	c.buckets[len(latencyBuckets)] = 5
	assert.Equal(t, 30000.0, p99ms(&c))
}

// samplerEdge starts an edge whose environment "one" (file one.toml)
// serves test.acme.com from backend a; withTwo, environment "two" (file
// two.toml) serves uat.acme.com too. get sends n requests to "one".
func samplerEdge(t *testing.T, withTwo bool) (te *testEdge, a *backend, files map[string]string, get func(n int)) {
	testCertDir(t)
	a = nameBackend(t, "a")
	files = map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"one.toml":    envTOML("one", "") + groupTOML("one", "g1", "test.acme.com", "test.acme.com") + proxyTOML("one", "users", "/users", a.addr),
	}
	if withTwo {
		files["two.toml"] = envTOML("two", "") + groupTOML("two", "g2", "uat.acme.com", "uat.acme.com") + proxyTOML("two", "users", "/users", a.addr)
	}
	te = startEdge(t, files)
	get = func(n int) {
		for range n {
			resp, _ := te.get("test.acme.com", "/users/1")
			require.Equal(t, 200, resp.StatusCode)
		}
	}
	return te, a, files, get
}

// TestSamplerRatesSeriesAndReload drives the sampler tick by tick (no
// clock): rates over the window, the sparkline's points, a series kept by
// name across a reload that rebuilds the environment, and dropped when
// the environment goes.
func TestSamplerRatesSeriesAndReload(t *testing.T) {
	te, a, files, get := samplerEdge(t, true)
	sp := newSampler()         // not the server's: this one ticks only here
	sp.tick(te.srv.Snapshot()) // the base
	get(4)
	sp.tick(te.srv.Snapshot())
	r, prox := sp.rates("one")
	assert.Equal(t, 4.0, r.RequestsPerSecond, "4 requests in the one second sampled")
	assert.Zero(t, r.Errors5xxPerSec)
	assert.Positive(t, r.P99Ms)
	assert.Nil(t, prox, "proxy rates only after a whole window")
	for i := 0; i < 8; i++ {
		sp.tick(te.srv.Snapshot())
	}
	get(3)
	sp.tick(te.srv.Snapshot()) // tick 10: the proxies' first window
	r, prox = sp.rates("one")
	assert.InDelta(t, 0.7, r.RequestsPerSecond, 1e-9, "7 requests over the 10 s window")
	assert.InDelta(t, 0.7, prox["users"], 1e-9)
	// 11 samples make two points of 5 s, the newest last: seconds 1-5
	// (4 requests) and 6-10 (3); the base sample (second 0) is left out.
	require.Len(t, r.Series.RequestsPerSecond, 2)
	assert.InDelta(t, 0.8, r.Series.RequestsPerSecond[0], 1e-6)
	assert.InDelta(t, 0.6, r.Series.RequestsPerSecond[1], 1e-6)
	assert.Positive(t, r.Series.P99Ms[0])
	r2, _ := sp.rates("two")
	assert.Zero(t, r2.RequestsPerSecond)

	// A reload rebuilds "one" (a new runtime counting from zero) and
	// removes "two".
	files["one.toml"] = envTOML("one", "labels = { stage = \"x\" }") + groupTOML("one", "g1", "test.acme.com", "test.acme.com") + proxyTOML("one", "users", "/users", a.addr)
	delete(files, "two.toml")
	writeFiles(t, te.dir, map[string]string{"one.toml": files["one.toml"]})
	require.NoError(t, os.Remove(filepath.Join(te.dir, "two.toml")))
	ch := te.reload()
	require.Equal(t, []string{"one"}, ch.Changed)
	for i := 0; i < 4; i++ {
		sp.tick(te.srv.Snapshot())
	}
	r, prox = sp.rates("one")
	assert.Len(t, r.Series.RequestsPerSecond, 3, "the series goes on by name: 15 samples")
	assert.InDelta(t, 0.3, r.RequestsPerSecond, 1e-9, "the window spans the rebuild: 3 requests in seconds 5-14")
	assert.Nil(t, prox, "the new runtime's proxy rates after a whole window of it")
	sp.mu.Lock()
	_, kept := sp.series["two"]
	sp.mu.Unlock()
	assert.False(t, kept, "a removed environment's series is dropped")
	get(2)
	sp.tick(te.srv.Snapshot())
	r, _ = sp.rates("one")
	assert.InDelta(t, 0.5, r.RequestsPerSecond, 1e-9, "seconds 6-15: 3 requests before the rebuild, 2 after")
}

// The second of a reload that rebuilds an environment counts what both
// runtimes finished in it: the old one before the swap, the new one
// after. It used to show zero, a dip in the sparkline at every reload
// that read like an outage.
func TestSamplerCountsTheSecondOfAReload(t *testing.T) {
	te, a, _, get := samplerEdge(t, false)
	sp := newSampler()
	last := func() sample {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		es := sp.series["one"]
		return es.ring[(es.next-1+seriesLen)%seriesLen]
	}
	sp.tick(te.srv.Snapshot()) // the base
	get(2)
	sp.tick(te.srv.Snapshot())
	require.Equal(t, float32(2), last().reqs)

	get(2) // on the runtime the reload replaces
	writeFiles(t, te.dir, map[string]string{"one.toml": envTOML("one", "labels = { stage = \"x\" }") + groupTOML("one", "g1", "test.acme.com", "test.acme.com") + proxyTOML("one", "users", "/users", a.addr)})
	require.Equal(t, []string{"one"}, te.reload().Changed)
	get(3) // on the new one
	sp.tick(te.srv.Snapshot())
	assert.Equal(t, float32(5), last().reqs, "the reload's second counts both runtimes' requests")
	assert.Positive(t, last().p99ms)
	r, _ := sp.rates("one")
	assert.InDelta(t, 3.5, r.RequestsPerSecond, 1e-9, "7 requests over the 2 s sampled")

	sp.tick(te.srv.Snapshot())
	assert.Zero(t, last().reqs, "a quiet second after the reload")
}

// TestSamplerRunsWhileTheAdminListenerServes: the server's own sampler
// ticks once a second from Listen on.
func TestSamplerRunsWhileTheAdminListenerServes(t *testing.T) {
	testCertDir(t)
	a := nameBackend(t, "a")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"one.toml":    envTOML("one", "") + groupTOML("one", "g1", "test.acme.com", "test.acme.com") + proxyTOML("one", "users", "/users", a.addr),
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		te.srv.sampler.mu.Lock()
		es := te.srv.sampler.series["one"]
		held := 0
		if es != nil {
			held = es.held
		}
		te.srv.sampler.mu.Unlock()
		if held >= 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "no two samples within 5 s")
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkSamplerTick is one tick over 20 environments of 25 proxies.
func BenchmarkSamplerTick(b *testing.B) {
	testCertDir(b)
	a := nameBackend(b, "a")
	files := map[string]string{"server.toml": serverTOML(b.TempDir(), "")}
	for e := 0; e < 20; e++ {
		env := fmt.Sprintf("env%d", e)
		var s string
		for p := 0; p < 25; p++ {
			s += proxyTOML(env, fmt.Sprintf("p%d", p), fmt.Sprintf("/p%d", p), a.addr)
		}
		files[env+".toml"] = envTOML(env, "") + groupTOML(env, "g"+env, "test.acme.com", env+".test.acme.com") + s
	}
	te := startEdge(b, files)
	snap := te.srv.Snapshot()
	sp := newSampler()
	sp.tick(snap)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sp.tick(snap)
	}
}
