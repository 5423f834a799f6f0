package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadBase(t *testing.T) {
	dir := setupDir(t, nil)
	cfg, err := Load(dir)
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings)
	assert.Equal(t, dir, cfg.Dir)
	require.Len(t, cfg.Environments, 1)
	require.Len(t, cfg.EnvGroups, 1)
	require.Len(t, cfg.VirtualHosts, 1)
	require.Len(t, cfg.Upstreams, 1)
	require.Len(t, cfg.Proxies, 1)

	assert.Equal(t, Pos{File: filepath.Join(dir, "10-base.toml"), Line: 19}, cfg.Proxies[0].Pos)
	assert.Equal(t, Pos{File: filepath.Join(dir, "00-server.toml"), Line: 1}, cfg.Server.Pos)

	vh := cfg.VirtualHosts[0]
	require.NotNil(t, vh.Certificate.Leaf, "Load parses the leaf")
	assert.Equal(t, []string{"test.example.com", "*.test.example.com"}, vh.Certificate.Leaf.DNSNames)
	assert.Equal(t, filepath.Join(filepath.Dir(dir), "certs", "test.pem"), vh.CertFile, "relative to the file naming it, absolute")
	assert.Nil(t, vh.ClientCAs)
}

// TestAllErrorsAtOnce: every problem of a file is reported, and only those.
func TestAllErrorsAtOnce(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-bad.toml": `[[proxy]]
name = "orders"
environment = "test"
base_path = "orders"
target = "ftp://x"
retries = 2
`})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 3, "%v", errs)
	file := filepath.Join(dir, "20-bad.toml")
	assert.Equal(t, Error{Pos: Pos{file, 4}, Object: `proxy "orders"`, Field: "base_path", Msg: `"orders" must start with "/"`}, errs[0])
	assert.Equal(t, Pos{file, 5}, errs[1].Pos)
	assert.Equal(t, "target", errs[1].Field)
	assert.Equal(t, Pos{file, 6}, errs[2].Pos)
	assert.Contains(t, errs[2].Error(), `20-bad.toml:6: proxy "orders": retries: unknown key "retries"`)
}

// TestErrorsSorted: errors of several files come sorted by file and line.
func TestErrorsSorted(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"30-b.toml": "[[proxy]]\nname = \"b\"\nenvironment = \"test\"\nbase_path = \"/b\"\nupstream = \"none\"\nbogus = 1\n",
		"20-a.toml": "[[environment]]\nname = \"a\"\nworkers = 0\n\n[[environment]]\nname = \"b!\"\n",
	})
	_, errs := loadErrors(t, dir)
	var got []string
	for _, e := range errs {
		got = append(got, fmt.Sprintf("%s:%d", filepath.Base(e.Pos.File), e.Pos.Line))
	}
	assert.Equal(t, []string{"20-a.toml:3", "20-a.toml:6", "30-b.toml:5", "30-b.toml:6"}, got)
}

func TestErrorsAs(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": "[[environment]]\nname = \"\"\n"})
	_, err := Load(dir)
	require.Error(t, err)
	var errs Errors
	require.True(t, errors.As(err, &errs))
	assert.Equal(t, err.Error(), errs.Error())
	assert.Contains(t, err.Error(), "20-x.toml:2: environment \"\": name: required")
}

func TestUnattachedEnvironmentWarns(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": "\n[[environment]]\nname = \"uat\"\n"})
	cfg, err := Load(dir)
	require.NoError(t, err)
	require.Len(t, cfg.Warnings, 1)
	w := cfg.Warnings[0]
	assert.Equal(t, Pos{filepath.Join(dir, "20-x.toml"), 2}, w.Pos)
	assert.Equal(t, `environment "uat"`, w.Object)
	assert.Empty(t, w.Field)
	assert.True(t, strings.HasPrefix(w.Msg, "attached to no env_group: "), w.Msg)
	assert.Equal(t, 1, strings.Count(w.Error(), `"uat"`), "the name once: %s", w)
}

func TestEmptyAndMissingDir(t *testing.T) {
	empty := t.TempDir()
	_, err := Load(empty)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no *.toml file")

	missing := filepath.Join(empty, "nope")
	_, err = Load(missing)
	var errs Errors
	require.ErrorAs(t, err, &errs)
	assert.Equal(t, missing, errs[0].Pos.File)

	file := filepath.Join(empty, "x.toml")
	require.NoError(t, os.WriteFile(file, []byte(baseServer), 0o644))
	_, err = Load(file)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a directory")
}

func TestAdminOffLoopbackWarns(t *testing.T) {
	for _, tc := range []struct {
		admin string
		warn  bool
	}{
		{"127.0.0.1:0", false},
		{"[::1]:0", false},
		{"localhost:0", false},
		{"0.0.0.0:0", true},
		{":0", true},
		{"10.1.2.3:0", true},
	} {
		t.Run(tc.admin, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"00-server.toml": "[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"" + tc.admin + "\"\n"})
			cfg, err := Load(dir)
			require.NoError(t, err)
			if !tc.warn {
				assert.Empty(t, cfg.Warnings)
				return
			}
			require.Len(t, cfg.Warnings, 1)
			assert.Equal(t, Pos{filepath.Join(dir, "00-server.toml"), 3}, cfg.Warnings[0].Pos)
			assert.Equal(t, "admin", cfg.Warnings[0].Field)
			assert.Contains(t, cfg.Warnings[0].Msg, "reachable from other machines")
		})
	}
}

// TestLoaderReusesUnchangedFiles: a Loader decodes a file again only when
// its content changed, with the problems of an unchanged broken file
// reported every time. Every Load returns environments, groups and the
// server of its own; the upstreams and proxies of an unchanged file are
// shared, checked once.
func TestLoaderReusesUnchangedFiles(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-bad.toml": "[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\ntarget = \"http://127.0.0.1:9\"\nretries = 2\n"})
	ld := &Loader{Dir: dir}
	_, err := ld.Load()
	require.Error(t, err)
	_, err = ld.Load()
	require.Error(t, err, "the unknown key of the unchanged file is reported again")
	assert.Contains(t, err.Error(), `20-bad.toml:6: proxy "orders": retries: unknown key "retries"`)

	require.NoError(t, os.Remove(filepath.Join(dir, "20-bad.toml")))
	a, err := ld.Load()
	require.NoError(t, err)
	b, err := ld.Load()
	require.NoError(t, err)
	require.Len(t, a.Proxies, 1, "the removed file's proxy is gone")
	assert.Same(t, a.Proxies[0], b.Proxies[0], "an unchanged file's proxy is checked once and shared")
	assert.Same(t, a.Upstreams[0], b.Upstreams[0])
	assert.Equal(t, DefaultBalance, b.Upstreams[0].Balance, "a shared upstream keeps its defaults")
	assert.NotSame(t, a.Environments[0], b.Environments[0])
	assert.Equal(t, a.Environments[0], b.Environments[0])
	assert.Equal(t, a.Server, b.Server)

	// Defaults and validation write into environments and groups, which
	// depend on other objects: what one Load returned must not change when
	// the next one runs.
	*a.Environments[0].Queue = 12345
	a.EnvGroups[0].Hostnames[0] = "changed.example.com"
	c, err := ld.Load()
	require.NoError(t, err)
	assert.Equal(t, DefaultQueue, *c.Environments[0].Queue)
	assert.Equal(t, "test.example.com", c.EnvGroups[0].Hostnames[0])

	// A changed file is decoded again.
	base := filepath.Join(dir, "10-base.toml")
	data, err := os.ReadFile(base)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(base, []byte(strings.Replace(string(data), `base_path = "/users"`, `base_path = "/people"`, 1)), 0o644))
	d, err := ld.Load()
	require.NoError(t, err)
	assert.Equal(t, "/people", d.Proxies[0].BasePath)
	fresh := mustLoad(t, dir)
	assert.Equal(t, d.Proxies[0], fresh.Proxies[0], "the cached load equals a fresh one")
	assert.Equal(t, d.Upstreams, fresh.Upstreams)
}

func mustLoad(t *testing.T, dir string) *Config {
	t.Helper()
	cfg, err := Load(dir)
	require.NoError(t, err)
	return cfg
}

// TestLoadWithoutTLS: every rule but the certificate files themselves,
// which need not exist yet.
func TestLoadWithoutTLS(t *testing.T) {
	dir := setupDir(t, nil)
	certs := filepath.Join(filepath.Dir(dir), "certs")
	require.NoError(t, os.RemoveAll(certs))
	_, err := Load(dir)
	require.Error(t, err, "Load reads the certificates")

	cfg, err := LoadWithoutTLS(dir)
	require.NoError(t, err)
	require.Len(t, cfg.VirtualHosts, 1)
	vh := cfg.VirtualHosts[0]
	assert.Equal(t, filepath.Join(certs, "test.pem"), vh.CertFile, "absolute, like Load")
	assert.Equal(t, filepath.Join(certs, "test.key"), vh.KeyFile)
	assert.Nil(t, vh.Certificate.Leaf, "no TLS material")
	assert.Equal(t, []string{"test.example.com", "*.test.example.com"}, cfg.EnvGroups[0].Hostnames)

	for _, tc := range []struct {
		name, from, to, object, field string
		line                          int
	}{
		{"cert-file-unset", "cert_file = \"../certs/test.pem\"\n", "", `virtual_host "test-group"`, "cert_file", 9},
		{"key-file-unset", "key_file = \"../certs/test.key\"\n", "", `virtual_host "test-group"`, "key_file", 9},
		{"other-rules-still-apply", `base_path = "/users"`, `base_path = "/a%20b"`, `proxy "users"`, "base_path", 22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"10-base.toml": strings.Replace(baseObjects, tc.from, tc.to, 1)})
			_, err := LoadWithoutTLS(dir)
			var errs Errors
			require.ErrorAs(t, err, &errs)
			require.Len(t, errs, 1, "%v", errs)
			assert.Equal(t, tc.object, errs[0].Object)
			assert.Equal(t, tc.field, errs[0].Field)
			assert.Equal(t, Pos{filepath.Join(dir, "10-base.toml"), tc.line}, errs[0].Pos)
		})
	}
}

// TestLoaderChecksSharedObjectsAgain: what an unchanged file's proxies and
// upstreams found wrong on their own is reported at every Load, and what
// relates them to other files (the upstream a proxy names, names unique in
// an environment) is checked again when those other files change.
func TestLoaderChecksSharedObjectsAgain(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-orders.toml": `[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "orders-pool"
`})
	ld := &Loader{Dir: dir}
	_, err := ld.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `20-orders.toml:5: proxy "orders": upstream: "orders-pool" is not defined in environment "test"`)

	pool := filepath.Join(dir, "30-pool.toml")
	require.NoError(t, os.WriteFile(pool, []byte("[[upstream]]\nname = \"orders-pool\"\nenvironment = \"test\"\nnodes = [{ url = \"http://127.0.0.1:9002\" }]\n"), 0o644))
	cfg, err := ld.Load()
	require.NoError(t, err, "the unchanged proxy now finds its upstream")
	require.Len(t, cfg.Proxies, 2)

	require.NoError(t, os.WriteFile(pool, []byte("[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders2\"\nupstream = \"pool\"\n"), 0o644))
	_, err = ld.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `30-pool.toml:2: proxy "orders": name: "orders" is already defined in environment "test" at `)
	assert.Contains(t, err.Error(), `20-orders.toml:5: proxy "orders": upstream: "orders-pool" is not defined in environment "test"`)

	bad := filepath.Join(dir, "40-bad.toml")
	require.NoError(t, os.Remove(pool))
	require.NoError(t, os.WriteFile(bad, []byte("[[proxy]]\nname = \"bad\"\nenvironment = \"test\"\nbase_path = \"/bad/../x\"\ntarget = \"http://127.0.0.1:9\"\n"), 0o644))
	for i := range 2 {
		_, err = ld.Load()
		require.Error(t, err, "load %d", i)
		assert.Contains(t, err.Error(), `40-bad.toml:4: proxy "bad": base_path: path "/bad/../x" must not contain "." or ".." segments`, "load %d", i)
	}
}

// TestLoaderChecksGroupsAgain: an environment that did not change is still
// checked against the environments it newly shares a group with, and
// against a changed neighbour of its group.
func TestLoaderChecksGroupsAgain(t *testing.T) {
	uat := "[[environment]]\nname = \"uat\"\n\n[[upstream]]\nname = \"pool\"\nenvironment = \"uat\"\nnodes = [{ url = \"http://127.0.0.1:9003\" }]\n\n[[proxy]]\nname = \"users\"\nenvironment = \"uat\"\nbase_path = \"%s\"\nupstream = \"pool\"\n"
	group := func(envs string) string {
		return "[[env_group]]\nname = \"uat-group\"\nhostnames = [\"uat.example.com\"]\nenvironments = [" + envs + "]\n\n[[virtual_host]]\nname = \"uat-group\"\ncert_file = \"../certs/test.pem\"\nkey_file = \"../certs/test.key\"\n"
	}
	dir := setupDir(t, map[string]string{
		"20-uat.toml":   fmt.Sprintf(uat, "/users"),
		"30-group.toml": group(`"uat"`),
	})
	ld := &Loader{Dir: dir}
	_, err := ld.Load()
	require.NoError(t, err, "test and uat both serve /users, in different groups")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "30-group.toml"), []byte(group(`"uat", "test"`)), 0o644))
	_, err = ld.Load()
	require.Error(t, err, "the group now holds both")
	assert.Contains(t, err.Error(), `"/users" is also served by proxy "users" of environment`)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "20-uat.toml"), []byte(fmt.Sprintf(uat, "/people")), 0o644))
	_, err = ld.Load()
	require.NoError(t, err, "uat moved to /people")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "20-uat.toml"), []byte(fmt.Sprintf(uat, "/users")), 0o644))
	_, err = ld.Load()
	require.Error(t, err, "uat changed back, test did not change: still checked against it")
	assert.Contains(t, err.Error(), `"/users" is also served by proxy "users" of environment`)
}

func TestProxyLimits(t *testing.T) {
	n := func(v int) *int { return &v }
	env := func(workers, queue int) *Environment { return &Environment{Workers: workers, Queue: n(queue)} }
	for _, tc := range []struct {
		name              string
		env               *Environment
		max               *int
		proxies           int
		wantIn, wantQueue int
	}{
		{"one proxy takes all", env(64, 256), nil, 1, 64, 256},
		{"several leave a quarter", env(64, 256), nil, 2, 48, 192},
		{"four workers leave one", env(4, 4), nil, 3, 3, 3},
		{"two workers leave one", env(2, 0), nil, 2, 1, 0},
		{"one worker cannot be shared", env(1, 1), nil, 2, 1, 1},
		{"explicit cap shares the queue alike", env(64, 256), n(10), 2, 10, 40},
		{"explicit cap on a lone proxy", env(64, 256), n(10), 1, 10, 40},
		{"a small share keeps a queue place", env(64, 16), n(1), 2, 1, 1},
		{"explicit cap of every worker takes the whole queue", env(64, 256), n(64), 2, 64, 256},
		{"explicit cap above workers is all of them", env(8, 8), n(100), 2, 8, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, q := tc.env.ProxyLimits(&Proxy{MaxInFlight: tc.max}, tc.proxies)
			assert.Equal(t, tc.wantIn, in, "max in flight")
			assert.Equal(t, tc.wantQueue, q, "max queued")
		})
	}
}

// FieldPos names the line a field was written on, for checks made after
// Load; a field the file left out is at its object's line.
func TestFieldPos(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-uat.toml": "[[environment]]\nname = \"uat\"\n[environment.rules.access_log]\npath = \"uat.log\"\n"})
	cfg, err := Load(dir)
	require.NoError(t, err)
	uat := cfg.EnvironmentByName("uat")
	require.NotNil(t, uat)
	file := filepath.Join(dir, "20-uat.toml")
	assert.Equal(t, Pos{file, 4}, cfg.FieldPos(uat, "rules.access_log.path"))
	assert.Equal(t, Pos{file, 1}, cfg.FieldPos(uat, "workers"))
	assert.Equal(t, Pos{filepath.Join(dir, "10-base.toml"), 7}, cfg.FieldPos(cfg.EnvGroups[0], "environments"))
}
