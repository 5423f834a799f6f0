package edge

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// routedCount counts the requests te routes to a proxy (testHookRouted).
func routedCount(te *testEdge) *atomic.Int64 {
	n := new(atomic.Int64)
	hook := func() { n.Add(1) }
	te.srv.testHookRouted.Store(&hook)
	return n
}

// bodiesHalfSent sends two PUTs of a 3000-byte body, over HTTP/1.1 and
// HTTP/2, with their first 1000 bytes, and waits until both are routed
// (routed, routedCount's) and wait for the rest. finish sends the rest
// and checks that each is answered 200 with its body whole.
func bodiesHalfSent(t *testing.T, te *testEdge, routed *atomic.Int64) (finish func()) {
	body := pattern(3000)
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "PUT /h1 HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 3000\r\n\r\n"+body[:1000])
	require.NoError(t, err)
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("PUT", "test.acme.com", "/h2", "content-length", "3000")...)
	g.data(1, false, []byte(body[:1000]))
	require.Eventually(t, func() bool { return routed.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	return func() {
		_, err := io.WriteString(c, body[1000:])
		require.NoError(t, err)
		g.data(1, true, []byte(body[1000:]))
		resp, got := readResp(t, br, "PUT")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, sumOf(body), got)
		s := g.result(1, 5*time.Second)
		assert.Equal(t, http.StatusOK, s.status)
		assert.Equal(t, sumOf(body), string(s.body))
	}
}

// replaceTestEnv reloads environment "test" changed (3 workers, a queue
// of 4), forwarding everything to addr: a new instance replaces it.
func replaceTestEnv(t *testing.T, te *testEdge, addr string) {
	writeFiles(t, te.dir, map[string]string{"env.toml": "[[environment]]\nname = \"test\"\nworkers = 3\nqueue = 4\nqueue_timeout = \"10s\"\n" +
		groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", addr)})
	te.reload()
}

// A request that announces a body and sends none must not hold a worker
// of its environment: it takes one once its body has come (whole, or
// bodyWaitMax of it). Four such requests used to hold all four workers of
// the environment until read_timeout (60 s), and every other client got
// 503; over HTTP/2 one connection could open h2_max_concurrent_streams
// of them (250).
func TestUnsentBodyHoldsNoWorker(t *testing.T) {
	const workers = 4
	for _, proto := range []string{"HTTP/2", "HTTP/1.1"} {
		t.Run(proto, func(t *testing.T) {
			te := stallEdge(t, workers, "")
			routed := routedCount(te)
			var finish []func() (int, string)
			if proto == "HTTP/2" {
				g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
				g.waitSettings()
				for i := 0; i < workers; i++ {
					id := uint32(1 + 2*i)
					g.headers(id, false, h2get("POST", "test.acme.com", "/up/echo", "content-length", "10")...)
					finish = append(finish, func() (int, string) {
						g.data(id, true, []byte("0123456789"))
						s := g.result(id, 5*time.Second)
						return s.status, string(s.body)
					})
				}
			} else {
				for i := 0; i < workers; i++ {
					c, br := dialH1(t, te)
					_, err := io.WriteString(c, "POST /up/echo HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 10\r\n\r\n")
					require.NoError(t, err)
					finish = append(finish, func() (int, string) {
						_, err := io.WriteString(c, "0123456789")
						require.NoError(t, err)
						resp, body := readResp(t, br, "POST")
						return resp.StatusCode, body
					})
				}
			}
			require.Eventually(t, func() bool { return routed.Load() == workers }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(50 * time.Millisecond) // past routing, each is in its pool or waits for its body

			other := te.client("test.acme.com", nil)
			statuses := map[int]int{}
			for i := 0; i < 8; i++ {
				resp, err := other.Get("https://test.acme.com/up/big?n=10")
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[resp.StatusCode]++
			}
			t.Logf("%s: another client's 8 requests while %d requests wait for their bodies: %v", proto, workers, statuses)
			assert.Equal(t, map[int]int{http.StatusOK: 8}, statuses, "requests waiting for their bodies hold no worker")
			assert.Zero(t, te.srv.Snapshot().envs["test"].pool.Stats().HeldTotal, "nor was any request held for want of one")

			// Their bodies, once sent, reach the node whole.
			for i, f := range finish {
				status, body := f()
				assert.Equal(t, http.StatusOK, status, "request %d", i)
				assert.Equal(t, "0123456789", body, "request %d", i)
			}
		})
	}
}

// bodyNode is a node that records the requests it gets: connections,
// requests, and the sum of each body; firstRead is told the bytes of a
// body once bodyNode has read mark of them (0: never).
type bodyNode struct {
	*backend
	requests  atomic.Int64
	sums      chan string
	firstRead chan int
}

func startBodyNode(t *testing.T, mark int) *bodyNode {
	n := &bodyNode{sums: make(chan string, 16), firstRead: make(chan int, 16)}
	n.backend = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.requests.Add(1)
		h := sha256.New()
		got := 0
		buf := make([]byte, 4096)
		told := false
		for {
			k, err := r.Body.Read(buf)
			h.Write(buf[:k])
			got += k
			if mark > 0 && !told && got >= mark {
				told = true
				n.firstRead <- got
			}
			if err != nil {
				break
			}
		}
		sum := fmt.Sprintf("%d:%s", got, hex.EncodeToString(h.Sum(nil)))
		n.sums <- sum
		io.WriteString(w, sum)
	}))
	return n
}

