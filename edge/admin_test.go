package edge

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

func adminGet(t *testing.T, te *testEdge, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + te.admin + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestAdminEndpointsAndPerProxySeriesOnlyWhereTheRuleIsOn(t *testing.T) {
	testCertDir(t)
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"on.toml":     envTOML("metered", "[environment.rules.prometheus]\n") + groupTOML("metered", "g1", "test.acme.com", "test.acme.com") + proxyTOML("metered", "users", "/users", a.addr),
		"off.toml":    envTOML("quiet", "") + groupTOML("quiet", "g2", "uat.acme.com", "uat.acme.com") + proxyTOML("quiet", "users", "/users", b.addr),
	})
	for _, h := range []string{"test.acme.com", "uat.acme.com"} {
		resp, _ := te.get(h, "/users/1")
		require.Equal(t, 200, resp.StatusCode)
	}
	// One more request of the quiet environment.
	resp, _ := te.get("uat.acme.com", "/users/2")
	require.Equal(t, 200, resp.StatusCode)
	code, body := adminGet(t, te, "/metrics")
	require.Equal(t, 200, code)
	const positive = -1
	for _, c := range []struct {
		series string
		want   float64 // positive: any value > 0
	}{
		// per environment, always
		{`edged_requests_total{env="metered",class="2xx"}`, 1},
		{`edged_requests_total{env="quiet",class="2xx"}`, 2},
		{`edged_requests_total{env="quiet",class="5xx"}`, 0},
		{`edged_request_duration_seconds_bucket{env="quiet",le="+Inf"}`, 2},
		{`edged_request_duration_seconds_count{env="metered"}`, 1},
		{`edged_response_bytes_total{env="quiet"}`, positive},
		// per proxy, only with rules.prometheus
		{`edged_requests_total{env="metered",proxy="users",class="2xx"}`, 1},
		{`edged_request_duration_seconds_bucket{env="metered",proxy="users",le="+Inf"}`, 1},
		{`edged_response_bytes_total{env="metered",proxy="users"}`, positive},
		// pools for every environment
		{`edged_pool_admitted_total{env="quiet"}`, 2},
	} {
		v, ok := metricValue(body, c.series)
		if assert.True(t, ok, "%s is exposed", c.series) {
			if c.want == positive {
				assert.Positive(t, v, c.series)
			} else {
				assert.Equal(t, c.want, v, c.series)
			}
		}
	}
	assert.NotRegexp(t, `edged_\w+\{env="quiet",proxy=`, body, "no per-proxy series without rules.prometheus")
	assert.NotContains(t, body, "/users/1", "never the raw path")

	code, body = adminGet(t, te, "/healthz")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok\n", body)
	code, _ = adminGet(t, te, "/readyz")
	assert.Equal(t, 200, code)

	code, body = adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, uint64(1), st.Generation)
	require.Contains(t, st.Environments, "metered")
	assert.Equal(t, 16, st.Environments["metered"].Pool.Workers)
	require.Len(t, st.Environments["quiet"].Upstreams, 1)
	assert.True(t, st.Environments["quiet"].Upstreams[0].Nodes[0].Healthy)
	assert.Contains(t, st.Certificates, "g1")

	resp, err := http.Post("http://"+te.admin+"/metrics", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "the admin listener is read-only")
}

// metricValue finds the value of one series in Prometheus text.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestHTTP2EndToEnd(t *testing.T) {
	te, _ := threeGroups(t, "")
	c := te.h2client(nil)
	for i := 0; i < 3; i++ {
		resp, err := c.Get("https://prod.acme.com/users/9")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "HTTP/2.0", resp.Proto)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "prod /9", string(b))
	}
	// Coalescing a connection made for prod onto uat is refused with 421.
	req, _ := http.NewRequest("GET", "https://prod.acme.com/users/9", nil)
	req.Host = "uat.acme.com"
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode)
}

