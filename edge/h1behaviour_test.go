package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// edgeTo starts an edge whose one proxy "/" forwards to h, with extra
// [server] settings.
func edgeTo(t *testing.T, h http.Handler, extraServer string) *testEdge {
	testCertDir(t)
	back := startBackend(t, h)
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), extraServer),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", back.addr),
	})
}

func dialH1(t *testing.T, te *testEdge) (*tls.Conn, *bufio.Reader) {
	c := dialEdge(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	return c, bufio.NewReader(c)
}

func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, string(b)
}

// isClosed reports whether the server closed c (EOF) rather than
// keeping it open (the read times out).
func isClosed(t *testing.T, c net.Conn, br *bufio.Reader, wait time.Duration) bool {
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	_, err := br.ReadByte()
	var ne net.Error
	return err != nil && !(asNetError(err, &ne) && ne.Timeout())
}

func asNetError(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

func TestH1ExpectContinue(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}), "")

	// The handler reads the body: 100 Continue first, then the answer.
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "POST /x HTTP/1.1\r\nHost: test.acme.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	require.NoError(t, err)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
	line, err = br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "\r\n", line)
	_, err = io.WriteString(c, "hello")
	require.NoError(t, err)
	resp, body := readResp(t, br, "POST")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "got hello", body)
	assert.False(t, isClosed(t, c, br, 200*time.Millisecond), "kept alive")

	// No proxy reads it (host unknown): no 100, the answer, and the
	// connection closes since the body never comes.
	c2, br2 := dialH1(t, te)
	_, err = io.WriteString(c2, "POST /x HTTP/1.1\r\nHost: nowhere.acme.com\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	require.NoError(t, err)
	resp, _ = readResp(t, br2, "POST")
	assert.Equal(t, 404, resp.StatusCode, "the final answer comes without a 100")
	assert.True(t, resp.Close, "Connection: close")
	assert.True(t, isClosed(t, c2, br2, 2*time.Second))
}

func TestH1ResponseFraming(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream": // no length: the backend sends it chunked
			io.WriteString(w, "part1 ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "fixed")
		}
	}), "")
	c, br := dialH1(t, te)
	send := func(s string) {
		_, err := io.WriteString(c, s)
		require.NoError(t, err)
	}

	send("GET /stream HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding, "no length on HTTP/1.1: chunked")
	assert.Equal(t, "part1 part2", body)
	assert.NotEmpty(t, resp.Header.Get("Date"))

	send("HEAD /fixed HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	resp, body = readResp(t, br, "HEAD")
	assert.Equal(t, int64(5), resp.ContentLength, "HEAD keeps the length")
	assert.Empty(t, body)

	send("GET /fixed HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	resp, body = readResp(t, br, "GET")
	assert.Equal(t, int64(5), resp.ContentLength)
	assert.Equal(t, "fixed", body, "the HEAD sent no body: the next answer parses")

	// HTTP/1.0 asking for keep-alive, known length: stays open.
	send("GET /fixed HTTP/1.0\r\nHost: test.acme.com\r\nConnection: keep-alive\r\n\r\n")
	resp, body = readResp(t, br, "GET")
	assert.Equal(t, "keep-alive", resp.Header.Get("Connection"))
	assert.Equal(t, "fixed", body)

	// HTTP/1.0, unknown length: no chunks, the close ends the body.
	send("GET /stream HTTP/1.0\r\nHost: test.acme.com\r\nConnection: keep-alive\r\n\r\n")
	resp, body = readResp(t, br, "GET")
	assert.Empty(t, resp.TransferEncoding)
	assert.Equal(t, int64(-1), resp.ContentLength)
	assert.Equal(t, "part1 part2", body)
	assert.True(t, resp.Close)
}

// TestH1ClientGoneCancelsTheUpstream: a client that closes its connection
// while its request is in flight aborts the upstream request, on a fresh
// connection and on one whose fast answers before left the watch's timer
// pending, to fire while the connection was idle, or while the slow
// request's head was still coming in: a watch must restart a timer that
// fired.
func TestH1ClientGoneCancelsTheUpstream(t *testing.T) {
	var cancelled atomic.Bool
	started := make(chan struct{}, 1)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done(): // edged closed the upstream connection
			cancelled.Store(true)
		case <-time.After(5 * time.Second):
		}
	}), "")
	for _, tc := range []struct {
		name  string
		fast  int  // fast answers before the slow request
		split bool // its head comes in two parts, the pending timer firing between them
	}{
		{"first request", 0, false},
		{"after 5 fast answers", 5, false},
		{"after a fast answer, head in two parts", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cancelled.Store(false)
			c, br := dialH1(t, te)
			for range tc.fast {
				_, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
				require.NoError(t, err)
				resp, _ := readResp(t, br, "GET")
				require.Equal(t, 200, resp.StatusCode)
			}
			head := "GET /wait HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"
			if tc.split {
				// The request's start is read with its first bytes,
				// before the timer of the fast answer fires.
				_, err := io.WriteString(c, head[:20])
				require.NoError(t, err)
				head = head[20:]
			}
			if tc.fast > 0 {
				time.Sleep(3 * h1WatchAfter) // the pending timer fires
			}
			_, err := io.WriteString(c, head)
			require.NoError(t, err)
			<-started
			c.Close()
			assert.Eventually(t, cancelled.Load, 3*time.Second, 10*time.Millisecond, "the client left: the upstream request is aborted")
			pool := te.srv.Snapshot().Env("test").pool
			assert.Eventually(t, func() bool { return pool.Stats().InFlight == 0 }, 3*time.Second, 10*time.Millisecond)
		})
	}
}

