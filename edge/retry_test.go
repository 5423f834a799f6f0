package edge

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// hitCounter is a backend answering status, counting requests by method.
type hitCounter struct {
	mu   sync.Mutex
	hits map[string]int
	*backend
}

func countingBackend(t *testing.T, status int, name string) *hitCounter {
	h := &hitCounter{hits: map[string]int{}}
	h.backend = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.hits[r.Method]++
		h.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s %s %d", name, r.Method, len(body))
	}))
	return h
}

func (h *hitCounter) count(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[method]
}

func TestRetryAfter503OnlyWhenReplayable(t *testing.T) {
	testCertDir(t)
	busy, good := countingBackend(t, 503, "busy"), countingBackend(t, 200, "good")
	busyA, busyB := countingBackend(t, 503, "busy-a"), countingBackend(t, 503, "busy-b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "mixed"
environment = "test"
nodes = [{ url = "http://%s" }, { url = "http://%s" }]
retries = 1
[[upstream]]
name = "busy"
environment = "test"
nodes = [{ url = "http://%s" }, { url = "http://%s" }]
retries = 1
[[proxy]]
name = "mixed"
environment = "test"
base_path = "/mixed"
upstream = "mixed"
[[proxy]]
name = "busy"
environment = "test"
base_path = "/busy"
upstream = "busy"
`, busy.addr, good.addr, busyA.addr, busyB.addr),
	})
	c := te.client("test.acme.com", nil)

	// Round robin starts every other GET on the busy node: its 503 is
	// retried on the good one, so every GET ends 200.
	for i := 0; i < 4; i++ {
		resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/mixed/x", nil))
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, "good GET 0", body)
	}
	assert.Equal(t, 4, good.count("GET"))
	assert.Equal(t, 2, busy.count("GET"), "half of the GETs met the busy node first")

	cases := []struct {
		name, method string
		body         io.Reader
		hits         int
	}{
		{"GET is retried once", "GET", nil, 2},
		{"POST with a body is not retried", "POST", strings.NewReader("payload"), 1},
		{"PUT with a body is retried once", "PUT", strings.NewReader("payload"), 2},
		{"PUT with a body past replayMax is not retried", "PUT", strings.NewReader(pattern(replayMax + 1)), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := busyA.count(tc.method) + busyB.count(tc.method)
			resp, body := do(t, c, mustReq(t, tc.method, "https://test.acme.com/busy", tc.body))
			assert.Equal(t, 503, resp.StatusCode, body)
			assert.Contains(t, body, "busy-", "the node's own answer")
			assert.Equal(t, tc.hits, busyA.count(tc.method)+busyB.count(tc.method)-before)
		})
	}
}

// An Idempotency-Key that the client names in Connection is hop-by-hop:
// edged removes it, and the node never sees it. It must not make the
// request replayable either: a POST sent to a second node without the
// key that was to let the nodes deduplicate it is a POST done twice.
// Over HTTP/1.1 (HTTP/2 has no Connection header).
func TestIdempotencyKeyNamedInConnectionMakesNoRetry(t *testing.T) {
	testCertDir(t)
	var mu sync.Mutex
	keys := map[string]int{} // POSTs at the nodes, by the key they carried
	busy := func() string {
		return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			keys[r.Header.Get("Idempotency-Key")]++
			mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
		})).addr
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "busy"
environment = "test"
nodes = [{ url = "http://%s" }, { url = "http://%s" }]
retries = 1
[[proxy]]
name = "busy"
environment = "test"
base_path = "/busy"
upstream = "busy"
`, busy(), busy()),
	})
	c := te.client("test.acme.com", nil)
	post := func(connection string) map[string]int {
		mu.Lock()
		clear(keys)
		mu.Unlock()
		req := mustReq(t, "POST", "https://test.acme.com/busy", strings.NewReader("payload"))
		req.Header.Set("Idempotency-Key", "k1")
		if connection != "" {
			req.Header.Set("Connection", connection)
		}
		resp, body := do(t, c, req)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(keys)
	}
	// The key reaches the nodes: retried once, as README says.
	assert.Equal(t, map[string]int{"k1": 2}, post(""))
	// The key is hop-by-hop: the nodes get a POST without it, once.
	assert.Equal(t, map[string]int{"": 1}, post("Idempotency-Key"))
	assert.Equal(t, map[string]int{"": 1}, post("keep-alive, idempotency-key"))
}

