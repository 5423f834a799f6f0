package edge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// Attacks on edged's HTTP/2 server by a hostile client, and the answers
// operators read about them, over real TLS with ALPN h2.

// refusedCount is edged_requests_refused_total's series for reason and
// virtual host vhost, as the admin listener exports it now.
func refusedCount(t *testing.T, te *testEdge, reason, vhost string) float64 {
	t.Helper()
	_, text := adminGet(t, te, "/metrics")
	v, ok := metricValue(text, refusedSeries(reason, vhost))
	require.True(t, ok, "%s exported", refusedSeries(reason, vhost))
	return v
}

// A stream over h2_max_concurrent_streams is refused with REFUSED_STREAM,
// which tells the client to retry it (RFC 9113 §8.7): the limit counts
// the handlers still running for streams the client reset, which the
// client cannot see, so it is no protocol error of the client's and is
// not counted as h2.protocol (read by operators as broken clients), but
// as h2.refused_stream.
func TestH2RefusedStreamIsNotAProtocolError(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "h2_max_concurrent_streams = 1")
	protoBefore := refusedCount(t, te, "h2.protocol", "")
	// Process-wide series (no virtual host): counted by difference.
	refusedBefore, _ := metricValue(func() string { _, s := adminGet(t, te, "/metrics"); return s }(), refusedSeries("h2.refused_stream", ""))
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=1s")...)
	g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
	r3 := g.result(3, 5*time.Second)
	require.True(t, r3.rst, "stream 3 is over the limit: %+v", r3)
	require.Equal(t, http2.ErrCodeRefusedStream, r3.code)
	assert.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status)

	assert.Equal(t, protoBefore, refusedCount(t, te, "h2.protocol", ""), "a refused stream is no protocol error")
	assert.Equal(t, refusedBefore+1, refusedCount(t, te, "h2.refused_stream", ""), "counted as h2.refused_stream")
}

// panicOnLine is a log handler that panics on the lines whose message is
// its msg: a fault in edged's work at the moment that line is logged.
type panicOnLine struct {
	slog.Handler
	msg string
}

func (h panicOnLine) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		panic("log handler fault")
	}
	return h.Handler.Handle(ctx, r)
}

func (h panicOnLine) WithAttrs(as []slog.Attr) slog.Handler {
	return panicOnLine{h.Handler.WithAttrs(as), h.msg}
}

func (h panicOnLine) WithGroup(name string) slog.Handler {
	return panicOnLine{h.Handler.WithGroup(name), h.msg}
}

// A panic while the connection's reader holds the connection's lock (here
// from the log handler, as a stream error is logged) is contained: the
// server's recover ends that connection, and the edge serves on. It used to
// take the lock again to end the streams and hang there for good: the
// connection never closed, and its streams' handlers, waiting for the
// lock, never ended.
func TestH2PanicUnderTheLockEndsTheConnection(t *testing.T) {
	gb := newGuardBackend(t)
	testCertDir(t)
	logs := &syncBuffer{}
	te := startEdgeOn(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "h2guard", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", gb.addr),
	}, panicOnLine{slog.NewJSONHandler(logs, nil), "request refused"})

	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=10s")...)
	gb.waitEntered(t, 5*time.Second)
	// A PRIORITY frame making stream 3 depend on itself: a stream error,
	// logged as refused.
	require.NoError(t, g.write(func() error {
		return g.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 15})
	}))
	require.True(t, g.waitClosed(5*time.Second), "the connection ends after the panic")
	assert.Contains(t, logs.String(), "panic in the HTTP/2 server")
	select {
	case <-gb.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream in flight was not ended with its connection")
	}

	g2 := dialH2Async(t, te.addr, h2asyncOpts{})
	g2.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g2.result(1, 5*time.Second).status, "the edge serves on")
}