func TestH1IdleAndReadTimeouts(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}), `idle_timeout = "300ms"`+"\n"+`read_timeout = "600ms"`)

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode)
	start := time.Now()
	assert.True(t, isClosed(t, c, br, 3*time.Second), "an idle connection is closed")
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "not before idle_timeout")
	assert.Less(t, took, 2*time.Second)

	// A body trickling past read_timeout: the request fails (400) and
	// the connection closes.
	c2, br2 := dialH1(t, te)
	_, err = io.WriteString(c2, "POST /a HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 10\r\n\r\nab")
	require.NoError(t, err)
	resp, body := readResp(t, br2, "POST")
	assert.Equal(t, 400, resp.StatusCode)
	assert.Contains(t, body, "did not arrive within read_timeout")
	assert.NotContains(t, body, "127.0.0.1", "no socket details")
	assert.True(t, isClosed(t, c2, br2, 2*time.Second))
}

// TestH1ReadTimeoutEndsWithTheRequest: read_timeout bounds reading the
// request; once it has arrived whole, the wait for the node is
// response_timeout's, as nginx's client_body_timeout and Envoy's
// request_timeout stop with the request. The client watch kept the
// request's read deadline, so a node answering after read_timeout had
// the connection closed and the request logged 499, the client blamed
// for edged's own timeout: bodiless, with a body read ahead, and with
// one streamed to the node.
func TestH1ReadTimeoutEndsWithTheRequest(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(900 * time.Millisecond): // past read_timeout
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "late %d", n)
	}), `read_timeout = "300ms"`)

	for _, size := range []int{0, 1000, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c, br := dialH1(t, te)
			head := "GET /a HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"
			if size > 0 {
				head = fmt.Sprintf("POST /a HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: %d\r\n\r\n", size)
			}
			_, err := io.WriteString(c, head+strings.Repeat("x", size))
			require.NoError(t, err)
			resp, body := readResp(t, br, "GET")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, fmt.Sprintf("late %d", size), body)
		})
	}
}

// TestH1IdleCountsFromTheAnswer: idle_timeout counts from the end of an
// answer, not from its request's start (the server takes the handler's
// end time instead of reading the clock; a slow answer must not eat the
// wait for the next request), both when the background read watched the
// slow handler and when a fast answer's connection reads the next
// request itself.
func TestH1IdleCountsFromTheAnswer(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(450 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}), `idle_timeout = "300ms"`)
	c, br := dialH1(t, te)
	for _, path := range []string{"/slow", "/slow", "/fast", "/slow"} {
		_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		require.Equal(t, 200, resp.StatusCode, path)
		require.Equal(t, "ok", body)
		// Idle for a while, within idle_timeout of the answer but past
		// it counted from the request's start.
		time.Sleep(150 * time.Millisecond)
	}
	start := time.Now()
	assert.True(t, isClosed(t, c, br, 3*time.Second), "an idle connection is still closed")
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "not before idle_timeout")
}

