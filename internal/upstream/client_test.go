package upstream

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// do runs req on n with the test's (cancelable) context and reads the
// whole body.
func do(tb testing.TB, n *Node, req *Request) (*http.Response, string) {
	tb.Helper()
	resp, err := n.RoundTrip(tb.Context(), req)
	require.NoError(tb, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.NoError(tb, resp.Body.Close())
	return resp, string(b)
}

// echo answers with what it received.
func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-URI", r.RequestURI)
	w.Header().Set("X-Host", r.Host)
	w.Header()["X-Test"] = []string{strings.Join(r.Header["X-Test"], "|")}
	w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
	w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
	w.Write(b)
}

// onlyReader hides a reader's type so that its length is unknown.
type onlyReader struct{ io.Reader }

func TestRoundTrip(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]

	tests := []struct {
		name                  string
		req                   Request
		wantBody              string
		wantLength, wantTE    string
		wantHost, wantRequest string
		wantTest              string // X-Test's values, joined with "|"
	}{
		{
			name:     "GET",
			req:      Request{Method: "GET", URI: "/a/b?x=1&y=2", Host: "api.example.com", Header: http.Header{"X-Test": {"v1"}}},
			wantHost: "api.example.com", wantLength: "0", wantRequest: "/a/b?x=1&y=2", wantTest: "v1",
		},
		{
			name:     "Fields after Header",
			req:      Request{Method: "GET", URI: "/f", Header: http.Header{"X-Test": {"v1"}}, Fields: []Field{{"X-Test", "v2"}, {"X-Test", "v3"}}},
			wantHost: be.host(), wantLength: "0", wantRequest: "/f", wantTest: "v1|v2|v3",
		},
		{
			name:     "empty URI and Host",
			req:      Request{Method: "GET"},
			wantHost: be.host(), wantLength: "0", wantRequest: "/",
		},
		{
			name:     "POST with Content-Length",
			req:      Request{Method: "POST", URI: "/p", Body: strings.NewReader("hello world"), ContentLength: 11},
			wantBody: "hello world", wantLength: "11", wantRequest: "/p", wantHost: be.host(),
		},
		{
			name:     "POST bigger than the write buffer",
			req:      Request{Method: "POST", URI: "/p", Body: strings.NewReader(strings.Repeat("z", 100_000)), ContentLength: 100_000},
			wantBody: strings.Repeat("z", 100_000), wantLength: "100000", wantRequest: "/p", wantHost: be.host(),
		},
		{
			name:     "POST chunked",
			req:      Request{Method: "POST", URI: "/c", Body: onlyReader{strings.NewReader(strings.Repeat("chunk", 5000))}, ContentLength: -1},
			wantBody: strings.Repeat("chunk", 5000), wantLength: "-1", wantTE: "chunked", wantRequest: "/c", wantHost: be.host(),
		},
		{
			name:       "POST without body",
			req:        Request{Method: "POST", URI: "/e"},
			wantLength: "0", wantRequest: "/e", wantHost: be.host(),
		},
		{
			name:     "Content-Length and Host in Header are ignored",
			req:      Request{Method: "PUT", URI: "/h", Host: "h.example", Body: strings.NewReader("abc"), ContentLength: 3, Header: http.Header{"Content-Length": {"99"}, "Host": {"evil"}, "Transfer-Encoding": {"chunked"}}},
			wantBody: "abc", wantLength: "3", wantRequest: "/h", wantHost: "h.example",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, n, &tt.req)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, tt.req.Method, resp.Header.Get("X-Method"))
			assert.Equal(t, tt.wantRequest, resp.Header.Get("X-URI"))
			assert.Equal(t, tt.wantHost, resp.Header.Get("X-Host"))
			assert.Equal(t, tt.wantLength, resp.Header.Get("X-Length"))
			assert.Equal(t, tt.wantTE, resp.Header.Get("X-TE"))
			assert.Equal(t, tt.wantTest, resp.Header.Get("X-Test"))
			assert.Equal(t, tt.wantBody, body)
			assert.Nil(t, resp.Request)
		})
	}
	assert.EqualValues(t, 1, be.conns.Load(), "every request reused one connection")
	assert.Zero(t, n.InFlight())
}

func TestResponseWithoutBody(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "100")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		}
	})
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]

	resp, body := do(t, n, &Request{Method: "HEAD", URI: "/head"})
	assert.Equal(t, 200, resp.StatusCode)
	assert.EqualValues(t, 100, resp.ContentLength)
	assert.Empty(t, body)
	assert.Equal(t, 1, n.Stats().Idle, "a HEAD response's connection is free once its body is closed")

	for _, path := range []string{"/204", "/304"} {
		resp, body = do(t, n, &Request{Method: "GET", URI: path})
		assert.Equal(t, path[1:], strconv.Itoa(resp.StatusCode))
		assert.Empty(t, body)
	}

	resp, body = do(t, n, &Request{Method: "GET", URI: "/chunked"})
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	assert.Equal(t, "part0;part1;part2;", body)

	assert.EqualValues(t, 1, be.conns.Load())
	st := n.Stats()
	assert.EqualValues(t, 1, st.Dials)
	assert.EqualValues(t, 3, st.Reused)
}

func TestConnectionReuse(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	for range 100 {
		_, body := do(t, n, &Request{Method: "GET", URI: "/"})
		require.Equal(t, "ok", body)
	}
	assert.EqualValues(t, 1, be.conns.Load())
	st := n.Stats()
	assert.EqualValues(t, 1, st.Dials)
	assert.EqualValues(t, 99, st.Reused)
	assert.EqualValues(t, 100, st.Requests)
	assert.Equal(t, 1, st.Idle)
}

func TestEarlyCloseDiscardsConnection(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("x", 10000)) })
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.NoError(t, err)
	require.Equal(t, 1, int(n.InFlight()))
	buf := make([]byte, 10)
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Zero(t, n.InFlight())
	assert.Equal(t, 0, n.Stats().Idle)
	_, err = resp.Body.Read(buf)
	assert.ErrorIs(t, err, http.ErrBodyReadAfterClose)
	require.NoError(t, resp.Body.Close(), "a second Close is harmless")

	do(t, n, &Request{Method: "GET", URI: "/"})
	assert.EqualValues(t, 2, be.conns.Load())
}

func TestMaxIdlePerNode(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "body") })
	n := newUpstream(t, Config{MaxIdlePerNode: 2}, be.host()).Nodes()[0]
	var held []*http.Response
	for range 5 {
		resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
		require.NoError(t, err)
		held = append(held, resp)
	}
	assert.EqualValues(t, 5, be.conns.Load(), "a connection is busy until its body is closed")
	assert.EqualValues(t, 5, n.InFlight())
	for _, resp := range held {
		_, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}
	assert.Equal(t, 2, n.Stats().Idle)
	assert.Zero(t, n.InFlight())

	t.Run("negative disables keep-alive", func(t *testing.T) {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "body") })
		n := newUpstream(t, Config{MaxIdlePerNode: -1}, be.host()).Nodes()[0]
		do(t, n, &Request{Method: "GET", URI: "/"})
		do(t, n, &Request{Method: "GET", URI: "/"})
		assert.EqualValues(t, 2, be.conns.Load())
		assert.Equal(t, 0, n.Stats().Idle)
	})
}

