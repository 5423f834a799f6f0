package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaults(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"00-server.toml": "[server]\nhttp = \"127.0.0.1:0\"\nmax_body_bytes = 5000\n",
		"20-x.toml": `[[upstream]]
name = "hc"
environment = "test"
nodes = [{ url = "https://[::1]" }, { url = "http://127.0.0.1:8080", weight = 5 }]
[upstream.health.active]
[upstream.health.passive]
`,
	})
	cfg, err := Load(dir)
	require.NoError(t, err)
	s := cfg.Server
	assert.Equal(t, DefaultHTTPS, s.HTTPS)
	assert.Equal(t, DefaultAdmin, s.Admin)
	assert.Equal(t, "redirect", s.HTTPMode)
	assert.Equal(t, DefaultStateDir, s.StateDir)
	assert.Equal(t, DefaultDrainTimeout, s.DrainTimeout.Duration)
	assert.Equal(t, DefaultShutdownDelay, s.ShutdownDelay.Duration)
	assert.Equal(t, DefaultReloadDebounce, s.ReloadDebounce.Duration)
	assert.Equal(t, DefaultReloadMaxWait, s.ReloadMaxWait.Duration)
	assert.Equal(t, DefaultRescanInterval, s.RescanInterval.Duration)
	assert.Equal(t, DefaultReadHeaderTimeout, s.ReadHeaderTimeout.Duration)
	assert.Equal(t, DefaultIdleTimeout, s.IdleTimeout.Duration)
	assert.Equal(t, DefaultHistoryKeep, s.HistoryKeep)
	assert.Equal(t, DefaultMaxHeaderBytes, s.MaxHeaderBytes)
	assert.EqualValues(t, DefaultH2Streams, s.H2MaxConcurrentStreams)
	assert.False(t, s.UnderscoresInHeaders, "header names with '_' are dropped by default")
	assert.EqualValues(t, 5000, s.MaxBodyBytes)

	e := cfg.EnvironmentByName("test")
	assert.Equal(t, DefaultWorkers, e.Workers)
	assert.Equal(t, DefaultQueue, e.QueueLen())
	require.NotNil(t, e.Queue)
	assert.Equal(t, DefaultQueueTimeout, e.QueueTimeout.Duration)
	assert.Equal(t, min(DefaultQueueTimeout, DefaultMaxRejectDelay), e.RejectDelay.Duration)
	require.NotNil(t, e.MaxBodyBytes)
	assert.EqualValues(t, 5000, *e.MaxBodyBytes, "an environment inherits the server's limit")

	vh := cfg.VirtualHostByName("test-group")
	assert.Equal(t, DefaultMinTLS, vh.MinTLS)
	assert.Equal(t, DefaultMaxTLS, vh.MaxTLS)
	minV, maxV := vh.TLSVersions()
	assert.EqualValues(t, 0x0303, minV)
	assert.EqualValues(t, 0x0304, maxV)
	assert.NotEmpty(t, vh.CipherSuiteIDs())

	u := cfg.UpstreamByName("test", "hc")
	assert.Equal(t, DefaultBalance, u.Balance)
	assert.Equal(t, DefaultPassHost, u.PassHost)
	assert.Equal(t, DefaultConnectTimeout, u.ConnectTimeout.Duration)
	assert.Equal(t, DefaultResponseTimeout, u.ResponseTimeout.Duration)
	assert.Equal(t, DefaultRetries, u.RetryCount())
	assert.Equal(t, DefaultMaxIdlePerNode, u.MaxIdlePerNode)
	assert.Equal(t, []Node{{URL: "https://[::1]:443", Weight: 1}, {URL: "http://127.0.0.1:8080", Weight: 5}}, u.Nodes)
	require.NotNil(t, u.Health.Active)
	assert.Equal(t, ActiveHealth{Path: "/", Interval: Duration{DefaultHealthInterval}, Timeout: Duration{DefaultHealthTimeout},
		Healthy: DefaultHealthThreshold, Unhealthy: DefaultHealthThreshold}, *u.Health.Active)
	require.NotNil(t, u.Health.Passive)
	assert.Equal(t, PassiveHealth{Failures: DefaultPassiveFailures, Eject: Duration{DefaultPassiveEject}}, *u.Health.Passive)

	p := cfg.ProxiesOf("test")[0]
	assert.Nil(t, p.MaxInFlight)
	assert.Equal(t, "", p.TargetOrigin())
	assert.Equal(t, "", p.ForwardPath())
}

