package edge

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

type faultBody struct {
	Fault struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"fault"`
}

// requireFault checks status, JSON shape and code of a fault answer.
func requireFault(t *testing.T, resp *http.Response, body string, status int, code string) faultBody {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var f faultBody
	require.NoError(t, json.Unmarshal([]byte(body), &f), body)
	assert.Equal(t, code, f.Fault.Code)
	assert.NotEmpty(t, f.Fault.Message)
	assert.Len(t, f.Fault.RequestID, 32)
	assert.Equal(t, f.Fault.RequestID, resp.Header.Get("X-Request-Id"), "the header carries the body's request id")
	return f
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestRoutingAcrossEnvironmentsOfOneGroup(t *testing.T) {
	testCertDir(t)
	users, admin, orders := nameBackend(t, "users"), nameBackend(t, "admin"), nameBackend(t, "orders")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": envTOML("blue", "") + envTOML("green", "") + `
[[env_group]]
name = "g"
hostnames = ["test.acme.com"]
environments = ["blue", "green"]
[[virtual_host]]
name = "g"
cert_file = "` + certsDir + `/test.acme.com.pem"
key_file = "` + certsDir + `/test.acme.com.key"
` + proxyTOML("blue", "users", "/users", users.addr) + proxyTOML("blue", "admin", "/users/admin", admin.addr) +
			proxyTOML("green", "orders", "/orders", orders.addr),
	})
	cases := []struct{ path, backend string }{
		{"/users", "users /"},
		{"/users/7", "users /7"},
		{"/users/admin/x", "admin /x"},
		{"/users/administrator", "users /administrator"},
		{"/orders/1?q=2", "orders /1"},
	}
	for _, c := range cases {
		resp, body := te.get("test.acme.com", c.path)
		assert.Equal(t, 200, resp.StatusCode, c.path)
		assert.Equal(t, c.backend, body, c.path)
	}
	resp, body := te.get("test.acme.com", "/usersx")
	requireFault(t, resp, body, 404, "proxy.not_found")
	resp, _ = te.get("test.acme.com", "/orders/1?q=2&r=%20x")
	assert.Equal(t, "/1?q=2&r=%20x", resp.Header.Get("X-Seen-Uri"), "query kept as sent")
}

func TestFaults(t *testing.T) {
	te, _ := threeGroups(t, "")
	c := te.client("test.acme.com", nil)

	req, _ := http.NewRequest("GET", "https://test.acme.com/users/1", nil)
	req.Host = "nobody.example.com"
	resp, body := do(t, c, req)
	requireFault(t, resp, body, 404, "host.unknown")

	req, _ = http.NewRequest("GET", "https://test.acme.com/users/1", nil)
	req.Host = "uat.acme.com"
	resp, body = do(t, c, req)
	f := requireFault(t, resp, body, 421, "host.misdirected")
	assert.Contains(t, f.Fault.Message, "uat.acme.com")

	resp, body = te.get("test.acme.com", "/nope")
	f = requireFault(t, resp, body, 404, "proxy.not_found")
	assert.Equal(t, "no proxy for host test.acme.com and path /nope", f.Fault.Message)

	// A request id the client sent is kept; a bad one replaced.
	req, _ = http.NewRequest("GET", "https://test.acme.com/nope", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	resp, body = do(t, c, req)
	assert.Contains(t, body, `"request_id":"abc-123"`)
	assert.Equal(t, "abc-123", resp.Header.Get("X-Request-Id"))
	assert.Equal(t, 404, resp.StatusCode)
}

func TestUpstreamFaults(t *testing.T) {
	testCertDir(t)
	hang := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	sick := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(500)
			return
		}
		fmt.Fprint(w, "should not be reached")
	}))
	echo := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	refused := loopback.Refused(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "max_body_bytes = 1000") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hang"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "200ms"
[[upstream]]
name = "sick"
environment = "test"
nodes = [{ url = "http://%s" }]
[upstream.health.active]
path = "/healthz"
interval = "50ms"
unhealthy = 1
[[proxy]]
name = "hang"
environment = "test"
base_path = "/hang"
upstream = "hang"
[[proxy]]
name = "sick"
environment = "test"
base_path = "/sick"
upstream = "sick"
[[proxy]]
name = "refused"
environment = "test"
base_path = "/refused"
target = "http://%s"
[[proxy]]
name = "echo"
environment = "test"
base_path = "/echo"
target = "http://%s"
`, hang.addr, sick.addr, refused, echo.addr),
	})
	c := te.client("test.acme.com", nil)

	resp, body := te.get("test.acme.com", "/hang")
	requireFault(t, resp, body, 504, "upstream.timeout")

	resp, body = te.get("test.acme.com", "/refused")
	requireFault(t, resp, body, 502, "upstream.failed")

	require.Eventually(t, func() bool {
		resp, _ := te.get("test.acme.com", "/sick")
		return resp.StatusCode == 503
	}, 5*time.Second, 20*time.Millisecond)
	resp, body = te.get("test.acme.com", "/sick")
	requireFault(t, resp, body, 503, "upstream.unavailable")

	resp, body = do(t, c, mustReq(t, "POST", "https://test.acme.com/echo", strings.NewReader(strings.Repeat("x", 1001))))
	requireFault(t, resp, body, 413, "request.too_large")

	// Chunked (unknown length) bodies are cut at the limit too.
	resp, body = do(t, c, mustReq(t, "POST", "https://test.acme.com/echo", io.MultiReader(strings.NewReader(strings.Repeat("y", 800)), strings.NewReader(strings.Repeat("y", 800)))))
	requireFault(t, resp, body, 413, "request.too_large")

	resp, body = do(t, c, mustReq(t, "POST", "https://test.acme.com/echo", strings.NewReader(strings.Repeat("x", 1000))))
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "1000", body)
}

func mustReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	if _, ok := body.(*strings.Reader); !ok && body != nil {
		req.ContentLength = -1
	}
	return req
}

func TestForwardedHeadersAndHostModes(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "pass"
environment = "test"
nodes = [{ url = "http://%[1]s" }]
[[upstream]]
name = "node"
environment = "test"
nodes = [{ url = "http://%[1]s" }]
pass_host = "node"
[[upstream]]
name = "rewrite"
environment = "test"
nodes = [{ url = "http://%[1]s" }]
pass_host = "rewrite"
upstream_host = "internal.svc"
[[proxy]]
name = "pass"
environment = "test"
base_path = "/pass"
upstream = "pass"
target_path = "/v1"
[[proxy]]
name = "node"
environment = "test"
base_path = "/node"
upstream = "node"
[[proxy]]
name = "rewrite"
environment = "test"
base_path = "/rewrite"
upstream = "rewrite"
`, b.addr),
	})
	c := te.client("test.acme.com", nil)
	req := mustReq(t, "GET", "https://test.acme.com/pass/7", nil)
	req.Header.Set("Connection", "close, X-Hop")
	req.Header.Set("X-Hop", "secret")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "10.9.8.7")
	resp, body := do(t, c, req)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, "b /v1/7", body, "target path + rest of path")
	assert.Equal(t, "test.acme.com", resp.Header.Get("X-Seen-Host"))
	assert.Equal(t, "10.9.8.7, 127.0.0.1", resp.Header.Get("X-Seen-Xff"))
	assert.Equal(t, "https", resp.Header.Get("X-Seen-Proto"))
	assert.Equal(t, "test.acme.com", resp.Header.Get("X-Seen-Fwd-Host"))
	assert.Equal(t, "for=127.0.0.1;host=test.acme.com;proto=https", resp.Header.Get("X-Seen-Forwarded"))
	assert.Empty(t, resp.Header.Get("X-Seen-Keep-Alive"))
	assert.Len(t, resp.Header.Get("X-Seen-Request-Id"), 32)
	assert.Equal(t, resp.Header.Get("X-Seen-Request-Id"), resp.Header.Get("X-Request-Id"), "the client sees the id the backend saw")

	resp, _ = te.get("test.acme.com", "/node")
	assert.Equal(t, b.addr, resp.Header.Get("X-Seen-Host"))
	resp, _ = te.get("test.acme.com", "/rewrite")
	assert.Equal(t, "internal.svc", resp.Header.Get("X-Seen-Host"))
}

func TestRetriesAndBalancing(t *testing.T) {
	testCertDir(t)
	var mu sync.Mutex
	hits := map[string]int{}
	count := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			if name == "busy" {
				w.WriteHeader(503)
				return
			}
			fmt.Fprint(w, name)
		})
	}
	a, bb, busy := startBackend(t, count("a")), startBackend(t, count("b")), startBackend(t, count("busy"))
	refused := loopback.Refused(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "rr"
environment = "test"
nodes = [{ url = "http://%[1]s", weight = 1 }, { url = "http://%[2]s", weight = 3 }]
[[upstream]]
name = "flaky"
environment = "test"
nodes = [{ url = "http://%[3]s" }, { url = "http://%[4]s" }]
retries = 1
[[proxy]]
name = "rr"
environment = "test"
base_path = "/rr"
upstream = "rr"
[[proxy]]
name = "flaky"
environment = "test"
base_path = "/flaky"
upstream = "flaky"
`, a.addr, bb.addr, refused, busy.addr),
	})
	for i := 0; i < 40; i++ {
		resp, _ := te.get("test.acme.com", "/rr")
		require.Equal(t, 200, resp.StatusCode)
	}
	mu.Lock()
	assert.Equal(t, 10, hits["a"], "weight 1 of 4")
	assert.Equal(t, 30, hits["b"], "weight 3 of 4")
	mu.Unlock()

	// Node 1 refuses connections, node 2 answers 503: a GET is retried
	// once after the refusal and then gets node 2's 503 as it is.
	for i := 0; i < 4; i++ {
		resp, _ := te.get("test.acme.com", "/flaky")
		assert.Equal(t, 503, resp.StatusCode)
	}
	mu.Lock()
	assert.Equal(t, 4, hits["busy"])
	mu.Unlock()
}

