package edge

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"edged/internal/loopback"
)

// Flow control, bodies and the shapes of answers of edged's own HTTP/2
// server (h2server.go), over real TLS, through edged, to a real backend.

// flowEdge is an edge for test.acme.com whose proxy /up goes to a
// flowBackend; other paths are answered 404 by edged itself, without
// reading the request's body.
func flowEdge(t *testing.T, gate <-chan struct{}, serverExtra string) *testEdge {
	t.Helper()
	testCertDir(t) // before groupTOML names the certificate
	back := startBackend(t, flowBackend(gate))
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), serverExtra),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/up", back.addr),
	})
}

// flowPattern is n bytes that differ from one offset to the next and
// from one seed to another.
func flowPattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((i*7 + i/251 + seed*13) % 256)
	}
	return b
}

// flowSum is what /sum answers for a body.
func flowSum(b []byte) string {
	return fmt.Sprintf("%d %x", len(b), sha256.Sum256(b))
}

// flowEdgeLogged starts edged with environment "test" of 4 workers,
// its access log at the path it returns, and /up proxied to a
// flowBackend; serverExtra goes in server.toml.
func flowEdgeLogged(t *testing.T, serverExtra string) (*testEdge, string) {
	testCertDir(t)
	back := startBackend(t, flowBackend(nil))
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), serverExtra),
		"env.toml": fmt.Sprintf("[[environment]]\nname = \"test\"\nworkers = 4\n[environment.rules.access_log]\npath = %q\n", access) +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/up", back.addr),
	})
	return te, access
}

// flowBackend serves (the proxy strips /up):
//
//	/big?n=N      N bytes of flowPattern with Content-Length
//	/head         Content-Length: 12345 (and the body on GET)
//	/empty        Content-Length: 0, no body
//	/echo         the request's body back, with Content-Length
//	/sum          the body's length and SHA-256
//	/stream       chunks flushed one by one, no Content-Length
//	/sse          an event, flushed; a second once gate is closed
//	/trailer-in   the body back, with what came as X-Checksum trailer and header
//	/trailer-out  a body, then the trailer X-Done
func flowBackend(gate <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(flowPattern(n, 0))
		case "/head":
			w.Header().Set("Content-Length", "12345")
			if r.Method != http.MethodHead {
				_, _ = w.Write(flowPattern(12345, 0))
			}
		case "/empty":
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b)
		case "/sum":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, flowSum(b))
		case "/stream":
			f := w.(http.Flusher)
			for i := 0; i < 10; i++ {
				_, _ = w.Write(flowStreamChunk(i))
				f.Flush()
			}
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Second):
			}
			_, _ = io.WriteString(w, "data: two\n\n")
		case "/trailer-in":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("X-Got-Trailer", r.Trailer.Get("X-Checksum"))
			w.Header().Set("X-Got-Header", r.Header.Get("X-Checksum"))
			_, _ = w.Write(b)
		case "/trailer-out":
			w.Header().Set("Trailer", "X-Done")
			_, _ = io.WriteString(w, "body before the trailer")
			w.Header().Set("X-Done", "yes")
		default:
			http.NotFound(w, r)
		}
	})
}

func flowStreamChunk(i int) []byte {
	return append([]byte(fmt.Sprintf("chunk %d;", i)), flowPattern(3000+i, i)...)
}

// flowSettle is how long a test watches for frames the server must not send.
const flowSettle = 300 * time.Millisecond

