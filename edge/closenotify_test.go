package edge

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingConn keeps every byte read from its connection: what the
// server sent, TLS records as they came.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// alerts counts the TLS 1.2 alert records (content type 21) in what the
// server sent: under TLS 1.2 an alert's type is outside its encryption.
func (c *recordingConn) alerts(t *testing.T) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	b, n := c.got.Bytes(), 0
	for len(b) >= 5 {
		size := int(b[3])<<8 | int(b[4])
		require.LessOrEqual(t, 5+size, len(b), "a TLS record cut short")
		if b[0] == 21 {
			n++
		}
		b = b[5+size:]
	}
	require.Empty(t, b, "bytes after the last whole TLS record")
	return n
}

// An HTTP/1.0 client reads an answer of unknown length to the
// connection's close; over TLS only close_notify tells that close from a
// cut (RFC 8446 6.1). A node that breaks its body in the middle must not
// have edged end the client's connection with close_notify, or the part
// the client got would look like the whole (nginx closes quietly on an
// error); a whole answer ends with it.
func TestCutCloseDelimitedAnswerHasNoCloseNotify(t *testing.T) {
	part := strings.Repeat("x", 8<<10)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // chunked: no length for edged to pass on
		io.WriteString(w, part)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/cut" {
			// The chunked body ends with no last chunk: cut.
			time.Sleep(50 * time.Millisecond)
			panic(http.ErrAbortHandler)
		}
	}), "")
	for _, tc := range []struct {
		path   string
		alerts int
	}{
		{"/whole", 1},
		{"/cut", 0},
	} {
		t.Run(tc.path, func(t *testing.T) {
			nc, err := net.Dial("tcp", te.addr)
			require.NoError(t, err)
			defer nc.Close()
			rec := &recordingConn{Conn: nc}
			c := tls.Client(rec, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MaxVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
			require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
			_, err = io.WriteString(c, "GET "+tc.path+" HTTP/1.0\r\nHost: test.acme.com\r\n\r\n")
			require.NoError(t, err)
			got, err := io.ReadAll(c) // to the connection's end; Go's client takes one without close_notify as EOF
			require.NoError(t, err)
			head, body, ok := strings.Cut(string(got), "\r\n\r\n")
			require.True(t, ok, "%q", got)
			require.True(t, strings.HasPrefix(head, "HTTP/1.0 200 ") || strings.HasPrefix(head, "HTTP/1.1 200 "), head)
			assert.NotContains(t, strings.ToLower(head), "content-length", "a close-delimited answer")
			assert.Equal(t, part, body)
			assert.Equal(t, tc.alerts, rec.alerts(t), "close_notify alerts at the end of %s", tc.path)
		})
	}
}
