package edge

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// During the lame duck (shutdown_delay: NotReady) every answer ends its
// connection, as Envoy's drain does: HTTP/1.1 with Connection: close,
// HTTP/2 with GOAWAY. A keep-alive client then sends its next request on
// a new connection, which a load balancer that took the instance out
// sends elsewhere. Its connection used to stay open through the whole
// delay, as if nothing were to come, and the shutdown then closed it as
// an idle one: a request the client sent at that moment was lost (the
// client retries it only when idempotent, and only sometimes).
func TestLameDuckAnswersCloseTheirConnections(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served "+r.URL.Path) }), "")

	c, br := dialH1(t, te)
	get := func(path string) *http.Response {
		t.Helper()
		_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
		require.NoError(t, err)
		resp, body := readResp(t, br, "GET")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "served "+path, body)
		return resp
	}
	require.False(t, get("/before").Close, "kept alive before the lame duck")

	var dials atomic64
	h2 := te.h2client(&dials)
	h2get := func(path string) {
		t.Helper()
		resp, err := h2.Get("https://test.acme.com" + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "served "+path, string(b))
		require.Equal(t, 2, resp.ProtoMajor)
	}
	h2get("/before")
	h2get("/before-again")
	require.Equal(t, int64(1), dials.load(), "one HTTP/2 connection before the lame duck")

	te.srv.NotReady()

	// HTTP/1.1: the answer says Connection: close, and edged closes the
	// connection after it.
	assert.True(t, get("/lame").Close, "an HTTP/1.1 answer in the lame duck carries Connection: close")
	assert.True(t, isClosed(t, c, br, 2*time.Second), "edged closes the connection after that answer")

	// A connection made during the lame duck is still served, once.
	c, br = dialH1(t, te)
	assert.True(t, get("/new").Close, "an answer on a connection made in the lame duck closes it too")

	// HTTP/2: the answer comes with a GOAWAY, so the next request goes
	// on a new connection.
	h2get("/lame")
	h2get("/lame-again")
	assert.Equal(t, int64(2), dials.load(), "the HTTP/2 answer in the lame duck sent the next request to a new connection")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx))
}