// TestExplicitZeroIsNotDefaulted: a value a file writes is checked, never
// replaced by the default.
func TestExplicitZeroIsNotDefaulted(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": "[[environment]]\nname = \"uat\"\nworkers = 0\nqueue = 0\n"})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 1, "queue = 0 is valid (no queue), workers = 0 is not: %v", errs)
	assert.Equal(t, "workers", errs[0].Field)
}

func TestRelativePaths(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"00-server.toml": "[server]\nstate_dir = \"../state\"\n",
		"sub/env.toml":   "[[environment]]\nname = \"uat\"\n[environment.rules.access_log]\npath = \"logs/uat.log\"\n[[environment]]\nname = \"prod\"\n[environment.rules.access_log]\n",
	})
	cfg, err := Load(dir)
	require.NoError(t, err)
	root := filepath.Dir(dir)
	assert.Equal(t, filepath.Join(root, "state"), cfg.Server.StateDir)
	assert.Equal(t, filepath.Join(dir, "sub", "logs", "uat.log"), cfg.EnvironmentByName("uat").Rules.AccessLog.Path)
	prod := cfg.EnvironmentByName("prod").Rules.AccessLog
	assert.True(t, prod.On())
	assert.Equal(t, "", prod.Path, "empty path means stdout and stays empty")
	assert.Nil(t, cfg.EnvironmentByName("test").Rules.AccessLog)
	assert.False(t, cfg.EnvironmentByName("test").Rules.AccessLog.On())
}

// TestRelativeDir: paths in errors are the directory as given joined with
// the file's path under it.
func TestRelativeDir(t *testing.T) {
	dir := setupDir(t, map[string]string{"uat.toml": "\n\n[[proxy]]\nname = \"user-service\"\nenvironment = \"test\"\nbase_path = \"/us\"\nupstream = \"uat-pool\"\n"})
	t.Chdir(filepath.Dir(dir))
	_, err := Load("conf.d")
	require.Error(t, err)
	assert.Equal(t, `conf.d/uat.toml:7: proxy "user-service": upstream: "uat-pool" is not defined in environment "test"`, err.Error())

	cfg, err := Load("./conf.d/")
	require.Error(t, err)
	assert.Equal(t, "./conf.d/", cfg.Dir)
	assert.True(t, strings.HasPrefix(err.Error(), "conf.d/uat.toml:7: "), err.Error())
}

func TestRejectDelayDefault(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       time.Duration
	}{
		{"queue timeout shorter than the cap", "queue_timeout = \"250ms\"\n", 250 * time.Millisecond},
		{"queue timeout longer than the cap", "queue_timeout = \"5s\"\n", DefaultMaxRejectDelay},
		{"explicit", "queue_timeout = \"5s\"\nreject_delay = \"3s\"\n", 3 * time.Second},
		{"explicit zero", "reject_delay = \"0s\"\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"20-x.toml": "[[environment]]\nname = \"uat\"\n" + tc.body})
			cfg, err := Load(dir)
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.EnvironmentByName("uat").RejectDelay.Duration)
		})
	}
}

// reload_max_wait left out is never below reload_debounce: a longer
// debounce alone is valid, not an error about a key the file never wrote.
func TestReloadMaxWaitDefaultFollowsALongerDebounce(t *testing.T) {
	dir := setupDir(t, map[string]string{"00-server.toml": baseServer + "reload_debounce = \"5s\"\n"})
	cfg, errs := loadErrors(t, dir)
	require.Empty(t, errs, describeErrors(errs))
	assert.Equal(t, 5*time.Second, cfg.Server.ReloadMaxWait.Duration)

	dir = setupDir(t, map[string]string{"00-server.toml": baseServer + "reload_debounce = \"500ms\"\n"})
	cfg, errs = loadErrors(t, dir)
	require.Empty(t, errs, describeErrors(errs))
	assert.Equal(t, DefaultReloadMaxWait, cfg.Server.ReloadMaxWait.Duration)
}