// TestH2FlowInitialWindowBoundsTheResponse: a client's
// SETTINGS_INITIAL_WINDOW_SIZE bounds what a stream is sent before its
// WINDOW_UPDATE, the connection's window (65535 at the start) what all
// are; once both are given, the whole body arrives with END_STREAM.
func TestH2FlowInitialWindowBoundsTheResponse(t *testing.T) {
	te := flowEdge(t, nil, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1000}}})
	const size = 100 << 10
	fc.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n="+strconv.Itoa(size))...)

	fc.waitBody(1, 1000, 5*time.Second)
	time.Sleep(flowSettle) // what else the server would send
	fc.drain()
	s := fc.stream(1)
	require.Equal(t, http.StatusOK, s.status, "%v", s)
	require.False(t, s.rst || s.goaway || s.ended, "%v", s)
	require.LessOrEqual(t, len(s.body), 1000, "no more than the stream's window before any WINDOW_UPDATE")
	assert.Equal(t, 1000, len(s.body), "the window is used whole")

	// The stream's window opened wide: the connection's bounds now.
	fc.windowUpdate(1, 1<<20)
	fc.waitBody(1, 65535, 5*time.Second)
	time.Sleep(flowSettle)
	fc.drain()
	s = fc.stream(1)
	require.False(t, s.rst || s.goaway || s.ended, "%v", s)
	require.LessOrEqual(t, len(s.body), 65535, "no more than the connection's window")
	assert.Equal(t, 65535, len(s.body), "the connection's window is used whole")

	fc.windowUpdate(0, size)
	s = fc.result(1, 5*time.Second)
	require.True(t, s.ended, "%v", s)
	assert.False(t, s.rst, "%v", s)
	assert.False(t, s.dataAfterEnd)
	assert.True(t, bytes.Equal(flowPattern(size, 0), s.body), "the whole body, in order (%d bytes)", len(s.body))
	assert.Equal(t, strconv.Itoa(size), s.field("content-length"))
}

// TestH2FlowSettingsRaiseUnblocksStreams: a second SETTINGS that raises
// SETTINGS_INITIAL_WINDOW_SIZE adds the difference to the windows of the
// open streams (RFC 9113 6.9.2): a stream waiting for window goes on,
// by the difference and no more.
func TestH2FlowSettingsRaiseUnblocksStreams(t *testing.T) {
	te := flowEdge(t, nil, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1000}}})
	const size = 20000
	fc.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n="+strconv.Itoa(size))...)
	fc.waitBody(1, 1000, 5*time.Second)
	time.Sleep(flowSettle)
	fc.drain()
	s := fc.stream(1)
	require.Equal(t, 1000, len(s.body), "%v", s)
	require.False(t, s.ended || s.rst, "%v", s)

	fc.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 5000})
	fc.waitBody(1, 5000, 5*time.Second)
	time.Sleep(flowSettle)
	fc.drain()
	s = fc.stream(1)
	require.False(t, s.ended || s.rst, "%v", s)
	assert.Equal(t, 5000, len(s.body), "1000 sent + (5000 - 1000) of the raise: the delta applies, not the new size")

	fc.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
	s = fc.result(1, 5*time.Second)
	require.True(t, s.ended, "%v", s)
	assert.False(t, s.rst)
	assert.True(t, bytes.Equal(flowPattern(size, 0), s.body), "the whole body, in order (%d bytes)", len(s.body))
	assert.Empty(t, fc.goaways)
}

