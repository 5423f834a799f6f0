package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefusedReloadStaysOnMetrics: a refused reload leaves edged serving
// the generation before it, with the broken file still in conf.d, until
// someone fixes it. /metrics says so for as long as it lasts
// (edged_config_last_reload_successful 0, as Prometheus and Alertmanager
// say of their own config), not only as a failure counted once, whose
// increase() an alert sees for its window and then no more.
func TestRefusedReloadStaysOnMetrics(t *testing.T) {
	te, _ := threeGroups(t, "")
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log}
	gauge := func() float64 {
		t.Helper()
		code, body := adminGet(t, te, "/metrics")
		require.Equal(t, 200, code)
		parseExposition(t, body)
		v, ok := metricValue(body, "edged_config_last_reload_successful")
		require.True(t, ok, "edged_config_last_reload_successful is on /metrics")
		return v
	}
	assert.Equal(t, 1.0, gauge(), "the start applied its config")

	p := filepath.Join(te.dir, "test.toml")
	good, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(good), "queue_timeout", "queue_timeot", 1)), 0o644))
	require.False(t, rl.Reload("test").OK)
	assert.Equal(t, 0.0, gauge(), "the reload was refused")
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	assert.Equal(t, 0.0, gauge(), "and still is")

	require.NoError(t, os.WriteFile(p, good, 0o644))
	rec = rl.Reload("test")
	require.True(t, rec.OK, "%v", rec.Errors)
	assert.True(t, rec.Unchanged, "the serving files again")
	assert.Equal(t, 1.0, gauge(), "what is in conf.d serves")
}
