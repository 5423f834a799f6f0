package edge

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"edged/internal/config"
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
func TestH2ReviewRefusedStreamIsNotAProtocolError(t *testing.T) {
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

// panicOnRefusal is a log handler that panics on a "request refused"
// line: a fault inside the HTTP/2 server's work on a frame, where it holds
// the connection's lock.
type panicOnRefusal struct{ slog.Handler }

func (h panicOnRefusal) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "request refused" {
		panic("log handler fault")
	}
	return h.Handler.Handle(ctx, r)
}

func (h panicOnRefusal) WithAttrs(as []slog.Attr) slog.Handler {
	return panicOnRefusal{h.Handler.WithAttrs(as)}
}

func (h panicOnRefusal) WithGroup(name string) slog.Handler {
	return panicOnRefusal{h.Handler.WithGroup(name)}
}

// A panic while the connection's reader holds the connection's lock (here
// from the log handler, as a stream error is logged) is contained: the
// server's recover ends that connection, and the edge serves on. It used to
// take the lock again to end the streams and hang there for good: the
// connection never closed, and its streams' handlers, waiting for the
// lock, never ended.
func TestH2ReviewPanicUnderTheLockEndsTheConnection(t *testing.T) {
	gb := newGuardBackend(t)
	testCertDir(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "h2guard", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", gb.addr),
	})
	cfg, err := (&config.Loader{Dir: dir}).Load()
	require.NoError(t, err)
	logs := &syncBuffer{}
	srv := NewServer(slog.New(panicOnRefusal{slog.NewJSONHandler(logs, nil)}))
	_, _, err = srv.Apply(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	https, _, _ := srv.Addrs()

	g := dialH2Async(t, https.String(), h2asyncOpts{})
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

	g2 := dialH2Async(t, https.String(), h2asyncOpts{})
	g2.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g2.result(1, 5*time.Second).status, "the edge serves on")
}

// An expectation other than 100-continue is answered 417 over HTTP/2, as
// over HTTP/1.1 (RFC 9110 10.1.1: a server may answer 417 to one it
// cannot meet), and counted as request.expectation; it is not forwarded
// with the field removed, as it used to be, so that the same request gets
// the same answer over either protocol.
func TestH2ReviewUnknownExpectationIs417(t *testing.T) {
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
