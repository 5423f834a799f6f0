package edge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connLimitTLS dials the edge and shakes hands for test.acme.com, with
// ALPN protos; the handshake must end within d.
func connLimitTLS(t *testing.T, te *testEdge, d time.Duration, protos ...string) (*tls.Conn, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", te.addr, 2*time.Second)
	require.NoError(t, err) // the kernel's listen queue takes it even at the limit
	tc := tls.Client(nc, &tls.Config{RootCAs: caPool(t), ServerName: "test.acme.com", NextProtos: protos})
	_ = tc.SetDeadline(time.Now().Add(d))
	if err := tc.Handshake(); err != nil {
		nc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// h1GetOn sends one GET / over tc and returns the status.
func h1GetOn(t *testing.T, tc *tls.Conn) int {
	t.Helper()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// At max_connections edged stops accepting: the next client waits in the
// listen queue (its handshake does not start) until a connection closes,
// an HTTP/2 one included, or a reload raises the limit.
func TestMaxConnectionsPausesAccepting(t *testing.T) {
	testCertDir(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	state := t.TempDir()
	files := map[string]string{
		"server.toml": serverTOML(state, "max_connections = 2"),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", b.addr),
	}
	te := startEdge(t, files)
	waits := connLimitWaits.Get()

	h2c, err := connLimitTLS(t, te, 5*time.Second, "h2")
	require.NoError(t, err)
	require.Equal(t, "h2", h2c.ConnectionState().NegotiatedProtocol)
	h1c, err := connLimitTLS(t, te, 5*time.Second, "http/1.1")
	require.NoError(t, err)
	defer h1c.Close()
	assert.Equal(t, http.StatusOK, h1GetOn(t, h1c))

	// The third is not accepted: its ClientHello gets no answer.
	_, err = connLimitTLS(t, te, 300*time.Millisecond)
	require.Error(t, err, "a third connection was served at max_connections = 2")
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "want a handshake that never started, got %v", err)
	assert.Greater(t, connLimitWaits.Get(), waits)

	// One waiting now gets in once the HTTP/2 connection closes.
	type result struct {
		tc  *tls.Conn
		err error
	}
	third := make(chan result, 1)
	go func() {
		tc, err := connLimitTLS(t, te, 5*time.Second, "http/1.1")
		third <- result{tc, err}
	}()
	select {
	case r := <-third:
		t.Fatalf("a third connection was accepted at the limit (err %v)", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	h2c.Close()
	var r result
	select {
	case r = <-third:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
	require.NoError(t, r.err)
	defer r.tc.Close()
	assert.Equal(t, http.StatusOK, h1GetOn(t, r.tc))

	// Still two open: a reload to 3 lets one more in.
	_, err = connLimitTLS(t, te, 300*time.Millisecond)
	require.Error(t, err)
	files["server.toml"] = serverTOML(state, "max_connections = 3")
	writeFiles(t, te.dir, files)
	te.reload()
	fourth, err := connLimitTLS(t, te, 5*time.Second, "http/1.1")
	require.NoError(t, err, "a reload raising max_connections did not let a connection in")
	defer fourth.Close()
	assert.Equal(t, http.StatusOK, h1GetOn(t, fourth))
}

// edged_client_connections counts the clients' connections open: an
// accept loop's wait in Accept for the next one is none. The slot each
// loop takes before it accepts was counted in it, so an idle edged with
// both public listeners showed 2 (1 with the TLS listener alone), never 0.
func TestClientConnectionsGaugeCountsOnlyConnections(t *testing.T) {
	testCertDir(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	before := clientConnsOpen.Load()
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", b.addr),
	})
	_, plain, _ := te.srv.Addrs()
	require.NotNil(t, plain)
	// Both accept loops are up and each has served a connection.
	pc, err := net.Dial("tcp", plain.String())
	require.NoError(t, err)
	_, err = io.WriteString(pc, "GET / HTTP/1.1\r\nHost: test.acme.com\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	_ = pc.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(pc), nil)
	require.NoError(t, err)
	resp.Body.Close()
	pc.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	tc, err := connLimitTLS(t, te, 5*time.Second, "http/1.1")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, h1GetOn(t, tc))
	assert.Equal(t, before+1, clientConnsOpen.Load(), "one connection open")
	tc.Close()
	assert.Eventually(t, func() bool { return clientConnsOpen.Load() == before }, 5*time.Second, 5*time.Millisecond,
		"edged_client_connections with no connection open: %d more than before edged started", clientConnsOpen.Load()-before)
}