func TestConnectionCloseResponseNotReused(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	for range 3 {
		resp, body := do(t, n, &Request{Method: "GET", URI: "/"})
		assert.True(t, resp.Close)
		assert.Equal(t, "bye", body)
		assert.Equal(t, 0, n.Stats().Idle)
	}
	assert.EqualValues(t, 3, be.conns.Load())

	t.Run("HTTP/1.0 without keep-alive", func(t *testing.T) {
		addr, accepted := loopback.Backend(t, func(c net.Conn) {
			if _, err := readHead(bufio.NewReader(c)); err == nil {
				io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nold")
			}
		})
		n := newUpstream(t, Config{}, addr).Nodes()[0]
		for range 2 {
			_, body := do(t, n, &Request{Method: "GET", URI: "/"})
			assert.Equal(t, "old", body)
		}
		assert.EqualValues(t, 2, accepted.Load())
	})
}

// A response whose framing is faulty (RFC 9112 6.1, 6.3) hands its
// connection back closed: the node may have meant the framing that was not
// used, and the rest of its body, read as the next request's response,
// would answer that request with what the node did not send for it. Here
// what the node sends after the response as it was read is an answer of
// its own, sent a moment later (so that it is not found buffered when the
// body is closed).
func TestFaultyFramingResponseNotReused(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"
	for _, tc := range []struct{ name, first string }{
		// Framed by its Content-Length, the body holds the smuggled
		// answer; read as chunks, it ends before it.
		{"Content-Length and Transfer-Encoding", fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n0\r\n\r\n", len("0\r\n\r\n"+smuggled))},
		// Read by its Content-Length (net/http ignores Transfer-Encoding
		// on HTTP/1.0): the node may have meant chunks, which follow.
		{"Transfer-Encoding on HTTP/1.0", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := loopback.Backend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					head, err := readHead(br)
					if err != nil {
						return
					}
					if !strings.HasPrefix(head, "GET /faulty ") {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
						continue
					}
					io.WriteString(c, tc.first)
					time.Sleep(100 * time.Millisecond)
					io.WriteString(c, smuggled)
				}
			})
			n := newUpstream(t, Config{}, addr).Nodes()[0]
			do(t, n, &Request{Method: "GET", URI: "/faulty"})
			assert.Equal(t, 0, n.Stats().Idle, "the connection is not kept")
			_, body := do(t, n, &Request{Method: "GET", URI: "/next"})
			assert.Equal(t, "real", body, "the next request gets its own answer")
			assert.EqualValues(t, 2, accepted.Load())
		})
	}
}

// Bytes a node sends on a pooled connection between requests (a second
// answer to one request, a body sent after a HEAD's head) are no answer to
// the next request: that request would get what the node sent for
// another, a client's response served to another client. nginx, HAProxy
// and Go's Transport close an idle connection that receives data; so
// does edged, however short the connection was idle.
func TestStrayBytesOnAnIdleConnectionAreNoAnswer(t *testing.T) {
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
	addr, accepted := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
			if strings.HasPrefix(head, "GET /twice ") {
				time.Sleep(5 * time.Millisecond) // not buffered with the answer
				io.WriteString(c, stray)
			}
		}
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	_, body := do(t, n, &Request{Method: "GET", URI: "/twice"})
	require.Equal(t, "real", body)
	time.Sleep(50 * time.Millisecond) // the stray answer is in, well within peekAfter's old 250 ms
	_, body = do(t, n, &Request{Method: "GET", URI: "/next"})
	assert.Equal(t, "real", body, "the next request gets its own answer")
	assert.EqualValues(t, 2, accepted.Load(), "the connection with stray bytes is closed")
	assert.Zero(t, n.Stats().Retried, "found before the request was sent")
}

// closingBackend answers one request per connection, keep-alive as far as
// the client can tell. Then it closes the connection: at once (an idle
// connection the server dropped), or, racing, only once the next
// request's head is in (its keep-alive timeout ran out as the request was
// sent).
func closingBackend(t *testing.T, racing bool) (string, *atomic.Int64) {
	var seen atomic.Int64
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readHead(br); err != nil {
			return
		}
		seen.Add(1)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		if racing {
			_, _ = readHead(br)
		}
	})
	return addr, &seen
}

func TestStaleIdleConnectionRetried(t *testing.T) {
	addr, seen := closingBackend(t, true)
	n := newUpstream(t, Config{}, addr).Nodes()[0]

	_, body := do(t, n, &Request{Method: "GET", URI: "/1", Replayable: true})
	require.Equal(t, "ok", body)
	require.Eventually(t, func() bool { return n.Stats().Idle == 1 }, time.Second, time.Millisecond)

	// The peek finds the connection open, the node closes it once the
	// request is in, and the request is resent on a fresh one.
	for i := range 5 {
		_, body = do(t, n, &Request{Method: "GET", URI: "/again", Header: http.Header{"X-I": {strconv.Itoa(i)}}, Replayable: true})
		assert.Equal(t, "ok", body)
	}
	st := n.Stats()
	assert.EqualValues(t, 5, st.Retried)
	assert.EqualValues(t, 6, seen.Load())
	assert.Zero(t, st.Failures, "a stale connection is not the node's failure")

	// A request whose body was consumed is never resent, even marked
	// replayable.
	_, err := n.RoundTrip(t.Context(), &Request{Method: "PUT", URI: "/put", Body: strings.NewReader("data"), ContentLength: 4, Replayable: true})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrConnect)
	assert.NotErrorIs(t, err, ErrTimeout)
	assert.Zero(t, n.InFlight())
}

// A connection the node closed while it was idle is found closed by the
// peek before use: nothing is sent on it, nothing resent.
func TestClosedIdleConnectionNotUsed(t *testing.T) {
	addr, seen := closingBackend(t, false)
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	for range 3 {
		_, body := do(t, n, &Request{Method: "PUT", URI: "/put", Body: strings.NewReader("data"), ContentLength: 4})
		require.Equal(t, "ok", body)
		time.Sleep(10 * time.Millisecond) // the node's close is in
	}
	assert.EqualValues(t, 3, seen.Load())
	assert.Zero(t, n.Stats().Retried)
}

// rewindBody is a request body that can start again, as edged's kept
// bodies can (Rewinder), when can says so.
type rewindBody struct {
	data    string
	off     int
	can     bool
	rewinds int
}

func (b *rewindBody) Read(p []byte) (int, error) {
	if b.off == len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *rewindBody) Rewind() bool {
	b.rewinds++
	if b.can {
		b.off = 0
	}
	return b.can
}

// A request whose body was read is resent on a fresh connection, whole,
// when its body rewinds; not when it does not.
func TestStaleConnectionResendsARewoundBody(t *testing.T) {
	// One request per connection, its body echoed, then a close once
	// the next request's head is in: the client sees it only when it
	// has sent on the connection.
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		_, _ = readHead(br)
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	prime := func() {
		_, body := do(t, n, &Request{Method: "GET", URI: "/prime", Replayable: true})
		require.Equal(t, "", body)
		require.Eventually(t, func() bool { return n.Stats().Idle == 1 }, time.Second, time.Millisecond)
	}
	data := strings.Repeat("0123456789", 2000) // more than one write buffer
	for _, chunked := range []bool{false, true} {
		prime()
		retried := n.Stats().Retried
		body := &rewindBody{data: data, can: true}
		cl := int64(len(data))
		if chunked {
			cl = -1
		}
		_, got := do(t, n, &Request{Method: "PUT", URI: "/put", Body: body, ContentLength: cl, Replayable: true})
		assert.True(t, got == data, "the whole body again (chunked=%v)", chunked)
		assert.Equal(t, 1, body.rewinds)
		assert.Equal(t, retried+1, n.Stats().Retried)
	}

	prime()
	body := &rewindBody{data: data, can: false}
	_, err := n.RoundTrip(t.Context(), &Request{Method: "PUT", URI: "/put", Body: body, ContentLength: int64(len(data)), Replayable: true})
	require.Error(t, err, "a body that does not rewind is not resent")
	assert.Equal(t, 1, body.rewinds)

	// Not Replayable: the body is not even asked.
	prime()
	body = &rewindBody{data: data, can: true}
	_, err = n.RoundTrip(t.Context(), &Request{Method: "PUT", URI: "/put", Body: body, ContentLength: int64(len(data))})
	require.Error(t, err)
	assert.Zero(t, body.rewinds)
}