func TestIsolationBetweenEnvironments(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "slow")
	}))
	fast := nameBackend(t, "fast")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": `
[[environment]]
name = "a"
workers = 2
queue = 2
queue_timeout = "10s"
reject_delay = "0s"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") + proxyTOML("a", "slow", "/", slow.addr),
		"b.toml": envTOML("b", "") + groupTOML("b", "b-group", "uat.acme.com", "uat.acme.com") + proxyTOML("b", "fast", "/", fast.addr),
	})
	ca := te.client("test.acme.com", nil)
	// Fill A: 2 workers busy on the slow backend, 2 requests queued.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := ca.Get("https://test.acme.com/x")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	envA := te.srv.Snapshot().Env("a")
	require.Eventually(t, func() bool {
		st := envA.pool.Stats()
		return st.InFlight == 2 && st.Queued == 2
	}, 5*time.Second, 10*time.Millisecond)

	// A's next request is refused at once.
	start := time.Now()
	resp, body := te.get("test.acme.com", "/x")
	requireFault(t, resp, body, 503, "env.overloaded")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Less(t, time.Since(start), 2*time.Second, "refused at once, not after the queue timeout")

	// B is untouched.
	for i := 0; i < 20; i++ {
		resp, body := te.get("uat.acme.com", "/y")
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "fast /y", body)
	}
	once.Do(func() { close(release) })
	wg.Wait()
}

func TestPanicIsContainedInItsEnvironment(t *testing.T) {
	te, _ := threeGroups(t, "")
	// Make the test environment's proxy panic by breaking its runtime on
	// purpose: a nil upstream is a programming error the recover catches.
	env := te.srv.Snapshot().Env("test")
	env.proxies["user-service"].upstream = nil
	resp, body := te.get("test.acme.com", "/users/1")
	requireFault(t, resp, body, 500, "internal.error")
	assert.Equal(t, 0, env.pool.Stats().InFlight, "the worker was given back")
	resp, _ = te.get("uat.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode)
}

func TestServerSentEventsArriveOneByOne(t *testing.T) {
	testCertDir(t)
	next := make(chan struct{})
	sse := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "sse", "/events", sse.addr),
	})
	resp, err := te.client("test.acme.com", nil).Get("https://test.acme.com/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("data: event %d\n", i), line, "event %d arrives before the backend sends the next", i)
		_, _ = br.ReadString('\n')
		next <- struct{}{}
	}
}

