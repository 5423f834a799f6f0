package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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

// A client that pipelined requests behind one in flight when the
// shutdown began gets that one's answer whole: edged closes after it
// (Connection: close), and the requests it will not answer are read and
// dropped (the lingering close, as nginx does when its buffer holds a
// pipelined request) rather than left unread. A socket closed with bytes
// unread is reset, and the reset threw away the part of the answer still
// in edged's send queue: the client got a cut answer and "connection
// reset by peer" for a request that was served.
func TestPipelinedRequestsAtShutdownDoNotCutTheAnswer(t *testing.T) {
	const size = 8 << 20
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "small")
			return
		}
		started <- struct{}{}
		<-release
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}), "")
	hs := te.srv.https

	c, br := dialH1(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	_, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	<-started
	// Pipelined behind it: more than the connection's read buffer takes
	// (edged reads no more while a request is in flight), less than the
	// lingering close reads.
	pad := strings.Repeat("p", 8<<10)
	var pipelined strings.Builder
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&pipelined, "GET /p%d HTTP/1.1\r\nHost: test.acme.com\r\nX-Pad: %s\r\n\r\n", i, pad)
	}
	_, err = io.WriteString(c, pipelined.String())
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // the client watch has read what fits

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- te.srv.Shutdown(ctx)
	}()
	require.Eventually(t, hs.shutdown.Load, 5*time.Second, time.Millisecond)
	close(release)

	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	require.NoError(t, err)
	assert.True(t, resp.Close, "the answer closes the connection: edged is shutting down")
	// Read slowly until edged is done with the connection, so that part
	// of the answer still waits in its send queue then; then the rest.
	got := 0
	buf := make([]byte, 16<<10)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		hs.mu.Lock()
		open := len(hs.conns)
		hs.mu.Unlock()
		if open == 0 {
			break
		}
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	got += int(n)
	assert.NoError(t, err, "the answer ends as it should, not with a reset")
	assert.Equal(t, size, got, "the whole answer reached the client")

	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the shutdown did not end")
	}
}
