package edge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An HTTP/2 request's Expect: 100-continue is honoured in any case, as
// over HTTP/1.1 (RFC 9110 10.1.1: the expectation is case-insensitive;
// curl and Go's client wait for the 100 before sending the body): one
// spelled "100-Continue" got no 100 and waited out the client's delay.
// The body then reaches the node, without the Expect.
func TestH2ExpectContinueInAnyCase(t *testing.T) {
	wb := startWireBackend(t, func(wireRequest) string { return okAnswer })
	te := wireEdge(t, wb)
	c := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	for i, v := range []string{"100-continue", "100-Continue"} {
		id := uint32(2*i + 1)
		c.headers(id, false, ":method", "PUT", ":scheme", "https", ":authority", "test.acme.com", ":path", "/up",
			"expect", v, "content-length", "3")
		c.wait(2*time.Second, v+": a 100 Continue", func() bool { return len(c.stream(id).interim) > 0 })
		c.data(id, true, []byte("abc"))
		s := c.result(id, 5*time.Second)
		require.Equal(t, 200, s.status, "%s: %v", v, s)
		assert.Equal(t, []int{100}, s.interim, v)
		seen := wb.take()
		require.Len(t, seen, 1, v)
		assert.Equal(t, "abc", seen[0].body, v)
		assert.Empty(t, seen[0].values("Expect"), v)
	}
}
