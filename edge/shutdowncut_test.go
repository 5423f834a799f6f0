package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The requests that shutting down cuts, once its drain (ctx) has ended,
// are edged's cut, not their clients' leaving: a request still waiting
// for its node's answer is logged 503 upstream.unavailable (as at the end
// of a reload's drain), never 499, and a stream cut in the middle keeps
// the status its client got. Over HTTP/1.1 and HTTP/2.
func TestRequestsCutAtShutdownAreNotLoggedAsClientGone(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			testCertDir(t)
			arrived := make(chan struct{}, 2)
			hung := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/stream" {
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: 1\n\n")
					w.(http.Flusher).Flush()
				}
				arrived <- struct{}{}
				select { // then silence
				case <-r.Context().Done():
				case <-time.After(30 * time.Second):
				}
			}))
			access := filepath.Join(t.TempDir(), "access.log")
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), ""),
				"env.toml": fmt.Sprintf("[[environment]]\nname = \"test\"\n[environment.rules.access_log]\npath = %q\n", access) +
					groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "hung", "/", hung.addr),
			})
			c := te.client("test.acme.com", nil)
			if proto == "h2" {
				c = te.h2client(nil)
			}
			c.Timeout = 0
			waiting := getAsync(c, "https://test.acme.com/wait")
			resp, err := c.Get("https://test.acme.com/stream")
			require.NoError(t, err)
			defer resp.Body.Close()
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "data: 1\n", line)
			for range 2 {
				select {
				case <-arrived:
				case <-time.After(5 * time.Second):
					t.Fatal("the requests did not reach the backend")
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)
			select {
			case <-waiting:
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting request did not end with the shutdown")
			}

			status, fault := map[string]float64{}, map[string]any{}
			for _, l := range readJSONLines(t, access) {
				status[l["uri"].(string)] = l["status"].(float64)
				fault[l["uri"].(string)] = l["fault"]
			}
			assert.Equal(t, map[string]float64{"/wait": 503, "/stream": 200}, status, "edged's cut, not the clients' leaving (499)")
			assert.Equal(t, "upstream.unavailable", fault["/wait"])
		})
	}
}

// A request still waiting for its body (announced, not sent: it holds no
// worker, awaitBody) when shutting down closes its connection, its drain
// over, is edged's cut too: logged 503 upstream.unavailable, not 400
// request.invalid, a client's fault, when its client still had
// read_timeout (60 s) to send the body. Over HTTP/1.1 and HTTP/2.
func TestBodyWaitCutAtShutdownIsNotTheClientsFault(t *testing.T) {
	te, access := flowEdgeLogged(t, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("POST", "test.acme.com", "/up/h2", "content-length", "10")...)
	c, _ := dialH1(t, te)
	_, err := io.WriteString(c, "POST /up/h1 HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 10\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return te.srv.Snapshot().envs["test"].inflight.Load() == 2 }, 5*time.Second, 10*time.Millisecond, "both requests wait for their bodies")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)

	status, fault := map[string]float64{}, map[string]any{}
	for _, l := range readJSONLines(t, access) {
		status[l["uri"].(string)] = l["status"].(float64)
		fault[l["uri"].(string)] = l["fault"]
	}
	assert.Equal(t, map[string]float64{"/up/h1": 503, "/up/h2": 503}, status, "edged's cut, not the client's fault (400)")
	assert.Equal(t, map[string]any{"/up/h1": "upstream.unavailable", "/up/h2": "upstream.unavailable"}, fault)
}

// Shutting down, once its drain is over, ends the requests still waiting
// for their bodies as it ends those waiting for their nodes: each is
// answered 503 upstream.unavailable with Retry-After while its connection
// is still open, and the shutdown does not wait out shutdownCutWait for
// them. The cut used to leave them waiting: the shutdown waited its whole
// second, then closed their connections, and their clients got no answer
// (an HTTP/1.1 connection closed, an HTTP/2 stream never answered).
func TestBodyWaitCutAtShutdownIsAnswered(t *testing.T) {
	testCertDir(t)
	back := startBackend(t, flowBackend(nil))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 4\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/up", back.addr),
	})
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, false, h2get("POST", "test.acme.com", "/up/h2", "content-length", "10")...)
	g.data(1, false, []byte("abc"))
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "POST /up/h1 HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 10\r\n\r\nabc")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return te.srv.Snapshot().envs["test"].inflight.Load() == 2 }, 5*time.Second, 10*time.Millisecond, "both requests wait for their bodies")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)
	t.Logf("Shutdown took %s (drain 300ms, then the cut)", time.Since(start))

	assertCutAnswered(t, c, br, g)
}

