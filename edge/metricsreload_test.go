package edge

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReloadDropsSeriesOfRemovedObjects reloads real config files that
// rename a virtual host and its environment, remove a proxy and an
// upstream node, and change a kept group's hostnames, then scrapes
// /metrics: no series names what is gone, and the series of what is kept
// are still there with their counts (a group rebuilt for a new hostname
// keeps its virtual host's counters).
func TestReloadDropsSeriesOfRemovedObjects(t *testing.T) {
	testCertDir(t)
	b1, b2 := nameBackend(t, "b1"), nameBackend(t, "b2")
	prom := "[environment.rules.prometheus]\n"
	te := startEdge(t, map[string]string{
		"server.toml":   serverTOML(t.TempDir(), ""),
		"keep.toml":     envTOML("mr-keep", prom) + proxyTOML("mr-keep", "api", "/api", b1.addr),
		"keep-vh.toml":  groupTOML("mr-keep", "mr-keep", "test.acme.com", "test.acme.com"),
		"gone.toml":     envTOML("mr-gone", prom) + groupTOML("mr-gone", "mr-gone", "uat.acme.com", "uat.acme.com") + proxyTOML("mr-gone", "api", "/api", b1.addr),
		"px.toml":       envTOML("mr-px", prom) + proxyTOML("mr-px", "stay", "/stay", b1.addr, b2.addr),
		"px-old.toml":   proxyTOML("mr-px", "old", "/old", b1.addr),
		"px-group.toml": groupTOML("mr-px", "mr-px", "prod.acme.com", "prod.acme.com"),
	})
	for _, r := range []struct{ host, path string }{
		{"test.acme.com", "/api/1"}, {"uat.acme.com", "/api/1"}, {"prod.acme.com", "/old/1"}, {"prod.acme.com", "/stay/1"},
	} {
		resp, _ := te.get(r.host, r.path)
		require.Equal(t, 200, resp.StatusCode, r.host+r.path)
	}
	resp, _ := te.get("test.acme.com", "/nope")
	require.Equal(t, 404, resp.StatusCode)

	// What the reload removes is on /metrics before it. A request is
	// counted as its handler ends, which may be just after the client
	// has read the answer: scrape until the counts are in (bounded).
	before := scrapeUntil(t, te, `edged_requests_total{env="mr-keep",proxy="api",class="2xx"}`, 1)
	gone := []string{`"mr-gone"`, `proxy="old"`, `node="` + b2.addr + `"`, `upstream="old-up"`}
	for _, g := range gone {
		assert.True(t, anySample(before, g), "%s is on /metrics before the reload", g)
	}

	require.NoError(t, os.Remove(filepath.Join(te.dir, "gone.toml")))
	require.NoError(t, os.Remove(filepath.Join(te.dir, "px-old.toml")))
	writeFiles(t, te.dir, map[string]string{
		"new.toml":     envTOML("mr-new", prom) + groupTOML("mr-new", "mr-new", "uat.acme.com", "uat.acme.com") + proxyTOML("mr-new", "api", "/api", b1.addr),
		"px.toml":      envTOML("mr-px", prom) + proxyTOML("mr-px", "stay", "/stay", b1.addr),
		"keep-vh.toml": groupTOML("mr-keep", "mr-keep", "test.acme.com", "test.acme.com", "www.test.acme.com"),
	})
	ch := te.reload()
	require.Equal(t, []string{"mr-gone"}, ch.Removed)
	require.Contains(t, ch.Kept, "mr-keep", "the kept environment's counters must survive")

	after := scrape(t, te)
	for _, g := range gone {
		for series := range after.samples {
			assert.NotContains(t, series, g, "a series of a removed object outlives the reload")
		}
	}
	for _, series := range []string{
		handshakeSeries("ok", "mr-keep"),
		refusedSeries("proxy.not_found", "mr-keep"),
		`edged_requests_total{env="mr-keep",class="2xx"}`,
		`edged_requests_total{env="mr-keep",proxy="api",class="2xx"}`,
		`edged_certificate_not_after_seconds{virtual_host="mr-keep"}`,
	} {
		series = canonical(t, series)
		v, ok := after.samples[series]
		if assert.True(t, ok, "%s is still on /metrics", series) {
			assert.Equal(t, before.samples[series], v, "%s keeps its count over the reload", series)
			assert.NotZero(t, v, series)
		}
	}
	for _, series := range []string{
		handshakeSeries("ok", "mr-new"),
		handshakeSeries("ok", "mr-px"),
		`edged_requests_total{env="mr-new",class="2xx"}`,
		`edged_requests_total{env="mr-px",proxy="stay",class="2xx"}`,
		`edged_upstream_node_healthy{env="mr-px",upstream="stay-up",node="` + b1.addr + `"}`,
		`edged_certificate_not_after_seconds{virtual_host="mr-new"}`,
	} {
		_, ok := after.samples[canonical(t, series)]
		assert.True(t, ok, "%s is on /metrics", series)
	}
}

