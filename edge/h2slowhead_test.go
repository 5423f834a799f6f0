package edge

import (
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// A request head that trickles in over HTTP/2 is cut read_header_timeout
// after its first frame arrived, as a later head over HTTP/1.1 is (README,
// read_header_timeout): a HEADERS frame whose block goes on in
// CONTINUATION frames that never end it, or a HEADERS frame whose payload
// comes a byte at a time. The connection's reader, inside the header
// block, reads no other frame, and the silent-peer check, which counts
// whole frames, took 30 s to ping and 15 s more to close (here the
// connections were still open after 5 s with a timeout of 500 ms). A
// request that takes longer than the timeout to answer, on a connection
// quiet meanwhile, is not cut by it.
func TestH2HeadTricklingPastReadHeaderTimeoutIsCut(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `read_header_timeout = "500ms"`)

	t.Run("a quiet connection waiting for its answer", func(t *testing.T) {
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		g.headers(1, true, h2get("GET", "test.acme.com", "/slow?wait=1500ms")...)
		r := g.result(1, 5*time.Second)
		require.Nil(t, g.closed)
		assert.Equal(t, http.StatusOK, r.status, "%+v", r)
		g.headers(3, true, h2get("GET", "test.acme.com", "/fast")...)
		assert.Equal(t, http.StatusOK, g.result(3, 5*time.Second).status, "the connection serves on")
	})

	// trickle sends a head's first frame, then one more piece every 100
	// ms until the connection ends (or 5 s pass); it reports whether it
	// ended, and after how long.
	trickle := func(t *testing.T, first func(g *h2async) error, next func(g *h2async, i int) error) (bool, time.Duration) {
		g := dialH2Async(t, te.addr, h2asyncOpts{})
		g.waitSettings()
		start := time.Now()
		require.NoError(t, g.write(func() error { return first(g) }))
		for i := 0; time.Since(start) < 5*time.Second; i++ {
			if g.waitFor(100*time.Millisecond, func() bool { return g.closed != nil }) {
				return true, time.Since(start)
			}
			if g.write(func() error { return next(g, i) }) != nil {
				break // the write failed: the server closed
			}
		}
		return g.waitClosed(time.Second), time.Since(start)
	}

	t.Run("CONTINUATION frames without end", func(t *testing.T) {
		hits := gb.hits.Load()
		var block []byte
		ended, after := trickle(t, func(g *h2async) error {
			block = g.block(h2get("GET", "test.acme.com", "/fast")...)
			return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true})
		}, func(g *h2async, i int) error {
			return g.fr.WriteContinuation(1, false, nil)
		})
		t.Logf("ended: %v, after %s", ended, after)
		assert.True(t, ended, "the connection is cut")
		assert.Equal(t, hits, gb.hits.Load(), "nothing forwarded")
	})

	t.Run("a HEADERS frame's payload a byte at a time", func(t *testing.T) {
		hits := gb.hits.Load()
		var block []byte
		ended, after := trickle(t, func(g *h2async) error {
			block = g.block(h2get("GET", "test.acme.com", "/fast", "x-pad", "0123456789012345678901234567890123456789012345678901234567890123456789")...)
			var hdr [9]byte
			hdr[0], hdr[1], hdr[2] = byte(len(block)>>16), byte(len(block)>>8), byte(len(block))
			hdr[3] = byte(http2.FrameHeaders)
			hdr[4] = byte(http2.FlagHeadersEndHeaders | http2.FlagHeadersEndStream)
			binary.BigEndian.PutUint32(hdr[5:], 1)
			_, err := g.bw.Write(append(hdr[:], block[0]))
			return err
		}, func(g *h2async, i int) error {
			if i+1 >= len(block)-1 {
				return nil // all but the last byte
			}
			return g.bw.WriteByte(block[i+1])
		})
		t.Logf("ended: %v, after %s", ended, after)
		assert.True(t, ended, "the connection is cut")
		assert.Equal(t, hits, gb.hits.Load(), "nothing forwarded")
	})

	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.headers(1, true, h2get("GET", "test.acme.com", "/fast")...)
	assert.Equal(t, http.StatusOK, g.result(1, 5*time.Second).status, "the edge serves on")
}