// assertCutAnswered checks that the shutdown's cut answered the request
// waiting on c (HTTP/1.1, read through br) and g's stream 1 (HTTP/2): 503
// upstream.unavailable with Retry-After: 1, while their connections were
// still open.
func assertCutAnswered(t *testing.T, c net.Conn, br *bufio.Reader, g *h2async) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	if resp, err := http.ReadResponse(br, nil); assert.NoError(t, err, "HTTP/1.1: an answer before the connection closed") {
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Contains(t, string(body), `"upstream.unavailable"`)
	}
	s := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusServiceUnavailable, s.status, "HTTP/2: an answer before the connection closed: %v", s)
	assert.Equal(t, "1", s.field("retry-after"))
}

// Shutting down, once its drain is over, ends the requests its
// environments hold before their 503 (the queue full, reject_delay a
// minute here) as it ends those waiting for their nodes or bodies: each
// is answered 503 upstream.unavailable with Retry-After while its
// connection is still open, over HTTP/1.1 (the hold waited out on the
// connection's own read) and HTTP/2 (on a timer). The cut used to leave
// them held: the shutdown waited its whole second, then closed their
// connections, and their clients got no answer, while the access log said
// 503.
func TestHeldRequestsCutAtShutdownAreAnswered(t *testing.T) {
	testCertDir(t)
	hung, _ := blockingBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 1\nqueue = 0\nreject_delay = \"1m\"\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "api", "/", hung.addr),
	})
	env := te.srv.Snapshot().Env("test")
	c := te.client("test.acme.com", nil)
	c.Timeout = 0
	busy := getAsync(c, "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return env.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
	hc, hbr := dialH1(t, te)
	_, err := io.WriteString(hc, "GET /held/h1 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	g.headers(1, true, h2get("GET", "test.acme.com", "/held/h2")...)
	require.Eventually(t, func() bool { return env.pool.Stats().Held == 2 }, 5*time.Second, 5*time.Millisecond, "both requests are held")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)
	a := <-busy
	require.NoError(t, a.err)
	require.Equal(t, http.StatusServiceUnavailable, a.status, "the request on the hung node is cut")

	assertCutAnswered(t, hc, hbr, g)
	st := env.pool.Stats()
	assert.Zero(t, st.Held, "nothing is left held")
	assert.Zero(t, st.Rejected, "cut, not refused as overloaded")
}

// TestHeldRequestBehindAFullBufferIsWatched: an HTTP/1.1 request held
// before its 503 waits out its hold on its connection's own read. When its
// client has pipelined more than the read buffer (4 KiB) holds, nothing is
// left to read into, and the hold used to sleep to its end (reject_delay,
// a minute here, plus up to a quarter): a client that left stayed held
// all that time, and the shutdown's cut did not end the hold, so that the
// client got no answer before its connection closed. The poller still
// tells both: the client's hangup (peerHungUp) and the read deadline, the
// hold's end or the cut's.
func TestHeldRequestBehindAFullBufferIsWatched(t *testing.T) {
	if !canWatchHangup {
		t.Skip("the hangup watch is Linux's")
	}
	testCertDir(t)
	hung, _ := blockingBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 1\nqueue = 0\nreject_delay = \"1m\"\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "api", "/", hung.addr),
	})
	env := te.srv.Snapshot().Env("test")
	c := te.client("test.acme.com", nil)
	c.Timeout = 0
	busy := getAsync(c, "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return env.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
	// About 8 KiB of requests behind the held one: more than the buffer.
	pipelined := strings.Repeat("GET /next HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", 200)

	lc, _ := dialH1(t, te)
	_, err := io.WriteString(lc, "GET /held/leaves HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"+pipelined)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return env.pool.Stats().Held == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, lc.Close())
	require.Eventually(t, func() bool { return env.pool.Stats().Held == 0 }, 5*time.Second, 5*time.Millisecond,
		"a held client that left, its pipelined requests filling the buffer, is still held")
	assert.Zero(t, env.pool.Stats().Rejected, "a client that left was not rejected")

	hc, hbr := dialH1(t, te)
	_, err = io.WriteString(hc, "GET /held/stays HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"+pipelined)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return env.pool.Stats().Held == 1 }, 5*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)
	a := <-busy
	require.NoError(t, a.err)
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.NoError(t, hc.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(hbr, nil)
	require.NoError(t, err, "HTTP/1.1: an answer before the connection closed")
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), `"upstream.unavailable"`)
	assert.Zero(t, env.pool.Stats().Held, "nothing is left held")
}
