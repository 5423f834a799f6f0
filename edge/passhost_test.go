package edge

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPassHostNodeOmitsTheDefaultPort: a node written without a port
// ("http://users.internal", port 80) is sent Host "users.internal" with
// pass_host = "node", and so is its health probe, as curl, Go and nginx
// ($proxy_host) address it (RFC 3986 6.2.3: the default port is left
// out). "users.internal:80" is no name an Envoy virtual host (or another
// matcher comparing host:port) lists: it answered 404 to every request.
// A node on another port keeps it; a retry's Host follows the node.
func TestPassHostNodeOmitsTheDefaultPort(t *testing.T) {
	testCertDir(t)
	// Port 80 on a loopback address of its own: only root binds it.
	ln, err := net.Listen("tcp", "127.80.80.1:80")
	if err != nil {
		t.Skipf("no port 80 on loopback: %v", err)
	}
	var mu sync.Mutex
	seen := map[string][]string{} // node -> Hosts it got (probes: "probe " first)
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if r.URL.Path == "/healthz" {
				seen[name] = append(seen[name], "probe "+r.Host)
			} else {
				seen[name] = append(seen[name], r.Host)
			}
			mu.Unlock()
			if name == "other" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, name)
		})
	}
	on80 := &http.Server{Handler: record("on80"), ReadHeaderTimeout: 5 * time.Second}
	go on80.Serve(ln)
	t.Cleanup(func() { on80.Close() })
	other := startBackend(t, record("other"))

	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "up"
environment = "test"
nodes = [{ url = "http://127.80.80.1" }, { url = "http://%s", weight = 1000 }]
pass_host = "node"
retries = 1
[upstream.health.active]
path = "/healthz"
interval = "20ms"
unhealthy = 100

[[proxy]]
name = "p"
environment = "test"
base_path = "/"
upstream = "up"
`, other.addr),
	})
	c := te.client("test.acme.com", nil)
	for range 4 {
		resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/x", nil))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, "on80", body)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen["on80"]) >= 6
	}, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, h := range seen["on80"] {
		assert.Contains(t, []string{"127.80.80.1", "probe 127.80.80.1"}, h, "a node on its scheme's default port")
	}
	require.NotEmpty(t, seen["other"])
	for _, h := range seen["other"] {
		assert.Contains(t, []string{other.addr, "probe " + other.addr}, h, "a node on another port")
	}
}