func TestWebSocketUpgradeEcho(t *testing.T) {
	testCertDir(t)
	ws := echoUpgradeBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "ws", "/ws", ws.addr),
	})
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	for _, msg := range []string{"hello", "through", "edged"} {
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, len(msg))
		_, err = io.ReadFull(br, buf)
		require.NoError(t, err)
		assert.Equal(t, msg, string(buf))
	}
	env := te.srv.Snapshot().Env("test")
	assert.Equal(t, 0, env.pool.Stats().InFlight, "an established tunnel holds no worker")
}

// OPTIONS * (asterisk-form, RFC 9112 3.2.4; HTTP/2's :path "*", RFC 9113
// 8.3.1) asks about the server, not a resource: edged answers it itself,
// 200 with an empty body, as Go's net/http server (Traefik's, Caddy's)
// does, and no backend gets it. The root proxy's backend used to get
// "OPTIONS /*", a request for another resource. An absolute-form OPTIONS
// without a path is the same request (RFC 9112 3.2.4); an OPTIONS for a
// path is still forwarded, and the Host is still checked.
func TestOptionsAsteriskIsAnsweredByEdged(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "http = \"127.0.0.1:0\"\nhttp_mode = \"redirect\"", "")
	for _, head := range []string{
		"OPTIONS * HTTP/1.1\r\nHost: test.acme.com\r\n\r\n",
		"OPTIONS https://test.acme.com HTTP/1.1\r\nHost: test.acme.com\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 3\r\n\r\nabc",
	} {
		resp, body := rawH1(t, te.addr, "test.acme.com", head, false)
		require.NotNil(t, resp, head)
		assert.Equal(t, http.StatusOK, resp.StatusCode, head)
		assert.Empty(t, body, head)
		assert.Equal(t, []string{"0"}, resp.Header["Content-Length"], head)
		assert.Len(t, resp.Header.Get("X-Request-Id"), 32, head)
	}
	h := dialH2(t, te.addr, "test.acme.com")
	h.headers(1, true, h2get("OPTIONS", "test.acme.com", "*")...)
	r := h.result(1)
	assert.Equal(t, http.StatusOK, r.status, "HTTP/2")
	assert.Empty(t, r.body, "HTTP/2")
	assert.Zero(t, rec.count(), "no backend gets OPTIONS *")

	// The plain listener's redirect made "https://test.acme.com:port*".
	_, plain, _ := te.srv.Addrs()
	require.NotNil(t, plain)
	pc, err := net.Dial("tcp", plain.String())
	require.NoError(t, err)
	defer pc.Close()
	require.NoError(t, pc.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(pc, "OPTIONS * HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(pc), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "plain listener, redirect mode")
	assert.Empty(t, resp.Header.Get("Location"))

	var body string
	resp, body = rawH1(t, te.addr, "test.acme.com", "OPTIONS * HTTP/1.1\r\nHost: evil.com:x.test.acme.com\r\n\r\n", false)
	require.NotNil(t, resp)
	requireFault(t, resp, body, http.StatusBadRequest, faultInvalid)

	resp, body = rawH1(t, te.addr, "test.acme.com", "OPTIONS /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", false)
	require.NotNil(t, resp)
	assert.Equal(t, "ok", body)
	assert.Equal(t, "/x", rec.last(t).uri)
	h.headers(3, true, h2get("OPTIONS", "test.acme.com", "/y")...)
	r = h.result(3)
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "ok", r.body)
	assert.Equal(t, "/y", rec.last(t).uri)
}

