package edge

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A body declared larger than max_body_bytes is the client's mistake: 413
// at once, even when every worker is busy and the queue full. It used to
// take its place in the pool first, and behind a busy pool was held and
// answered 503 env.overloaded.
func TestTooLargeBodyIsRefusedBeforeThePool(t *testing.T) {
	testCertDir(t)
	b, open := blockingBackend(t)
	defer open()
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": `
[[environment]]
name = "small"
workers = 1
queue = 0
reject_delay = "5s"
max_body_bytes = 10
` + groupTOML("small", "g", "test.acme.com", "test.acme.com") + proxyTOML("small", "p", "/", b.addr),
	})
	c := te.client("test.acme.com", nil)
	busy := getAsync(c, "https://test.acme.com/hang")
	require.Eventually(t, func() bool { return te.srv.Snapshot().envs["small"].pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	resp, err := c.Post("https://test.acme.com/upload", "text/plain", strings.NewReader(strings.Repeat("x", 100)))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Zero(t, te.srv.Snapshot().envs["small"].pool.Stats().HeldTotal, "the 413 was not held")

	open()
	assert.Equal(t, http.StatusOK, (<-busy).status)
}
