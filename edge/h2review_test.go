package edge

import (
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
