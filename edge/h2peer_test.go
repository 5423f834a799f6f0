package edge

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// Guards, no defect found: what a legitimate but unusual HTTP/2 client
// asks for in its SETTINGS and frames is honoured (RFC 9113).

// TestH2WindowLoweredBelowWhatWasSent: a client that lowers
// SETTINGS_INITIAL_WINDOW_SIZE to 0 once 65535 bytes of an answer came
// leaves the stream's window at -65535 (§6.9.2): nothing is sent until
// WINDOW_UPDATEs bring it above 0, then exactly what they give, and the
// answer ends whole.
func TestH2WindowLoweredBelowWhatWasSent(t *testing.T) {
	te := flowEdge(t, nil, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{})
	g.waitSettings()
	g.windowUpdate(0, 1<<24)
	const n = 200000
	g.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n="+strconv.Itoa(n))...)
	s := g.waitBody(1, 65535, 5*time.Second)
	require.Equal(t, 65535, len(s.body))
	// Lower: the stream's window becomes -65535.
	g.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	g.windowUpdate(1, 65535) // back to 0
	g.ping("a")
	g.drain()
	require.Equal(t, 65535, len(g.stream(1).body), "nothing for a window of 0")
	g.windowUpdate(1, 1000)
	s = g.waitBody(1, 65535+1000, 5*time.Second)
	g.ping("b")
	g.drain()
	require.Equal(t, 65535+1000, len(g.stream(1).body))
	g.windowUpdate(1, n)
	s = g.result(1, 5*time.Second)
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.True(t, bytes.Equal(flowPattern(n, 0), s.body))
}

// TestH2PriorityIsIgnored: PRIORITY frames on idle streams (Firefox's
// grouping streams), a HEADERS frame depending on one of them, PRIORITY
// on an open stream, a PRIORITY_UPDATE frame and the priority field
// (RFC 9218) are accepted and ignored: the requests are served and the
// connection stays up.
func TestH2PriorityIsIgnored(t *testing.T) {
	te := flowEdge(t, nil, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	for _, id := range []uint32{3, 5, 7, 9, 11} {
		require.NoError(t, g.write(func() error {
			return g.fr.WritePriority(id, http2.PriorityParam{StreamDep: 0, Weight: 100})
		}))
	}
	require.NoError(t, g.write(func() error {
		return g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 13, BlockFragment: g.block(h2get("GET", "test.acme.com", "/up/big?n=10", "priority", "u=1, i")...),
			EndStream: true, EndHeaders: true, Priority: http2.PriorityParam{StreamDep: 3, Weight: 10}})
	}))
	g.streamWin[13] = g.initWin
	s := g.result(13, 5*time.Second)
	assert.Equal(t, 200, s.status, "%v", s)
	// A PRIORITY on the open stream, a PRIORITY_UPDATE (0x10) frame.
	g.headers(15, true, h2get("GET", "test.acme.com", "/up/big?n=10")...)
	require.NoError(t, g.write(func() error {
		if err := g.fr.WritePriority(15, http2.PriorityParam{StreamDep: 13, Weight: 1}); err != nil {
			return err
		}
		return g.fr.WriteRawFrame(0x10, 0, 0, append([]byte{0, 0, 0, 15}, "u=0"...))
	}))
	s = g.result(15, 5*time.Second)
	assert.Equal(t, 200, s.status, "%v", s)
	g.ping("x")
	assert.Empty(t, g.goaways)
}

// TestH2EndStreamOnHeadersWithContinuation: END_STREAM on a HEADERS
// frame whose block ends in CONTINUATION frames ends the request there,
// as it ends trailers sent so.
func TestH2EndStreamOnHeadersWithContinuation(t *testing.T) {
	te := flowEdge(t, nil, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.waitSettings()
	blk := g.block(h2get("GET", "test.acme.com", "/up/big?n=10", "x-a", strings.Repeat("a", 100))...)
	require.NoError(t, g.write(func() error {
		if err := g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:10], EndStream: true, EndHeaders: false}); err != nil {
			return err
		}
		if err := g.fr.WriteContinuation(1, false, blk[10:20]); err != nil {
			return err
		}
		return g.fr.WriteContinuation(1, true, blk[20:])
	}))
	g.streamWin[1] = g.initWin
	s := g.result(1, 5*time.Second)
	assert.Equal(t, 200, s.status, "%v", s)
	assert.True(t, s.ended && !s.rst)
	// Trailers in HEADERS + CONTINUATION, END_STREAM on the HEADERS.
	g.headers(3, false, h2get("POST", "test.acme.com", "/up/echo")...)
	g.send(3, []byte("hello"), false, 5*time.Second)
	blk = g.block("x-trailer", strings.Repeat("t", 100))
	require.NoError(t, g.write(func() error {
		if err := g.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: blk[:5], EndStream: true, EndHeaders: false}); err != nil {
			return err
		}
		return g.fr.WriteContinuation(3, true, blk[5:])
	}))
	s = g.result(3, 5*time.Second)
	assert.Equal(t, 200, s.status, "%v", s)
	assert.Equal(t, "hello", string(s.body))
}

// TestH2PingAnsweredWhileAnAnswerWaitsForWindow: PINGs are answered while
// an answer waits for a window of 0, and the answer goes whole once a
// SETTINGS and a WINDOW_UPDATE open the windows.
func TestH2PingAnsweredWhileAnAnswerWaitsForWindow(t *testing.T) {
	te := flowEdge(t, nil, "")
	g := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}})
	g.waitSettings()
	g.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n=300000")...)
	g.wait(5*time.Second, "head", func() bool { return g.stream(1).status != 0 })
	for i := 0; i < 5; i++ {
		g.ping(fmt.Sprint("p", i))
	}
	g.settings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	g.windowUpdate(0, 1<<20)
	s := g.result(1, 5*time.Second)
	assert.True(t, s.ended && !s.rst, "%v", s)
	assert.Equal(t, 300000, len(s.body))
}