// dropSecondBackend answers the first request of every connection and
// closes the connection when the second request's head has arrived,
// without answering: that request reached the node, which may have acted
// on it. It counts the heads it read by "METHOD URI".
func dropSecondBackend(t *testing.T) (string, func(string) int) {
	var mu sync.Mutex
	heads := map[string]int{}
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; i < 2; i++ {
			h, err := readHead(br)
			if err != nil {
				return
			}
			line, _, _ := strings.Cut(h, " HTTP/1.1")
			mu.Lock()
			heads[line]++
			mu.Unlock()
			if i == 1 {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, func(line string) int {
		mu.Lock()
		defer mu.Unlock()
		return heads[line]
	}
}

// The client resends a request that met a reused connection the node
// dropped exactly when the caller marked it Replayable: not by its method
// or its headers.
func TestReplayFollowsTheCallersDecision(t *testing.T) {
	addr, heads := dropSecondBackend(t)
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	key := http.Header{"Idempotency-Key": {"k1"}}
	tests := []struct {
		method, uri string
		header      http.Header
		replayable  bool
	}{
		{"GET", "/get", nil, true},
		{"GET", "/get-not-replayable", nil, false},
		{"POST", "/post", nil, false},
		{"POST", "/post-key-not-replayable", key, false},
		{"POST", "/post-key", key, true},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.uri, func(t *testing.T) {
			// Leaves one idle connection that served one request (the
			// prime meets the dropped one when the case before it left
			// such a connection behind, and is itself replayed).
			_, body := do(t, n, &Request{Method: "GET", URI: "/prime", Replayable: true})
			require.Equal(t, "ok", body)
			require.Equal(t, 1, n.Stats().Idle)
			retried := n.Stats().Retried
			resp, err := n.RoundTrip(t.Context(), &Request{Method: tc.method, URI: tc.uri, Header: tc.header, Replayable: tc.replayable})
			line := tc.method + " " + tc.uri
			if tc.replayable {
				require.NoError(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, "ok", string(b))
				assert.Equal(t, 2, heads(line), "sent on the dropped connection, then on a fresh one")
				assert.Equal(t, retried+1, n.Stats().Retried)
			} else {
				require.Error(t, err)
				assert.Equal(t, 1, heads(line), "not resent")
				assert.Equal(t, retried, n.Stats().Retried)
			}
		})
	}
}

func TestErrConnect(t *testing.T) {
	addr := loopback.Refused(t)
	n := newUpstream(t, Config{ConnectTimeout: time.Second}, addr).Nodes()[0]
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.ErrorIs(t, err, ErrConnect)
	assert.Contains(t, err.Error(), addr)
	st := n.Stats()
	assert.EqualValues(t, 1, st.Failures)
	assert.EqualValues(t, 1, st.Dials)
	assert.Zero(t, st.InFlight)
}

// hangingHandler never answers until the client goes away or the test ends.
func hangingHandler(t *testing.T) http.HandlerFunc {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}
}

func TestErrTimeout(t *testing.T) {
	be := newBackend(t, hangingHandler(t))
	n := newUpstream(t, Config{ResponseTimeout: 100 * time.Millisecond}, be.host()).Nodes()[0]
	start := time.Now()
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.EqualValues(t, 1, n.Stats().Failures)
	assert.Zero(t, n.InFlight())
	assert.Equal(t, 0, n.Stats().Idle)
}

func TestSlowBodyNotCutByResponseTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		for i := range 4 {
			time.Sleep(60 * time.Millisecond)
			fmt.Fprintf(w, "event %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	n := newUpstream(t, Config{ResponseTimeout: 100 * time.Millisecond}, be.host()).Nodes()[0]
	start := time.Now()
	_, body := do(t, n, &Request{Method: "GET", URI: "/sse"})
	assert.Equal(t, "event 0\nevent 1\nevent 2\nevent 3\n", body)
	assert.Greater(t, time.Since(start), 200*time.Millisecond)
	assert.Equal(t, 1, n.Stats().Idle, "the connection is reused after a long body")
}

func TestStalledBodyTimesOut(t *testing.T) {
	cases := []struct{ name, head, part string }{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(nc net.Conn) {
				br := bufio.NewReader(nc)
				readHead(br)
				io.WriteString(nc, c.head)
				time.Sleep(20 * time.Millisecond) // the head alone first: the body needs the network
				io.WriteString(nc, c.part)
				io.Copy(io.Discard, br) // 10 bytes of the body, then nothing until closed
			})
			const timeout = 150 * time.Millisecond
			n := newUpstream(t, Config{ResponseTimeout: timeout}, addr).Nodes()[0]
			resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
			require.NoError(t, err)
			start := time.Now()
			b, err := io.ReadAll(resp.Body)
			waited := time.Since(start)
			require.ErrorIs(t, err, ErrBodyTimeout)
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			assert.Equal(t, "0123456789", string(b))
			assert.GreaterOrEqual(t, waited, timeout-30*time.Millisecond)
			assert.Less(t, waited, 5*timeout)
			require.NoError(t, resp.Body.Close())
			assert.Zero(t, n.InFlight())
			assert.Equal(t, 0, n.Stats().Idle, "a stalled connection is not reused")
		})
	}
}

// slotContext is an AbortRegistry with one slot, as edged's HTTP/1.1
// server has per connection.
type slotContext struct {
	context.Context
	mu    sync.Mutex
	a     Aborter
	ended bool
	sets  int
}

func newSlotContext(parent context.Context) (*slotContext, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	x := &slotContext{Context: ctx}
	context.AfterFunc(ctx, func() {
		x.mu.Lock()
		a := x.a
		x.a, x.ended = nil, true
		x.mu.Unlock()
		if a != nil {
			a.Abort()
		}
	})
	return x, cancel
}

func (x *slotContext) SetAbort(a Aborter) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ended || x.a != nil {
		return false
	}
	x.a = a
	x.sets++
	return true
}

func (x *slotContext) StopAbort(a Aborter) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.a != a {
		return false
	}
	x.a = nil
	return true
}

// A canceled context aborts the dial, the wait for the head and the body,
// through context.AfterFunc or through an AbortRegistry.
func TestContextCancel(t *testing.T) {
	for _, registry := range []bool{false, true} {
		name := "AfterFunc"
		if registry {
			name = "AbortRegistry"
		}
		t.Run(name, func(t *testing.T) { testContextCancel(t, registry) })
	}
}