// TestH2FlowStreamWithoutWindowIsResetAfterWriteTimeout: a stream that
// gets no window within write_timeout is reset (INTERNAL_ERROR); the
// connection and its other streams live on.
func TestH2FlowStreamWithoutWindowIsResetAfterWriteTimeout(t *testing.T) {
	te := flowEdge(t, nil, `write_timeout = "1s"`)
	fc := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}})
	start := time.Now()
	fc.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n=1000")...)
	s := fc.result(1, 5*time.Second)
	elapsed := time.Since(start)
	require.True(t, s.rst, "%v", s)
	assert.Equal(t, http2.ErrCodeInternal, s.code)
	assert.Equal(t, http.StatusOK, s.status, "the head went out; the body found no window")
	assert.Empty(t, s.body)
	assert.GreaterOrEqual(t, elapsed, 900*time.Millisecond, "not before write_timeout")
	assert.Less(t, elapsed, 4*time.Second)

	// Answers without a body need no window.
	fc.headers(3, true, h2get("HEAD", "test.acme.com", "/up/big?n=1000")...)
	s = fc.result(3, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.True(t, s.endedOnHeaders, "%v", s)
	fc.headers(5, true, h2get("GET", "test.acme.com", "/up/empty")...)
	s = fc.result(5, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.True(t, s.endedOnHeaders, "%v", s)
	// And one with a body, once the client gives window.
	fc.headers(7, true, h2get("GET", "test.acme.com", "/up/big?n=1000")...)
	fc.windowUpdate(7, 1000)
	s = fc.result(7, 5*time.Second)
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.True(t, bytes.Equal(flowPattern(1000, 0), s.body))
	assert.Empty(t, fc.goaways, "the connection lives")
}

// TestH2FlowLargeUploads: uploads larger than the connection's (1 MiB) and
// the stream's (256 KiB) windows arrive whole, one and four at once on one
// connection: the windows are given back as the body is forwarded.
func TestH2FlowLargeUploads(t *testing.T) {
	te := flowEdge(t, nil, "")
	var dials atomic64
	c := te.h2client(&dials)
	const size = 3 << 20
	post := func(seed int) error {
		body := flowPattern(size, seed)
		resp, err := c.Post("https://test.acme.com/up/sum", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || string(got) != flowSum(body) {
			return fmt.Errorf("upload %d: %s %d %q, want 200 %q", seed, resp.Proto, resp.StatusCode, got, flowSum(body))
		}
		return nil
	}
	require.NoError(t, post(0))

	errs := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		go func() { errs <- post(i) }()
	}
	for i := 0; i < 4; i++ {
		assert.NoError(t, <-errs)
	}
	assert.Equal(t, int64(1), dials.load(), "all on one connection")
}

// TestH2FlowQueuedUploadsLeaveTheWindowToTheOneServed: uploads on one
// connection queued behind the environment's only worker do not take the
// connection's window from the one that holds it. Each queued stream used
// to hold its whole stream window (256 KiB) unread besides what it read
// ahead, so four of them held the 1 MiB connection window: the upload
// being forwarded got no more window and was answered 400 "did not arrive
// within read_timeout", the client's fault in the log for edged's flow
// control. A stream's window is what it reads ahead (64 KiB) until it has
// its worker, as nginx's http2_body_preread_size.
func TestH2FlowQueuedUploadsLeaveTheWindowToTheOneServed(t *testing.T) {
	testCertDir(t)
	back := startBackend(t, flowBackend(nil))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `read_timeout = "3s"`),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 1\nqueue = 16\nqueue_timeout = \"20s\"\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/up", back.addr),
	})
	pool := te.srv.Snapshot().Env("test").pool
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.waitSettings()
	const size = 600 << 10
	ids := []uint32{1, 3, 5, 7, 9, 11}
	bodies := map[uint32][]byte{}
	sent := map[uint32]int{}
	for i, id := range ids {
		bodies[id] = flowPattern(size, i)
	}
	post := h2get("POST", "test.acme.com", "/up/sum", "content-length", strconv.Itoa(size))
	// room is what stream id may send now: what is left of its body, as
	// the windows allow, a frame at most.
	room := func(id uint32) int64 { return min(fc.window(0), fc.window(id), int64(size-sent[id]), 16<<10) }

	// Stream 1 sends its first 64 KiB and takes the worker.
	fc.headers(1, false, post...)
	sent[1] = fc.send(1, bodies[1][:64<<10], false, 5*time.Second)
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond, "stream 1 holds the worker")

	// The five others queue, and send what their windows let go, as a
	// client with its bodies ready does, until the windows stop moving.
	for _, id := range ids[1:] {
		fc.headers(id, false, post...)
	}
	for round := 0; round < 20; round++ {
		moved := false
		for _, id := range ids[1:] {
			for k := room(id); k > 0; k = room(id) {
				fc.data(id, false, bodies[id][sent[id]:sent[id]+int(k)])
				sent[id] += int(k)
				moved = true
			}
		}
		fc.waitFor(100*time.Millisecond, func() bool { return false }) // the WINDOW_UPDATEs of what was read
		if !moved && round > 0 {
			break
		}
	}
	require.Eventually(t, func() bool { return pool.Stats().Queued == len(ids)-1 }, 5*time.Second, 5*time.Millisecond,
		"the others wait for the worker, their bodies' first 64 KiB read: %+v", pool.Stats())

	// Then every stream sends its rest as its window lets it, the worker
	// taking them in the pool's order: every upload whole.
	deadline := time.Now().Add(10 * time.Second)
	for done := 0; done < len(ids) && time.Now().Before(deadline); {
		for _, id := range ids {
			for k := room(id); k > 0; k = room(id) {
				fc.data(id, sent[id]+int(k) == size, bodies[id][sent[id]:sent[id]+int(k)])
				sent[id] += int(k)
			}
		}
		fc.waitFor(20*time.Millisecond, func() bool { return false })
		done = 0
		for _, id := range ids {
			if fc.over(id) {
				done++
			}
		}
	}
	for _, id := range ids {
		s := fc.result(id, time.Second)
		assert.Equal(t, http.StatusOK, s.status, "stream %d: %v", id, s)
		assert.Equal(t, flowSum(bodies[id]), string(s.body), "stream %d", id)
	}
	assert.Empty(t, fc.goaways)
}