// An absolute-form target without a path ("GET https://test.acme.com")
// names the resource "/" (RFC 9110 4.2.3: an empty path is "/"; RFC
// 9112 3.2.1: a client sends "/" for it in origin-form): the backend
// gets what "GET /" gets, the target path and "/". It got the target
// path alone ("/v1" for "/v1/"), another resource to a backend that
// tells them apart (or answers one with a redirect to the other).
func TestAbsoluteFormWithoutAPathIsTheRoot(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "root")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[proxy]]
name = "root"
environment = "test"
base_path = "/"
target = "http://%s/v1"
`, b.addr),
	})
	_, plain, _ := te.srv.Addrs()
	require.NotNil(t, plain)
	plainGet := func(head string) *http.Response {
		c, err := net.Dial("tcp", plain.String())
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for target, want := range map[string]string{
		"/":                          "/v1/",
		"https://test.acme.com":      "/v1/",
		"https://test.acme.com:443":  "/v1/",
		"https://test.acme.com?q=1":  "/v1/?q=1",
		"https://test.acme.com/":     "/v1/",
		"https://test.acme.com/x?q=": "/v1/x?q=",
	} {
		head := "GET " + target + " HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"
		resp, body := rawH1(t, te.addr, "test.acme.com", head, false)
		require.NotNil(t, resp, target)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", target, body)
		assert.Equal(t, want, resp.Header.Get("X-Seen-Uri"), "TLS listener: %s", target)
		resp = plainGet(strings.NewReplacer("https://", "http://", ":443", ":80").Replace(head))
		require.Equal(t, http.StatusOK, resp.StatusCode, target)
		assert.Equal(t, want, resp.Header.Get("X-Seen-Uri"), "plain listener: %s", target)
	}
}

// An absolute-form target names the host it asks for, and its client
// must send the same in Host (RFC 9112 3.2); edged routes and forwards
// the target's (3.2.2). A Host that names another authority, or is not
// host[:port] at all, is refused (400, as HAProxy has since 2.1; Go's
// server refuses the malformed one): it was dropped silently, and a front
// end or filter that reads Host ("GET https://test.acme.com/ with Host:
// evil.example") saw another host than the one edged served, as a
// differing Host beside HTTP/2's :authority would (TestHostMustBeHostPort).
// Host case, a trailing dot and the scheme's default port do not differ.
func TestAbsoluteFormHostMustBeItsAuthority(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\"", "")
	_, plain, _ := te.srv.Addrs()
	require.NotNil(t, plain)
	plainDo := func(head string) (*http.Response, string) {
		c, err := net.Dial("tcp", plain.String())
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	send := map[string]func(string) (*http.Response, string){
		"TLS": func(head string) (*http.Response, string) {
			resp, body := rawH1(t, te.addr, "test.acme.com", head, false)
			require.NotNil(t, resp, head)
			return resp, body
		},
		"plain": plainDo,
	}
	for name, do := range send {
		for _, c := range []struct{ target, host string }{
			{"https://test.acme.com/x", "evil.example"},
			{"https://test.acme.com/x", "x.test.acme.com"},
			{"https://x.test.acme.com/x", "test.acme.com"},
			{"https://test.acme.com/x", "test.acme.com:8443"},
			{"http://test.acme.com/x", "test.acme.com:443"},
			{"https://test.acme.com/x", "evil.com:x.test.acme.com"},
			{"https://test.acme.com/x", "[test.acme.com]"},
			{"https://test.acme.com/x", ""},
		} {
			before := rec.count()
			resp, body := do("GET " + c.target + " HTTP/1.1\r\nHost: " + c.host + "\r\n\r\n")
			requireFault(t, resp, body, http.StatusBadRequest, faultInvalid)
			assert.Equal(t, before, rec.count(), "%s: %s with Host %q: nothing forwarded", name, c.target, c.host)
		}
		for _, c := range []struct{ target, host string }{
			{"https://test.acme.com/x", "test.acme.com"},
			{"https://test.acme.com/x", "TEST.Acme.com."},
			{"https://test.acme.com/x", "test.acme.com:443"},
			{"https://test.acme.com:443/x", "test.acme.com"},
			{"http://test.acme.com/x", "test.acme.com:80"},
			{"https://test.acme.com:8443/x", "test.acme.com:8443"},
		} {
			resp, body := do("GET " + c.target + " HTTP/1.1\r\nHost: " + c.host + "\r\n\r\n")
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s with Host %q: %s", name, c.target, c.host, body)
			u, err := url.Parse(c.target)
			require.NoError(t, err)
			assert.Equal(t, u.Host, rec.last(t).host, "%s: the target's authority is forwarded", name)
		}
		// HTTP/1.0 may leave Host out: the target names the host alone.
		resp, body := do("GET https://test.acme.com/x HTTP/1.0\r\n\r\n")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", name, body)
		assert.Equal(t, "test.acme.com", rec.last(t).host)
	}
}