func testContextCancel(t *testing.T, registry bool) {
	withCancel := func(parent context.Context) (context.Context, context.CancelFunc) {
		if !registry {
			return context.WithCancel(parent)
		}
		x, cancel := newSlotContext(parent)
		t.Cleanup(func() {
			x.mu.Lock()
			defer x.mu.Unlock()
			assert.Nil(t, x.a, "the slot is left empty")
		})
		return x, cancel
	}
	t.Run("before the head", func(t *testing.T) {
		be := newBackend(t, hangingHandler(t))
		n := newUpstream(t, Config{}, be.host()).Nodes()[0]
		ctx, cancel := withCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
		require.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, ErrTimeout)
		assert.Less(t, time.Since(start), time.Second)
		assert.Zero(t, n.Stats().Failures, "a client that left is not the node's failure")
		assert.Zero(t, n.InFlight())
	})
	t.Run("during the body", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		})
		n := newUpstream(t, Config{}, be.host()).Nodes()[0]
		ctx, cancel := withCancel(t.Context())
		resp, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
		require.NoError(t, err)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		b, err := io.ReadAll(resp.Body)
		require.Error(t, err)
		assert.Equal(t, "first", string(b))
		assert.Less(t, time.Since(start), time.Second)
		assert.Zero(t, n.InFlight())
		assert.Equal(t, 0, n.Stats().Idle)
	})
	t.Run("during the body, with an idle deadline", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		})
		// Every body read refreshes the read deadline: the cancel must win
		// over it, not wait the 30s.
		n := newUpstream(t, Config{ResponseTimeout: 30 * time.Second}, be.host()).Nodes()[0]
		ctx, cancel := withCancel(t.Context())
		resp, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
		require.NoError(t, err)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err = io.ReadAll(resp.Body)
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrBodyTimeout)
		assert.Less(t, time.Since(start), time.Second)
		assert.Zero(t, n.InFlight())
	})
	t.Run("already canceled", func(t *testing.T) {
		be := newBackend(t, echo)
		n := newUpstream(t, Config{}, be.host()).Nodes()[0]
		ctx, cancel := withCancel(t.Context())
		cancel()
		_, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
		require.ErrorIs(t, err, context.Canceled)
	})
}

// A request's abort goes to the registry's slot; a second request on the
// same context while the slot is taken uses context.AfterFunc, and each
// frees only its own registration.
func TestAbortRegistrySlot(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	x, cancel := newSlotContext(t.Context())
	defer cancel()
	first, err := n.RoundTrip(x, &Request{Method: "GET", URI: "/1"})
	require.NoError(t, err)
	x.mu.Lock()
	require.NotNil(t, x.a, "the first request holds the slot")
	x.mu.Unlock()
	second, err := n.RoundTrip(x, &Request{Method: "GET", URI: "/3"})
	require.NoError(t, err)
	io.Copy(io.Discard, second.Body)
	second.Body.Close()
	x.mu.Lock()
	assert.NotNil(t, x.a, "the second request did not free the first one's slot")
	assert.Equal(t, 1, x.sets)
	x.mu.Unlock()
	io.Copy(io.Discard, first.Body)
	first.Body.Close()
	x.mu.Lock()
	assert.Nil(t, x.a)
	x.mu.Unlock()
	assert.Equal(t, 2, n.Stats().Idle, "both connections reusable")
}

func TestUpgrade(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		head, err := readHead(br)
		if err != nil || !strings.Contains(head, "Upgrade: echo\r\n") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		// The greeting arrives in the same segment as the head: the
		// client must not lose what its reader buffered.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello;")
		io.Copy(c, br)
	})
	n := newUpstream(t, Config{ResponseTimeout: 50 * time.Millisecond}, addr).Nodes()[0]
	resp, err := n.RoundTrip(t.Context(), &Request{
		Method: "GET", URI: "/ws", Upgrade: true,
		Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"echo"}},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	rw, ok := resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "101 body is an io.ReadWriteCloser")

	buf := make([]byte, 6)
	_, err = io.ReadFull(rw, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello;", string(buf))

	time.Sleep(100 * time.Millisecond) // longer than ResponseTimeout: no deadline left
	for _, msg := range []string{"ping", "pong", strings.Repeat("x", 10000)} {
		_, err = io.WriteString(rw, msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(rw, got)
		require.NoError(t, err)
		assert.Equal(t, msg, string(got))
	}
	require.NoError(t, rw.(interface{ CloseWrite() error }).CloseWrite())
	rest, err := io.ReadAll(rw)
	require.NoError(t, err, "the echo ends after our half-close")
	assert.Empty(t, rest)
	assert.EqualValues(t, 1, n.InFlight(), "an upgraded connection is in flight until closed")
	require.NoError(t, rw.Close())
	require.NoError(t, rw.Close())
	assert.Zero(t, n.InFlight())
	assert.Equal(t, 0, n.Stats().Idle, "an upgraded connection is never pooled")

	t.Run("unexpected 101", func(t *testing.T) {
		_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/", Header: http.Header{"Upgrade": {"echo"}}})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "101")
	})
}

func TestInformationalResponsesSkipped(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	for range 2 {
		resp, body := do(t, n, &Request{Method: "GET", URI: "/"})
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "final", body)
	}
	assert.EqualValues(t, 1, n.Stats().Dials)
}

func TestBadResponse(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "SMTP ready\r\n\r\n")
		}
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrConnect)
	assert.NotErrorIs(t, err, ErrTimeout)
	assert.EqualValues(t, 1, n.Stats().Failures)
	assert.Zero(t, n.Stats().Retried, "a fresh connection is not retried")
}

func TestRejectsSplittingRequests(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	bad := []Request{
		{Method: "GET", URI: "/", Header: http.Header{"X-A": {"v\r\nX-Injected: 1"}}},
		{Method: "GET", URI: "/", Header: http.Header{"X A": {"v"}}},
		{Method: "GET", URI: "/ HTTP/1.1\r\nX: y"},
		{Method: "GE T", URI: "/"},
		{Method: "", URI: "/"},
		{Method: "GET", URI: "/", Host: "a\r\nb"},
		{Method: "POST", URI: "/", ContentLength: 3},
		{Method: "GET", URI: "/", Fields: []Field{{"X-A", "v\r\nX-Injected: 1"}}},
		{Method: "GET", URI: "/", Fields: []Field{{"X A", "v"}}},
		{Method: "GET", URI: "/", Fields: []Field{{"content-length", "5"}}},
		{Method: "GET", URI: "/", Fields: []Field{{"Transfer-Encoding", "chunked"}}},
	}
	for _, req := range bad {
		_, err := n.RoundTrip(t.Context(), &req)
		assert.Error(t, err, "%+v", req)
	}
	assert.Zero(t, be.conns.Load(), "nothing was sent")
	assert.Zero(t, n.Stats().Failures)
}

func TestRequestBodyError(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	boom := errors.New("client went away")
	_, err := n.RoundTrip(t.Context(), &Request{Method: "POST", URI: "/", Body: io.MultiReader(strings.NewReader("abc"), errReader{boom}), ContentLength: 10})
	require.ErrorIs(t, err, ErrRequestBody)
	require.ErrorIs(t, err, boom)
	_, err = n.RoundTrip(t.Context(), &Request{Method: "POST", URI: "/", Body: strings.NewReader("abc"), ContentLength: 10})
	require.ErrorIs(t, err, ErrRequestBody, "a body shorter than ContentLength")
	assert.Zero(t, n.Stats().Failures, "the client's fault, not the node's")
	assert.Zero(t, n.InFlight())
}

// cancelingReader gives some bytes, then cancels the request's context
// and fails, as a server does whose client's connection broke mid-body.
type cancelingReader struct {
	cancel context.CancelFunc
	sent   bool
}