// blackholeListener is a loopback listener that never accepts and whose
// accept queue is full: further connects get no SYN-ACK and hang (the
// kernel drops their SYNs), like a node that is down behind a firewall.
func blackholeListener(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		require.Less(t, i, 16, "the accept queue never filled")
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout(), "a full queue hangs the connect: %v", err)
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
}

func TestConnectTimeout(t *testing.T) {
	testCertDir(t)
	hole := blackholeListener(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hole"
environment = "test"
nodes = [{ url = "http://%s" }]
connect_timeout = "300ms"
retries = 0
[[proxy]]
name = "hole"
environment = "test"
base_path = "/"
upstream = "hole"
`, hole),
	})
	start := time.Now()
	resp, body := te.get("test.acme.com", "/x")
	took := time.Since(start)
	// A connect that never completes is a failed connect: 502, not the
	// 504 of a node that accepted and did not answer.
	requireFault(t, resp, body, http.StatusBadGateway, "upstream.failed")
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "not before connect_timeout")
	assert.Less(t, took, 2*time.Second, "about connect_timeout")
	assert.Zero(t, te.srv.Snapshot().Env("test").pool.Stats().InFlight)
}

func TestQueueTimeout(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "slow")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": `
[[environment]]
name = "test"
workers = 1
queue = 4
queue_timeout = "300ms"
` + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "slow", "/", slow.addr),
	})
	c := te.client("test.acme.com", nil)
	holder := make(chan int, 1)
	go func() {
		resp, err := c.Get("https://test.acme.com/hold")
		if err != nil {
			holder <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		holder <- resp.StatusCode
	}()
	pool := te.srv.Snapshot().Env("test").pool
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	start := time.Now()
	resp, body := te.get("test.acme.com", "/waits")
	took := time.Since(start)
	f := requireFault(t, resp, body, http.StatusServiceUnavailable, "env.overloaded")
	assert.Contains(t, f.Fault.Message, "environment test")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "it waited in the queue")
	assert.Less(t, took, 2*time.Second, "about queue_timeout")
	st := pool.Stats()
	assert.EqualValues(t, 1, st.TimedOut)
	assert.EqualValues(t, 0, st.Rejected, "the queue was not full")

	free()
	assert.Equal(t, 200, <-holder, "the worker's own request was not disturbed")
}

// rawNode is a backend that reads request heads (bodies are drained by
// Content-Length) and either answers 200 "ok" or closes the connection
// without an answer, as answer decides from the index of the request on
// its connection. It counts the heads it read by "METHOD URI".
type rawNode struct {
	addr   string
	mu     sync.Mutex
	heads  map[string]int
	bodies map[string]string // the last body read, by "METHOD URI"
}

func startRawNode(t *testing.T, answer func(i int) bool) *rawNode {
	n := &rawNode{heads: map[string]int{}, bodies: map[string]string{}}
	n.addr, _ = loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			n.mu.Lock()
			n.heads[req.Method+" "+req.RequestURI]++
			n.bodies[req.Method+" "+req.RequestURI] = string(body)
			n.mu.Unlock()
			if !answer(i) {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return n
}

func (n *rawNode) count(line string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.heads[line]
}

func (n *rawNode) body(line string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bodies[line]
}

// replayCase is a request of the retry decision's tests: replayable
// means sent again after it possibly reached a node.
type replayCase struct {
	method, path, key, body string
	chunked                 bool // the body sent chunked, its length unknown
	replayable              bool
}

var replayCases = []replayCase{
	{"GET", "/get", "", "", false, true},
	{"POST", "/post", "", "", false, false},
	{"POST", "/post-key", "k1", "", false, true},
	// A key with no value names no operation to deduplicate by.
	{"POST", "/post-key-blank", " ", "", false, false},
	{"POST", "/post-body", "", "payload", false, false},
	{"POST", "/post-key-body", "k2", "payload", false, true},
	{"PUT", "/put-body", "", "payload", false, true},
	{"PUT", "/put-chunked", "", "payload", true, true},
	// Bodies past replayMax are streamed, not kept: one node only.
	{"PUT", "/put-64k", "", pattern(replayMax), false, true},
	{"PUT", "/put-too-big", "", pattern(replayMax + 1), false, false},
	{"PUT", "/put-chunked-too-big", "", pattern(replayMax + 1), true, false},
}

// replayableCases counts the replayCases sent again after a failure.
func replayableCases() int {
	n := 0
	for _, tc := range replayCases {
		if tc.replayable {
			n++
		}
	}
	return n
}

// pattern is n bytes that are not all the same, so that a body resent
// out of order or short is seen.
func pattern(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%251%26)
	}
	return string(b)
}

func (tc replayCase) request(t *testing.T, url string) *http.Request {
	var rd io.Reader
	if tc.body != "" {
		rd = strings.NewReader(tc.body)
		if tc.chunked {
			rd = io.MultiReader(rd) // not a strings.Reader: mustReq sends it chunked
		}
	}
	req := mustReq(t, tc.method, url, rd)
	if tc.key != "" {
		req.Header.Set("Idempotency-Key", tc.key)
	}
	return req
}

// One decision (replayable) governs both resends: a node that closed a
// reused keep-alive connection after reading the request (the upstream
// client's replay on a fresh connection) ...
func TestReplayOnDroppedKeepAliveFollowsTheDecision(t *testing.T) {
	testCertDir(t)
	// Answers the first request of a connection, drops the second.
	node := startRawNode(t, func(i int) bool { return i == 0 })
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/p", node.addr),
	})
	c := te.client("test.acme.com", nil)
	for _, tc := range replayCases {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			// The prime leaves one idle connection that served one
			// request (it is itself replayed when the case before left
			// a connection that already did).
			resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/p/prime", nil))
			require.Equal(t, 200, resp.StatusCode, body)
			resp, body = do(t, c, tc.request(t, "https://test.acme.com/p"+tc.path))
			line := tc.method + " " + tc.path
			if tc.replayable {
				assert.Equal(t, 200, resp.StatusCode, body)
				assert.Equal(t, 2, node.count(line), "sent on the dropped connection, then on a fresh one")
				assert.True(t, node.body(line) == tc.body, "the whole body sent again")
			} else {
				assert.Equal(t, 502, resp.StatusCode, body)
				assert.Equal(t, 1, node.count(line), "not resent")
			}
		})
	}
	// Counted per node: the replayable cases' resends and the primes'.
	resent := node.count("GET /prime") - len(replayCases) + replayableCases()
	ex := scrape(t, te)
	labels := `{env="test",kind="fresh_connection",node="` + node.addr + `",upstream="p-up"}`
	assert.EqualValues(t, resent, ex.samples["edged_upstream_retries_total"+labels])
}

// firstThenOther is proxy /p of environment test on an upstream of two
// nodes that may retry once: smooth weighted round robin picks first
// for the first 50 picks, a retry goes to other.
func firstThenOther(first, other string) string {
	return fmt.Sprintf(`
[[upstream]]
name = "two"
environment = "test"
nodes = [{ url = "http://%s", weight = 100 }, { url = "http://%s", weight = 1 }]
retries = 1
[[proxy]]
name = "p"
environment = "test"
base_path = "/p"
upstream = "two"
`, first, other)
}

// ... and a node failing on a fresh connection (the edge's retry on
// another node).
func TestRetryOnOtherNodeFollowsTheDecision(t *testing.T) {
	testCertDir(t)
	failing := startRawNode(t, func(int) bool { return false })
	good := startRawNode(t, func(int) bool { return true })
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + firstThenOther(failing.addr, good.addr),
	})
	// Over both protocols: their request bodies are read differently
	// (edged's HTTP/1.1 reader, x/net's stream pipe).
	for _, proto := range []struct {
		name string
		c    *http.Client
	}{{"h1", te.client("test.acme.com", nil)}, {"h2", te.h2client(nil)}} {
		for _, tc := range replayCases {
			t.Run(proto.name+tc.method+tc.path, func(t *testing.T) {
				path := "/" + proto.name + tc.path
				resp, body := do(t, proto.c, tc.request(t, "https://test.acme.com/p"+path))
				line := tc.method + " " + path
				assert.Equal(t, 1, failing.count(line), "the failing node first, once")
				if tc.replayable {
					assert.Equal(t, 200, resp.StatusCode, body)
					assert.Equal(t, 1, good.count(line), "retried on the other node")
					assert.True(t, good.body(line) == tc.body, "the whole body sent again")
				} else {
					assert.Equal(t, 502, resp.StatusCode, body)
					assert.Zero(t, good.count(line), "not retried")
				}
			})
		}
	}

	// Counted per node: every request failed on the first node, the
	// replayable ones went on to the other (HAProxy's redispatch).
	replayable := 2 * replayableCases() // both protocols
	all := 2 * len(replayCases)
	ex := scrape(t, te)
	series := func(name, node, kind string) float64 {
		if kind != "" {
			kind = `kind="` + kind + `",`
		}
		v, ok := ex.samples[name+`{env="test",`+kind+`node="`+node+`",upstream="two"}`]
		assert.True(t, ok, "%s of %s %s", name, node, kind)
		return v
	}
	assert.EqualValues(t, all, series("edged_upstream_requests_total", failing.addr, ""))
	assert.EqualValues(t, all, series("edged_upstream_failures_total", failing.addr, ""))
	assert.EqualValues(t, replayable, series("edged_upstream_retries_total", failing.addr, "other_node"))
	assert.EqualValues(t, 0, series("edged_upstream_retries_total", failing.addr, "fresh_connection"))
	assert.EqualValues(t, replayable, series("edged_upstream_requests_total", good.addr, ""))
	assert.EqualValues(t, 0, series("edged_upstream_failures_total", good.addr, ""))
	assert.EqualValues(t, 0, series("edged_upstream_retries_total", good.addr, "other_node"))
	assert.EqualValues(t, 0, series("edged_upstream_ejections_total", good.addr, ""))
	assert.EqualValues(t, 1, series("edged_upstream_node_healthy", good.addr, ""))
	assert.Positive(t, series("edged_upstream_connections_total", good.addr, ""))
}

// A node that breaks the connection in the middle of a replayable
// request's body: the retry sends the other node the whole body, which
// edged kept. The client sends it in two parts; no node gets any of it
// before the whole has come (bodyWaitMax), where the first node used to
// get the first part, and cut, before the client sent the rest.
func TestRetryResendsAPartlySentBody(t *testing.T) {
	testCertDir(t)
	cuts := make(chan struct{}, 4)
	cutter, _ := loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.ReadFull(req.Body, make([]byte, 1024))
		}
		_ = c.(*net.TCPConn).SetLinger(0) // a reset: edged's next write fails
		c.Close()
		cuts <- struct{}{}
	})
	good := startRawNode(t, func(int) bool { return true })
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + firstThenOther(cutter, good.addr),
	})
	c := te.client("test.acme.com", nil)
	whole := pattern(replayMax - 100)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			path := fmt.Sprintf("/cut-%v", chunked)
			pr, pw := io.Pipe()
			early := make(chan int, 1)
			go func() {
				half := len(whole) / 2
				if _, err := io.WriteString(pw, whole[:half]); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
				early <- len(cuts)
				_, _ = io.WriteString(pw, whole[half:])
				pw.Close()
			}()
			req := mustReq(t, "PUT", "https://test.acme.com/p"+path, pr)
			if !chunked {
				req.ContentLength = int64(len(whole))
			}
			resp, body := do(t, c, req)
			require.Equal(t, 200, resp.StatusCode, body)
			assert.Zero(t, <-early, "the first node cut before the body was whole")
			select {
			case <-cuts:
			case <-time.After(5 * time.Second):
				t.Fatal("the first node never cut")
			}
			line := "PUT " + path
			assert.Equal(t, 1, good.count(line), "retried on the other node")
			got := good.body(line)
			assert.Equal(t, len(whole), len(got))
			assert.True(t, got == whole, "the whole body, in order")
		})
	}
}

// A 503 kept while another node was tried, then sent because that node
// failed (refused the connection, or timed out): the access line names
// the node whose answer the client got, not the last one tried.
func TestAccessLogNamesTheNodeWhoseAnswerWasSent(t *testing.T) {
	testCertDir(t)
	busy := countingBackend(t, 503, "busy")
	refused := loopback.Refused(t)
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + firstThenOther(busy.addr, refused),
	})
	c := te.client("test.acme.com", nil)
	resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/p/x", nil))
	require.Equal(t, 503, resp.StatusCode, body)
	require.Contains(t, body, "busy GET", "the busy node's own answer")
	require.Equal(t, 1, busy.count("GET"), "the busy node first (weight 100), then the other")

	lines := accessLinesAtShutdown(t, te, access, 1)
	assert.EqualValues(t, 503, lines[0]["status"])
	assert.Equal(t, busy.addr, lines[0]["upstream_node"], "the node that answered 503, not %s that refused the connection", refused)
}
