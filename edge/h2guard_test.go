package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The connection-level guards of edged's own HTTP/2 server (h2server.go),
// each against a real edge on loopback TLS with a real backend, driven by
// a client that writes HTTP/2 frame by frame.

// guardBackend answers "ok"; a request with ?wait=<duration> is held that
// long first, or until its context ends (recorded in cancelled).
type guardBackend struct {
	*backend
	hits      atomic.Int64
	entered   chan string    // each request's path, as it arrives
	cancelled chan time.Time // when a held request's context ended
}

func newGuardBackend(t *testing.T) *guardBackend {
	gb := &guardBackend{entered: make(chan string, 8192), cancelled: make(chan time.Time, 8192)}
	gb.backend = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gb.hits.Add(1)
		select {
		case gb.entered <- r.URL.Path:
		default:
		}
		if d, _ := time.ParseDuration(r.URL.Query().Get("wait")); d > 0 {
			select {
			case <-r.Context().Done():
				select {
				case gb.cancelled <- time.Now():
				default:
				}
				return
			case <-time.After(d):
			}
		}
		fmt.Fprint(w, "ok")
	}))
	return gb
}

// waitEntered waits for the backend to get a request.
func (gb *guardBackend) waitEntered(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-gb.entered:
	case <-time.After(d):
		t.Fatalf("the backend got no request within %s", d)
	}
}

// guardEdge is an edge serving test.acme.com (group "h2guard") from gb.
func guardEdge(t *testing.T, gb *guardBackend, serverExtra string) *testEdge {
	t.Helper()
	testCertDir(t) // before groupTOML names the certificate
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), serverExtra),
		"env.toml": envTOML("test", "") + groupTOML("test", "h2guard", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", gb.addr),
	})
}

// setH2Liveness sets the silent-peer check's timings for the edges the
// test starts next; call it before starting them, so that the restore
// runs after their shutdown.
func setH2Liveness(t *testing.T, idle, ping time.Duration) {
	oldIdle, oldPing := h2ReadIdleTimeout, h2PingTimeout
	h2ReadIdleTimeout, h2PingTimeout = idle, ping
	t.Cleanup(func() { h2ReadIdleTimeout, h2PingTimeout = oldIdle, oldPing })
}

func guardIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// guardLiveHeap is the heap in use after a collection.
func guardLiveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// guardHeapSampler records the largest live heap seen, collecting every
// interval, until stopped.
func guardHeapSampler(interval time.Duration) (stop func() int64) {
	var peak atomic.Int64
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if h := guardLiveHeap(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-exited
		return peak.Load()
	}
}

// 1. A peer that goes silent is pinged after h2ReadIdleTimeout and dropped
// when no answer comes within h2PingTimeout; one that answers keeps its
// connection through a long quiet stream.
func TestH2GuardSilentPeer(t *testing.T) {
	setH2Liveness(t, 200*time.Millisecond, 200*time.Millisecond)
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")

	t.Run("answers pings", func(t *testing.T) {
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=1500ms")...)
		r := g.result(1, 5*time.Second)
		require.Nil(t, g.closed, "the connection of a client that answers PINGs stays open")
		assert.True(t, r.ended, "stream 1 ended: %+v", r)
		assert.Equal(t, http.StatusOK, r.status, "%+v", r)
		assert.Empty(t, g.goaways)
		assert.GreaterOrEqual(t, len(g.pings), 2, "the server pinged the quiet client through the 1.5 s wait")
		t.Logf("%d PINGs answered during the 1.5 s stream", len(g.pings))
		g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
		assert.Equal(t, http.StatusOK, g.result(3, 5*time.Second).status, "the connection serves on")
	})

	t.Run("never answers", func(t *testing.T) {
		start := time.Now()
		g := dialH2Async(t, te.addr, h2asyncOpts{silent: true}) // reads, but sends nothing after its SETTINGS
		require.True(t, g.waitClosed(3*time.Second), "the silent client's connection is closed")
		elapsed := g.closedAt.Sub(start)
		t.Logf("closed after %s: %v (%d PINGs seen)", elapsed, g.closed, len(g.pings))
		assert.False(t, guardIsTimeout(g.closed), "closed by the server, not by the client's deadline: %v", g.closed)
		assert.Less(t, elapsed, 2*time.Second, "dropped within about idle + ping timeout (400 ms)")
		assert.GreaterOrEqual(t, elapsed, 300*time.Millisecond, "not before it was pinged and the ping timed out")
		if assert.NotEmpty(t, g.pings, "the server sent a PING before closing") {
			assert.True(t, g.pings[0].at.Before(g.closedAt))
			assert.GreaterOrEqual(t, g.closedAt.Sub(g.pings[0].at), 150*time.Millisecond, "the PING was given h2PingTimeout to be answered")
		}
	})
}