func (r *cancelingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "abc"), nil
	}
	r.cancel()
	return 0, io.ErrUnexpectedEOF
}

func TestRequestBodyErrorWinsOverTheContext(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, be.host()).Nodes()[0]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := n.RoundTrip(ctx, &Request{Method: "POST", URI: "/", Body: &cancelingReader{cancel: cancel}, ContentLength: 10})
	require.ErrorIs(t, err, ErrRequestBody, "the body failed first: the client's error, whatever the context says")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	st := n.Stats()
	assert.Zero(t, st.Failures)
	assert.Zero(t, st.Idle, "the half-written connection is closed")
	assert.True(t, n.Healthy())
}

func TestNoDialForACanceledRequest(t *testing.T) {
	be := newBackend(t, echo)
	n := newUpstream(t, Config{}, be.host()).Nodes()[0]
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, n.Stats().Dials, "no connection attempted for a request nobody waits for")
	assert.Zero(t, be.conns.Load())
	assert.Zero(t, n.Stats().Failures)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestResponseHeadLimit(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
			chunk := strings.Repeat("a", 64<<10)
			for range 20 {
				if _, err := io.WriteString(c, chunk); err != nil {
					return
				}
			}
		}
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than 1 MiB")
}

func TestHTTPSNode(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	var conns atomic.Int64
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	be.EnableHTTP2 = true // the client must still speak HTTP/1.1
	be.Config.ErrorLog = log.New(io.Discard, "", 0)
	be.StartTLS()
	t.Cleanup(be.Close)
	roots := x509.NewCertPool()
	roots.AddCert(be.Certificate())

	u := newUpstream(t, Config{
		Nodes: []NodeConfig{{Scheme: "https", Host: strings.TrimPrefix(be.URL, "https://")}},
		TLS:   &tls.Config{RootCAs: roots},
	})
	n := u.Nodes()[0]
	for i := range 3 {
		resp, body := do(t, n, &Request{Method: "POST", URI: "/tls", Body: strings.NewReader("secret"), ContentLength: 6})
		assert.Equal(t, "secret", body)
		assert.Equal(t, "HTTP/1.1", resp.Proto, "request %d", i)
	}
	assert.EqualValues(t, 1, conns.Load())

	t.Run("untrusted certificate is a connect error", func(t *testing.T) {
		u := newUpstream(t, Config{Nodes: []NodeConfig{{Scheme: "https", Host: strings.TrimPrefix(be.URL, "https://")}}})
		_, err := u.Nodes()[0].RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
		require.ErrorIs(t, err, ErrConnect)
	})
}

func TestRoundTripAllocs(t *testing.T) {
	addr, _ := loopback.Backend(t, serveFixed)
	n := newUpstream(t, Config{ResponseTimeout: 5 * time.Second}, addr).Nodes()[0]
	req := &Request{Method: "GET", URI: "/bench", Host: "example.com", Header: http.Header{"X-Request-Id": {"abc"}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := make([]byte, 512)
	run := func() {
		resp, err := n.RoundTrip(ctx, req)
		if err != nil {
			panic(err)
		}
		io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf)
		resp.Body.Close()
	}
	run()
	// Two are context.AfterFunc's (the abort on a cancelable context),
	// one is onlyReader's boxing: the head parse and the body framing
	// allocate nothing once the connection has seen its fields.
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not the code's")
	}
	assert.LessOrEqual(t, testing.AllocsPerRun(200, run), 3.0)
}

// fixedResponse is the benchmark backend's answer: a 100-byte body.
var fixedResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("b", 100)

// serveFixed answers every bodiless request on c with fixedResponse.
func serveFixed(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	resp := []byte(fixedResponse)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	addr, _ := loopback.Backend(b, serveFixed)
	benchRoundTrip(b, newUpstream(b, Config{ResponseTimeout: 30 * time.Second}, addr))
}

// BenchmarkRoundTripTLS is BenchmarkRoundTrip to a TLS node: crypto/tls's
// records and the deadlines a TLS connection moves every request (its
// write deadline is cleared once the request is written).
func BenchmarkRoundTripTLS(b *testing.B) {
	ts := httptest.NewUnstartedServer(http.NotFoundHandler()) // for its certificate
	ts.StartTLS()
	b.Cleanup(ts.Close)
	srv := &tls.Config{Certificates: ts.TLS.Certificates}
	addr, _ := loopback.Backend(b, func(c net.Conn) { serveFixed(tls.Server(c, srv)) })
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	benchRoundTrip(b, newUpstream(b, Config{
		ResponseTimeout: 30 * time.Second,
		Nodes:           []NodeConfig{{Scheme: "https", Host: addr, Weight: 1}},
		TLS:             &tls.Config{RootCAs: roots},
	}))
}