// An expectation other than 100-continue is answered 417 over HTTP/2, as
// over HTTP/1.1 (RFC 9110 10.1.1: a server may answer 417 to one it
// cannot meet), and counted as request.expectation; it is not forwarded
// with the field removed, as it used to be, so that the same request gets
// the same answer over either protocol.
func TestH2UnknownExpectationIs417(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	before := refusedCount(t, te, "request.expectation", "h2guard")
	assert.Contains(t, rawTLS(t, te.addr, "test.acme.com", "GET / HTTP/1.1\r\nHost: test.acme.com\r\nExpect: x-magic\r\n\r\n"), " 417 ",
		"HTTP/1.1's answer, which HTTP/2's must match")

	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.headers(1, true, h2get("GET", "test.acme.com", "/x", "expect", "x-magic")...)
	g.headers(3, false, h2get("PUT", "test.acme.com", "/x", "expect", "x-magic", "content-length", "3")...)
	g.headers(5, false, h2get("PUT", "test.acme.com", "/x", "expect", "100-continue", "expect", "x-magic", "content-length", "3")...)
	for _, id := range []uint32{1, 3, 5} {
		r := g.result(id, 5*time.Second)
		assert.Equal(t, http.StatusExpectationFailed, r.status, "stream %d: %+v", id, r)
		assert.Contains(t, string(r.body), `"request.expectation"`, "stream %d", id)
		assert.Empty(t, r.interim, "stream %d: no 100 Continue", id)
	}
	assert.Zero(t, gb.hits.Load(), "not forwarded")
	assert.Equal(t, before+4, refusedCount(t, te, "request.expectation", "h2guard"))

	g.headers(7, false, h2get("PUT", "test.acme.com", "/x", "expect", "100-Continue", "content-length", "3")...)
	g.wait(5*time.Second, "a 100 Continue", func() bool { return len(g.stream(7).interim) > 0 })
	g.data(7, true, []byte("abc"))
	assert.Equal(t, http.StatusOK, g.result(7, 5*time.Second).status, "100-continue is met")
	// An empty Expect is none, as over HTTP/1.1.
	assert.Contains(t, rawTLS(t, te.addr, "test.acme.com", "GET / HTTP/1.1\r\nHost: test.acme.com\r\nExpect: \r\nConnection: close\r\n\r\n"), " 200 ")
	g.headers(9, true, h2get("GET", "test.acme.com", "/x", "expect", "")...)
	assert.Equal(t, http.StatusOK, g.result(9, 5*time.Second).status, "an empty expect")
}

// Rapid reset (CVE-2023-44487) at the pace that hurts: each stream is
// reset only once its request reached the node, so that every one costs
// the node a request, and the stream limit, which counts handlers, bounds
// only how many run at once, not how many the connection starts. The
// connection is ended with GOAWAY ENHANCE_YOUR_CALM once most of its
// streams were reset by the client before their answer (as Envoy's
// premature-reset limit does): a bounded number of node requests per
// connection, counted as h2.flood.
func TestH2RapidResetEndsTheConnection(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, "")
	floodBefore, _ := metricValue(func() string { _, s := adminGet(t, te, "/metrics"); return s }(), refusedSeries("h2.flood", ""))
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.waitSettings()
	const streams = 3000
	opened := 0
	for i := 0; i < streams && !g.alarm.Load(); i++ {
		id := uint32(1 + 2*i)
		block := g.block(h2get("GET", "test.acme.com", "/slow?wait=10s")...)
		if g.write(func() error {
			return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
		}) != nil {
			break
		}
		opened++
		if !guardEntered(gb, g, 5*time.Second) {
			break // the connection ended
		}
		if g.write(func() error { return g.fr.WriteRSTStream(id, http2.ErrCodeCancel) }) != nil {
			break
		}
	}
	g.waitClosed(5 * time.Second)
	t.Logf("%d streams opened and reset after their request reached the node; the node got %d requests; goaways %v, closed: %v",
		opened, gb.hits.Load(), g.goaways, g.closed)
	require.NotEmpty(t, g.goaways, "the connection is ended with GOAWAY")
	assert.Equal(t, http2.ErrCodeEnhanceYourCalm, g.goaways[0].code)
	assert.Less(t, opened, streams, "the flood was cut")
	assert.LessOrEqual(t, gb.hits.Load(), int64(1000), "node requests bounded per connection")
	floodAfter, _ := metricValue(func() string { _, s := adminGet(t, te, "/metrics"); return s }(), refusedSeries("h2.flood", ""))
	assert.Equal(t, floodBefore+1, floodAfter, "counted as h2.flood")

	g2 := dialH2Async(t, te.addr, h2asyncOpts{})
	g2.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g2.result(1, 5*time.Second).status, "the edge serves on")
}

// guardEntered waits up to d for the node to get a request, and reports
// whether it did before g's connection saw a GOAWAY or its end.
func guardEntered(gb *guardBackend, g *h2async, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case <-gb.entered:
			return true
		case <-deadline:
			g.t.Fatalf("no request reached the node within %s", d)
		case <-time.After(time.Millisecond):
			if g.drain(); len(g.goaways) > 0 || g.closed != nil {
				return false
			}
		}
	}
}