// TestH1IdleCountsFromTheWait: after an early answer (413 from the
// Content-Length) the server still drops the body the client sends;
// idle_timeout counts from the end of that, not from the answer, or a
// keep-alive connection whose client sends its body slowly would be closed
// before its next request.
func TestH1IdleCountsFromTheWait(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), "idle_timeout = \"300ms\"\nread_timeout = \"5s\"\nmax_body_bytes = 100")
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "POST")
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	time.Sleep(500 * time.Millisecond) // longer than idle_timeout
	_, err = io.WriteString(c, strings.Repeat("x", 1000))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	_, err = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "ok", body)
}

// TestH1ProxiedResponseHeader: a node's answer's fields, which edged's
// HTTP/1.1 server writes from the node's header itself when the head can
// go at once (its length known, or no body) and copies otherwise: the
// end-to-end fields kept, once each; hop-by-hop fields and those the
// node's Connection names dropped; edged's X-Request-Id in place of the
// node's; the node's Date kept, not doubled.
func TestH1ProxiedResponseHeader(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Request-Id"] = []string{"from-the-node"}
		h["Connection"] = []string{"X-Secret"}
		h["X-Secret"] = []string{"1"}
		h["Keep-Alive"] = []string{"timeout=5"}
		h["Proxy-Authenticate"] = []string{"Basic"}
		h["Date"] = []string{"Mon, 02 Jan 2006 15:04:05 GMT"}
		h["X-Kept"] = []string{"a", "b"}
		switch r.URL.Path {
		case "/length":
			h["Content-Length"] = []string{"2"}
			io.WriteString(w, "ok")
		case "/close": // the node closes; the field still names X-Secret
			h["Connection"] = []string{"close, X-Secret"}
			h["Content-Length"] = []string{"2"}
			io.WriteString(w, "ok")
		case "/nobody":
			w.WriteHeader(http.StatusNoContent)
		case "/stream": // no length: chunked to edged, and on to the client
			io.WriteString(w, "o")
			w.(http.Flusher).Flush()
			io.WriteString(w, "k")
		}
	}), "")
	c, br := dialH1(t, te)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/length", 200, "ok"},
		{"HEAD", "/length", 200, ""},
		{"GET", "/nobody", 204, ""},
		{"GET", "/close", 200, "ok"},
		{"GET", "/stream", 200, "ok"},
		{"HEAD", "/stream", 200, ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			_, err := io.WriteString(c, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
			require.NoError(t, err)
			resp, body := readResp(t, br, tc.method)
			require.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, body)
			h := resp.Header
			assert.Equal(t, []string{"a", "b"}, h["X-Kept"])
			assert.Equal(t, []string{"Mon, 02 Jan 2006 15:04:05 GMT"}, h["Date"], "the node's Date, once")
			require.Len(t, h["X-Request-Id"], 1)
			assert.Len(t, h["X-Request-Id"][0], 32, "edged's id, not the node's")
			for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate", "Connection"} {
				assert.Empty(t, h[k], k)
			}
			if tc.path == "/length" {
				assert.Equal(t, []string{"2"}, h["Content-Length"])
			}
		})
	}
}