// benchRoundTrip sends a small GET to u's one node over and over, on one
// connection, and reads each answer to its end.
func benchRoundTrip(b *testing.B, u *Upstream) {
	u.Start() // the idle reaper runs, as in edged
	n := u.Nodes()[0]
	req := &Request{Method: "GET", URI: "/bench?q=1", Host: "example.com", Header: http.Header{
		"Accept":          {"*/*"},
		"User-Agent":      {"wrk"},
		"X-Forwarded-For": {"127.0.0.1"},
		"X-Request-Id":    {"0123456789abcdef"},
	}}
	ctx, cancel := context.WithCancel(context.Background()) // like a server request's context
	defer cancel()
	buf := make([]byte, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := n.RoundTrip(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	if d := n.Stats().Dials; d != 1 {
		b.Fatalf("%d dials, want 1", d)
	}
}

func BenchmarkStdTransport(b *testing.B) {
	addr, _ := loopback.Backend(b, serveFixed)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, ResponseHeaderTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	hdr := http.Header{
		"Accept":          {"*/*"},
		"User-Agent":      {"wrk"},
		"X-Forwarded-For": {"127.0.0.1"},
		"X-Request-Id":    {"0123456789abcdef"},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := make([]byte, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/bench?q=1", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = "example.com"
		req.Header = hdr
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, onlyReader{resp.Body}, buf); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestUploadToNodeThatStopsReading(t *testing.T) {
	stop := make(chan struct{})
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		readHead(bufio.NewReader(c))
		<-stop // reads nothing more
	})
	t.Cleanup(func() { close(stop) })
	n := newUpstream(t, Config{ResponseTimeout: 100 * time.Millisecond}, addr).Nodes()[0]
	start := time.Now()
	const size = 256 << 20 // far more than the socket buffers hold
	_, err := n.RoundTrip(t.Context(), &Request{Method: "PUT", URI: "/up", Body: io.LimitReader(zeros{}, size), ContentLength: size})
	require.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// A node that accepted the connection but reads nothing (a hung process
// whose listen backlog still completes handshakes) cannot hold a request
// whose head is larger than the socket buffers past ResponseTimeout
// either: the head's write has the same bound as the wait for the
// answer, and the caller answers 504, not whenever its client gives up.
func TestHeadToNodeThatReadsNothing(t *testing.T) {
	stop := make(chan struct{})
	addr, _ := loopback.Backend(t, func(c net.Conn) { <-stop })
	t.Cleanup(func() { close(stop) })
	n := newUpstream(t, Config{ResponseTimeout: 100 * time.Millisecond}, addr).Nodes()[0]
	big := strings.Repeat("a", 16<<20) // far more than the socket buffers hold
	for _, req := range []*Request{
		{Method: "GET", URI: "/", Header: http.Header{"X-Big": {big}}},
		{Method: "POST", URI: "/", Header: http.Header{"X-Big": {big}}, Body: strings.NewReader("hello"), ContentLength: 5},
	} {
		t.Run(req.Method, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := n.RoundTrip(ctx, req)
			require.ErrorIs(t, err, ErrTimeout)
			assert.Less(t, time.Since(start), 2*time.Second)
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	n := newUpstream(t, Config{IdleTimeout: 30 * time.Millisecond}, be.host()).Nodes()[0]
	do(t, n, &Request{Method: "GET", URI: "/"})
	do(t, n, &Request{Method: "GET", URI: "/"})
	require.EqualValues(t, 1, n.Stats().Dials)
	time.Sleep(60 * time.Millisecond)
	do(t, n, &Request{Method: "GET", URI: "/"})
	assert.EqualValues(t, 2, n.Stats().Dials, "a connection idle too long is not reused")
}

// The response deadline of a reused connection is moved only when it
// would move by more than its slack: never to less than ResponseTimeout
// from the request's start, and a second request still times out.
func TestErrTimeoutOnAReusedConnection(t *testing.T) {
	hang := hangingHandler(t)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			io.WriteString(w, "ok")
			return
		}
		hang(w, r)
	})
	n := newUpstream(t, Config{ResponseTimeout: 200 * time.Millisecond}, be.host()).Nodes()[0]
	for i := 0; i < 3; i++ {
		resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/fast"})
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/hang"})
	require.ErrorIs(t, err, ErrTimeout)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "never less than ResponseTimeout")
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.EqualValues(t, 1, n.Stats().Dials, "the hanging request went on the reused connection")
}

// discardConn is a connection whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkWriteRequest checks and writes the bench's request head as
// edged forwards it (two of the client's fields and the five edged adds),
// without the network: the five in the header map, or as Fields.
func BenchmarkWriteRequest(b *testing.B) {
	client := http.Header{"Accept": {"*/*"}, "User-Agent": {"wrk"}}
	fields := []Field{
		{"X-Forwarded-For", "127.0.0.1"},
		{"X-Forwarded-Proto", "https"},
		{"X-Forwarded-Host", "test.acme.com"},
		{"Forwarded", "for=127.0.0.1;host=test.acme.com;proto=https"},
		{"X-Request-Id", "0123456789abcdef0123456789abcdef"},
	}
	for _, inMap := range []bool{true, false} {
		name := "fields"
		if inMap {
			name = "map"
		}
		b.Run(name, func(b *testing.B) {
			c := &conn{node: &Node{host: "127.0.0.1:80"}, nc: discardConn{}}
			c.ww.c = c
			req := &Request{Method: "GET", URI: "/api/x", Host: "test.acme.com", Header: make(http.Header, headerHint)}
			vals := make([][]string, len(fields)) // edge kept them in the pooled exchange
			for i, f := range fields {
				vals[i] = []string{f.Value}
			}
			b.ReportAllocs()
			for b.Loop() {
				for k, vv := range client {
					req.Header[k] = vv
				}
				if inMap {
					for i, f := range fields {
						req.Header[f.Name] = vals[i]
					}
				} else {
					req.Fields = fields
				}
				if err := checkRequest(req); err != nil {
					b.Fatal(err)
				}
				if _, err := c.writeRequest(req, false); err != nil {
					b.Fatal(err)
				}
				clear(req.Header)
			}
		})
	}
}

// earlyAnswer is a net/http handler that refuses an upload without reading
// it: net/http then closes the connection with the body unread, and the
// rest of the body meets the node's reset.
func earlyAnswer(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	io.WriteString(w, "too large for me")
}

// A node that answers an upload before reading all of it (413, 401) and
// closes has answered the request: the answer is returned, not a write
// error, and counts as no failure of the node.
func TestAnswerBeforeTheBodyWasRead(t *testing.T) {
	be := newBackend(t, earlyAnswer)
	n := newUpstream(t, Config{ResponseTimeout: 5 * time.Second, Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, be.host()).Nodes()[0]
	// Larger than what the socket buffers take: writing it fails.
	body := strings.Repeat("x", 64<<20)
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "POST", URI: "/", Body: strings.NewReader(body), ContentLength: int64(len(body))})
	require.NoError(t, err, "the node's answer, not the write's failure")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "too large for me", string(b))
	require.NoError(t, resp.Body.Close())
	st := n.Stats()
	assert.Zero(t, st.Failures)
	assert.True(t, n.Healthy(), "not ejected")
	assert.Zero(t, st.Idle, "a connection the node stopped reading is not reused")
	assert.Zero(t, st.InFlight)
}

// panickingBody panics on Read, as a caller's buggy body would.
type panickingBody struct{}

func (panickingBody) Read([]byte) (int, error) { panic("body bug") }

// A panic under RoundTrip (the caller's request body) is the caller's to
// contain (edged answers it 500 and keeps serving), but the node's
// requests in flight (least_request's measure) must not keep the request
// for ever, nor the connection stay open in an unknown state.
func TestPanicUnderRoundTripReleasesTheNode(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		closed <- struct{}{}
	})
	n := newUpstream(t, Config{Balance: "least_request"}, addr).Nodes()[0]
	func() {
		defer func() { require.Equal(t, "body bug", recover()) }()
		n.RoundTrip(context.Background(), &Request{Method: "POST", URI: "/", Body: panickingBody{}, ContentLength: 10})
	}()
	assert.Zero(t, n.InFlight(), "the request is over for the node")
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the connection the panic left is still open")
	}
}

// rewindingReader is a replayable request body that rewinds to its start,
// as edged's kept copy does.
type rewindingReader struct {
	s string
	r *strings.Reader
}

func (b *rewindingReader) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *rewindingReader) Rewind() bool               { b.r.Reset(b.s); return true }

// A node that answers a replayable upload early (413, 401) on a kept-alive
// connection has answered it: the answer, which arrived before the write
// failed, is returned, and the request is not sent again on a fresh
// connection. Only a kept-alive connection that fails before any byte of
// the answer is retried (README, Retries): a second 401 to a login would
// count twice in the backend's lockout, a second upload cost it twice.
func TestEarlyAnswerOnAReusedConnectionIsNotResent(t *testing.T) {
	var puts atomic.Int32
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
			earlyAnswer(w, r)
			return
		}
		io.WriteString(w, "ok")
	})
	n := newUpstream(t, Config{ResponseTimeout: 5 * time.Second}, be.host()).Nodes()[0]
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, 1, n.Stats().Idle, "a kept-alive connection for the upload")

	// Larger than what the socket buffers take: writing it fails.
	body := strings.Repeat("x", 64<<20)
	resp, err = n.RoundTrip(t.Context(), &Request{Method: "PUT", URI: "/", Body: &rewindingReader{s: body, r: strings.NewReader(body)}, ContentLength: int64(len(body)), Replayable: true})
	require.NoError(t, err, "the node's answer, not the write's failure")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "too large for me", string(b))
	require.NoError(t, resp.Body.Close())
	assert.EqualValues(t, 1, puts.Load(), "the upload reached the node once")
	st := n.Stats()
	assert.Zero(t, st.Retried, "no resend on a fresh connection")
	assert.Zero(t, st.Failures)
}

