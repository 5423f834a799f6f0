package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A connection edged accepted before its shutdown began gets its first
// request served (then closes), as nginx serves it (only keep-alive
// connections waiting between requests are idle and closed at once) and
// Go's net/http does: its client sent the request on a new connection,
// and no client retries a request whose new connection closed without an
// answer. The connections accepted in the last moments of shutdown_delay
// were closed with the request unanswered, whether their handshake was
// over or still under way when the drain began.
func TestFirstRequestOfAConnectionAcceptedBeforeShutdownIsServed(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served "+r.URL.Path) }), "")
	hs := te.srv.https

	// One whose handshake is over, one accepted whose handshake has not
	// begun.
	shaken, br := dialH1(t, te)
	raw, err := net.Dial("tcp", te.addr)
	require.NoError(t, err)
	defer raw.Close()
	require.Eventually(t, func() bool {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		return len(hs.conns) == 2
	}, 5*time.Second, 5*time.Millisecond)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	require.Eventually(t, hs.shutdown.Load, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // Shutdown's closing of idle connections has run a few times

	_, err = io.WriteString(shaken, "GET /first HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResp(t, br, "GET")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "served /first", body)
	assert.True(t, resp.Close, "the answer closes the connection: edged is shutting down")

	tc := tls.Client(raw, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, tc.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, tc.Handshake())
	_, err = io.WriteString(tc, "GET /late HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, body = readResp(t, bufio.NewReader(tc), "GET")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "served /late", body)
	assert.True(t, resp.Close)

	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the shutdown did not end once both connections were answered")
	}
}

// A connection that sent nothing holds the shutdown no longer than
// read_header_timeout, its bound for the first request at any time.
func TestSilentNewConnectionHoldsShutdownAtMostReadHeaderTimeout(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), `read_header_timeout = "300ms"`)
	silent := dialEdge(t, te)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(8 * time.Second):
		t.Fatal("a connection that sent nothing held the shutdown past read_header_timeout")
	}
	assert.True(t, isClosed(t, silent, bufio.NewReader(silent), time.Second))
}