// 2. idle_timeout ends a connection without streams with GOAWAY, and never
// one whose stream is in flight.
func TestH2GuardIdleTimeout(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `idle_timeout = "300ms"`)

	t.Run("no streams", func(t *testing.T) {
		start := time.Now()
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		require.True(t, g.waitClosed(3*time.Second), "an idle connection is closed")
		elapsed := g.closedAt.Sub(start)
		t.Logf("closed after %s: %v", elapsed, g.closed)
		assert.False(t, guardIsTimeout(g.closed), "%v", g.closed)
		assert.Less(t, elapsed, 2*time.Second)
		assert.GreaterOrEqual(t, elapsed, 250*time.Millisecond, "not before idle_timeout")
		if assert.Len(t, g.goaways, 1, "GOAWAY before the close") {
			assert.Equal(t, http2.ErrCodeNo, g.goaways[0].code)
			assert.Zero(t, g.goaways[0].last, "no stream was opened")
		}
	})

	t.Run("stream in flight", func(t *testing.T) {
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=1s")...)
		r := g.result(1, 5*time.Second)
		require.Nil(t, g.closed, "not closed while stream 1 was in flight")
		assert.Empty(t, g.goaways, "no GOAWAY while stream 1 was in flight")
		assert.True(t, r.ended)
		assert.Equal(t, http.StatusOK, r.status, "%+v", r)
		// Idle again once it is answered.
		require.True(t, g.waitClosed(3*time.Second), "closed once idle again")
		assert.Less(t, g.closedAt.Sub(r.at), 2*time.Second)
		if assert.Len(t, g.goaways, 1) {
			assert.Equal(t, http2.ErrCodeNo, g.goaways[0].code)
			assert.Equal(t, uint32(1), g.goaways[0].last)
		}
	})
}

// 3. Shutdown: GOAWAY(NO_ERROR) naming the stream in flight, which is
// answered in full; a stream opened after it is not served; the
// connection closes after the last stream.
func TestH2GuardShutdownFinishesInFlightStream(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=1s")...)
	gb.waitEntered(t, 3*time.Second)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	require.True(t, g.waitFor(3*time.Second, func() bool { return len(g.goaways) > 0 }), "GOAWAY on shutdown (closed: %v)", g.closed)
	ga := g.goaways[0]
	assert.Equal(t, http2.ErrCodeNo, ga.code)
	assert.Equal(t, uint32(1), ga.last, "the last stream id is the one in flight")
	assert.False(t, g.stream(1).ended, "GOAWAY came before the answer")

	// A stream after the GOAWAY: not to be served.
	g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)

	r := g.result(1, 5*time.Second)
	assert.True(t, r.ended, "stream 1 is answered in full: %+v (closed: %v)", r, g.closed)
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, 2, len(r.body), `"ok"`)
	require.True(t, g.waitClosed(3*time.Second), "the connection closes after its last stream")
	assert.False(t, guardIsTimeout(g.closed), "%v", g.closed)
	s3 := g.stream(3)
	assert.Zero(t, s3.status, "stream 3, opened after GOAWAY, got no answer: %+v", s3)
	if s3.rst {
		assert.Equal(t, http2.ErrCodeRefusedStream, s3.code)
	}
	t.Logf("stream 3 after GOAWAY: %+v", s3)
	assert.Equal(t, int64(1), gb.hits.Load(), "stream 3 was not forwarded")
	select {
	case err := <-shut:
		assert.NoError(t, err, "Shutdown returns once the connection is done")
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// 4. h2_max_concurrent_streams: a stream over the limit is refused at
// once, the others are served, and the count goes down as they end.
func TestH2GuardMaxConcurrentStreams(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "h2_max_concurrent_streams = 2")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	for _, id := range []uint32{1, 3, 5} {
		g.headers(id, true, h2get("GET", "test.acme.com", "/slow?wait=1s")...)
	}
	r5 := g.result(5, 3*time.Second)
	assert.True(t, r5.rst, "stream 5 is over the limit: %+v", r5)
	assert.Contains(t, []http2.ErrCode{http2.ErrCodeRefusedStream, http2.ErrCodeProtocol}, r5.code)
	assert.Zero(t, r5.status)
	assert.False(t, g.stream(1).ended || g.stream(3).ended, "refused at once, not after the others ended")
	for _, id := range []uint32{1, 3} {
		r := g.result(id, 5*time.Second)
		assert.True(t, r.ended, "stream %d: %+v", id, r)
		assert.Equal(t, http.StatusOK, r.status, "stream %d", id)
	}
	require.Nil(t, g.closed)
	assert.Empty(t, g.goaways)

	// Both ended: a new stream is served. A handler may still be finishing
	// (logging) just after its END_STREAM went out, and the limit counts
	// handlers: a REFUSED_STREAM then is allowed (the client may retry it),
	// a lasting one is not.
	id, refused := uint32(7), 0
	var r h2asyncStream
	for ; id < 7+2*40; id += 2 {
		g.headers(id, true, h2get("GET", "test.acme.com", "/fast")...)
		r = g.result(id, 5*time.Second)
		if !r.rst || r.code != http2.ErrCodeRefusedStream {
			break
		}
		refused++
		time.Sleep(25 * time.Millisecond)
	}
	assert.Equal(t, http.StatusOK, r.status, "stream %d after the others ended: %+v", id, r)
	assert.LessOrEqual(t, refused, 4, "refused for long after the streams ended")
	t.Logf("new stream refused %d times after the first two ended", refused)
	assert.Equal(t, int64(3), gb.hits.Load(), "the refused stream was not forwarded")
}

