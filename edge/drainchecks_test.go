package edge

import (
	"bufio"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A generation of an environment that a reload replaced serves only the
// requests it has in flight: its active health checkers stop when its
// drain starts (the new generation checks the same nodes), instead of
// probing every node each interval for the whole drain_timeout beside
// the new generation's. A deploy tool touching a file while streams keep
// each replaced generation alive would otherwise run generations × nodes
// checkers, and their probes would take the environment's share of the
// room for probes from the serving generation's.
func TestDrainingGenerationsRunNoHealthChecks(t *testing.T) {
	testCertDir(t)
	const nodes, gens = 20, 6
	var mu sync.Mutex
	probes := map[string]int{} // by path: one path per generation
	var addrs []string
	for range nodes {
		b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/healthz/") {
				mu.Lock()
				probes[r.URL.Path]++
				mu.Unlock()
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			fmt.Fprint(w, "data: 0\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}))
		addrs = append(addrs, fmt.Sprintf(`{ url = "http://%s" }`, b.addr))
	}
	server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"60s\"\n", t.TempDir())
	env := func(gen int) string {
		return envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "api-up"
environment = "test"
nodes = [%s]
[upstream.health.active]
path = "/healthz/%d"
interval = "20ms"

[[proxy]]
name = "api"
environment = "test"
base_path = "/"
upstream = "api-up"
`, strings.Join(addrs, ", "), gen)
	}
	count := func(gen int) int {
		mu.Lock()
		defer mu.Unlock()
		return probes[fmt.Sprintf("/healthz/%d", gen)]
	}
	te := startEdge(t, map[string]string{"server.toml": server, "env.toml": env(0)})
	// Every node probed by the first generation: its checkers run.
	require.Eventually(t, func() bool { return count(0) >= nodes }, 10*time.Second, 10*time.Millisecond)

	base := runtime.NumGoroutine()
	for g := range gens {
		// A stream keeps generation g draining once the reload below
		// replaces it; each stream on a connection of its own.
		c := te.client("test.acme.com", nil)
		c.Timeout = 0
		resp, err := c.Get("https://test.acme.com/events")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "data: 0\n", line)
		writeFiles(t, te.dir, map[string]string{"env.toml": env(g + 1)})
		te.reload()
	}
	require.Len(t, te.srv.Status().DrainingEnvironments, gens, "every replaced generation still drains (its stream)")

	// The serving generation probes every node a few times over: a
	// probe a replaced generation had under way when its drain started
	// has been answered or aborted by then.
	require.Eventually(t, func() bool { return count(gens) >= 3*nodes }, 10*time.Second, 10*time.Millisecond)
	before := make([]int, gens)
	for g := range gens {
		before[g] = count(g)
	}
	require.Eventually(t, func() bool { return count(gens) >= 3*nodes+5*nodes }, 10*time.Second, 10*time.Millisecond)
	var since int
	for g := range gens {
		since += count(g) - before[g]
	}
	n := runtime.NumGoroutine()
	t.Logf("probes by the %d draining generations while the serving one sent %d: %d; goroutines: %d more with %d generations draining (%d nodes each)",
		gens, 5*nodes, since, n-base, gens, nodes)
	assert.Zero(t, since, "probes sent by the draining generations")
	// A stream and its generation's drain cost a handful of goroutines;
	// a checker per node would be nodes more a generation.
	assert.Less(t, n-base, gens*nodes, "goroutines held by %d draining generations", gens)
}
