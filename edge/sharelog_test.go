package edge

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A proxy refused for its share of the environment's pool, while the
// environment has workers free, is logged as the proxy at its share, not
// as the environment at its limit: the operator is sent to the proxy (its
// backend, its max_in_flight), not to the environment's workers.
func TestShareFullIsLoggedAsTheProxys(t *testing.T) {
	testCertDir(t)
	hung, open := blockingBackend(t)
	fast := nameBackend(t, "fast")
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": `
[[environment]]
name = "a"
workers = 4
queue = 0
reject_delay = "0s"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") +
			proxyTOML("a", "stuck", "/stuck", hung.addr) + proxyTOML("a", "ok", "/ok", fast.addr),
	})
	envA := te.srv.Snapshot().Env("a")
	c := te.client("test.acme.com", nil)
	var busy []<-chan answer
	for range 3 { // the share: 4 workers less a quarter
		busy = append(busy, getAsync(c, "https://test.acme.com/stuck/x"))
	}
	require.Eventually(t, func() bool { return envA.pool.Stats().InFlight == 3 }, 5*time.Second, 5*time.Millisecond)
	a := <-getAsync(c, "https://test.acme.com/stuck/y")
	require.NoError(t, a.err)
	require.Equal(t, 503, a.status)
	assert.Contains(t, a.body, "proxy stuck of environment a is at its share")

	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "503 env.overloaded") {
			line = l
		}
	}
	require.NotEmpty(t, line, "the refusal is logged")
	assert.NotContains(t, line, "environment at its limit", "one worker of four is free")
	assert.Contains(t, line, `"proxy":"stuck"`)
	assert.Contains(t, line, "at its share")

	open()
	for _, b := range busy {
		require.NoError(t, (<-b).err)
	}
}
