package edge

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A storm of reloads, each rebuilding the environment, while requests
// run: every request is answered 200, has its access line and is counted
// on /metrics; /status answers throughout; and once the replaced
// instances have drained, no goroutine is left behind.
func TestReloadStormLosesNoRequestAndLeaksNoGoroutine(t *testing.T) {
	testCertDir(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	access := filepath.Join(t.TempDir(), "access.log")
	envFile := func(workers int) string {
		return fmt.Sprintf("[[environment]]\nname = \"storm\"\nworkers = %d\n[environment.rules.prometheus]\n[environment.rules.access_log]\npath = %q\n", workers, access) +
			groupTOML("storm", "storm", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "api-up"
environment = "storm"
nodes = [{ url = "http://%s" }]
[upstream.health.active]
path = "/healthz"
interval = "50ms"
[upstream.health.passive]
failures = 5
eject = "1s"

[[proxy]]
name = "api"
environment = "storm"
base_path = "/api"
upstream = "api-up"
`, b.addr)
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": envFile(16)})
	c, c2 := te.client("test.acme.com", nil), te.h2client(nil)
	// Warm up: connections and goroutines that live as long as the
	// clients do are counted in the base.
	for range 8 {
		resp, _ := te.get("test.acme.com", "/api/warm")
		require.Equal(t, 200, resp.StatusCode)
	}

	const clients, each, reloads = 8, 40, 30
	total := 8.0
	storm := func() {
		var sent, ok atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := c
				if i%2 == 1 {
					c = c2
				}
				for range each {
					resp, err := c.Get("https://test.acme.com/api/x")
					sent.Add(1)
					if err == nil {
						if resp.StatusCode == 200 {
							ok.Add(1)
						}
						resp.Body.Close()
					}
				}
			}()
		}
		statusFails := make(chan int, 1)
		go func() {
			fails := 0
			for {
				select {
				case <-stop:
					statusFails <- fails
					return
				default:
				}
				resp, err := http.Get("http://" + te.admin + "/status")
				if err != nil || resp.StatusCode != 200 {
					fails++
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		for i := range reloads {
			writeFiles(t, te.dir, map[string]string{"env.toml": envFile(16 + i%2 + 1)})
			te.reload()
			time.Sleep(5 * time.Millisecond)
		}
		wg.Wait()
		close(stop)
		assert.Zero(t, <-statusFails, "/status failed during the storm")
		assert.Equal(t, int64(clients*each), sent.Load())
		assert.Equal(t, sent.Load(), ok.Load(), "every request answered 200")

		// The replaced instances drain (idle: at once) and close.
		require.Eventually(t, func() bool { return len(te.srv.Status().DrainingEnvironments) == 0 }, 10*time.Second, 20*time.Millisecond)
		total += clients * each
		ex := scrapeUntil(t, te, `edged_requests_total{env="storm",class="2xx"}`, total)
		assert.Equal(t, total, ex.samples[canonical(t, `edged_requests_total{env="storm",class="2xx"}`)])
		require.Eventually(t, func() bool { return fileLines(access) == int(total) }, 10*time.Second, 20*time.Millisecond,
			"every request's access line")
	}
	storm()
	base := runtime.NumGoroutine()
	storm()
	var n int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= base+4 {
			break
		}
	}
	t.Logf("goroutines: %d after a storm of %d rebuilds, %d after a second", base, reloads, n)
	assert.LessOrEqual(t, n, base+4, "goroutines left by %d rebuilds and their drains", reloads)
}

// fileLines counts the lines of a file (0 when it cannot be read).
func fileLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}
