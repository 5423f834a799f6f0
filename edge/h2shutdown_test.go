package edge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// An HTTP/2 connection accepted before the shutdown, whose preface comes
// after it began, gets edged's SETTINGS and a GOAWAY naming no stream
// (NO_ERROR): the client learns that none of its requests was taken and
// may send them again (RFC 9113 6.8). It was closed with no frame at all,
// its first requests' fate unknown to the client.
func TestH2PrefaceAfterShutdownGetsGOAWAY(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }), "")
	hs := te.srv.https
	tc := dialH2TLS(t, te.addr)
	require.Eventually(t, func() bool {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		return len(hs.conns) == 1
	}, 5*time.Second, 5*time.Millisecond)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	require.Eventually(t, hs.shutdown.Load, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond)

	require.NoError(t, tc.SetDeadline(time.Now().Add(5*time.Second)))
	bw := bufio.NewWriter(tc)
	fr := http2.NewFramer(bw, tc)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", "/x"}} {
		require.NoError(t, enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}))
	}
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
	_ = bw.Flush()

	var (
		settings, goaway bool
		last             uint32
		code             http2.ErrCode
		frames           []string
	)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		frames = append(frames, f.Header().Type.String())
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				settings = true
				_ = fr.WriteSettingsAck()
				_ = bw.Flush()
			}
		case *http2.GoAwayFrame:
			goaway, last, code = true, f.LastStreamID, f.ErrCode
		}
	}
	assert.True(t, settings, "edged's SETTINGS; frames: %v", frames)
	require.True(t, goaway, "a GOAWAY; frames: %v", frames)
	assert.Equal(t, http2.ErrCodeNo, code)
	assert.Equal(t, uint32(0), last, "no stream taken")
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the shutdown did not end")
	}
}