// TestH1ForwardedForEachConnection: the client's address, split once per
// connection, is each request's own in X-Forwarded-For and Forwarded, on
// connections from two addresses taking turns; the Forwarded value a
// connection keeps for its Host (forwardedCache) follows a Host that
// changes and is not the one made with a client's own Forwarded.
func TestH1ForwardedForEachConnection(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RequestURI+"|"+r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("Forwarded")+"|"+r.Header.Get("X-Forwarded-Host"))
	}), "")
	dial := func(ip string) (*tls.Conn, *bufio.Reader) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		return c, bufio.NewReader(c)
	}
	c1, br1 := dial("127.0.0.1")
	c2, br2 := dial("127.0.0.2")
	for i := range 6 {
		for _, cc := range []struct {
			ip string
			c  *tls.Conn
			br *bufio.Reader
		}{{"127.0.0.1", c1, br1}, {"127.0.0.2", c2, br2}} {
			host, extra := "test.acme.com", ""
			xff, fwd := cc.ip, "for="+cc.ip+";host=test.acme.com;proto=https"
			switch i {
			case 1:
				extra = "X-Forwarded-For: 10.0.0.1\r\n"
				xff = "10.0.0.1, " + xff
			case 2:
				extra = "Forwarded: for=10.0.0.1\r\n"
				fwd = "for=10.0.0.1, " + fwd
			case 4:
				host = "test.acme.com:443"
				fwd = "for=" + cc.ip + `;host="test.acme.com:443";proto=https`
			}
			_, err := io.WriteString(cc.c, "GET /x?q=1 HTTP/1.1\r\nHost: "+host+"\r\n"+extra+"\r\n")
			require.NoError(t, err)
			resp, body := readResp(t, cc.br, "GET")
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "/x?q=1|"+xff+"|"+fwd+"|"+host, body, "request %d from %s", i, cc.ip)
		}
	}
}

func TestH1PlainHTTPOnTheTLSPort(t *testing.T) {
	te, _ := threeGroups(t, "")
	c, err := net.Dial("tcp", te.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, 400, resp.StatusCode)
}

func TestH1ShutdownLetsInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}), "")
	idle, idleBr := dialH1(t, te)
	_, err := io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	readResp(t, idleBr, "GET")

	busy, busyBr := dialH1(t, te)
	_, err = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	<-started

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	assert.True(t, isClosed(t, idle, idleBr, 2*time.Second), "the idle connection is closed at once")
	_, err = tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t)})
	assert.Error(t, err, "no new connections")
	select {
	case <-shut:
		t.Fatal("Shutdown returned while a request was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	require.NoError(t, busy.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, body := readResp(t, busyBr, "GET")
	assert.Equal(t, "done /slow", body, "the in-flight request finishes")
	assert.True(t, resp.Close, "Connection: close")
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// The unit-level behaviours below run the server on a plain listener
// with a handler of their own.

func TestH1ResponseHeadersAreSanitised(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Good"] = []string{"fine"}
		w.Header()["X-Injected"] = []string{"a\r\nSet-Cookie: evil=1"}
		w.Header()["Bad Name"] = []string{"x"}
		w.Header()["X-Lf"] = []string{"a\nb", "kept"}
		io.WriteString(w, "body")
	}), nil)
	out := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	head += "\r\n"
	assert.Contains(t, head, "\r\nX-Good: fine\r\n")
	assert.NotContains(t, out, "evil")
	assert.NotContains(t, head, "Bad Name")
	assert.Contains(t, head, "\r\nX-Lf: kept\r\n")
	assert.NotContains(t, head, "a\nb")
	assert.Contains(t, head, "\r\nContent-Length: 4\r\n", "a small body of unknown length gets its length")
	assert.Contains(t, head, "\r\nConnection: close\r\n")
	assert.Equal(t, "body", body)
}

func TestH1AbortHandlerCutsTheConnection(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 3000)) // past the held-back size: chunked, sent
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), nil)
	resp, err := http.Get("http://" + addr + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	assert.Error(t, err, "a cut body never looks complete")
	assert.Equal(t, 3000, len(b))
}

func TestH1HijackKeepsPipelinedBytes(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // the client's early bytes arrive meanwhile
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\n\r\n")
		b := make([]byte, 5)
		if _, err := io.ReadFull(readerWithBuffered(brw.Reader, conn), b); err == nil {
			conn.Write(b)
		}
	}), nil)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nearly")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, 101, resp.StatusCode)
	b := make([]byte, 5)
	_, err = io.ReadFull(br, b)
	require.NoError(t, err)
	assert.Equal(t, "early", string(b), "bytes sent with the upgrade request reach the hijacker")
}

