package edge

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request body that has all arrived is not failed by read_timeout while
// the request waits for a worker: the wait is edged's, not the client's.
// Over HTTP/2 the expired deadline replaced the body's end (io.EOF) with
// a timeout, and a body without content-length, read to its end, was
// answered 400 "the request body did not arrive within read_timeout";
// HTTP/1.1 reads a body already in its buffer and forwards it.
func TestBodyThatArrivedOutlastsReadTimeoutInTheQueue(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-release
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `read_timeout = "300ms"`),
		"env.toml": `
[[environment]]
name = "one"
workers = 1
queue = 8
queue_timeout = "10s"
` + groupTOML("one", "g", "test.acme.com", "test.acme.com") + proxyTOML("one", "p", "/", b.addr),
	})
	busy := getAsync(te.client("test.acme.com", nil), "https://test.acme.com/hang")
	pool := te.srv.Snapshot().envs["one"].pool
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	h2 := dialH2(t, te.addr, "test.acme.com")
	// No content-length: the body's end is its last read's io.EOF,
	// which the expired deadline replaced.
	h2.headers(1, false, h2get("POST", "test.acme.com", "/h2")...)
	require.NoError(t, h2.fr.WriteData(1, true, []byte("0123456789")))
	req, err := http.NewRequest("POST", "https://test.acme.com/h1", strings.NewReader("0123456789"))
	require.NoError(t, err)
	h1 := doAsync(te.client("test.acme.com", nil), req)
	require.Eventually(t, func() bool { return pool.Stats().Queued == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(600 * time.Millisecond) // queued past read_timeout, the bodies long arrived
	close(release)

	got := h2.result(1)
	assert.Equal(t, http.StatusOK, got.status, "%+v", got)
	assert.Equal(t, "got 10", got.body)
	a := <-h1
	require.NoError(t, a.err)
	assert.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, "got 10", a.body)
	<-busy // itself past read_timeout, which ends a bodiless request too
}