func sumOf(b string) string {
	h := sha256.Sum256([]byte(b))
	return fmt.Sprintf("%d:%s", len(b), hex.EncodeToString(h[:]))
}

// bodyEdge is an edge whose one environment (workers, no queue) has its
// proxy "/" on node, with extra [server] settings and an access log.
func bodyEdge(t *testing.T, node *backend, workers int, serverExtra, envExtra string) (*testEdge, string) {
	testCertDir(t)
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), serverExtra),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = " + strconv.Itoa(workers) + "\nqueue = 4\nqueue_timeout = \"10s\"\n" + envExtra +
			"[environment.rules.access_log]\npath = \"" + filepath.ToSlash(access) + "\"\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", node.addr),
	})
	return te, access
}

// A body that comes slowly, within read_timeout, reaches the node whole,
// and its request takes a worker (and a node connection) only once it has
// come: while its first bytes wait for the rest, the pool has nothing in
// flight and the node no connection.
func TestSlowBodyReachesTheNodeWhole(t *testing.T) {
	node := startBodyNode(t, 0)
	te, _ := bodyEdge(t, node.backend, 2, "", "")
	pool := te.srv.Snapshot().envs["test"].pool
	routed := routedCount(te)
	body := pattern(3000)

	// HTTP/1.1, in three parts.
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "PUT /slow HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 3000\r\n\r\n"+body[:1000])
	require.NoError(t, err)
	require.Eventually(t, func() bool { return routed.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	for _, part := range []string{body[1000:2000], body[2000:]} {
		time.Sleep(100 * time.Millisecond)
		assert.Zero(t, pool.Stats().InFlight, "a worker taken before the body came")
		assert.Zero(t, node.conns.load(), "the node dialled before the body came")
		_, err = io.WriteString(c, part)
		require.NoError(t, err)
	}
	resp, got := readResp(t, br, "PUT")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, sumOf(body), got)

	// HTTP/2, in three DATA frames, no content-length (its end is the
	// stream's).
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("POST", "test.acme.com", "/slow")...)
	require.Eventually(t, func() bool { return routed.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	requests := node.requests.Load()
	for i, part := range []string{body[:1000], body[1000:2000], body[2000:]} {
		g.data(1, i == 2, []byte(part))
		if i < 2 {
			time.Sleep(100 * time.Millisecond)
			assert.Zero(t, pool.Stats().InFlight, "a worker taken before the body came")
			assert.Equal(t, requests, node.requests.Load(), "the node got the request before its body came")
		}
	}
	s := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status)
	assert.Equal(t, sumOf(body), string(s.body))
}

// A body larger than bodyWaitMax is not held back: the request takes its
// worker with the first bodyWaitMax bytes, and the node reads them before
// the client has sent the rest, over both protocols.
func TestLargeBodyStillStreams(t *testing.T) {
	const size = 4 * bodyWaitMax
	node := startBodyNode(t, bodyWaitMax)
	te, _ := bodyEdge(t, node.backend, 2, "", "")
	body := pattern(size)
	half := size / 2

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "PUT /big HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"+body[:half])
	require.NoError(t, err)
	select {
	case n := <-node.firstRead:
		assert.LessOrEqual(t, n, half)
	case <-time.After(5 * time.Second):
		t.Fatal("HTTP/1.1: the node read nothing of a body whose client is not done")
	}
	_, err = io.WriteString(c, body[half:])
	require.NoError(t, err)
	resp, got := readResp(t, br, "PUT")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, sumOf(body), got)

	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("PUT", "test.acme.com", "/big", "content-length", strconv.Itoa(size))...)
	g.send(1, []byte(body[:half]), false, 5*time.Second) // its window opens once it has its worker
	select {
	case n := <-node.firstRead:
		assert.LessOrEqual(t, n, half)
	case <-time.After(5 * time.Second):
		t.Fatal("HTTP/2: the node read nothing of a body whose client is not done")
	}
	g.send(1, []byte(body[half:]), true, 5*time.Second)
	s := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status)
	assert.Equal(t, sumOf(body), string(s.body))
}