// 5. A header list over max_header_bytes, in HEADERS and CONTINUATION: 431,
// nothing forwarded, counted as request.header_too_large.
func TestH2GuardHeaderListTooLarge(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "max_header_bytes = 4096")
	series := refusedSeries("request.header_too_large", "h2guard")
	_, text := adminGet(t, te, "/metrics")
	before, _ := metricValue(text, series)

	g := dialH2Async(t, te.addr, h2asyncOpts{})
	big := strings.Repeat("~", 1000) // Huffman makes it longer: sent as is
	var first, rest []byte
	require.NoError(t, g.write(func() error {
		// Fields of 1 KB, 8 in all: over max_header_bytes in total, each
		// within it. Never indexed: the server's table stays as it was.
		g.hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", "/x"}} {
			_ = g.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		for i := 0; i < 8; i++ {
			if i == 3 {
				first = bytes.Clone(g.hbuf.Bytes())
				g.hbuf.Reset()
			}
			_ = g.enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: big, Sensitive: true})
		}
		rest = bytes.Clone(g.hbuf.Bytes())
		if err := g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true}); err != nil {
			return err
		}
		return g.fr.WriteContinuation(1, true, rest)
	}))
	require.LessOrEqual(t, len(first), 16<<10)
	require.LessOrEqual(t, len(rest), 16<<10)
	require.Greater(t, len(first)+len(rest), 8000)

	r := g.result(1, 5*time.Second)
	require.Nil(t, g.closed, "the connection stays up")
	assert.Empty(t, g.goaways)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.status, "%+v", r)
	assert.Contains(t, string(r.body), `"code":"request.header_too_large"`, "README's fault table")
	assert.True(t, r.ended)
	assert.Zero(t, gb.hits.Load(), "nothing forwarded")
	_, text = adminGet(t, te, "/metrics")
	after, _ := metricValue(text, series)
	assert.Equal(t, before+1, after, "%s counted", series)

	g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g.result(3, 5*time.Second).status, "the connection serves on")
	assert.Equal(t, int64(1), gb.hits.Load())

	// One field of 8 KB, its block split in two: longer than any string
	// the decoder keeps (x/net's Framer bounds it by the list size), so
	// the connection may end (RFC 9113 §10.5.1 allows closing it rather
	// than processing the block); it is never forwarded.
	g2 := dialH2Async(t, te.addr, h2asyncOpts{})
	require.NoError(t, g2.write(func() error {
		g2.hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", "/x"}} {
			_ = g2.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = g2.enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("~", 8<<10), Sensitive: true})
		block := bytes.Clone(g2.hbuf.Bytes())
		half := len(block) / 2
		if err := g2.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:half], EndStream: true}); err != nil {
			return err
		}
		return g2.fr.WriteContinuation(1, true, block[half:])
	}))
	r2 := g2.result(1, 5*time.Second)
	g2.drain()
	switch {
	case r2.status != 0:
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r2.status)
	case len(g2.goaways) > 0:
		t.Logf("one 8 KB field: GOAWAY %v (a connection error, not 431)", g2.goaways[0].code)
	default:
		assert.NotNil(t, g2.closed, "answered 431 or ended the connection: %+v", r2)
	}
	assert.Equal(t, int64(1), gb.hits.Load(), "the 8 KB field was not forwarded")
}

// 6. A HEADERS frame followed by CONTINUATION frames without end: the
// server gives up long before 4 MiB, and holds none of it.
func TestH2GuardContinuationFlood(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	// Literal fields, never indexed, new name: 109 bytes each, whole
	// fields in each frame.
	var field []byte
	field = append(field, 0x10, 6)
	field = append(field, "x-junk"...)
	field = append(field, 100)
	field = append(field, strings.Repeat("j", 100)...)
	frag := bytes.Repeat(field, (16<<10)/len(field))
	const flood = 4 << 20

	base := guardLiveHeap()
	sent := 0
	require.NoError(t, g.write(func() error {
		head := g.block(h2get("GET", "test.acme.com", "/x")...)
		sent += len(head)
		return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: head, EndStream: true})
	}))
	var werr error
	frames := 0
	for sent < flood && !g.alarm.Load() {
		last := sent+len(frag) >= flood
		werr = g.write(func() error { return g.fr.WriteContinuation(1, last, frag) })
		if werr != nil {
			break
		}
		sent += len(frag)
		frames++
		if frames%4 == 0 {
			// A client as fast as loopback allows, but one the server's
			// reader can be seen reacting to: not 4 MiB in the socket
			// buffers before it read the first frames.
			time.Sleep(time.Millisecond)
		}
	}
	during := guardLiveHeap()
	t.Logf("flood stopped after %d bytes (%d CONTINUATION frames), write error: %v, server reacted: %v", sent, frames, werr, g.alarm.Load())
	assert.Less(t, sent, flood, "the server ended it before all 4 MiB were sent")

	require.True(t, g.waitFor(5*time.Second, func() bool {
		return len(g.goaways) > 0 || g.stream(1).status == http.StatusRequestHeaderFieldsTooLarge
	}) || g.closed != nil, "GOAWAY, close or 431")
	g.waitClosed(3 * time.Second)
	r := g.stream(1)
	switch {
	case r.status != 0:
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.status)
		t.Logf("answered %d", r.status)
	case len(g.goaways) > 0:
		assert.NotEqual(t, http2.ErrCodeNo, g.goaways[0].code, "a connection error")
		t.Logf("GOAWAY %v, then closed: %v", g.goaways[0].code, g.closed)
	default:
		assert.False(t, guardIsTimeout(g.closed))
		t.Logf("closed without GOAWAY: %v", g.closed)
	}
	assert.Zero(t, gb.hits.Load(), "nothing forwarded")
	growth := during - base
	t.Logf("live heap: %d before, %d when the flood stopped (%+d)", base, during, growth)
	assert.Less(t, growth, int64(2<<20), "the server holds no part of the flood")

	g2 := dialH2Async(t, te.addr, h2asyncOpts{})
	g2.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g2.result(1, 5*time.Second).status, "the edge serves on")
}