func TestPlainHTTPRedirectAndServe(t *testing.T) {
	for _, mode := range []string{"redirect", "serve"} {
		t.Run(mode, func(t *testing.T) {
			te, _ := threeGroups(t, "http = \"127.0.0.1:0\"\nhttp_mode = \""+mode+"\"")
			_, plain, _ := te.srv.Addrs()
			require.NotNil(t, plain)
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
			get := func(host string) (*http.Response, string) {
				req, _ := http.NewRequest("GET", "http://"+plain.String()+"/users/1?x=2", nil)
				req.Host = host
				resp, err := c.Do(req)
				require.NoError(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(b)
			}
			resp, body := get("test.acme.com")
			_, port, _ := net.SplitHostPort(te.addr)
			if mode == "redirect" {
				assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
				assert.Equal(t, "https://test.acme.com:"+port+"/users/1?x=2", resp.Header.Get("Location"))
			} else {
				assert.Equal(t, 200, resp.StatusCode)
				assert.Equal(t, "test /1", body)
				assert.Equal(t, "http", resp.Header.Get("X-Seen-Proto"))
			}
			// A Host no env group serves is never redirected (or served).
			resp, body = get("evil.example.com:80")
			requireFault(t, resp, body, http.StatusNotFound, "host.unknown")
			assert.Empty(t, resp.Header.Get("Location"))
		})
	}
}

func TestResponseHopByHopHeadersRemoved(t *testing.T) {
	testCertDir(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Public", "yes")
		w.Write([]byte("ok"))
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", b.addr),
	})
	resp, body := te.get("test.acme.com", "/")
	require.Equal(t, "ok", body)
	assert.Equal(t, "yes", resp.Header.Get("X-Public"))
	assert.Empty(t, resp.Header.Get("X-Internal"))
	assert.Empty(t, resp.Header.Get("Keep-Alive"))
}

// /status lists an environment a reload replaced while it still finishes
// its requests in flight, and drops it once it has.
func TestStatusListsDrainingEnvironments(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	held := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprint(w, "released")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"uat.toml":    envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") + proxyTOML("uat", "held", "/", held.addr),
	})
	old := te.srv.Snapshot().Env("uat")
	done := getAsync(te.client("uat.acme.com", nil), "https://uat.acme.com/x")
	require.Eventually(t, func() bool { return old.inflight.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, te.srv.Status().DrainingEnvironments, "nothing replaced yet")

	uatFile := filepath.Join(te.dir, "uat.toml")
	b, err := os.ReadFile(uatFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(uatFile, []byte(strings.Replace(string(b), "workers = 16", "workers = 17", 1)), 0o644))
	before := time.Now()
	assert.Equal(t, []string{"uat"}, te.reload().Changed)

	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.DrainingEnvironments, 1, body)
	d := st.DrainingEnvironments[0]
	assert.Equal(t, "uat", d.Name)
	assert.Equal(t, old.Hash, d.Hash)
	assert.NotEqual(t, st.Environments["uat"].Hash, d.Hash, "the serving uat is the new one")
	assert.Equal(t, int64(1), d.InFlight)
	assert.WithinDuration(t, before, d.Since, 5*time.Second)

	close(release)
	a := <-done
	require.NoError(t, a.err)
	assert.Equal(t, "released", a.body)
	require.Eventually(t, func() bool { return len(te.srv.Status().DrainingEnvironments) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// NotReady is the lame duck: /readyz says 503 while new connections and
// requests are still served.
func TestNotReadyKeepsServing(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), "")
	code, _ := adminGet(t, te, "/readyz")
	require.Equal(t, 200, code)
	te.srv.NotReady()
	code, body := adminGet(t, te, "/readyz")
	assert.Equal(t, 503, code, body)
	resp, body := te.get("test.acme.com", "/x") // a new client: a new connection
	assert.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, "ok", body)
}