// A body that does not come within read_timeout is the client's fault:
// 400 request.invalid "the request body did not arrive within
// read_timeout", logged so, and the request never took a worker nor
// reached the node (it used to take both, for the whole read_timeout).
func TestBodyWaitTimesOut(t *testing.T) {
	node := startBodyNode(t, 0)
	te, access := bodyEdge(t, node.backend, 2, `read_timeout = "300ms"`, "")
	pool := te.srv.Snapshot().envs["test"].pool

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "POST /h1 HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 10\r\n\r\nabc")
	require.NoError(t, err)
	resp, got := readResp(t, br, "POST")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, got, `"request.invalid"`)
	assert.Contains(t, got, "the request body did not arrive within read_timeout")
	assert.True(t, isClosed(t, c, br, 2*time.Second), "the connection closes after a failed body")

	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("POST", "test.acme.com", "/h2", "content-length", "10")...)
	g.data(1, false, []byte("abc"))
	s := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusBadRequest, s.status)
	assert.Contains(t, string(s.body), `"request.invalid"`)
	assert.Contains(t, string(s.body), "the request body did not arrive within read_timeout")

	assert.Zero(t, pool.Stats().Admitted, "no worker was taken")
	assert.Zero(t, node.conns.load(), "the node was never dialled")

	lines := accessLinesAtShutdown(t, te, access, 2)
	for i, uri := range []string{"/h1", "/h2"} {
		assert.Equal(t, uri, lines[i]["uri"])
		assert.EqualValues(t, http.StatusBadRequest, lines[i]["status"], uri)
		assert.Equal(t, "request.invalid", lines[i]["fault"], uri)
		assert.EqualValues(t, 3, lines[i]["bytes_in"], uri)
		assert.Nil(t, lines[i]["upstream_node"], uri)
	}
}

// Expect: 100-continue: edged sends the 100 itself when it waits for the
// body, before the request has a worker (a request queued behind a busy
// pool gets it at once, and its body is read while it waits); a body over
// max_body_bytes still gets its 413 without a 100.
func TestExpectContinueBeforeTheWorker(t *testing.T) {
	testCertDir(t)
	slow, open, counts := countingBlockingBackend(t)
	te, _ := bodyEdge(t, slow, 1, "", "max_body_bytes = 100\n")
	pool := te.srv.Snapshot().envs["test"].pool
	busy := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "POST /h1 HTTP/1.1\r\nHost: test.acme.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	require.NoError(t, err)
	line, err := br.ReadString('\n')
	require.NoError(t, err, "a 100 Continue while every worker is busy")
	assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
	_, _ = br.ReadString('\n')
	_, err = io.WriteString(c, "hello")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond)

	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("POST", "test.acme.com", "/h2", "expect", "100-continue", "content-length", "5")...)
	g.wait(5*time.Second, "a 100 Continue while every worker is busy", func() bool { return len(g.stream(1).interim) > 0 })
	g.data(1, true, []byte("hello"))
	require.Eventually(t, func() bool { return pool.Stats().Queued == 2 }, 5*time.Second, 5*time.Millisecond)

	// Too large: 413 and no 100, over both.
	c2, br2 := dialH1(t, te)
	_, err = io.WriteString(c2, "POST /big HTTP/1.1\r\nHost: test.acme.com\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br2, "POST")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "the final answer, without a 100")
	g.headers(3, false, h2get("POST", "test.acme.com", "/big", "expect", "100-continue", "content-length", "1000")...)
	s := g.result(3, 5*time.Second)
	assert.Equal(t, http.StatusRequestEntityTooLarge, s.status)
	assert.Empty(t, s.interim, "no 100 before a 413")

	open()
	assert.Equal(t, http.StatusOK, (<-busy).status)
	resp, got := readResp(t, br, "POST")
	assert.Equal(t, http.StatusOK, resp.StatusCode, got)
	s = g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status)
	assert.EqualValues(t, 10, counts.bodyBytes.Load(), "both bodies reached the node")
}

