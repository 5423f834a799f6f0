//go:build linux

package upstream

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/fdshortage"
)

// edged's own shortage of file descriptors (a burst of client
// connections and tunnels) fails a dial at socket(), before anything
// reaches a node: EMFILE says nothing of the nodes. It is no failure of
// the node a request was for (nginx answers 500 and marks no peer
// failed), and no verdict of the active check. Counted against them,
// it ejected every node a request tried, and took down every node
// whose probe came in that moment: each was then refused every request
// (503 upstream.unavailable) until healthy probes passed after the
// shortage was over.
func TestOwnFileShortageIsNoVerdictOnTheNodes(t *testing.T) {
	var probes atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	// Its accepts fail meanwhile too, and are retried: not worth a line.
	be.Config.ErrorLog = log.New(io.Discard, "", 0)
	be.Start()
	t.Cleanup(be.Close)
	node := be.Listener.Addr().String()
	// Two upstreams of the same node: one is probed, the other takes the
	// requests (a probe that ends gives back its descriptor, which a
	// request would take).
	checked := newUpstream(t, Config{
		Active: &ActiveCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: time.Second, Healthy: 1, Unhealthy: 1},
	}, node)
	probed := checked.Nodes()[0]
	n := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, node).Nodes()[0]
	checked.Start()
	require.Eventually(t, func() bool { return probes.Load() >= 2 }, 5*time.Second, 5*time.Millisecond)

	short := fdshortage.Exhaust(t)
	// Ten turns of the checker, each probe failing at socket().
	time.Sleep(100 * time.Millisecond)
	checked.Close()
	down := probed.Stats().Down
	short.Take()
	for range 3 {
		_, err := n.RoundTrip(context.Background(), &Request{Method: "GET", URI: "/"})
		if !assert.ErrorIs(t, err, syscall.EMFILE) {
			break
		}
		assert.ErrorIs(t, err, ErrConnect, "nothing was sent: any request may go to another node")
	}
	st := n.Stats()
	healthy := n.Healthy()
	short.Release()

	assert.False(t, down, "edged's shortage is no failed health check")
	assert.Zero(t, st.Failures, "nor a failure of the node")
	assert.True(t, healthy)
	resp, body := do(t, n, &Request{Method: "GET", URI: "/"})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", body)
}