// The admin listener outlives the client listeners' drain: /readyz is 503
// (not refused) while a request is still in flight.
func TestAdminAnswersThroughTheDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}), "")
	slow := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/slow")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	// Shutdown has begun once the TLS listener refuses.
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", te.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "the TLS listener closes")
	code, body := adminGet(t, te, "/readyz")
	assert.Equal(t, 503, code, body)
	code, body = adminGet(t, te, "/status")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"draining": true`)
	close(release)
	a := <-slow
	require.NoError(t, a.err)
	assert.Equal(t, "done", a.body)
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	_, err := net.DialTimeout("tcp", te.admin, time.Second)
	assert.Error(t, err, "the admin listener is closed once Shutdown returns")
}

// TestAdminRefusesOtherHostsOnLoopback: a page on evil.example whose name
// a DNS rebinding points at 127.0.0.1 reaches the admin listener from the
// operator's browser, with the attacker's name in Host; an admin listener
// on loopback answers only a Host that is an IP address or localhost, so
// that page cannot read /status or /metrics.
func TestAdminRefusesOtherHostsOnLoopback(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), "")
	_, port, err := net.SplitHostPort(te.admin)
	require.NoError(t, err)
	get := func(host, path string) (int, string) {
		req, err := http.NewRequest("GET", "http://"+te.admin+path, nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example:" + port, "EVIL.example:" + port} {
		for _, path := range []string{"/", "/status", "/metrics", "/assets/page.js"} {
			code, body := get(host, path)
			assert.Equal(t, http.StatusForbidden, code, "Host %s, %s", host, path)
			assert.NotContains(t, body, "generation", "Host %s, %s", host, path)
		}
	}
	for _, host := range []string{te.admin, "127.0.0.1", "localhost:" + port, "LocalHost:" + port, "localhost.:" + port, "edge.localhost:" + port, "[::1]:" + port, "[::ffff:127.0.0.1]:" + port} {
		code, body := get(host, "/status")
		assert.Equal(t, http.StatusOK, code, "Host %s: %s", host, body)
	}
}

// TestAdminBoundsRequestHeads: the admin listener reads heads of at most
// 64 KiB (the proxy's default max_header_bytes) and answers a larger one
// 431, where net/http's default let a client make it read and parse 1 MiB
// per request. Its server errors go to edged's log, as JSON, not raw to
// stderr.
func TestAdminBoundsRequestHeads(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), "")
	head := func(fieldBytes int) int {
		req, err := http.NewRequest("GET", "http://"+te.admin+"/healthz", nil)
		require.NoError(t, err)
		req.Header.Set("X-Big", strings.Repeat("a", fieldBytes))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, head(32<<10))
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, head(200<<10))
	require.NotNil(t, te.srv.admin.ErrorLog, "net/http's own errors reach edged's log")
}

// TestAdminAnswersAreNeitherCachedNorFramed: every admin answer (the
// page, its assets, /status, /metrics, the probes, a 404, the 403 of the
// Host guard) says no-store (/status names files, owners and upstream
// addresses: no browser or proxy cache should keep it), nosniff, and may
// not be framed by another page (X-Frame-Options, and the page's CSP
// frame-ancestors, which default-src does not cover).
func TestAdminAnswersAreNeitherCachedNorFramed(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), "")
	check := func(host, path string, want int) {
		req, err := http.NewRequest("GET", "http://"+te.admin+path, nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
		if path == "/" {
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
		}
	}
	for _, path := range []string{"/", "/assets/page.js", "/assets/page.css", "/status", "/status?series=1", "/metrics", "/healthz", "/readyz"} {
		check(te.admin, path, http.StatusOK)
	}
	check(te.admin, "/nothing", http.StatusNotFound)
	check("evil.example", "/status", http.StatusForbidden)
}

// /status and the page show each environment's home with its owner: a
// stat and a user database lookup, either of which can hang (a home on
// an NFS mount whose server is gone, an LDAP directory that does not
// answer). Those /status calls must not take the admin listener's
// connections: /metrics goes on answering, and the homes are taken by one
// call at a time whatever the number of /status requests.
func TestStatusWithAHungHomeLeavesMetricsAnswering(t *testing.T) {
	testCertDir(t)
	a := nameBackend(t, "a")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("e", "") + groupTOML("e", "g", "test.acme.com", "test.acme.com") + proxyTOML("e", "users", "/users", a.addr),
	})
	var calls atomic.Int64
	hung := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hung) }) }
	t.Cleanup(release)
	te.srv.homes.mu.Lock()
	te.srv.homes.of = func(cfg *config.Config) map[string]config.Home {
		calls.Add(1)
		<-hung
		return config.Homes(cfg)
	}
	te.srv.homes.mu.Unlock()

	const statusCalls = maxAdminConns + 16
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	codes := make(chan int, statusCalls)
	for range statusCalls {
		go func() {
			resp, err := c.Get("http://" + te.admin + "/status")
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool { return calls.Load() > 0 }, 10*time.Second, 5*time.Millisecond)

	// A scraper's own connection, with a scraper's timeout.
	mtr := &http.Transport{}
	defer mtr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: mtr, Timeout: 5 * time.Second}).Get("http://" + te.admin + "/metrics")
	require.NoError(t, err, "/metrics answers while the homes hang (%d lookups under way)", calls.Load())
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 1, calls.Load(), "one lookup of the homes at a time, not one per /status")

	release()
	for range statusCalls {
		assert.Equal(t, 200, <-codes)
	}
}

// adminConnOn is one HTTP/1.1 connection to the admin listener, kept
// alive between its requests.
type adminConnOn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialAdmin(t *testing.T, te *testEdge) *adminConnOn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", te.admin, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &adminConnOn{nc: nc, br: bufio.NewReader(nc)}
}

// get sends GET path and reads the answer within 3 s (less than the
// admin listener's header timeout): its status, or the error (the
// connection closed, or no answer).
func (c *adminConnOn) get(path string) (int, error) {
	if err := c.nc.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := fmt.Fprintf(c.nc, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// TestAdminKeptAliveConnectionsGiveWayToNewOnes: the admin listener
// serves maxAdminConns connections at once, and a connection kept alive
// between requests held its place until its idle timeout (60 s), which a
// client sending a request a minute renews for ever: maxAdminConns such
// connections (any local user's, or anyone's where admin is on another
// address) kept every new one out, the load balancer's /readyz and
// Prometheus' /metrics with them. As nginx reuses its keep-alive
// connections when worker_connections run out, a new connection that
// finds every place taken closes the one idle the longest; a connection
// whose next request is arriving keeps its place, unless it sent too
// little of it for net/http's header timeout to run.
func TestAdminKeptAliveConnectionsGiveWayToNewOnes(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), "")
	// waitFor waits until the admin listener's connections, by how many
	// bytes of their next request arrived while idle (-1: not idle),
	// satisfy ok: the server marks a connection idle after its client
	// has the answer, and the order they went idle in is the test's.
	waitFor := func(what string, ok func(arrived []int64) bool) {
		t.Helper()
		require.Eventually(t, func() bool {
			l := te.srv.adminLn
			l.mu.Lock()
			defer l.mu.Unlock()
			var arrived []int64
			for c := range l.open {
				if c.idleSince.IsZero() {
					arrived = append(arrived, -1)
				} else {
					arrived = append(arrived, c.arrived.Load())
				}
			}
			return ok(arrived)
		}, 5*time.Second, time.Millisecond, what)
	}
	idle := func(n int) func([]int64) bool {
		return func(arrived []int64) bool {
			k := 0
			for _, a := range arrived {
				if a >= 0 {
					k++
				}
			}
			return k == n
		}
	}
	kept := make([]*adminConnOn, maxAdminConns)
	for i := range kept {
		kept[i] = dialAdmin(t, te)
		code, err := kept[i].get("/healthz")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		waitFor("idle one after the other", idle(i+1))
	}
	code, err := dialAdmin(t, te).get("/readyz")
	require.NoError(t, err, "a new connection got no answer while %d kept-alive connections held every place", maxAdminConns)
	assert.Equal(t, http.StatusOK, code)
	waitFor("the new one idle too", idle(maxAdminConns))
	_, err = kept[0].get("/healthz")
	assert.Error(t, err, "the connection idle the longest gave way")

	// The oldest now sends half a request head: its request is arriving,
	// under net/http's header timeout. The next sends 2 bytes, which start
	// no header timeout: it would hold its place until its idle timeout.
	busy := kept[1]
	require.NoError(t, busy.nc.SetDeadline(time.Now().Add(3*time.Second)))
	_, err = io.WriteString(busy.nc, "GET /readyz HTTP/1.1\r\n")
	require.NoError(t, err)
	_, err = io.WriteString(kept[2].nc, "GE")
	require.NoError(t, err)
	waitFor("both read", func(arrived []int64) bool {
		var head, two bool
		for _, a := range arrived {
			head = head || a >= 4
			two = two || a == 2
		}
		return head && two
	})
	code, err = dialAdmin(t, te).get("/readyz")
	require.NoError(t, err, "a new connection got no answer")
	assert.Equal(t, http.StatusOK, code)
	_, err = kept[2].get("/healthz")
	assert.Error(t, err, "the connection idle the longest but for the one whose request arrives gave way")
	for _, c := range kept[3:] {
		code, err := c.get("/healthz")
		if assert.NoError(t, err, "only the connections idle the longest gave way") {
			assert.Equal(t, http.StatusOK, code)
		}
	}
	_, err = io.WriteString(busy.nc, "Host: 127.0.0.1\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(busy.br, nil)
	require.NoError(t, err, "the request arriving was not cut")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestAdminAnswersAreGzippedWhenAsked: /metrics, /status and the page are
// sent gzip-compressed to a client whose Accept-Encoding takes gzip, as
// Prometheus' always does (and a browser's), and as they are to one that
// does not. /metrics of 10,000 proxies with rules.prometheus is tens of
// megabytes of text, sent whole on every scrape.
func TestAdminAnswersAreGzippedWhenAsked(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	var env strings.Builder
	env.WriteString(envTOML("test", "[environment.rules.prometheus]\n") + groupTOML("test", "g", "test.acme.com", "test.acme.com"))
	for i := range 100 {
		fmt.Fprintf(&env, "[[proxy]]\nname = \"p%d\"\nenvironment = \"test\"\nbase_path = \"/p%d\"\ntarget = \"http://%s\"\n\n", i, i, b.addr)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    env.String(),
	})
	// Compression left to the test: net/http's Transport would ask for
	// gzip and take it off unseen.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	get := func(method, path, acceptEncoding string) (*http.Response, []byte) {
		req, err := http.NewRequest(method, "http://"+te.admin+path, nil)
		require.NoError(t, err)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		return resp, body
	}
	check := func(path string, body []byte) {
		switch path {
		case "/metrics":
			ex := parseExposition(t, string(body))
			assert.Contains(t, ex.samples, canonical(t, `edged_requests_total{env="test",proxy="p99",class="2xx"}`))
		case "/":
			assert.Contains(t, string(body), "test.acme.com")
		default:
			var st Status
			require.NoError(t, json.Unmarshal(body, &st), path)
			assert.Len(t, st.Environments["test"].Proxies, 100, path)
		}
	}
	for _, path := range []string{"/metrics", "/status", "/status?series=1", "/"} {
		t.Run(path, func(t *testing.T) {
			for _, ae := range []string{"gzip", "deflate, gzip;q=1.0, *;q=0.5", "GZIP"} {
				resp, body := get("GET", path, ae)
				if !assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"), "%s with Accept-Encoding %q: %d bytes sent", path, ae, len(body)) {
					continue
				}
				assert.Contains(t, resp.Header.Values("Vary"), "Accept-Encoding", path)
				assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"), path)
				zr, err := gzip.NewReader(bytes.NewReader(body))
				require.NoError(t, err, path)
				plain, err := io.ReadAll(zr)
				require.NoError(t, err, path)
				check(path, plain)
				assert.Less(t, len(body), len(plain)/4, "%s: %d bytes compressed to %d", path, len(plain), len(body))
			}
			for _, ae := range []string{"", "identity", "gzip;q=0", "br", "gzip;q=0.000, identity"} {
				resp, body := get("GET", path, ae)
				assert.Empty(t, resp.Header.Get("Content-Encoding"), "%s with Accept-Encoding %q", path, ae)
				assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"), path)
				check(path, body)
			}
			resp, body := get("HEAD", path, "gzip")
			assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"), "HEAD %s", path)
			assert.Empty(t, body)
		})
	}
}