// A node that answers an upload early (413) and then neither reads the
// rest nor closes (nginx's client_max_body_size answer on a keep-alive
// connection, a stuck backend) has answered all the same: once the body's
// write has waited ResponseTimeout, the answer that came meanwhile is
// returned, not a 504 upstream.timeout that blames the node for what was
// the client's upload.
func TestEarlyAnswerOfANodeThatNeitherReadsNorCloses(t *testing.T) {
	release := make(chan struct{})
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 16\r\n\r\ntoo large for me")
		<-release // neither reads nor closes
	})
	t.Cleanup(func() { close(release) }) // before the backend's own, which waits for this
	n := newUpstream(t, Config{ResponseTimeout: 300 * time.Millisecond}, addr).Nodes()[0]
	body := strings.Repeat("x", 64<<20) // more than the socket buffers take
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "POST", URI: "/", Body: strings.NewReader(body), ContentLength: int64(len(body))})
	require.NoError(t, err, "the node's answer, not the write's timeout")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "too large for me", string(b))
	require.NoError(t, resp.Body.Close())
	assert.Zero(t, n.Stats().Idle, "a connection the node stopped reading is not reused")
}

// Cut ends the requests still waiting on the upstream's nodes at once
// (ErrCut, no passive failure), and a request after it never reaches a
// node.
func TestCutEndsTheRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	addr, accepted := loopback.Backend(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		<-release // never answers
	})
	t.Cleanup(func() { close(release) }) // before the backend's own, which waits for this
	u := newUpstream(t, Config{ResponseTimeout: time.Minute, Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, addr)
	n := u.Nodes()[0]
	errc := make(chan error, 1)
	go func() {
		_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
		errc <- err
	}()
	require.Eventually(t, func() bool { return accepted.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the request is written and waits for its answer
	u.Cut()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, ErrCut)
	case <-time.After(10 * time.Second):
		t.Fatal("the request waiting for its answer was not cut")
	}
	_, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	assert.ErrorIs(t, err, ErrCut)
	assert.EqualValues(t, 1, accepted.Load(), "no connection for a request after the cut")
	assert.Zero(t, n.Stats().Failures)
	assert.True(t, n.Healthy())
}

// A node that sends a body after a bodiless answer (a HEAD's, a 204's, a
// 304's) may have it arrive only once the connection was checked out
// again and the next request sent: the peek found nothing. Those bytes
// lead the next answer, whose first line is then no status line. No
// answer to the request began, and the connection was a reused one: a
// Replayable request is sent again on a fresh connection, as one whose
// reused connection failed before any byte (nginx's proxy_next_upstream
// error), rather than answered 502.
func TestStrayBodyAfterTheReusePeekIsRetried(t *testing.T) {
	for _, tc := range []struct{ name, method, first string }{
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n"},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen atomic.Int64
			addr, accepted := loopback.Backend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				stray := false
				for {
					head, err := readHead(br)
					if err != nil {
						return
					}
					seen.Add(1)
					if strings.Contains(head, " /first ") {
						io.WriteString(c, tc.first)
						stray = true
						continue
					}
					if stray {
						// The bodiless answer's stray body, sent once
						// the next request came: after the reuse peek.
						io.WriteString(c, "hello")
						stray = false
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
				}
			})
			n := newUpstream(t, Config{}, addr).Nodes()[0]
			do(t, n, &Request{Method: tc.method, URI: "/first"})
			require.Equal(t, 1, n.Stats().Idle)

			resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/next", Replayable: true})
			require.NoError(t, err, "the stray bytes are no answer of the node's to this request")
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, "real", string(b))
			st := n.Stats()
			assert.EqualValues(t, 1, st.Retried)
			assert.EqualValues(t, 2, accepted.Load(), "sent again on a fresh connection")
			assert.EqualValues(t, 3, seen.Load())
			assert.Zero(t, st.Failures, "a stale connection's bytes are not a failure of the node")

			// Not Replayable: it may have been acted on, it is not sent
			// again, and the node's garbage is its failure.
			do(t, n, &Request{Method: tc.method, URI: "/first"})
			_, err = n.RoundTrip(t.Context(), &Request{Method: "POST", URI: "/post"})
			require.Error(t, err)
			assert.EqualValues(t, 1, n.Stats().Retried, "a POST is not resent")
		})
	}
}

// TestStrayBytesOnAnIdleConnectionAreNoAnswer over TLS, with the stray
// answer in the TLS record that ends the first answer: the body's last
// read takes what it needs of the record, and crypto/tls keeps the rest,
// decrypted, where neither the read buffer nor the peek at the socket
// sees it. It is no answer to the next request either.
func TestStrayBytesInTheLastTLSRecordAreNoAnswer(t *testing.T) {
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
	// Records of up to 16 KiB from the start, as nginx's ssl_buffer_size
	// makes them (Go's own start at one TCP segment).
	n, accepted := tlsTestNode(t, true, func(c net.Conn, cfg *tls.Config) {
		tc := tls.Server(c, cfg)
		br := bufio.NewReader(tc)
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
			if strings.HasPrefix(head, "GET /twice ") {
				// Longer than the read buffer, so that the body's
				// reads go straight to the caller's buffer, each
				// asking crypto/tls for what is left of the body.
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 10000) + stray // one write: one record
			}
			io.WriteString(tc, answer)
		}
	})
	// Read as edge copies a body: with a 32 KiB buffer.
	get := func(uri string) string {
		resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: uri})
		require.NoError(t, err)
		var got []byte
		buf := make([]byte, 32<<10)
		for {
			k, err := resp.Body.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		resp.Body.Close()
		return string(got)
	}
	require.Len(t, get("/twice"), 10000)
	assert.Equal(t, "real", get("/next"), "the next request gets its own answer")
	assert.EqualValues(t, 2, accepted.Load(), "the connection with stray bytes is closed")
}

// tlsTestNode is an https node that serve answers, on each connection
// with the server's TLS config (httptest's certificate, HTTP/1.1 only;
// wholeRecords: records of up to 16 KiB from the start), and how many
// connections it accepted.
func tlsTestNode(t *testing.T, wholeRecords bool, serve func(c net.Conn, cfg *tls.Config)) (*Node, *atomic.Int64) {
	t.Helper()
	be := httptest.NewUnstartedServer(http.NotFoundHandler())
	be.StartTLS()
	t.Cleanup(be.Close)
	roots := x509.NewCertPool()
	roots.AddCert(be.Certificate())
	cfg := be.TLS.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	cfg.DynamicRecordSizingDisabled = wholeRecords
	addr, accepted := loopback.Backend(t, func(c net.Conn) { serve(c, cfg) })
	n := newUpstream(t, Config{
		Nodes: []NodeConfig{{Scheme: "https", Host: addr}},
		TLS:   &tls.Config{RootCAs: roots, ServerName: "example.com"},
	}).Nodes()[0]
	return n, accepted
}

// heldWrites is a TLS server's connection that keeps what is written
// while hold is set, for the test to send in pieces of its choosing.
type heldWrites struct {
	net.Conn
	hold bool
	held []byte
}