// A reload that replaces the environment while a request's body comes:
// the request is routed again on the new snapshot once its body has
// come (the old environment may be closing), with what came of its body
// kept, and the node gets the body whole, over both protocols.
func TestBodyThatComesAcrossAReloadIsRoutedAgain(t *testing.T) {
	node := startBodyNode(t, 0)
	te, _ := bodyEdge(t, node.backend, 2, "", "")
	routed := routedCount(te)
	old := te.srv.Snapshot().envs["test"]
	finish := bodiesHalfSent(t, te, routed)

	replaceTestEnv(t, te, node.addr)
	fresh := te.srv.Snapshot().envs["test"]
	require.NotSame(t, old, fresh, "the environment was replaced")

	finish()
	assert.Zero(t, old.pool.Stats().Admitted, "the replaced environment admitted neither")
	assert.EqualValues(t, 2, fresh.pool.Stats().Admitted, "the new one both")
	assert.EqualValues(t, 4, routed.Load(), "each routed twice")
}

// A request queued with its body read, whose environment a reload
// replaces: routed again, it takes the body it had read along, and the
// node gets it whole.
func TestQueuedBodyIsRoutedAgainWhole(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	node := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			<-release
			return
		}
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, sumOf(string(b)))
	}))
	te, _ := bodyEdge(t, node, 1, "", "")
	old := te.srv.Snapshot().envs["test"]
	go func() { _, _ = te.client("test.acme.com", nil).Get("https://test.acme.com/busy") }()
	require.Eventually(t, func() bool { return old.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	body := pattern(3000)
	queued := doAsync(te.client("test.acme.com", nil), mustReq(t, "PUT", "https://test.acme.com/h1", strings.NewReader(body)))
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("PUT", "test.acme.com", "/h2", "content-length", "3000")...)
	g.data(1, true, []byte(body))
	require.Eventually(t, func() bool { return old.pool.Stats().Queued == 2 }, 5*time.Second, 5*time.Millisecond)

	replaceTestEnv(t, te, node.addr)
	fresh := te.srv.Snapshot().envs["test"]
	require.NotSame(t, old, fresh, "the environment was replaced")

	a := <-queued
	require.NoError(t, a.err)
	assert.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, sumOf(body), a.body)
	s := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status)
	assert.Equal(t, sumOf(body), string(s.body))
	assert.EqualValues(t, 2, fresh.pool.Stats().Admitted, "both served by the new environment")
}

// What HTTP/2 streams waiting for their bodies read ahead is bounded per
// connection (h2ReadAheadPerConn), not per stream only: one connection
// opening h2_max_concurrent_streams (250) uploads of 1 MiB and sending
// 60 KiB of each, never the rest, made edged hold 60 KiB of each stream
// (the client's window given back as it was read ahead), with every
// stream waiting. Past the bound a stream reads no more ahead and takes a
// worker with what it has, its body streamed to the node as it comes, as
// a body larger than bodyWaitMax: here 4 workers, no queue, and the rest
// are answered 503.
func TestH2BodyReadAheadIsBoundedPerConnection(t *testing.T) {
	const streams, part = 250, 60 << 10
	testCertDir(t)
	node := startBodyNode(t, 0)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 4\nqueue = 0\nreject_delay = \"0s\"\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", node.addr),
	})
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	chunk := []byte(pattern(part))

	base := guardLiveHeap()
	stopHeap := guardHeapSampler(50 * time.Millisecond)
	sent := 0
	for i := 0; i < streams; i++ {
		id := uint32(1 + 2*i)
		g.headers(id, false, h2get("POST", "test.acme.com", "/up", "content-length", strconv.Itoa(1<<20))...)
		sent += g.send(id, chunk, false, 10*time.Second)
	}
	g.ping("synced")
	time.Sleep(200 * time.Millisecond) // the handlers read what came
	peak := stopHeap()
	g.drain()
	refused, waiting := 0, 0
	for i := 0; i < streams; i++ {
		switch g.stream(uint32(1 + 2*i)).status {
		case http.StatusServiceUnavailable:
			refused++
		case 0:
			waiting++
		}
	}
	t.Logf("%d streams, %d body bytes sent (%d answered 503, %d unanswered); live heap %d before, peak %d (%+d)", streams, sent, refused, waiting, base, peak, peak-base)
	// 35 MiB before the bound; 4 to 7 MiB with it, the 250 handlers, their
	// 503s and the connection's buffers beside the 1 MiB read ahead.
	limit := int64(12 << 20)
	if raceEnabled {
		limit = 16 << 20 // sync.Pool drops some of what is put back
	}
	assert.Less(t, peak-base, limit, "one connection's streams waiting for their bodies hold at most h2ReadAheadPerConn of them")
	assert.GreaterOrEqual(t, waiting, h2ReadAheadPerConn/bodyWaitMax, "the streams within the bound wait for their bodies, or stream them in a worker")
}

