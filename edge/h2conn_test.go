package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// gateConn counts the writes that reach the socket, and can hold them.
type gateConn struct {
	net.Conn
	mu      sync.Mutex
	writes  int
	gate    chan struct{} // when set, a write waits for it to close
	waiting chan struct{} // closed when a write is waiting at the gate
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes++
	gate, waiting := g.gate, g.waiting
	g.gate, g.waiting = nil, nil
	g.mu.Unlock()
	if gate != nil {
		close(waiting)
		<-gate
	}
	return g.Conn.Write(p)
}

// hold makes the next write wait until the returned release is called.
func (g *gateConn) hold() (waiting <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.waiting = make(chan struct{}), make(chan struct{})
	gate := g.gate
	return g.waiting, func() { close(gate) }
}

func (g *gateConn) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writes
}

// tcpPair is a loopback TCP connection: its client and server ends,
// closed when the test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

// tlsPair is a TLS connection over loopback TCP, handshake done: the
// server side as an h2Conn over a gateConn, and the client side.
func tlsPair(t *testing.T, timeout time.Duration) (*h2Conn, *gateConn, *tls.Conn) {
	t.Helper()
	dir := testCertDir(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "test.acme.com.pem"), filepath.Join(dir, "test.acme.com.key"))
	require.NoError(t, err)
	rc, raw := tcpPair(t)
	cc := tls.Client(rc, &tls.Config{RootCAs: caPool(t), ServerName: "test.acme.com"})
	g := &gateConn{Conn: raw}
	sc := tls.Server(g, &tls.Config{Certificates: []tls.Certificate{cert}})
	handshook := make(chan error, 1)
	go func() { handshook <- cc.Handshake() }()
	require.NoError(t, sc.Handshake())
	require.NoError(t, <-handshook)
	hc := newH2Conn(sc, timeout)
	t.Cleanup(func() { hc.Close(); cc.Close() })
	return hc, g, cc
}

func TestH2ConnGathersWritesWhileTheWireIsBusy(t *testing.T) {
	hc, g, cc := tlsPair(t, 5*time.Second)
	before := g.count()
	waiting, release := g.hold()
	_, err := hc.Write([]byte("first;"))
	require.NoError(t, err)
	<-waiting // the flusher is on the wire with "first;"

	var want bytes.Buffer
	want.WriteString("first;")
	for i := range 50 {
		frame := fmt.Sprintf("frame %02d;", i)
		want.WriteString(frame)
		n, err := hc.Write([]byte(frame))
		require.NoError(t, err, "a Write does not wait for the wire")
		require.Equal(t, len(frame), n)
	}
	release()

	got := make([]byte, want.Len())
	require.NoError(t, cc.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(cc, got)
	require.NoError(t, err)
	assert.Equal(t, want.String(), string(got), "every byte, in order")
	assert.Equal(t, 2, g.count()-before, "the 50 writes made while the wire was busy went out in one write")
}

func TestH2ConnLargeWriteArrivesWhole(t *testing.T) {
	hc, _, cc := tlsPair(t, 5*time.Second)
	big := bytes.Repeat([]byte("0123456789abcdef"), (4*h2PendingMax)/16+3) // four times the bound, and a bit
	read := make(chan []byte, 1)
	go func() {
		got := make([]byte, len(big))
		_ = cc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(cc, got)
		read <- got[:n]
	}()
	n, err := hc.Write(big)
	require.NoError(t, err)
	assert.Equal(t, len(big), n)
	assert.True(t, bytes.Equal(big, <-read), "every byte, in order")
}

func TestH2ConnCloseSendsWhatIsPending(t *testing.T) {
	hc, g, cc := tlsPair(t, 5*time.Second)
	waiting, release := g.hold()
	_, err := hc.Write([]byte("a"))
	require.NoError(t, err)
	<-waiting
	_, err = hc.Write([]byte("b"))
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- hc.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while the wire still held pending bytes")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	require.NoError(t, <-closed)

	require.NoError(t, cc.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(cc)
	require.NoError(t, err, "the peer sees a clean close after the data")
	assert.Equal(t, "ab", string(b))
	_, err = hc.Write([]byte("c"))
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestH2ConnPeerThatStopsReadingTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hc, _, _ := tlsPair(t, timeout) // the client never reads
	chunk := make([]byte, 64<<10)
	start := time.Now()
	var err error
	for i := 0; i < 2000 && err == nil; i++ { // bounded: 125 MiB at most
		_, err = hc.Write(chunk)
	}
	require.Error(t, err, "the writes fail once the wire stalls past the timeout")
	assert.Less(t, time.Since(start), 10*time.Second)
	var ne net.Error
	assert.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "a timeout: %v", err)

	_, err = hc.Write([]byte("x"))
	assert.Error(t, err, "a failed wire fails every later write")
	assert.NoError(t, closeWithin(hc, 2*timeout+time.Second))
}

func closeWithin(c io.Closer, d time.Duration) error {
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("Close took longer than %s", d)
	}
}