// anySample reports whether some series of ex contains s.
func anySample(ex exposition, s string) bool {
	for series := range ex.samples {
		if strings.Contains(series, s) {
			return true
		}
	}
	return false
}

// TestEnvironmentLabelsOnMetrics: an environment's free-form labels reach
// /metrics with their values escaped (a quote, a backslash; config
// refuses control characters, a newline among them),
// and keys that begin with "__", which Prometheus reserves ("__name__"
// would give a sample a second name), are left out as edged's own label
// names are.
func TestEnvironmentLabelsOnMetrics(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": envTOML("lbl", `labels = { team = "q\"uote \\back", __name__ = "evil", __meta_x = "y" }`) +
			groupTOML("lbl", "lbl", "test.acme.com", "test.acme.com") + proxyTOML("lbl", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)
	// parseExposition refuses a label name beginning with "__".
	ex := scrapeUntil(t, te, `edged_requests_total{env="lbl",class="2xx"}`, 1)
	series := `edged_requests_total{class="2xx",env="lbl",team="q\"uote \\back"}`
	assert.Equal(t, 1.0, ex.samples[series], "the label's value comes back as written")
}

// scrapeUntil scrapes until the series (canonical but for the
// environment's labels, which it ignores) has the value want, for at
// most 5 s: a request is counted as its handler ends, which may be just
// after the client has read the answer. It returns the last scrape.
func scrapeUntil(t *testing.T, te *testEdge, series string, want float64) exposition {
	t.Helper()
	name, labels, _ := splitSample(t, series+" 0", series)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ex := scrape(t, te)
		for s, v := range ex.samples {
			n, l, _ := splitSample(t, s+" 0", s)
			if n != name || v != want {
				continue
			}
			match := true
			for k, lv := range labels {
				match = match && l[k] == lv
			}
			if match {
				return ex
			}
		}
		if time.Now().After(deadline) {
			return ex
		}
	}
}

// slowOnRelease starts a backend that answers "ok" at once, and on /slow
// once release is closed (10 s at most), telling arrived as a /slow
// request comes.
func slowOnRelease(t *testing.T) (b *backend, arrived <-chan struct{}, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	came := make(chan struct{}, 1)
	b = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			came <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	}))
	return b, came, release
}

// TestCountersContinueAcrossARebuild: a reload that rebuilds an
// environment (here only its workers change) keeps its counters going, as
// the status page's lines do: Prometheus sees no reset, and a request the
// replaced instance finishes while it drains is counted, in the
// environment's request series, its pool's and its nodes'.
func TestCountersContinueAcrossARebuild(t *testing.T) {
	testCertDir(t)
	b, arrived, release := slowOnRelease(t)
	envFile := func(workers int) string {
		return fmt.Sprintf("[[environment]]\nname = \"mc\"\nworkers = %d\n[environment.rules.prometheus]\n", workers) +
			groupTOML("mc", "mc", "test.acme.com", "test.acme.com") + proxyTOML("mc", "api", "/api", b.addr)
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": envFile(16)})
	for range 3 {
		resp, _ := te.get("test.acme.com", "/api/1")
		require.Equal(t, 200, resp.StatusCode)
	}
	slow := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/api/slow")
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach the backend")
	}
	envSeries := `edged_requests_total{env="mc",class="2xx"}`
	before := scrapeUntil(t, te, envSeries, 3)
	node := `{env="mc",upstream="api-up",node="` + b.addr + `"}`
	series := []string{
		envSeries,
		`edged_requests_total{env="mc",proxy="api",class="2xx"}`,
		`edged_request_duration_seconds_count{env="mc"}`,
		`edged_response_bytes_total{env="mc"}`,
		`edged_pool_admitted_total{env="mc"}`,
		`edged_upstream_requests_total` + node,
		`edged_upstream_connections_total` + node,
	}
	for _, s := range series {
		require.NotZero(t, before.samples[canonical(t, s)], s)
	}

	old := te.srv.Snapshot().Env("mc")
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile(17)})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("mc"), "rebuilt")
	after := scrape(t, te)
	for _, s := range series {
		assert.Equal(t, before.samples[canonical(t, s)], after.samples[canonical(t, s)], "%s continues across the rebuild", s)
	}

	// The slow request ends in the replaced instance, one more in the
	// new one: both are counted.
	close(release)
	a := <-slow
	require.NoError(t, a.err)
	require.Equal(t, 200, a.status)
	resp, _ := te.get("test.acme.com", "/api/2")
	require.Equal(t, 200, resp.StatusCode)
	last := scrapeUntil(t, te, envSeries, 5)
	assert.Equal(t, 5.0, last.samples[canonical(t, envSeries)], "3 before the reload, the one the replaced instance finished, one after")
	assert.Equal(t, 5.0, last.samples[canonical(t, `edged_requests_total{env="mc",proxy="api",class="2xx"}`)])
	assert.Equal(t, 5.0, last.samples[canonical(t, `edged_pool_admitted_total{env="mc"}`)])
	assert.Equal(t, 5.0, last.samples[canonical(t, `edged_upstream_requests_total`+node)])
}

// TestStatusPoolCountersContinueAcrossARebuild: /status's pool counters
// (the status page's "rejected") go on across a rebuild as /metrics' do,
// rather than fall back to zero on a reload that changed something else.
func TestStatusPoolCountersContinueAcrossARebuild(t *testing.T) {
	testCertDir(t)
	b, arrived, release := slowOnRelease(t)
	envFile := func(timeout string) string {
		return fmt.Sprintf("[[environment]]\nname = \"sp\"\nworkers = 1\nqueue = 0\nreject_delay = \"0s\"\nqueue_timeout = %q\n", timeout) +
			groupTOML("sp", "sp", "test.acme.com", "test.acme.com") + proxyTOML("sp", "api", "/api", b.addr)
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": envFile("1s")})
	slow := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/api/slow")
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request did not reach the backend")
	}
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the one worker is taken")
	close(release)
	require.Equal(t, 200, (<-slow).status)
	require.EqualValues(t, 1, te.srv.Status().Environments["sp"].Pool.Rejected)
	require.EqualValues(t, 1, te.srv.Status().Environments["sp"].Pool.Admitted)

	old := te.srv.Snapshot().Env("sp")
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile("2s")})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("sp"), "rebuilt")
	st := te.srv.Status().Environments["sp"].Pool
	assert.EqualValues(t, 1, st.Rejected, "rejected goes on across the rebuild")
	assert.EqualValues(t, 1, st.Admitted, "admitted goes on across the rebuild")
	ex := scrape(t, te)
	assert.Equal(t, 1.0, ex.samples[canonical(t, `edged_pool_rejected_total{env="sp",reason="queue_full"}`)])
}
