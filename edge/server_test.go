package edge

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// dialEdge opens an HTTP/1.1 TLS connection to the edge for test.acme.com.
func dialEdge(t *testing.T, te *testEdge) *tls.Conn {
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSlowRequestHeadIsCut(t *testing.T) {
	te, _ := threeGroups(t, `read_header_timeout = "300ms"`)
	c := dialEdge(t, te)
	start := time.Now()
	_, err := io.WriteString(c, "GET /users/1 HTTP/1.1\r\nHost: test.acme.com\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := c.Read(make([]byte, 1))
	took := time.Since(start)
	assert.Zero(t, n, "no answer to a head that never ends")
	assert.ErrorIs(t, err, io.EOF, "the connection is closed")
	assert.GreaterOrEqual(t, took, 250*time.Millisecond, "not before read_header_timeout")
	assert.Less(t, took, 2*time.Second, "about read_header_timeout")

	// A head that arrives in time is served on the same settings.
	c2 := dialEdge(t, te)
	_, err = io.WriteString(c2, "GET /users/1 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestRequestHeadOverMaxHeaderBytes(t *testing.T) {
	te, _ := threeGroups(t, `max_header_bytes = 4096`)
	cases := []struct {
		name   string
		size   int
		status int
	}{
		// net/http allows 4 KiB of slack above the limit for the request line.
		{"within the limit", 3000, 200},
		{"far over the limit", 32 << 10, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialEdge(t, te)
			require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			_, err := fmt.Fprintf(c, "GET /users/1 HTTP/1.1\r\nHost: test.acme.com\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", tc.size))
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}
}

// A head the HTTP/1.1 parser refuses with a status of its own answers
// the fault code that status has everywhere else: the reason the refusal
// counts under in edged_requests_refused_total, and the code HTTP/2
// answers the same refusal with (431, 417), not request.invalid, which
// is the 400s'.
func TestH1RefusalsAnswerTheCodeOfTheirStatus(t *testing.T) {
	te, _ := threeGroups(t, `max_header_bytes = 4096`)
	for _, tc := range []struct {
		name, head string
		status     int
		code       string
	}{
		{"head over max_header_bytes", "GET /users/1 HTTP/1.1\r\nHost: test.acme.com\r\nX-Big: " + strings.Repeat("b", 32<<10) + "\r\n\r\n", 431, "request.header_too_large"},
		{"an expectation other than 100-continue", "GET /users/1 HTTP/1.1\r\nHost: test.acme.com\r\nExpect: 200-ok\r\n\r\n", 417, "request.expectation"},
		{"a transfer coding other than chunked", "POST /users/1 HTTP/1.1\r\nHost: test.acme.com\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "request.transfer_coding"},
		{"a major version other than 1", "GET /users/1 HTTP/2.0\r\nHost: test.acme.com\r\n\r\n", 505, "request.version"},
		{"a malformed head", "GET /users/1 HTTP/1.1\r\nHost test.acme.com\r\n\r\n", 400, "request.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialEdge(t, te)
			require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			_, err := io.WriteString(c, tc.head)
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			var f struct {
				Fault struct{ Code string } `json:"fault"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&f))
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.code, f.Fault.Code)
		})
	}
}

func TestHTTP2ServerSettings(t *testing.T) {
	te, _ := threeGroups(t, "h2_max_concurrent_streams = 17")
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"h2"}})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	fr := http2.NewFramer(c, c)
	require.NoError(t, fr.WriteSettings())

	f, err := fr.ReadFrame()
	require.NoError(t, err)
	sf, ok := f.(*http2.SettingsFrame)
	require.True(t, ok, "the server speaks first with SETTINGS, got %T", f)
	require.False(t, sf.IsAck())
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: 17,
		http2.SettingMaxFrameSize:         16 << 10,        // a full-size DATA frame fits the stream window
		http2.SettingInitialWindowSize:    h2StreamPreread, // until the request has its worker
	}
	for id, v := range want {
		got, ok := sf.Value(id)
		if assert.True(t, ok, "%s is announced", id) {
			assert.Equal(t, v, got, id.String())
		}
	}
	fs, _ := sf.Value(http2.SettingMaxFrameSize)
	iw, _ := sf.Value(http2.SettingInitialWindowSize)
	assert.LessOrEqual(t, fs, iw, "a frame of the announced size must fit the stream window")
	hl, ok := sf.Value(http2.SettingMaxHeaderListSize)
	require.True(t, ok, "the header limit is announced")
	assert.GreaterOrEqual(t, hl, uint32(65536), "max_header_bytes' default, plus http2's per-field allowance")
	assert.Less(t, hl, uint32(65536+1024))
	// The connection's window is raised to its upload buffer at once. The
	// acknowledgement of our SETTINGS may come first: x/net/http2 sends
	// it ahead of what is still queued, as RFC 9113 allows.
	f, err = fr.ReadFrame()
	require.NoError(t, err)
	if ack, isSettings := f.(*http2.SettingsFrame); isSettings {
		require.True(t, ack.IsAck(), "a second SETTINGS can only be the ACK")
		f, err = fr.ReadFrame()
		require.NoError(t, err)
	}
	wu, ok := f.(*http2.WindowUpdateFrame)
	require.True(t, ok, "then WINDOW_UPDATE, got %T", f)
	assert.Zero(t, wu.StreamID)
	assert.EqualValues(t, h2UploadPerConn-65535, wu.Increment)
}