// Many streams at once on one HTTP/2 connection through edged: every
// answer arrives whole and on its own stream.
func TestHTTP2ConcurrentStreams(t *testing.T) {
	testCertDir(t) // before groupTOML names the certificate
	b := nameBackend(t, "prod")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"prod.toml": `
[[environment]]
name = "prod"
workers = 256
queue = 256
` + groupTOML("prod", "prod-group", "prod.acme.com", "prod.acme.com") +
			proxyTOML("prod", "user-service", "/users", b.addr),
	})
	c := te.h2client(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(fmt.Sprintf("https://prod.acme.com/users/%d", i))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("prod /%d", i); err != nil || resp.StatusCode != 200 || string(b) != want || resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("request %d: %s %d %q (%v), want 200 %q", i, resp.Proto, resp.StatusCode, b, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Shutdown with an HTTP/2 request in flight: the request is answered in
// full, the connection is told to go away, and Shutdown returns once it is
// closed.
func TestHTTP2ShutdownFinishesStreamsInFlight(t *testing.T) {
	testCertDir(t) // before groupTOML names the certificate
	entered := make(chan struct{}, 1)
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "slow answer")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "slow", "/slow", slow.addr),
	})
	var dials atomic64
	c := te.h2client(&dials)
	done := getAsync(c, "https://test.acme.com/slow/x")
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, te.srv.Shutdown(ctx), "Shutdown waits for the stream, within its deadline")
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, 200, r.status)
	assert.Equal(t, "slow answer", r.body)
	assert.Less(t, time.Since(start), 3*time.Second)

	_, err := c.Get("https://test.acme.com/slow/x")
	assert.Error(t, err, "after the GOAWAY, a new request needs a new connection, which is refused")
	assert.Equal(t, int64(2), dials.load(), "the GOAWAY retired the first connection; the second dial was refused")
}

// read_timeout bounds an HTTP/2 request body (h2Handler sets it on the
// streams that have one; x/net's own per-stream timer is off): a stream
// whose body stalls is answered 400 once it passes, while a bodiless
// stream on the same connection is answered at once.
func TestHTTP2ReadTimeoutBoundsTheBody(t *testing.T) {
	rec := recordingBackend(t)
	te, logs := oneEnv(t, rec, `read_timeout = "1s"`, "")
	h := dialH2(t, te.addr, "test.acme.com")
	start := time.Now()
	h.headers(1, false, h2get("POST", "test.acme.com", "/x", "content-length", "100")...)
	require.NoError(t, h.fr.WriteData(1, false, []byte("0123456789")))
	h.headers(3, true, h2get("GET", "test.acme.com", "/y")...)
	get := h.result(3)
	assert.Equal(t, http.StatusOK, get.status, "%+v", get)
	assert.Less(t, time.Since(start), time.Second, "the GET does not wait for the stalled upload")

	post := h.result(1)
	elapsed := time.Since(start)
	assert.Equal(t, http.StatusBadRequest, post.status, "%+v", post)
	assert.Contains(t, post.body, "did not arrive within read_timeout")
	assert.GreaterOrEqual(t, elapsed, 900*time.Millisecond)
	assert.Less(t, elapsed, 5*time.Second, "read_timeout, not response_timeout (30s), ended it")
	assert.NotContains(t, logs.String(), "upstream failed")
}

// TestHTTP2ProxiedResponseHeader: over HTTP/2, edged's X-Request-Id
// (given to x/net under its lowercase wire name) replaces the node's:
// once, the id the node saw; the node's other fields kept, its
// hop-by-hop ones dropped.
func TestHTTP2ProxiedResponseHeader(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Request-Id"] = []string{"from-the-node"}
		h["X-Seen-Request-Id"] = []string{r.Header.Get("X-Request-Id")}
		h["X-Kept"] = []string{"a", "b"}
		h["Keep-Alive"] = []string{"timeout=5"}
		io.WriteString(w, "ok")
	}), "")
	c := te.h2client(nil)
	for _, rid := range []string{"", "client-chosen-id"} {
		req, err := http.NewRequest("GET", "https://test.acme.com/x", nil)
		require.NoError(t, err)
		if rid != "" {
			req.Header.Set("X-Request-Id", rid)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 2, resp.ProtoMajor)
		require.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "ok", string(body))
		h := resp.Header
		require.Len(t, h["X-Request-Id"], 1, "one id, edged's")
		assert.NotEqual(t, "from-the-node", h["X-Request-Id"][0])
		assert.Equal(t, h["X-Seen-Request-Id"], h["X-Request-Id"], "the id the node saw")
		if rid != "" {
			assert.Equal(t, rid, h.Get("X-Request-Id"), "a client's valid id is kept")
		}
		assert.Equal(t, []string{"a", "b"}, h["X-Kept"])
		assert.Empty(t, h["Keep-Alive"])
	}
}

// TestHTTP2StalledReaderIsCut: an HTTP/2 client that gives edged a large window and then stops
// reading has its connection closed about write_timeout after the wire
// stalls (h2Conn), x/net's WriteByteTimeout being unset: over
// real TLS, through edged, not h2Conn alone.
func TestHTTP2StalledReaderIsCut(t *testing.T) {
	n, err := stallH2Reader(t, `write_timeout = "300ms"`)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was closed, not still streaming after %d bytes: %v", n, err)
	assert.Less(t, n, int64(64<<20), "only what the socket buffers held")
}

// stallH2Reader starts an edge with serverExtra whose backend streams
// without end, asks it over HTTP/2 with a 1 GiB window, reads nothing for
// 3 s, then reads what comes for 5 s at most: what it read, and how the
// reading ended.
func stallH2Reader(t *testing.T, serverExtra string) (int64, error) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}), serverExtra)
	h := dialH2(t, te.addr, "test.acme.com")
	require.NoError(t, h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}))
	require.NoError(t, h.fr.WriteWindowUpdate(0, 1<<30))
	h.headers(1, true, h2get("GET", "test.acme.com", "/big")...)
	time.Sleep(3 * time.Second) // not reading
	require.NoError(t, h.c.SetReadDeadline(time.Now().Add(5*time.Second)))
	return io.Copy(io.Discard, h.c)
}
