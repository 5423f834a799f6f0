package edge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/fdshortage"
)

// A request whose connection to its node cannot be made because edged
// has no file descriptor left (EMFILE at socket()) is no failure of the
// node or the upstream: it is answered 500 internal.error, as nginx
// answers it, not 502 upstream.failed, which sends the operator to a
// backend that never saw a packet; it is not sent on to the other nodes,
// which would fail alike, each counted a retry; and edged logs it as its
// own error, saying what to raise. Once descriptors are back, the same
// nodes serve: none was ejected.
func TestOwnFileShortageIsAnsweredAsEdgedsOwnError(t *testing.T) {
	testCertDir(t)
	a, b := nameBackend(t, "a"), nameBackend(t, "b")
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", a.addr, b.addr),
	})
	// The client's connection is made before the shortage: what is
	// asked then needs no descriptor but the node's.
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(c)
	ask := func() (*http.Response, string) {
		_, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}

	short := fdshortage.Exhaust(t)
	resp, body := ask()
	short.Release()
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode, body)
	assert.Contains(t, body, `"code":"internal.error"`)
	assert.Contains(t, body, "no file descriptor left to reach upstream")
	assert.Zero(t, a.conns.load()+b.conns.load(), "no node saw a connection")
	assert.Contains(t, logs.String(), "no file descriptor left for a connection to the node")
	assert.Contains(t, logs.String(), `"level":"ERROR"`)
	assert.NotContains(t, logs.String(), "upstream failed")

	code, metrics := adminGet(t, te, "/metrics")
	require.Equal(t, 200, code)
	assert.NotRegexp(t, `edged_upstream_retries_total\{[^}]*kind="other_node"\} [1-9]`, metrics, "not sent on to the other node")

	seen := map[string]bool{}
	for range 4 {
		resp, body := ask()
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		seen[strings.Fields(body)[0]] = true
	}
	assert.Equal(t, map[string]bool{"a": true, "b": true}, seen, "both nodes still in rotation")
}