func TestH1InformationalResponses(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	}), nil)
	var got []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got = append(got, code); return nil }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, []int{103}, got)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "final", string(b))
}

func TestH1LargeResponseIsChunkedAndPipelinedInOrder(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path+strings.Repeat(".", 5000))
	}), nil)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for _, p := range []string{"/1", "/2", "/3"} {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
		assert.Equal(t, p+strings.Repeat(".", 5000), string(b))
	}
}

func TestH1WriteTimeoutFreesTheWorker(t *testing.T) {
	chunk := make([]byte, 32<<10)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(2048*len(chunk)))
		for i := 0; i < 2048; i++ { // 64 MiB: more than the sockets hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}), `write_timeout = "300ms"`)
	c, _ := dialH1(t, te)
	_, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	pool := te.srv.Snapshot().Env("test").pool
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 3*time.Second, time.Millisecond)
	start := time.Now()
	// The client reads nothing: the answer cannot be written in time.
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(start), 3*time.Second, "about write_timeout")
}

func TestH1ShutdownWaitsForHTTP2Streams(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "done")
	}), "")
	done := getAsync(te.h2client(nil), "https://test.acme.com/slow")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	select {
	case <-shut:
		t.Fatal("Shutdown returned while an HTTP/2 stream was in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	a := <-done
	require.NoError(t, a.err)
	assert.Equal(t, "done", a.body)
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// TestH1WriteTimeoutCountsFromTheHead: write_timeout is the answer's time
// from the parsed head, however slowly the head came (within
// read_header_timeout): a head that took 500 ms still leaves the 300 ms
// answer its 600 ms.
func TestH1WriteTimeoutCountsFromTheHead(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "ok")
	}), func(s *h1Server) { s.writeTimeout = 600 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET /slow-head HTTP/1.1\r\n")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	_, err = io.WriteString(c, "Host: a\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "the answer was cut by a deadline counted from the head's first bytes")
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(b))
}

// TestH1TooLargeUploadSeesItsAnswer: a client still sending a body edged
// will not read (413 from its Content-Length) gets the answer, not a
// connection reset: the connection is half-closed and what the client
// sends meanwhile is dropped for a moment before it closes, as net/http
// and nginx (lingering close) do. Closing at once with the body's bytes
// unread made the kernel reset the connection, and a Go client, still
// writing, reported "connection reset by peer" instead of the 413.
func TestH1TooLargeUploadSeesItsAnswer(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), "max_body_bytes = 100")
	cl := te.client("test.acme.com", nil)
	body := strings.Repeat("x", 8<<20)
	for i := range 10 {
		resp, err := cl.Post("https://test.acme.com/up", "application/octet-stream", strings.NewReader(body))
		require.NoError(t, err, "upload %d", i)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	}
}

// TestH1UnreadChunkedBodyEndsWithoutReset: an answer that leaves a
// chunked body unread closes the connection (its rest cannot be skipped
// safely), with a FIN after the answer, not a reset.
func TestH1UnreadChunkedBodyEndsWithoutReset(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // the first chunk arrives meanwhile, unread
		w.WriteHeader(http.StatusNotFound)
	}), nil)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond)
	_, err = io.WriteString(c, "5\r\nhello\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.True(t, resp.Close)
	_, err = br.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "a FIN after the answer, not a reset")
}

// TestH1StreamDeadlineDoesNotOutliveItsAnswer: with write_timeout "0s"
// at start and set by a reload (which streams take at once), a stream's
// rolling write deadline must not stay on the keep-alive connection: the
// next answer, with no write_timeout of the server's to set, found it
// past and was never written (the connection closed without an answer).
func TestH1StreamDeadlineDoesNotOutliveItsAnswer(t *testing.T) {
	testCertDir(t)
	state := t.TempDir()
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: 1\n\n")
			return
		}
		io.WriteString(w, "ok")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, `write_timeout = "0s"`),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", back.addr),
	})
	writeFiles(t, te.dir, map[string]string{"server.toml": serverTOML(state, `write_timeout = "200ms"`)})
	te.reload()

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "data: 1\n\n", body)
	require.False(t, resp.Close)
	time.Sleep(400 * time.Millisecond) // past the stream's last write deadline
	_, err = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err = http.ReadResponse(br, nil)
	require.NoError(t, err, "the next answer on the connection is written")
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(b))
}