func (h *heldWrites) Write(p []byte) (int, error) {
	if h.hold {
		h.held = append(h.held, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// TestStrayBytesInAPartialTLSRecordAreNoAnswer: the first bytes of a
// stray answer's record come in the same segment as the record ending
// the answer, the rest later. crypto/tls keeps those first bytes, not
// yet a record it can open, where neither the read buffer nor the peek
// at the socket sees them, and asks the socket for the rest at the next
// request's read: the stray answer must not be taken for that request's,
// as it is not over plain TCP (its bytes would be in the read buffer).
func TestStrayBytesInAPartialTLSRecordAreNoAnswer(t *testing.T) {
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
	const real = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
	n, accepted := tlsTestNode(t, false, func(c net.Conn, cfg *tls.Config) {
		hw := &heldWrites{Conn: c}
		tc := tls.Server(hw, cfg)
		br := bufio.NewReader(tc)
		var rest []byte // of the stray answer's record
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			if !strings.HasPrefix(head, "GET /twice ") {
				if rest != nil {
					c.Write(rest) // the stray record completes only now
					rest = nil
				}
				io.WriteString(tc, real)
				continue
			}
			hw.hold = true
			io.WriteString(tc, real)  // one record
			io.WriteString(tc, stray) // another
			hw.hold = false
			end := 5 + int(hw.held[3])<<8 | int(hw.held[4]) // the first record's
			cut := end + 3                                  // and 3 bytes of the second's header
			c.Write(hw.held[:cut])
			rest = hw.held[cut:]
			hw.held = nil
		}
	})
	get := func(uri string) string {
		resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: uri})
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		return string(b)
	}
	require.Equal(t, "real", get("/twice"))
	assert.Equal(t, "real", get("/next"), "the next request gets its own answer")
	assert.EqualValues(t, 2, accepted.Load(), "the connection with stray bytes is closed")
}

// A node that declines an upgrade (any answer but a 101) leaves its
// connection in a state the request made uncertain: a node that is itself
// a proxy may have tunnelled it to its own backend all the same (the
// WebSocket smuggling of a proxy that tunnels whatever the status), and
// the next request on it, another client's, would go through that
// tunnel. The connection is not pooled, as no reuse is worth that.
func TestDeclinedUpgradeIsNotPooled(t *testing.T) {
	addr, accepted := loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		head, err := readHead(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno")
		if !strings.Contains(head, "Upgrade: websocket\r\n") {
			return
		}
		// Tunnelled behind the 426 all the same: what comes next
		// is answered by whatever the tunnel reaches.
		if _, err := readHead(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ntunneled")
		}
	})
	n := newUpstream(t, Config{ResponseTimeout: 5 * time.Second}, addr).Nodes()[0]
	resp, err := n.RoundTrip(t.Context(), &Request{
		Method: "GET", URI: "/ws", Upgrade: true,
		Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}},
	})
	require.NoError(t, err)
	assert.Equal(t, 426, resp.StatusCode)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, 0, n.Stats().Idle, "the connection of a declined upgrade is not pooled")

	resp, err = n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/next", Header: http.Header{}})
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "no", string(body), "the next request went through the declined upgrade's connection")
	assert.EqualValues(t, 2, accepted.Load())
}

// A kept-alive connection to an https node is not taken again once the
// node's certificate it was made with has expired: the next request
// makes a new handshake, which the expired certificate fails (a connect
// error, the node's failure), as Go's resumption refuses a session of an
// expired certificate and nginx ends an upstream connection after its
// keepalive_time. Kept busy within idle_timeout, such a connection went
// on being used for as long as the node kept it open.
func TestIdleConnectionOfAnExpiredNodeCertificateIsNotReused(t *testing.T) {
	notAfter := time.Now().Truncate(time.Second).Add(2 * time.Second)
	n, conns, served := nodeWithCertificateUntil(t, notAfter)
	_, body := do(t, n, &Request{Method: "GET", URI: "/before"})
	require.Equal(t, "ok", body)
	require.EqualValues(t, 1, conns.Load())

	time.Sleep(time.Until(notAfter) + 200*time.Millisecond)
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/after"})
	if err == nil {
		resp.Body.Close()
	}
	assert.EqualValues(t, 1, served.Load(), "no request sent after the certificate expired")
	require.ErrorIs(t, err, ErrConnect)
	assert.Contains(t, err.Error(), "expired")
	assert.EqualValues(t, 2, conns.Load(), "a new handshake, refused")
}

// A node certificate valid until 9999-12-31 (RFC 5280's "no well-defined
// expiration date") is kept alive as any other: its expiry, more than the
// 292 years a time.Duration holds, overflowed the monotonic clock's sum
// into the past, and every connection to such a node was closed when it
// was to be taken again, a handshake a request.
func TestConnectionOfANodeCertificateWithoutExpiryIsReused(t *testing.T) {
	n, conns, served := nodeWithCertificateUntil(t, time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))
	for i := range 3 {
		_, body := do(t, n, &Request{Method: "GET", URI: "/" + strconv.Itoa(i)})
		require.Equal(t, "ok", body)
	}
	assert.EqualValues(t, 3, served.Load())
	assert.EqualValues(t, 1, conns.Load(), "one connection, kept alive")
}

// nodeWithCertificateUntil starts an https node on 127.0.0.1 whose
// self-signed certificate is valid until notAfter, and returns it as an
// upstream's node that trusts it, with the node's connection and request
// counts.
func nodeWithCertificateUntil(t *testing.T, notAfter time.Time) (n *Node, conns, served *atomic.Int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "node"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	conns, served = new(atomic.Int64), new(atomic.Int64)
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "ok")
	}))
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	be.Config.ErrorLog = log.New(io.Discard, "", 0)
	be.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	be.StartTLS()
	t.Cleanup(be.Close)

	n = newUpstream(t, Config{
		Nodes: []NodeConfig{{Scheme: "https", Host: strings.TrimPrefix(be.URL, "https://")}},
		TLS:   &tls.Config{RootCAs: roots},
	}).Nodes()[0]
	return n, conns, served
}

// A node that accepts the connection but never finishes its TLS
// handshake (a plain-HTTP port named https, a hung process) costs a
// request connect_timeout, as a dial that is never answered: the
// handshake has its own bound, and the failure is a connect error, the
// node's.
func TestStalledNodeHandshakeIsBoundedByConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var read atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				k, _ := io.Copy(io.Discard, c) // the ClientHello, never answered
				read.Add(k)
			}()
		}
	}()
	n := newUpstream(t, Config{
		Nodes:          []NodeConfig{{Scheme: "https", Host: ln.Addr().String()}},
		ConnectTimeout: 200 * time.Millisecond,
	}).Nodes()[0]
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
	require.ErrorIs(t, err, ErrConnect)
	assert.NoError(t, ctx.Err(), "the handshake's own bound ended it, not the request's")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "TLS handshake")
	require.Eventually(t, func() bool { return read.Load() > 0 }, 5*time.Second, 10*time.Millisecond, "the node got a ClientHello")
}

// A node that speaks only TLS 1.1 is refused (README: TLS 1.2 at least
// towards nodes), also with tls10server=1 in GODEBUG (a systemd unit's
// Environment= set for another program): that setting lowers only
// servers' default minimum, a crypto/tls client with no MinVersion
// never offers less than TLS 1.2.
func TestNodeBelowTLS12IsRefusedWhateverGODEBUG(t *testing.T) {
	t.Setenv("GODEBUG", "tls10server=1")
	be := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	be.Config.ErrorLog = log.New(io.Discard, "", 0)
	be.TLS = &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}
	be.StartTLS()
	t.Cleanup(be.Close)
	roots := x509.NewCertPool()
	roots.AddCert(be.Certificate())
	n := newUpstream(t, Config{
		Nodes: []NodeConfig{{Scheme: "https", Host: strings.TrimPrefix(be.URL, "https://")}},
		TLS:   &tls.Config{RootCAs: roots},
	}).Nodes()[0]
	resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	if err == nil {
		resp.Body.Close()
	}
	require.ErrorIs(t, err, ErrConnect, "a TLS 1.1 node")
	assert.Contains(t, err.Error(), "protocol version")
}