// 7. A client that floods PINGs and never reads: the server stops reading
// once its answers cannot leave, and closes the connection after
// write_timeout; its memory stays bounded meanwhile.
func TestH2GuardPingFloodNonReader(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `write_timeout = "1s"`)
	c := dialH2TLS(t, te.addr)
	bw := bufio.NewWriterSize(c, 64<<10)
	fr := http2.NewFramer(bw, c)
	_, err := bw.WriteString(http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, fr.WriteSettings())
	require.NoError(t, bw.Flush())

	base := guardLiveHeap()
	stopHeap := guardHeapSampler(100 * time.Millisecond)
	// Flood until the server cuts the connection: once the sockets'
	// buffers (several MiB on loopback) hold all the PING answers they
	// can, the server's writes stall, it stops reading, and write_timeout
	// ends it. How long that takes depends on how fast the server answers
	// (slow under -race on a busy machine): no write deadline, only a
	// watchdog that closes the connection itself after 30 s.
	const limit = 100 << 20
	start := time.Now()
	watchdog := time.AfterFunc(30*time.Second, func() { c.Close() })
	sent := 0
	var data [8]byte
	for sent < limit && err == nil {
		for i := 0; i < 1000 && err == nil; i++ {
			data[0], data[1] = byte(i), byte(i>>8)
			err = fr.WritePing(false, data)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err == nil {
			sent += 1000 * 17
		}
	}
	elapsed := time.Since(start)
	peak := stopHeap()
	t.Logf("sent %d bytes of PINGs in %s before: %v", sent, elapsed, err)
	require.True(t, watchdog.Stop(), "the server did not cut the connection within 30 s")
	assert.Error(t, err, "the writes stopped: the server no longer reads")
	assert.Less(t, sent, limit)
	t.Logf("live heap: %d before, peak %d (%+d)", base, peak, peak-base)
	assert.Less(t, peak-base, int64(8<<20), "the server's memory stays bounded")

	// Reading now: what was buffered, then the end, not a live connection.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, rerr := io.Copy(io.Discard, c)
	t.Logf("then read %d bytes, ended by: %v", n, rerr)
	assert.False(t, guardIsTimeout(rerr), "the server closed the connection: %v", rerr)
}

// 8. Connection-specific fields in a request are malformed (RFC 9113
// §8.2.2): the stream is reset with PROTOCOL_ERROR, nothing forwarded;
// "te: trailers" is the one TE allowed.
func TestH2GuardConnectionSpecificHeaders(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	id := uint32(1)
	for _, f := range [][2]string{
		{"connection", "keep-alive"},
		{"te", "gzip"},
		{"keep-alive", "timeout=5"},
		{"proxy-connection", "keep-alive"},
		{"transfer-encoding", "chunked"},
		{"upgrade", "h2c"},
		{"te", "trailers, gzip"},
	} {
		g.headers(id, true, h2get("GET", "test.acme.com", "/fast", f[0], f[1])...)
		r := g.result(id, 5*time.Second)
		assert.True(t, r.rst, "%s: %s: RST_STREAM, got %+v", f[0], f[1], r)
		assert.Equal(t, http2.ErrCodeProtocol, r.code, "%s: %s", f[0], f[1])
		assert.Zero(t, r.status, "%s: %s: no response", f[0], f[1])
		id += 2
	}
	require.Nil(t, g.closed)
	assert.Empty(t, g.goaways, "a stream error, not a connection error")
	assert.Zero(t, gb.hits.Load(), "nothing forwarded")
	g.headers(id, true, h2get("GET", "test.acme.com", "/fast", "te", "trailers")...)
	r := g.result(id, 5*time.Second)
	assert.Equal(t, http.StatusOK, r.status, "te: trailers is allowed: %+v", r)
	assert.Equal(t, int64(1), gb.hits.Load())
}

// 9. A client's RST_STREAM aborts the upstream request at once; the
// connection serves on.
func TestH2GuardResetCancelsUpstream(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=5s")...)
	gb.waitEntered(t, 3*time.Second)
	reset := time.Now()
	require.NoError(t, g.write(func() error { return g.fr.WriteRSTStream(1, http2.ErrCodeCancel) }))
	select {
	case at := <-gb.cancelled:
		t.Logf("the backend's request ended %s after the reset", at.Sub(reset))
		assert.Less(t, at.Sub(reset), time.Second)
	case <-time.After(time.Second):
		t.Fatal("the backend's request was not cancelled within 1 s of the client's RST_STREAM")
	}
	g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
	r := g.result(3, 5*time.Second)
	assert.Equal(t, http.StatusOK, r.status, "the connection serves on: %+v", r)
	g.drain()
	assert.Zero(t, g.stream(1).status, "no answer on the reset stream")
	assert.Empty(t, g.goaways)
}

