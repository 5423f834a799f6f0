package edge

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request routed on a snapshot whose environment a reload retires (and
// whose drain closes it) before the request is counted in it is served by
// the live environment, not run on the closed one.
func TestRequestRoutedBeforeReloadIsServedByTheLiveEnvironment(t *testing.T) {
	testCertDir(t)
	oldBE, newBE := nameBackend(t, "old"), nameBackend(t, "new")
	group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + group + proxyTOML("test", "api", "/", oldBE.addr),
	})
	retired := te.srv.Snapshot().Env("test")

	var once sync.Once
	hook := func() {
		once.Do(func() {
			// Between routing and admission: the reload replaces the
			// environment, and its drain (nothing counted in flight)
			// closes it before the request goes on.
			writeFiles(t, te.dir, map[string]string{
				"env.toml": envTOML("test", "") + group + proxyTOML("test", "api", "/", newBE.addr),
			})
			cfg, err := te.loader.Load()
			if !assert.NoError(t, err) {
				return
			}
			_, _, err = te.srv.Apply(cfg)
			assert.NoError(t, err)
			select {
			case <-retired.Done():
			case <-time.After(5 * time.Second):
				t.Error("the replaced environment was not closed by its drain")
			}
		})
	}
	te.srv.testHookRouted.Store(&hook)

	resp, body := te.get("test.acme.com", "/x")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "new /x", body, "the request is served by the environment that replaced the retired one")
	live := te.srv.Snapshot().Env("test")
	require.NotSame(t, retired, live)
	assert.Zero(t, retired.inflight.Load(), "nothing is left counted in the retired environment")
}
