package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openBackend is a net/http server that counts its open connections and
// holds every request to /burst until release is closed, so that a burst
// really takes one connection per request.
func openBackend(t *testing.T, idleTimeout time.Duration, arrived *sync.WaitGroup, release chan struct{}) (host string, open *atomic.Int64) {
	t.Helper()
	open = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/burst" {
			arrived.Done()
			<-release
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.IdleTimeout = idleTimeout
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), open
}

// burst sends n concurrent requests that the backend holds until all of
// them arrived: n connections, back in the idle pool afterwards.
func burst(t *testing.T, node *Node, n int, arrived *sync.WaitGroup, release chan struct{}) {
	t.Helper()
	arrived.Add(n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { get(t, node, "/burst") })
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	require.EqualValues(t, n, node.Stats().Dials, "one connection per request of the burst")
}

func get(t *testing.T, node *Node, uri string) {
	resp, err := node.RoundTrip(t.Context(), &Request{Method: "GET", URI: uri})
	if !assert.NoError(t, err) {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// After a burst, a trickle of requests keeps the top of the idle stack
// busy; the connections below it must still be closed once idle for
// IdleTimeout (before the reaper, they stayed open for good).
func TestReaperClosesIdleConnectionsAfterBurst(t *testing.T) {
	var arrived sync.WaitGroup
	release := make(chan struct{})
	host, open := openBackend(t, 0, &arrived, release)
	u := newUpstream(t, Config{IdleTimeout: 300 * time.Millisecond}, host)
	u.Start()
	n := u.Nodes()[0]

	const conns = 20
	burst(t, n, conns, &arrived, release)
	require.EqualValues(t, conns, open.Load())

	// One request every 50 ms for up to 5 s: the open count must fall
	// to the one connection the trickle uses (or two, when a reaper
	// round takes the hot one out while a request needs it).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && open.Load() > 2; {
		get(t, n, "/trickle")
		time.Sleep(50 * time.Millisecond)
	}
	assert.LessOrEqual(t, open.Load(), int64(2), "connections the backend still has open")
	assert.LessOrEqual(t, n.Stats().Idle, 2)
}

// A backend that closes idle connections itself (its keep-alive timeout)
// leaves them in CLOSE_WAIT on our side until someone closes them: the
// reaper does, long before edged's own IdleTimeout.
func TestReaperDropsConnectionsTheServerClosed(t *testing.T) {
	var arrived sync.WaitGroup
	release := make(chan struct{})
	host, open := openBackend(t, 200*time.Millisecond, &arrived, release)
	u := newUpstream(t, Config{IdleTimeout: time.Hour}, host)
	u.Start()
	n := u.Nodes()[0]

	const conns = 10
	burst(t, n, conns, &arrived, release)
	require.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 10*time.Millisecond, "the backend closes its idle connections")
	assert.Eventually(t, func() bool { return n.Stats().Idle == 0 }, 5*time.Second, 20*time.Millisecond, "closed connections left in the pool")
	get(t, n, "/after") // the pool still works
}

// A round of the reaper leaves live connections idle for less than
// IdleTimeout in the pool, in their order, and closes the expired ones.
func TestReapKeepsLiveConnectionsInOrder(t *testing.T) {
	var arrived sync.WaitGroup
	release := make(chan struct{})
	host, open := openBackend(t, 0, &arrived, release)
	u := newUpstream(t, Config{IdleTimeout: time.Hour}, host) // not started: the test runs the rounds
	n := u.Nodes()[0]
	burst(t, n, 6, &arrived, release)
	require.Equal(t, 6, n.Stats().Idle)

	n.mu.Lock()
	before := append([]*conn(nil), n.idle...)
	n.mu.Unlock()
	n.reap(0) // every connection is cold
	n.mu.Lock()
	after := append([]*conn(nil), n.idle...)
	n.mu.Unlock()
	assert.Equal(t, before, after)

	// The bottom two have waited longer than IdleTimeout.
	n.mu.Lock()
	for _, c := range n.idle[:2] {
		c.idleAt -= int64(2 * time.Hour)
	}
	n.mu.Unlock()
	n.reap(0)
	assert.Equal(t, 4, n.Stats().Idle)
	n.mu.Lock()
	assert.Equal(t, before[2:], n.idle)
	n.mu.Unlock()
	assert.Eventually(t, func() bool { return open.Load() == 4 }, 2*time.Second, 10*time.Millisecond)
}

// The reaper belongs to the upstream: Close stops it and waits for it.
func TestCloseStopsReaper(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	before := runtime.NumGoroutine()
	u, err := New(Config{Logger: discardLogger, Nodes: []NodeConfig{{Scheme: "http", Host: be.host()}}, IdleTimeout: 20 * time.Millisecond})
	require.NoError(t, err)
	u.Start()
	require.Greater(t, runtime.NumGoroutine(), before, "the reaper runs")
	u.Close()
	// Not require.Eventually: it runs the condition in goroutines of its own.
	now := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); now > before && time.Now().Before(deadline); now = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	assert.LessOrEqual(t, now, before, "reaper left after Close")

	// Keep-alive off: nothing to reap, no goroutine.
	u, err = New(Config{Logger: discardLogger, Nodes: []NodeConfig{{Scheme: "http", Host: be.host()}}, MaxIdlePerNode: -1})
	require.NoError(t, err)
	u.Start()
	assert.Equal(t, before, runtime.NumGoroutine())
	u.Close()
}