// 10. Rapid reset: 2000 streams opened and reset at once. The handlers
// running are bounded by the stream limit (goroutines counted), and the
// connection serves on or is ended with GOAWAY.
func TestH2GuardRapidReset(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "h2_max_concurrent_streams = 100")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	require.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status)
	time.Sleep(100 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	// Sampled through the flood: the goroutines of the process, and the
	// handlers the server counts against the limit.
	var peak, peakHandlers atomic.Int64
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			if n := int64(h2HandlersRunning(te.srv)); n > peakHandlers.Load() {
				peakHandlers.Store(n)
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	}()
	const streams = 2000
	start := time.Now()
	werr := g.write(func() error {
		for i := 0; i < streams; i++ {
			id := uint32(3 + 2*i)
			if err := g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: g.block(h2get("GET", "test.acme.com", "/slow?wait=2s")...), EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			if err := g.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				return err
			}
		}
		return nil
	})
	flood := time.Since(start)
	// Let the handlers run out while sampling.
	g.waitFor(time.Second, func() bool { return false })
	close(done)
	<-exited
	refused := 0
	for id, s := range g.streams {
		if id > 1 && s.rst && s.code == http2.ErrCodeRefusedStream {
			refused++
		}
	}
	t.Logf("%d streams opened and reset in %s (write error: %v); goroutines: %d before, peak %d; handlers: peak %d; %d refused; backend got %d requests",
		streams, flood, werr, baseline, peak.Load(), peakHandlers.Load(), refused, gb.hits.Load())
	assert.LessOrEqual(t, peakHandlers.Load(), int64(100), "handlers are bounded by h2_max_concurrent_streams")
	// A handler gives its slot back under the connection's lock just
	// before it exits: on a busy machine up to about another limit's worth
	// of goroutines are seen past that point, runnable, with their last
	// lines to run (100 running + 91 leaving seen once). Without the
	// limit the flood peaks at 330 to 1300 goroutines here.
	assert.Less(t, peak.Load(), int64(baseline+2*100+50), "goroutines are bounded by h2_max_concurrent_streams")

	if werr == nil && g.closed == nil && len(g.goaways) == 0 {
		final := uint32(3 + 2*streams)
		g.headers(final, true, h2get("GET", "test.acme.com", "/fast")...)
		r := g.result(final, 5*time.Second)
		if len(g.goaways) == 0 {
			assert.Equal(t, http.StatusOK, r.status, "the connection serves on after the flood: %+v (closed: %v)", r, g.closed)
			t.Logf("outcome: the connection kept working (final GET: %d)", r.status)
			return
		}
	}
	require.NotEmpty(t, g.goaways, "the connection was ended without GOAWAY (write error %v, read %v)", werr, g.closed)
	t.Logf("outcome: the connection was ended with GOAWAY %v (last stream %d)", g.goaways[0].code, g.goaways[0].last)
}

// h2HandlersRunning is the handlers the server's HTTP/2 connections count
// against h2_max_concurrent_streams.
func h2HandlersRunning(s *Server) int {
	n := 0
	for _, c := range s.h2Conns() {
		c.mu.Lock()
		n += len(c.streams)
		c.mu.Unlock()
	}
	return n
}

// 11. A HEADERS frame whose padding runs past its end (RFC 9113 §6.2: a
// connection error) carries a header block the server never decodes:
// the client's HPACK table then holds entries the server's lacks, and
// every later block of the connection would be read against the wrong
// table. The connection ends with GOAWAY(PROTOCOL_ERROR); a later
// request is never forwarded with fields its client did not send.
func TestH2GuardHeadersPaddingOverrunEndsTheConnection(t *testing.T) {
	var seen atomic.Value
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("X-User"))
		fmt.Fprintf(w, "user=%s", r.Header.Get("X-User"))
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "h2guard", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", back.addr),
	})
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	// The pseudo-headers never indexed, x-user indexed: each block adds
	// one entry to the client's table, its x-user.
	block := func(user string) []byte {
		g.hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", "/who"}} {
			_ = g.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
		}
		_ = g.enc.WriteField(hpack.HeaderField{Name: "x-user", Value: user})
		return bytes.Clone(g.hbuf.Bytes())
	}
	require.NoError(t, g.write(func() error {
		return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("alice"), EndStream: true, EndHeaders: true})
	}))
	r1 := g.result(1, 5*time.Second)
	require.Equal(t, http.StatusOK, r1.status, "%+v", r1)
	require.Equal(t, "user=alice", string(r1.body))

	// Stream 3: "x-user: bob" enters the client's table, in a block
	// whose pad length is one more than what follows it.
	require.NoError(t, g.write(func() error {
		b := block("bob")
		payload := append([]byte{byte(len(b) + 1)}, b...)
		return g.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream|http2.FlagHeadersPadded, 3, payload)
	}))
	if !g.waitFor(3*time.Second, func() bool { return len(g.goaways) > 0 }) && g.closed == nil {
		// Still open: stream 5 sends "x-user: bob" again, as an index into
		// the client's table, which the server reads in its own.
		require.NoError(t, g.write(func() error {
			return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block("bob"), EndStream: true, EndHeaders: true})
		}))
		r5 := g.result(5, 5*time.Second)
		t.Fatalf("the connection went on after a HEADERS frame it could not decode (stream 3: %+v); stream 5, sent with x-user bob, was answered %d %q", g.stream(3), r5.status, r5.body)
	}
	require.NotEmpty(t, g.goaways, "GOAWAY before the close (closed: %v)", g.closed)
	assert.Equal(t, http2.ErrCodeProtocol, g.goaways[0].code)
	assert.Equal(t, uint32(1), g.goaways[0].last, "stream 3 was never taken")
	assert.True(t, g.waitClosed(3*time.Second), "the connection closes")
	assert.Equal(t, "alice", seen.Load(), "only stream 1 was forwarded")
}

