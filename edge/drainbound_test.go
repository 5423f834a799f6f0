package edge

import (
	"fmt"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A deploy tool that rewrites an environment's file every few hundred
// milliseconds, with long requests (streams, long polls, WebSockets) in
// every generation, must not keep reload rate × drain_timeout
// generations draining, each with its runtime: past
// maxDrainingGenerations of one environment, the oldest one's drain ends
// at once, as at its drain_timeout (its requests still waiting for their
// node answered 503, streams and tunnels cut), as HAProxy's
// mworker-max-reloads ends an old worker that outlived too many reloads.
// Another environment's draining generation is not touched, and neither
// is any by reloads that replace generations running nothing.
func TestDrainingGenerationsOfAnEnvironmentAreBounded(t *testing.T) {
	// renamed: test's environment takes a new name at every reload, as
	// whoever writes its home may do; its generations drain under names
	// of their own, and are bounded together all the same.
	for _, renamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("renamed=%v", renamed), func(t *testing.T) {
			name := func(i int) string {
				if renamed {
					return fmt.Sprintf("t%d", i)
				}
				return "test"
			}
			testCertDir(t)
			var arrived atomic.Int64
			b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived.Add(1)
				select {
				case <-r.Context().Done():
				case <-time.After(60 * time.Second):
				}
			}))
			env := func(name, host string, gen int) string {
				return fmt.Sprintf("[[environment]]\nname = %q\nworkers = %d\n", name, 200+gen%2) +
					groupTOML(name, name, host, host) + proxyTOML(name, "api", "/", b.addr)
			}
			server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"60s\"\n", t.TempDir())
			te := startEdge(t, map[string]string{
				"server.toml": server,
				"test.toml":   env(name(0), "test.acme.com", 0),
				"uat.toml":    env("uat", "uat.acme.com", 0),
			})
			c := te.h2client(nil)
			c.Timeout = 0
			// hold sends a request that the node holds, and returns once it is
			// there: in flight in the generation serving now.
			hold := func(host string) <-chan answer {
				n := arrived.Load()
				ans := getAsync(c, "https://"+host+"/x")
				require.Eventually(t, func() bool { return arrived.Load() == n+1 }, 10*time.Second, time.Millisecond)
				return ans
			}
			draining := func() map[string]int { // test's generations under "test", whatever their names
				n := map[string]int{}
				for _, d := range te.srv.Status().DrainingEnvironments {
					if d.Name != "uat" {
						d.Name = "test"
					}
					n[d.Name]++
				}
				return n
			}

			// uat: one generation draining, its request held.
			uatHeld := hold("uat.acme.com")
			writeFiles(t, te.dir, map[string]string{"uat.toml": env("uat", "uat.acme.com", 1)})
			te.reload()

			const reloads = 3 * maxDrainingGenerations
			base := runtime.NumGoroutine()
			held := make([]<-chan answer, reloads)
			for i := range reloads {
				held[i] = hold("test.acme.com")
				writeFiles(t, te.dir, map[string]string{"test.toml": env(name(i+1), "test.acme.com", i+1)})
				te.reload()
			}
			// The oldest generations' held requests are cut: 503, a retry
			// reaches the serving generation.
			for i := range reloads - maxDrainingGenerations {
				select {
				case a := <-held[i]:
					assert.Equal(t, http.StatusServiceUnavailable, a.status, "request held in generation %d", i)
				case <-time.After(20 * time.Second):
					t.Fatalf("the request held in generation %d of %d still runs 20s after %d newer generations of its environment began draining (draining now: %v)",
						i, reloads, reloads-i, draining())
				}
			}
			var n map[string]int
			require.Eventually(t, func() bool { n = draining(); return n["test"] == maxDrainingGenerations }, 10*time.Second, 10*time.Millisecond,
				"generations of test draining: %v", n)
			// Generations replaced with no request running close at once and
			// count for nothing: reloads without traffic cut no one's request.
			for i := range reloads {
				writeFiles(t, te.dir, map[string]string{"test.toml": env(name(reloads+i+1), "test.acme.com", reloads+i+1)})
				te.reload()
			}
			require.Eventually(t, func() bool { n = draining(); return n["test"] == maxDrainingGenerations }, 10*time.Second, 10*time.Millisecond,
				"generations of test draining after idle reloads: %v", n)
			t.Logf("draining after %d reloads with a request held in each: %v; goroutines: %d more", reloads, n, runtime.NumGoroutine()-base)
			assert.Equal(t, 1, n["uat"], "another environment's draining generation is not cut")
			for i := reloads - maxDrainingGenerations; i < reloads; i++ {
				select {
				case a := <-held[i]:
					t.Errorf("the request held in generation %d, one of the newest %d draining, ended: %d %v", i, maxDrainingGenerations, a.status, a.err)
				default:
				}
			}
			select {
			case a := <-uatHeld:
				t.Errorf("uat's held request ended: %d %v", a.status, a.err)
			default:
			}
		})
	}
}