// TestH1StreamAfterReloadToNoWriteTimeout: a reload to write_timeout
// "0s" (none) reaches streams, as any reload of it does: a stream
// must not keep the server's whole-answer deadline from the start
// (300 ms here), which cut it.
func TestH1StreamAfterReloadToNoWriteTimeout(t *testing.T) {
	testCertDir(t)
	state := t.TempDir()
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 8 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, `write_timeout = "300ms"`),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", back.addr),
	})
	writeFiles(t, te.dir, map[string]string{"server.toml": serverTOML(state, `write_timeout = "0s"`)})
	te.reload()

	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the stream is not cut")
	assert.Equal(t, 8, strings.Count(string(b), "data: "))
}

// TestH1StreamEndAfterAQuietSpellIsNotCut: a stream's writes get
// write_timeout afresh, its end too (the last chunk, written once the
// node ended its body): a node quiet for longer than write_timeout (but
// within response_timeout) before it ends a stream had the end written
// under the deadline of the stream's last write, long past, and a stream
// its node ended cleanly reached the client cut.
func TestH1StreamEndAfterAQuietSpellIsNotCut(t *testing.T) {
	testCertDir(t)
	const writeTimeout = 300 * time.Millisecond
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(5 * writeTimeout)
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), fmt.Sprintf("write_timeout = %q", writeTimeout)),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			strings.Replace(proxyTOML("test", "all", "/", back.addr), "\n[[proxy]]", "response_timeout = \"10s\"\n\n[[proxy]]", 1),
	})
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the stream its node ended is not cut")
	assert.Equal(t, "data: 1\n\n", string(b))
}

// TestH1HeldRequestRoutedAgainIsStillWatched: a request held before its
// 503 (queue full) waits on its connection's own read (h1Conn.hold),
// which takes the place of the client-gone watch. When a reload retires
// the environment meanwhile, the request is routed again, to the new
// environment, and forwarded: its client leaving must still abort it
// there, as it does any request in flight
// (TestH1ClientGoneCancelsTheUpstream).
func TestH1HeldRequestRoutedAgainIsStillWatched(t *testing.T) {
	testCertDir(t)
	hung, open := blockingBackend(t)
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	live := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done(): // edged closed the upstream connection
			cancelled.Store(true)
		case <-time.After(8 * time.Second):
		}
	}))
	group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
	env := func(workers int) string {
		return fmt.Sprintf(`
[[environment]]
name = "test"
workers = %d
queue = 0
reject_delay = "1s"
`, workers)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    env(1) + group + proxyTOML("test", "api", "/", hung.addr),
	})
	old := te.srv.Snapshot().Env("test")
	busy := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return old.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	c, br := dialH1(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(15*time.Second)))
	_, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return old.pool.Stats().Held == 1 }, 5*time.Second, 5*time.Millisecond)
	writeFiles(t, te.dir, map[string]string{"env.toml": env(2) + group + proxyTOML("test", "api", "/", live.addr)})
	te.reload()

	select {
	case <-started: // the hold ended, and the request went to the new environment
	case <-time.After(5 * time.Second):
		t.Fatal("the held request was not routed again")
	}
	c.Close()
	assert.Eventually(t, cancelled.Load, 3*time.Second, 10*time.Millisecond, "the client left: the upstream request is aborted")
	_ = br
	open()
	<-busy
}