// 12. A WINDOW_UPDATE on a stream never opened is a connection error
// (RFC 9113 §5.1), its increment 0 included: x/net's Framer reports the
// zero increment as a stream error, which must neither reset a stream
// that does not exist nor count as the client opening it (the stream ids
// below it would then be refused, and a GOAWAY would name it).
func TestH2GuardZeroWindowUpdateOnIdleStream(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	require.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status)
	require.NoError(t, g.write(func() error {
		return g.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 101, []byte{0, 0, 0, 0})
	}))
	g.waitFor(3*time.Second, func() bool { return len(g.goaways) > 0 })
	g.drain()
	assert.False(t, g.stream(101).rst, "no RST_STREAM on stream 101, which was never opened: %+v", g.stream(101))
	if assert.NotEmpty(t, g.goaways, "a connection error") {
		assert.Equal(t, http2.ErrCodeProtocol, g.goaways[0].code)
		assert.Equal(t, uint32(1), g.goaways[0].last, "the last stream taken is 1, not 101")
	}
	assert.True(t, g.waitClosed(3*time.Second), "the connection closes")
}

// 13. idle_timeout's GOAWAY names the last stream taken: a request the
// client sent as it went out (before it saw it) has a higher id, which
// the GOAWAY tells the client was not processed, so that it may send it
// again on a new connection, a POST included (RFC 9113 §6.8). The server
// must then not serve it: the backend would get it twice. The test holds
// the connection's lock so that the idle timeout's turn comes first and
// the reader, with the HEADERS frame in hand, waits behind it.
func TestH2GuardIdleGoAwayServesNoLaterStream(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `idle_timeout = "1h"`)
	var routed atomic.Int64
	hook := func() { routed.Add(1) }
	te.srv.testHookRouted.Store(&hook)
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.waitSettings()
	g.ping("ready") // the server has read the client's SETTINGS
	te.srv.h2mu.Lock()
	require.Len(t, te.srv.h2conns, 1)
	var c *h2sConn
	for c = range te.srv.h2conns {
	}
	te.srv.h2mu.Unlock()

	c.mu.Lock()
	idleDone := make(chan struct{})
	go func() { defer close(idleDone); c.idleEnd() }() // idle_timeout, now
	guardWaitLocking(t, "(*h2sConn).idleEnd")
	g.headers(1, true, h2get("POST", "test.acme.com", "/order")...)
	guardWaitLocking(t, "(*Server).serveH2")
	c.mu.Unlock()
	<-idleDone

	require.True(t, g.waitClosed(3*time.Second), "the idle connection closes")
	if assert.Len(t, g.goaways, 1) {
		assert.Equal(t, http2.ErrCodeNo, g.goaways[0].code)
		assert.Zero(t, g.goaways[0].last, "no stream was taken before the GOAWAY")
	}
	time.Sleep(200 * time.Millisecond) // a handler, had one started, routes at once
	assert.Zero(t, routed.Load(), "stream 1, above the GOAWAY's last stream, was not served")
	assert.Zero(t, gb.hits.Load(), "nor forwarded")
}

// guardWaitLocking waits until a goroutine whose stack holds fn waits on
// a sync.Mutex.
func guardWaitLocking(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, gr := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(gr, fn) && strings.Contains(gr, "sync.(*Mutex).Lock") {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no goroutine of %s came to wait on the lock", fn)
}

// 14. read_header_timeout bounds the client's preface and its first
// SETTINGS frame, as x/net's server bounded them: a client that sends
// the preface and then nothing is cut then, not after the silent-peer
// check's ping (30 s + 15 s).
func TestH2GuardFirstSettingsWithinReadHeaderTimeout(t *testing.T) {
	setH2Liveness(t, 10*time.Second, 10*time.Second)
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `read_header_timeout = "300ms"`)
	c := dialH2TLS(t, te.addr)
	start := time.Now()
	_, err := io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, rerr := io.Copy(io.Discard, c) // the server's SETTINGS, then its close
	elapsed := time.Since(start)
	t.Logf("closed after %s: %v", elapsed, rerr)
	assert.False(t, guardIsTimeout(rerr), "the server closed the connection within 5 s: %v", rerr)
	assert.Less(t, elapsed, 2*time.Second, "about read_header_timeout")
}