// What a browser or a poller does is not a rapid reset: a third of the
// streams cancelled early, or every stream cancelled once it has run for a
// while (a long poll given up), or after its answer, leaves the connection
// serving.
func TestH2ResetsOfAWellBehavedClientAreNoFlood(t *testing.T) {
	old := h2EarlyResetLifetime
	h2EarlyResetLifetime = 50 * time.Millisecond // before the edge starts
	t.Cleanup(func() { h2EarlyResetLifetime = old })
	gb := newGuardBackend(t)
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 256\n" +
			groupTOML("test", "h2guard", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", gb.addr),
	})

	reset := func(g *h2async, id uint32) {
		require.NoError(t, g.write(func() error { return g.fr.WriteRSTStream(id, http2.ErrCodeCancel) }))
	}
	// One stream in three cancelled once its request reached the node,
	// the others answered; then cancelled after their answer.
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	id := uint32(1)
	for i := 0; i < 3*h2ResetFloodMin; i, id = i+1, id+2 {
		if i%3 == 0 {
			g.headers(id, true, h2get("GET", "test.acme.com", "/slow?wait=10s")...)
			require.True(t, guardEntered(gb, g, 5*time.Second), "stream %d", id)
			reset(g, id)
			continue
		}
		g.headers(id, true, h2get("GET", "test.acme.com", "/fast")...)
		require.Equal(t, http.StatusOK, g.result(id, 5*time.Second).status, "stream %d", id)
		<-gb.entered
		reset(g, id)
	}
	g.headers(id, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g.result(id, 5*time.Second).status, "the connection serves on")
	assert.Empty(t, g.goaways)

	// Long polls, every one given up after h2EarlyResetLifetime.
	g = dialH2Async(t, te.addr, h2asyncOpts{})
	id = 1
	for batch := 0; batch < 2*h2ResetFloodMin/100; batch++ {
		first := id
		for i := 0; i < 100; i, id = i+1, id+2 {
			g.headers(id, true, h2get("GET", "test.acme.com", "/slow?wait=10s")...)
		}
		for i := 0; i < 100; i++ {
			if !guardEntered(gb, g, 5*time.Second) {
				g.drain()
				var odd []string
				for sid, st := range g.streams {
					if st.rst || st.status != 0 {
						odd = append(odd, fmt.Sprintf("%d: %v", sid, st))
					}
				}
				t.Fatalf("batch %d: the server reacted: goaways %v, closed %v, streams %v", batch, g.goaways, g.closed, odd)
			}
		}
		time.Sleep(2 * h2EarlyResetLifetime)
		for r := first; r < id; r += 2 {
			reset(g, r)
		}
	}
	g.headers(id, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g.result(id, 5*time.Second).status, "the connection serves on")
	assert.Empty(t, g.goaways)
}

// MadeYouReset (CVE-2025-8671), rapid reset's variant: rather than reset
// each stream itself, the client sends a frame that makes edged reset it
// (a PRIORITY frame making the stream depend on itself, a WINDOW_UPDATE
// that overflows its window), once its request reached the node. The
// handler is cancelled all the same and the node starts requests as fast
// as the client sends frames, so a stream edged resets for the client's
// error before its answer counts as reset early, as one the client resets.
func TestH2ResetsTheClientProvokesAreARapidReset(t *testing.T) {
	provoke := map[string]func(g *h2async, id uint32) error{
		"priority-self-dependency": func(g *h2async, id uint32) error {
			return g.fr.WritePriority(id, http2.PriorityParam{StreamDep: id, Weight: 15})
		},
		"window-overflow": func(g *h2async, id uint32) error {
			return g.fr.WriteWindowUpdate(id, 1<<31-1)
		},
	}
	for name, frame := range provoke {
		t.Run(name, func(t *testing.T) {
			gb := newGuardBackend(t)
			te := guardEdge(t, gb, "")
			g := dialH2Async(t, te.addr, h2asyncOpts{})
			g.waitSettings()
			const streams = 3000
			opened := 0
			for i := 0; i < streams; i++ { // edged's RST_STREAMs are expected: no alarm
				id := uint32(1 + 2*i)
				block := g.block(h2get("GET", "test.acme.com", "/slow?wait=10s")...)
				if g.write(func() error {
					return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
				}) != nil {
					break
				}
				opened++
				if !guardEntered(gb, g, 5*time.Second) {
					break
				}
				if g.write(func() error { return frame(g, id) }) != nil {
					break
				}
			}
			g.waitClosed(5 * time.Second)
			t.Logf("%d streams opened and made to be reset; the node got %d requests; goaways %v", opened, gb.hits.Load(), g.goaways)
			require.NotEmpty(t, g.goaways, "the connection is ended with GOAWAY")
			assert.Equal(t, http2.ErrCodeEnhanceYourCalm, g.goaways[len(g.goaways)-1].code)
			assert.LessOrEqual(t, gb.hits.Load(), int64(1000), "node requests bounded per connection")
		})
	}
}