// TestH2FlowUnreadBodiesGiveTheConnectionWindowBack: the bodies of
// requests edged answers without reading them (404: no proxy) give their
// bytes back to the connection's window. Seventeen of them send 64 KiB
// each (their stream window), more than the 1 MiB connection window; then
// a small upload on the same connection still goes through. Without the
// give-back the last, or the upload, would find no window.
func TestH2FlowUnreadBodiesGiveTheConnectionWindowBack(t *testing.T) {
	te := flowEdge(t, nil, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.waitSettings()
	require.Equal(t, int64(1<<20), fc.window(0), "the server's connection window")
	require.Equal(t, int64(h2StreamPreread), fc.initWin, "the server's stream window")

	const declared = 400 << 10
	body := flowPattern(declared, 1)
	total := 0
	id := uint32(1)
	for i := 0; i < 1<<20/h2StreamPreread+1; i++ {
		fc.headers(id, false, h2get("POST", "test.acme.com", "/nowhere", "content-length", strconv.Itoa(declared))...)
		// As much as the windows let go, as a client with its body ready
		// does: the frames may cross the server's answer and its reset.
		n := int(min(fc.window(0), fc.window(id)))
		require.Positive(t, n, "stream %d: no window left (%d sent so far)", id, total)
		for off := 0; off < n; off += 16 << 10 {
			fc.data(id, false, body[off:min(n, off+16<<10)])
		}
		total += n
		s := fc.result(id, 5*time.Second)
		assert.Equal(t, http.StatusNotFound, s.status, "stream %d: %v", id, s)
		if s.rst {
			assert.Equal(t, http2.ErrCodeNo, s.code, "stream %d: the answer came first, the rest of the request is not wanted", id)
		}
		require.False(t, s.goaway, "stream %d: %v", id, s)
		// Wait for the reset too, and for the window of what was sent
		// in the meantime, before the next stream.
		fc.wait(5*time.Second, fmt.Sprintf("the connection window back after stream %d", id), func() bool {
			return fc.connWin > 1<<20-h2WindowUpdateMin
		})
		id += 2
	}
	assert.Greater(t, total, 1<<20, "more than the connection window was sent")

	fc.headers(id, false, h2get("POST", "test.acme.com", "/up/echo", "content-length", "5")...)
	fc.send(id, []byte("hello"), true, 5*time.Second)
	s := fc.result(id, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.Equal(t, "hello", string(s.body))
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.Empty(t, fc.goaways)
}

// TestH2FlowTrailers: trailers over HTTP/2. edged forwards neither
// request nor response trailers (upstream's client writes a chunked
// body's last chunk with an empty trailer section and drops the node's
// trailers; Trailer is a hop-by-hop field): what holds is that a request
// that ends with trailing HEADERS is accepted and forwarded whole, that no
// trailer field turns into a header field either way, and that an answer
// whose node sent trailers arrives whole and ends.
func TestH2FlowTrailers(t *testing.T) {
	te := flowEdge(t, nil, "")

	t.Run("request", func(t *testing.T) {
		fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
		fc.headers(1, false, h2get("POST", "test.acme.com", "/up/trailer-in", "trailer", "x-checksum")...)
		fc.send(1, []byte("payload"), false, 5*time.Second)
		fc.headers(1, true, "x-checksum", "abc")
		s := fc.result(1, 5*time.Second)
		require.Equal(t, http.StatusOK, s.status, "%v", s)
		assert.True(t, s.ended && !s.rst, "%v", s)
		assert.Equal(t, "payload", string(s.body), "the body before the trailers, whole")
		assert.Empty(t, s.field("x-got-header"), "a trailer is not merged into the header")
		assert.Empty(t, s.field("x-got-trailer"), "edged forwards no trailers")
	})

	t.Run("request with a framing field as trailer", func(t *testing.T) {
		fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
		fc.headers(1, false, h2get("POST", "test.acme.com", "/up/trailer-in")...)
		fc.send(1, []byte("payload"), false, 5*time.Second)
		fc.headers(1, true, "content-length", "7")
		s := fc.result(1, 5*time.Second)
		assert.True(t, s.rst, "%v", s)
		assert.Equal(t, http2.ErrCodeProtocol, s.code, "%v", s)
	})

	t.Run("response", func(t *testing.T) {
		c := te.h2client(nil)
		resp, err := c.Get("https://test.acme.com/up/trailer-out")
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, 2, resp.ProtoMajor)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "body before the trailer", string(b))
		assert.Empty(t, resp.Header.Get("X-Done"), "the trailer is not merged into the header")
		assert.Empty(t, resp.Trailer.Get("X-Done"), "edged forwards no trailers")
	})
}