// 15. A handler that panics (here in the router's test hook, inside
// ServeHTTP, outside an environment's own recovery) aborts its stream
// only, as net/http does: RST_STREAM INTERNAL_ERROR, its slot given back,
// no goroutine left behind, and the connection serves its other streams,
// in flight and later, without a GOAWAY.
func TestH2GuardHandlerPanicEndsItsStreamOnly(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	hook := func() {}
	te.srv.testHookRouted.Store(&hook)
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/warm")...)
	require.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status)
	gb.waitEntered(t, time.Second) // stream 1's
	time.Sleep(100 * time.Millisecond)
	baseline := runtime.NumGoroutine()

	var panicked atomic.Int64
	boom := func() {
		if panicked.Add(1) <= 3 {
			panic("h2 test: handler panic")
		}
	}
	g.headers(3, true, h2get("GET", "test.acme.com", "/slow?wait=300ms")...)
	gb.waitEntered(t, 3*time.Second) // stream 3 is in flight when the others panic
	te.srv.testHookRouted.Store(&boom)
	for _, id := range []uint32{5, 7, 9} {
		g.headers(id, true, h2get("GET", "test.acme.com", "/boom")...)
	}
	for _, id := range []uint32{5, 7, 9} {
		r := g.result(id, 5*time.Second)
		assert.True(t, r.rst, "stream %d is reset: %+v", id, r)
		assert.Equal(t, http2.ErrCodeInternal, r.code, "stream %d", id)
		assert.Zero(t, r.status, "stream %d gets no answer", id)
	}
	r3 := g.result(3, 5*time.Second)
	assert.Equal(t, http.StatusOK, r3.status, "the stream in flight is answered: %+v", r3)
	assert.Equal(t, "ok", string(r3.body))
	g.headers(11, true, h2get("GET", "test.acme.com", "/after")...)
	r11 := g.result(11, 5*time.Second)
	assert.Equal(t, http.StatusOK, r11.status, "the connection serves on: %+v", r11)
	assert.Empty(t, g.goaways)
	assert.Nil(t, g.closed)
	assert.Equal(t, int64(4), panicked.Load(), "three panics, then stream 11 routed")

	// No handler and no goroutine of the panicking streams is left.
	assert.Eventually(t, func() bool { return h2HandlersRunning(te.srv) == 0 }, 3*time.Second, 10*time.Millisecond, "every stream's slot is given back")
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= baseline+2 }, 3*time.Second, 10*time.Millisecond,
		"goroutines back to %d (now %d)", baseline, runtime.NumGoroutine())
}

// 16. A HEADERS frame on a stream id the client may not open (even, or
// not above the last it opened) is a connection error (RFC 9113 §5.1.1),
// whether or not its fields are well-formed: x/net's Framer reports a
// block with a bad field (an upper-case name) as a stream error, which
// must not send RST_STREAM on a stream that was never opened (§6.4: not
// on an idle stream) nor let the connection go on. The same bad field in
// the trailers of an open stream resets that stream only.
func TestH2GuardMalformedHeadersOnUnexpectedStreamID(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	for _, tc := range []struct {
		name string
		id   uint32
	}{{"even", 6}, {"below the last opened", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			g := dialH2Async(t, te.addr, h2asyncOpts{})
			g.headers(5, true, h2get("GET", "test.acme.com", "/fast")...)
			require.Equal(t, http.StatusOK, g.result(5, 5*time.Second).status)
			g.headers(tc.id, true, h2get("GET", "test.acme.com", "/bad", "x-Upper", "1")...)
			g.waitFor(3*time.Second, func() bool { return len(g.goaways) > 0 })
			g.drain()
			assert.False(t, g.stream(tc.id).rst, "no RST_STREAM on stream %d: %+v", tc.id, g.stream(tc.id))
			if assert.NotEmpty(t, g.goaways, "a connection error") {
				assert.Equal(t, http2.ErrCodeProtocol, g.goaways[0].code)
				assert.Equal(t, uint32(5), g.goaways[0].last)
			}
			assert.True(t, g.waitClosed(3*time.Second), "the connection closes")
		})
	}
	t.Run("trailers of an open stream", func(t *testing.T) {
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		g.headers(1, false, h2get("POST", "test.acme.com", "/up?wait=2s")...)
		gb.waitEntered(t, 3*time.Second)
		g.headers(1, true, "x-Upper", "1")
		r := g.result(1, 5*time.Second)
		assert.True(t, r.rst, "%+v", r)
		assert.Equal(t, http2.ErrCodeProtocol, r.code)
		g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
		assert.Equal(t, http.StatusOK, g.result(3, 5*time.Second).status, "the connection serves on")
		assert.Empty(t, g.goaways)
	})
}

// 17. A client's GOAWAY starts the connection's graceful end, as in
// x/net's server: edged answers with its own GOAWAY naming the last
// stream it took, finishes the streams in flight, and closes. A stream
// the client opens after its GOAWAY is then above edged's last stream,
// which tells the client it was not served (it may send it again on a
// new connection), rather than left without an answer until idle_timeout
// ends the connection with a GOAWAY that names it as taken.
func TestH2GuardClientGoAwayEndsTheConnectionGracefully(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/first")...)
	require.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status)
	gb.waitEntered(t, time.Second)
	g.headers(3, true, h2get("GET", "test.acme.com", "/inflight?wait=300ms")...)
	gb.waitEntered(t, 3*time.Second)
	require.NoError(t, g.write(func() error { return g.fr.WriteGoAway(0, http2.ErrCodeNo, nil) }))
	g.headers(5, true, h2get("POST", "test.acme.com", "/after")...)

	g.waitFor(3*time.Second, func() bool { return len(g.goaways) > 0 })
	if assert.NotEmpty(t, g.goaways, "edged answers the client's GOAWAY with its own") {
		assert.Equal(t, http2.ErrCodeNo, g.goaways[0].code)
		assert.Equal(t, uint32(3), g.goaways[0].last, "stream 5, opened after the client's GOAWAY, is not taken")
	}
	r3 := g.result(3, 5*time.Second)
	assert.Equal(t, http.StatusOK, r3.status, "the stream in flight is answered: %+v", r3)
	assert.True(t, g.waitClosed(3*time.Second), "the connection closes after its last stream")
	assert.Zero(t, g.stream(5).status, "stream 5 is not served")
	assert.Equal(t, int64(2), gb.hits.Load(), "stream 5 was not forwarded")
}