// A request waiting for its body in an environment a reload replaced does
// not keep that environment draining: once its body has come it is routed
// on the new snapshot (it never takes the old one's worker, nor logs
// there), so the old environment closes as soon as nothing else is in
// flight. It used to count as in flight: the old environment drained for
// its whole drain_timeout (2 s here), was then cut, which does not end a
// body wait, and waited 5 s plus its response_timeout (30 s) more, its
// upstream pools and health checks running, and "closing with requests in
// flight" logged, for a request it would never serve.
func TestReplacedEnvironmentDoesNotWaitForBodies(t *testing.T) {
	node := startBodyNode(t, 0)
	te, _ := bodyEdge(t, node.backend, 2, "", "")
	routed := routedCount(te)
	old := te.srv.Snapshot().envs["test"]
	finish := bodiesHalfSent(t, te, routed)
	require.Eventually(t, func() bool { return old.inflight.Load() == 2 }, 5*time.Second, 5*time.Millisecond, "both wait for their bodies")

	replaceTestEnv(t, te, node.addr)
	require.NotSame(t, old, te.srv.Snapshot().envs["test"], "the environment was replaced")
	closed := func() bool { return chanClosed(old.closed) }
	assert.Eventually(t, closed, 5*time.Second, 10*time.Millisecond, "the replaced environment closed while the bodies were still coming")
	t.Logf("replaced environment closed: %v, in flight %d", closed(), old.inflight.Load())

	finish()
}

// What requests waiting for their bodies read ahead is bounded across the
// process (readAheadPerProcess), HTTP/1.1 and HTTP/2 connections
// together: each connection's own bound (bodyWaitMax, h2ReadAheadPerConn)
// times max_connections bounds nothing a machine has. Here the bound is
// 16 KiB, and five uploads of 100 KiB (three HTTP/1.1 connections, one
// HTTP/2 connection with two streams) send 12 KiB each and wait: one or
// two fit and wait for the rest of their bodies without a worker, the
// others take a worker with what they have and stream the rest to the
// node. Every body then arrives whole, and the budget is all given back.
func TestBodyReadAheadIsBoundedAcrossTheProcess(t *testing.T) {
	const size, part = 100 << 10, 12 << 10
	node := startBodyNode(t, 0)
	te, _ := bodyEdge(t, node.backend, 8, "", "")
	te.srv.readAhead.max.Store(16 << 10)
	body := pattern(size)
	head := "PUT /h1 HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"

	type h1up struct {
		c  net.Conn
		br *bufio.Reader
	}
	var h1s []h1up
	for i := 0; i < 3; i++ {
		c, br := dialH1(t, te)
		_, err := io.WriteString(c, head+body[:part])
		require.NoError(t, err)
		h1s = append(h1s, h1up{c, br})
	}
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	for _, id := range []uint32{1, 3} {
		g.headers(id, false, h2get("PUT", "test.acme.com", "/h2", "content-length", strconv.Itoa(size))...)
		g.send(id, []byte(body[:part]), false, 5*time.Second)
	}
	// The requests past the bound reach the node with the first part of
	// their bodies; before the bound all five waited, none at the node.
	require.Eventually(t, func() bool { return node.requests.Load() >= 3 }, 5*time.Second, 5*time.Millisecond,
		"requests past the process's read-ahead reach the node; %d did", node.requests.Load())

	for _, u := range h1s {
		_, err := io.WriteString(u.c, body[part:])
		require.NoError(t, err)
	}
	for _, id := range []uint32{1, 3} {
		g.send(id, []byte(body[part:]), true, 5*time.Second)
	}
	for _, u := range h1s {
		resp, got := readResp(t, u.br, "PUT")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, sumOf(body), got)
	}
	for _, id := range []uint32{1, 3} {
		s := g.result(id, 5*time.Second)
		assert.Equal(t, http.StatusOK, s.status)
		assert.Equal(t, sumOf(body), string(s.body))
	}
	assert.EqualValues(t, 5, node.requests.Load())
	assert.Zero(t, te.srv.readAhead.used.Load(), "the read-ahead given back")
}