// TestH2FlowExpectContinue: a request with Expect: 100-continue gets a
// HEADERS with :status 100 once its body is wanted, before the final
// answer; its body then goes through.
func TestH2FlowExpectContinue(t *testing.T) {
	te := flowEdge(t, nil, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.headers(1, false, h2get("POST", "test.acme.com", "/up/echo", "expect", "100-continue", "content-length", "5")...)
	fc.wait(5*time.Second, "100 Continue", func() bool {
		s := fc.stream(1)
		return len(s.interim) > 0 || s.status != 0 || s.rst || s.goaway
	})
	fc.drain()
	s := fc.stream(1)
	require.Equal(t, []int{http.StatusContinue}, s.interim, "%v", s)
	require.Zero(t, s.status, "no final answer before the body: %v", s)
	require.False(t, s.ended || s.rst, "%v", s)

	fc.send(1, []byte("hello"), true, 5*time.Second)
	s = fc.result(1, 5*time.Second)
	assert.Equal(t, []int{http.StatusContinue}, s.interim, "one 100")
	assert.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.Equal(t, "hello", string(s.body))
	assert.True(t, s.ended && !s.rst, "%v", s)
}

// TestH2FlowUnknownLengthResponse: an answer the node sends in flushed
// chunks, without Content-Length, arrives whole and its stream ends.
func TestH2FlowUnknownLengthResponse(t *testing.T) {
	te := flowEdge(t, nil, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.headers(1, true, h2get("GET", "test.acme.com", "/up/stream")...)
	s := fc.result(1, 5*time.Second)
	require.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.False(t, s.dataAfterEnd)
	var want []byte
	for i := 0; i < 10; i++ {
		want = append(want, flowStreamChunk(i)...)
	}
	assert.True(t, bytes.Equal(want, s.body), "the whole body, in order (%d bytes of %d)", len(s.body), len(want))
	assert.Empty(t, s.field("content-length"), "no length was known")
}

// TestH2FlowEventStreamIsNotBuffered: an SSE answer's first event reaches
// the client while the node still holds the second.
func TestH2FlowEventStreamIsNotBuffered(t *testing.T) {
	gate := make(chan struct{})
	te := flowEdge(t, gate, "")
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.headers(1, true, h2get("GET", "test.acme.com", "/up/sse")...)
	const first = "data: one\n\n"
	s := fc.waitBody(1, len(first), 3*time.Second)
	require.Equal(t, http.StatusOK, s.status, "%v", s)
	require.Equal(t, first, string(s.body), "the first event, before the second was written")
	require.False(t, s.ended || s.rst, "%v", s)
	assert.Equal(t, "text/event-stream", s.field("content-type"))

	close(gate)
	s = fc.result(1, 5*time.Second)
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.Equal(t, first+"data: two\n\n", string(s.body))
}

// TestH2FlowBodilessAnswersEndOnHeaders: the answer to HEAD, and one
// with Content-Length: 0, are one HEADERS frame with END_STREAM and no
// DATA, carrying the node's Content-Length, a Date and edged's request id.
func TestH2FlowBodilessAnswersEndOnHeaders(t *testing.T) {
	te := flowEdge(t, nil, "")
	for i, tc := range []struct {
		method, path, length string
	}{
		{"HEAD", "/up/head", "12345"},
		{"GET", "/up/empty", "0"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
			fc.headers(1, true, h2get(tc.method, "test.acme.com", tc.path)...)
			fc.result(1, 5*time.Second)
			fc.ping(strconv.Itoa(i))
			s := fc.stream(1)
			require.Equal(t, http.StatusOK, s.status, "%v", s)
			assert.True(t, s.endedOnHeaders, "END_STREAM on the HEADERS: %v", s)
			assert.Zero(t, s.dataFrames, "no DATA")
			assert.False(t, s.rst)
			assert.Equal(t, []string{tc.length}, s.header["content-length"])
			assert.NotEmpty(t, s.header["date"])
			assert.False(t, strings.ContainsAny(strings.Join(s.header["date"], ""), "\r\n"))
			require.Len(t, s.header["x-request-id"], 1, "%v", s.header)
			assert.Regexp(t, regexp.MustCompile(`^[0-9a-f]{32}$`), s.header["x-request-id"][0])
		})
	}
}

// TestH2FlowNoContentHasNoLength: a node's 204 that carries a
// Content-Length (which RFC 9110 8.6 forbids on a 204) reaches an HTTP/2
// client without it, as edged's HTTP/1.1 server already sends it; a
// 304's, which describes the representation, is kept in both protocols.
func TestH2FlowNoContentHasNoLength(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			status := "204 No Content"
			if req.URL.Path == "/304" {
				status = "304 Not Modified"
			}
			if _, err := io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 5\r\nEtag: \"v1\"\r\n\r\n"); err != nil {
				return
			}
		}
	})
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", addr),
	})
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	for i, tc := range []struct {
		path   string
		status int
		length []string
	}{
		{"/204", http.StatusNoContent, nil},
		{"/304", http.StatusNotModified, []string{"5"}},
	} {
		id := uint32(2*i + 1)
		fc.headers(id, true, h2get("GET", "test.acme.com", tc.path)...)
		s := fc.result(id, 5*time.Second)
		require.Equal(t, tc.status, s.status, "HTTP/2 %s: %v", tc.path, s)
		assert.True(t, s.endedOnHeaders, "HTTP/2 %s: %v", tc.path, s)
		assert.Equal(t, tc.length, s.header["content-length"], "HTTP/2 %s", tc.path)
		assert.Equal(t, []string{`"v1"`}, s.header["etag"], "HTTP/2 %s", tc.path)

		resp, body := rawH1(t, te.addr, "test.acme.com", "GET "+tc.path+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", false)
		require.NotNil(t, resp, tc.path)
		require.Equal(t, tc.status, resp.StatusCode, "HTTP/1.1 %s", tc.path)
		assert.Empty(t, body)
		assert.Equal(t, tc.length, resp.Header["Content-Length"], "HTTP/1.1 %s", tc.path)
	}
}