// 18. A GOAWAY's last stream id never goes up (RFC 9113 §6.8): after
// edged's graceful GOAWAY, streams the client opens are ignored, and a
// connection error that follows names the same last stream, not one of
// those, which the client would take for possibly served.
func TestH2GuardLaterGoAwayNamesNoIgnoredStream(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/inflight?wait=2s")...)
	gb.waitEntered(t, 3*time.Second)
	require.NoError(t, g.write(func() error { return g.fr.WriteGoAway(0, http2.ErrCodeNo, nil) }))
	g.wait(3*time.Second, "edged's GOAWAY", func() bool { return len(g.goaways) > 0 })
	require.Equal(t, uint32(1), g.goaways[0].last)
	g.headers(3, true, h2get("POST", "test.acme.com", "/ignored")...)
	require.NoError(t, g.write(func() error {
		return g.fr.WriteRawFrame(http2.FramePushPromise, 0, 1, make([]byte, 8))
	}))
	g.wait(3*time.Second, "the connection error's GOAWAY", func() bool { return len(g.goaways) > 1 })
	assert.Equal(t, http2.ErrCodeProtocol, g.goaways[1].code)
	assert.Equal(t, uint32(1), g.goaways[1].last, "stream 3 was never taken")
}

// 19. Frames on a stream opened after edged's GOAWAY, above its last
// stream, are ignored (RFC 9113 §6.8): the client sent them before it saw
// the GOAWAY. Its trailers must not end the connection with a protocol
// error, which would cut the streams in flight that the graceful end
// lets finish, and its DATA gets no RST_STREAM.
func TestH2GuardFramesOfStreamsAfterGoAwayAreIgnored(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/inflight?wait=500ms")...)
	gb.waitEntered(t, 3*time.Second)
	te.srv.goAwayH2()
	g.wait(3*time.Second, "edged's GOAWAY", func() bool { return len(g.goaways) > 0 })
	require.Equal(t, uint32(1), g.goaways[0].last)
	// Streams 3 and 5, as sent before the client saw the GOAWAY: a POST
	// ended by its trailers, and one with a body.
	g.headers(3, false, h2get("POST", "test.acme.com", "/late")...)
	g.headers(3, true, "x-checksum", "1")
	g.headers(5, false, h2get("POST", "test.acme.com", "/late")...)
	g.data(5, true, []byte("body"))
	// And stream 7's trailers with a malformed field: a stream error of
	// the Framer's, still no connection error.
	g.headers(7, false, h2get("POST", "test.acme.com", "/late")...)
	g.headers(7, true, "x-Upper", "1")
	r1 := g.result(1, 5*time.Second)
	assert.Equal(t, http.StatusOK, r1.status, "the stream in flight is answered: %+v", r1)
	assert.True(t, g.waitClosed(3*time.Second), "the connection closes after its last stream")
	assert.Len(t, g.goaways, 1, "no second GOAWAY: %+v", g.goaways)
	assert.False(t, g.stream(3).rst, "stream 3's frames are ignored: %+v", g.stream(3))
	assert.False(t, g.stream(5).rst, "stream 5's frames are ignored: %+v", g.stream(5))
	assert.Equal(t, int64(1), gb.hits.Load(), "streams 3, 5 and 7 were not forwarded")
}

// An even stream id is one edged would open, which it never does (no
// push): a DATA, WINDOW_UPDATE or RST_STREAM frame on one is a frame on a
// stream never opened, a connection error PROTOCOL_ERROR (RFC 9113 §5.1),
// as on an odd id above the last the client opened. Below that last
// one, the even id was taken for a stream closed: a DATA frame got a
// RST_STREAM STREAM_CLOSED (counted and logged as the client's
// h2.protocol, at the client's will, frame after frame), a WINDOW_UPDATE
// or RST_STREAM nothing at all.
func TestH2GuardFramesOnEvenStreamIDs(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer) error
	}{
		{"DATA", func(fr *http2.Framer) error { return fr.WriteData(2, false, []byte("x")) }},
		{"WINDOW_UPDATE", func(fr *http2.Framer) error { return fr.WriteWindowUpdate(2, 1000) }},
		{"WINDOW_UPDATE of 0", func(fr *http2.Framer) error {
			return fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 2, []byte{0, 0, 0, 0})
		}},
		{"RST_STREAM", func(fr *http2.Framer) error { return fr.WriteRSTStream(2, http2.ErrCodeCancel) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := dialH2Async(t, te.addr, h2asyncOpts{})
			g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
			require.Equal(t, http.StatusOK, g.result(3, 5*time.Second).status)
			tag := [8]byte{'a', 'f', 't', 'e', 'r'}
			require.NoError(t, g.write(func() error {
				if err := tc.write(g.fr); err != nil {
					return err
				}
				return g.fr.WritePing(false, tag)
			}))
			// The PING's answer: what the frame got came before it.
			g.waitFor(3*time.Second, func() bool { return g.pingAcks[tag] || len(g.goaways) > 0 })
			g.drain()
			assert.False(t, g.stream(2).rst, "no RST_STREAM on stream 2, never opened: %+v", g.stream(2))
			if assert.NotEmpty(t, g.goaways, "a connection error") {
				assert.Equal(t, http2.ErrCodeProtocol, g.goaways[0].code)
				assert.Equal(t, uint32(3), g.goaways[0].last)
			}
		})
	}
}