// TestH1HeldRequestRoutedAgainWaitsAgain: a request held in an
// environment that a reload retires is routed again at its hold's end,
// its client-gone watch started again (rewatch); when the new environment
// is busy too, it waits again, queued there, and that wait's start
// (watchNow) must leave the running watch alone: it read the connection's
// read error beside the watch that writes it (a data race under -race,
// seen in a stress of reloads and clients giving up). The client leaving
// then still ends the request (499), and nothing stays queued.
func TestH1HeldRequestRoutedAgainWaitsAgain(t *testing.T) {
	testCertDir(t)
	hung, open := blockingBackend(t)
	access := filepath.Join(t.TempDir(), "access.log")
	group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
	env := func(queue int) string {
		return fmt.Sprintf("[[environment]]\nname = \"test\"\nworkers = 1\nqueue = %d\nqueue_timeout = \"1m\"\nreject_delay = \"1s\"\n[environment.rules.access_log]\npath = %q\n", queue, access)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    env(0) + group + proxyTOML("test", "api", "/", hung.addr),
	})
	old := te.srv.Snapshot().Env("test")
	cl := te.client("test.acme.com", nil)
	cl.Timeout = 0
	busy := getAsync(cl, "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return old.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	c, _ := dialH1(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(15*time.Second)))
	_, err := io.WriteString(c, "GET /held HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return old.pool.Stats().Held == 1 }, 5*time.Second, 5*time.Millisecond)
	writeFiles(t, te.dir, map[string]string{"env.toml": env(1) + group + proxyTOML("test", "api", "/", hung.addr)})
	te.reload()
	next := te.srv.Snapshot().Env("test")
	require.NotSame(t, old, next)
	busy2 := getAsync(cl, "https://test.acme.com/busy2")
	require.Eventually(t, func() bool { return next.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return next.pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond,
		"the held request is routed again at its hold's end, and queued in the new environment")

	c.Close()
	require.Eventually(t, func() bool { return next.pool.Stats().Queued == 0 && next.inflight.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the client left: its request leaves the queue")
	open()
	<-busy
	<-busy2
	status := map[string]float64{}
	require.Eventually(t, func() bool {
		for _, l := range readJSONLines(t, access) {
			status[l["uri"].(string)] = l["status"].(float64)
		}
		return len(status) == 3
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, float64(statusClientGone), status["/held"])
}

// TestH1WaitInThePoolLeavesTheAnswerItsWriteTimeout: write_timeout bounds
// an HTTP/1.1 answer from the end of its request's head; a request that
// waited for a worker (queued, or held before its 503) has it afresh once
// the wait is over, as read_timeout ends with the request's arrival: the
// wait is edged's. Counted in it, the answer of a request that waited
// longer than write_timeout could not be written: a hold of reject_delay
// 2 s under write_timeout 1 s lost its own 503, and a request queued 1.5 s
// its 200 (the client got a broken TLS record, while the access log said
// 503 and 200).
func TestH1WaitInThePoolLeavesTheAnswerItsWriteTimeout(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
	for _, tc := range []struct {
		name, env, path string
		status          int
	}{
		{"held", "workers = 1\nqueue = 0\nreject_delay = \"2s\"\n", "/held", http.StatusServiceUnavailable},
		{"queued", "workers = 1\nqueue = 1\nqueue_timeout = \"10s\"\n", "/queued", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), "write_timeout = \"1s\""),
				"env.toml":    "[[environment]]\nname = \"test\"\n" + tc.env + group + proxyTOML("test", "api", "/", back.addr),
			})
			env := te.srv.Snapshot().Env("test")
			cl := te.client("test.acme.com", nil)
			cl.Timeout = 0
			busy := getAsync(cl, "https://test.acme.com/busy")
			require.Eventually(t, func() bool { return env.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
			c, br := dialH1(t, te)
			require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
			_, err := io.WriteString(c, "GET "+tc.path+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
			require.NoError(t, err)
			require.Eventually(t, func() bool { st := env.pool.Stats(); return st.Held+st.Queued == 1 }, 5*time.Second, 5*time.Millisecond)
			if tc.name == "queued" {
				time.Sleep(1500 * time.Millisecond) // past write_timeout, in the queue
				release <- struct{}{}
			}
			resp, err := http.ReadResponse(br, nil)
			if assert.NoError(t, err, "the answer reaches the client") {
				assert.Equal(t, tc.status, resp.StatusCode)
				resp.Body.Close()
			}
			if tc.name == "held" {
				release <- struct{}{}
			}
			<-busy
		})
	}
}
