package edge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request still waiting in the pool of an environment that a reload
// replaces (queued behind a worker whose backend hangs) is routed again on
// the new snapshot, as a request routed before the reload but not yet
// admitted is (TestRequestRoutedBeforeReloadIsServedByTheLiveEnvironment):
// the reload that points the proxy at a live backend answers it from
// there, not with a 503 env.overloaded at the retired pool's queue_timeout
// (a minute here). The request that held the old worker stays where it
// is: it was admitted, and the drain waits for it.
func TestQueuedRequestOfRetiredEnvironmentIsRoutedAgain(t *testing.T) {
	testCertDir(t)
	hung, open := blockingBackend(t)
	live := nameBackend(t, "new")
	group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
	env := `
[[environment]]
name = "test"
workers = 1
queue = 1
queue_timeout = "1m"
reject_delay = "0s"
`
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    env + group + proxyTOML("test", "api", "/", hung.addr),
	})
	old := te.srv.Snapshot().Env("test")
	c := te.client("test.acme.com", nil)
	busy := getAsync(c, "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return old.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
	queued := getAsync(c, "https://test.acme.com/queued")
	require.Eventually(t, func() bool { return old.pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond)

	writeFiles(t, te.dir, map[string]string{"env.toml": env + group + proxyTOML("test", "api", "/", live.addr)})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("test"))

	select {
	case a := <-queued:
		require.NoError(t, a.err)
		assert.Equal(t, 200, a.status)
		assert.Equal(t, "new /queued", a.body, "served by the environment that replaced the retired one")
	case <-time.After(15 * time.Second):
		open()
		t.Fatal("the queued request still waits in the retired environment's pool")
	}
	st := old.pool.Stats()
	assert.Zero(t, st.Queued, "nothing is left queued in the retired pool")
	assert.Zero(t, st.TimedOut+st.Rejected, "the request that left the retired pool is neither timed out nor rejected there")
	open()
	a := <-busy
	require.NoError(t, a.err)
	assert.Equal(t, 200, a.status, "the admitted request finishes on the retired environment")
}
