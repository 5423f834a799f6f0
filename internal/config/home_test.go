package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Fixtures of the ownership tests: one env group serving every
// environment, each proxy on its own base path.
func homeEnv(name string) string {
	return fmt.Sprintf("[[environment]]\nname = %q\n\n", name)
}

func homeUpstream(env string) string {
	return fmt.Sprintf("[[upstream]]\nname = \"pool\"\nenvironment = %q\nnodes = [{ url = \"http://127.0.0.1:9001\" }]\n\n", env)
}

func homeProxy(env, name string) string {
	return fmt.Sprintf("[[proxy]]\nname = %q\nenvironment = %q\nbase_path = \"/%s/%s\"\ntarget = \"http://127.0.0.1:9002\"\n\n", name, env, env, name)
}

// homeGroup is the env group and virtual host, whose cert_file is
// relative to the directory of the file holding them: certs is the way
// from there to root/certs.
func homeGroup(certs string, envs ...string) string {
	return fmt.Sprintf("[[env_group]]\nname = \"all\"\nhostnames = [\"test.example.com\"]\nenvironments = [%s]\n\n"+
		"[[virtual_host]]\nname = \"all\"\ncert_file = \"%s/test.pem\"\nkey_file = \"%s/test.key\"\n\n",
		`"`+strings.Join(envs, `", "`)+`"`, certs, certs)
}

// homeTree writes root/certs and root/conf.d with files (path under
// conf.d → content) and returns conf.d.
func homeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	c := testCert(t)
	writeTree(t, root, map[string]string{"certs/test.pem": string(c.cert), "certs/test.key": string(c.key)})
	dir := filepath.Join(root, "conf.d")
	all := map[string]string{"server.toml": baseServer}
	for k, v := range files {
		all[k] = v
	}
	writeTree(t, dir, all)
	return dir
}

// TestEnvironmentsOwnDirectories: an environment's upstreams and proxies
// are declared in its home (the directory of the file declaring it) or
// below it, and a directory below one home that is another environment's
// home belongs to that other one. Each error is reported on the object's
// line and names its environment's home and declaration.
func TestEnvironmentsOwnDirectories(t *testing.T) {
	type want struct {
		at  string // file:line under conf.d
		msg []string
	}
	outside := func(at, env, home, decl, dir, kind string) want {
		return want{at, []string{
			fmt.Sprintf("environment %q has its home in %s, the directory of the file declaring it (conf.d/%s:1)", env, home, decl),
			"its upstreams and proxies must be declared in files in that directory or below it, not in " + dir + ";",
			fmt.Sprintf("move this [[%s]] into %s", kind, home),
		}}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []want
	}{
		{"flat", map[string]string{
			"groups.toml": homeGroup("../certs", "test", "uat", "prod"),
			"test.toml":   homeEnv("test") + homeUpstream("test") + homeProxy("test", "users"),
			"uat.toml":    homeEnv("uat") + homeProxy("uat", "users"),
			"prod.toml":   homeEnv("prod") + homeProxy("prod", "users"),
			"proxies.toml": homeProxy("test", "orders") + homeProxy("uat", "orders") + homeProxy("prod", "orders") +
				homeUpstream("prod"),
		}, nil},
		{"one directory per environment", map[string]string{
			"groups.toml":        homeGroup("../certs", "test", "uat", "prod"),
			"test/env.toml":      homeEnv("test") + homeUpstream("test"),
			"test/users.toml":    homeProxy("test", "users"),
			"uat/uat.toml":       homeEnv("uat") + homeProxy("uat", "users"),
			"prod/prod.toml":     homeEnv("prod"),
			"prod/apis/a.toml":   homeUpstream("prod") + homeProxy("prod", "users"),
			"prod/apis/b/c.toml": homeProxy("prod", "orders"),
		}, nil},
		{"two environments share a home below conf.d", map[string]string{
			"groups.toml":    homeGroup("../certs", "test", "uat"),
			"pre/envs.toml":  homeEnv("test") + homeEnv("uat"),
			"pre/x/px.toml":  homeProxy("uat", "users") + homeProxy("test", "users"),
			"pre/test.toml":  homeUpstream("test"),
			"pre/x/y/z.toml": homeUpstream("uat"),
		}, nil},
		{"environment at the top, its proxies in a subdirectory", map[string]string{
			"all.toml":        homeEnv("prod") + homeGroup("../certs", "prod"),
			"prod/users.toml": homeUpstream("prod") + homeProxy("prod", "users"),
		}, nil},
		{"an env group in a subdirectory", map[string]string{
			"platform/groups/all.toml": homeGroup("../../../certs", "test", "prod"),
			"test/test.toml":           homeEnv("test") + homeProxy("test", "users"),
			"prod/prod.toml": homeEnv("prod") + homeProxy("prod", "users") +
				// a group's file may even be in an environment's home
				strings.ReplaceAll(strings.ReplaceAll(homeGroup("../../certs", "prod"), `"all"`, `"prod-only"`), "test.example.com", "prod.example.com"),
		}, nil},
		{"a proxy of prod in test's directory", map[string]string{
			"groups.toml":     homeGroup("../certs", "test", "prod"),
			"test/test.toml":  homeEnv("test") + homeProxy("test", "users") + homeProxy("prod", "users"),
			"prod/prod.toml":  homeEnv("prod"),
			"prod/other.toml": homeProxy("prod", "orders"),
		}, []want{outside("test/test.toml:10", "prod", "conf.d/prod", "prod/prod.toml", "conf.d/test", "proxy")}},
		{"an upstream at the top, its environment in a subdirectory", map[string]string{
			"groups.toml":    homeGroup("../certs", "prod") + homeUpstream("prod"),
			"prod/prod.toml": homeEnv("prod") + homeProxy("prod", "users"),
		}, []want{outside("groups.toml:11", "prod", "conf.d/prod", "prod/prod.toml", "conf.d", "upstream")}},
		{"an upstream in a sibling directory that is no home", map[string]string{
			"groups.toml":       homeGroup("../certs", "prod"),
			"prod/prod.toml":    homeEnv("prod") + homeProxy("prod", "users"),
			"backends/up.toml":  homeUpstream("prod"),
			"prod-x/proxy.toml": homeProxy("prod", "orders"), // a name prefix is not a subdirectory
		}, []want{
			outside("backends/up.toml:1", "prod", "conf.d/prod", "prod/prod.toml", "conf.d/backends", "upstream"),
			outside("prod-x/proxy.toml:1", "prod", "conf.d/prod", "prod/prod.toml", "conf.d/prod-x", "proxy"),
		}},
		{"nested homes: the deepest wins", map[string]string{
			"groups.toml":        homeGroup("../certs", "test", "prod"),
			"test.toml":          homeEnv("test") + homeProxy("test", "users"),
			"misc/orders.toml":   homeProxy("test", "orders"), // below test's home, in no other: test's
			"prod/prod.toml":     homeEnv("prod") + homeProxy("prod", "users"),
			"prod/sneaky.toml":   homeProxy("test", "sneaky"),
			"prod/x/deeper.toml": homeUpstream("test"),
			"prod-at-top.toml":   homeProxy("prod", "top"),
		}, []want{
			outside("prod-at-top.toml:1", "prod", "conf.d/prod", "prod/prod.toml", "conf.d", "proxy"),
			{"prod/sneaky.toml:1", []string{
				`conf.d/prod is the home of environment "prod" (conf.d/prod/prod.toml:1): a file in it or below it declares upstreams and proxies of that environment only`,
				`while environment "test" has its home in conf.d (conf.d/test.toml:1)`,
				"move this [[proxy]] into conf.d, or into a directory below it that no other environment has as its home",
			}},
			{"prod/x/deeper.toml:1", []string{`conf.d/prod is the home of environment "prod"`, "move this [[upstream]] into conf.d,"}},
		}},
		{"environments sharing the deeper home are all named", map[string]string{
			"groups.toml":   homeGroup("../certs", "test", "uat", "prod"),
			"test.toml":     homeEnv("test"),
			"rel/envs.toml": homeEnv("uat") + homeEnv("prod") + homeProxy("test", "users"),
		}, []want{{"rel/envs.toml:7", []string{
			`conf.d/rel is the home of environments "uat" (conf.d/rel/envs.toml:1), "prod" (conf.d/rel/envs.toml:4): a file in it or below it declares upstreams and proxies of those environments only`,
		}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := homeTree(t, tc.files)
			cfg, err := Load(dir)
			if len(tc.want) == 0 {
				require.NoError(t, err)
				assert.NotEmpty(t, cfg.Proxies)
				return
			}
			var errs Errors
			require.ErrorAs(t, err, &errs)
			require.Len(t, errs, len(tc.want), describeErrors(errs))
			// The messages name paths as the loader found them: under
			// dir, which the wants write as conf.d.
			root := filepath.Dir(dir) + string(filepath.Separator)
			for i, w := range tc.want {
				e := errs[i]
				assert.Equal(t, "conf.d/"+w.at, strings.TrimPrefix(e.Pos.String(), root))
				assert.Empty(t, e.Field, "the block as a whole is misplaced")
				assert.True(t, strings.HasPrefix(e.Object, "proxy ") || strings.HasPrefix(e.Object, "upstream "), e.Object)
				msg := strings.ReplaceAll(e.Msg, root, "")
				for _, m := range w.msg {
					assert.Contains(t, msg, m)
				}
			}
		})
	}
}

// TestHomeErrorReadsWell pins one message in full: what the operator who
// added a prod proxy to test's file reads.
func TestHomeErrorReadsWell(t *testing.T) {
	srcs := []source{
		{path: "conf.d/groups.toml", data: []byte(homeGroup("../certs", "test", "prod"))},
		{path: "conf.d/prod/prod.toml", data: []byte(homeEnv("prod"))},
		{path: "conf.d/server.toml", data: []byte(baseServer)},
		{path: "conf.d/test/test.toml", data: []byte(homeEnv("test") + homeProxy("prod", "users"))},
	}
	_, err := loadSources("conf.d", srcs, nil, nil, nil)
	var errs Errors
	require.ErrorAs(t, err, &errs)
	require.Len(t, errs, 1, describeErrors(errs))
	assert.Equal(t, `conf.d/test/test.toml:4: proxy "users": environment "prod" has its home in conf.d/prod, `+
		`the directory of the file declaring it (conf.d/prod/prod.toml:1): its upstreams and proxies must be declared `+
		`in files in that directory or below it, not in conf.d/test; move this [[proxy]] into conf.d/prod`, errs[0].Error())
}

// TestHomesOnAReload: a Loader finds what a first load finds when only
// where an environment is declared changes: its upstreams and proxies are
// the very objects of the last load, which passed their other checks then.
func TestHomesOnAReload(t *testing.T) {
	dir := homeTree(t, map[string]string{
		"groups.toml":     homeGroup("../certs", "test", "prod"),
		"test/test.toml":  homeEnv("test") + homeProxy("test", "users"),
		"prod/prod.toml":  homeEnv("prod"),
		"prod/users.toml": homeUpstream("prod") + homeProxy("prod", "users"),
	})
	ld := &Loader{Dir: dir}
	_, err := ld.Load()
	require.NoError(t, err)

	// prod is now declared in test's directory: prod/ is no home any more,
	// and prod's objects there are outside prod's home.
	require.NoError(t, os.Rename(filepath.Join(dir, "prod", "prod.toml"), filepath.Join(dir, "test", "prod.toml")))
	_, err = ld.Load()
	_, fresh := Load(dir)
	require.Error(t, fresh)
	require.Error(t, err)
	assert.Equal(t, fresh.Error(), err.Error(), "the reload finds what a first load finds")
	var errs Errors
	require.ErrorAs(t, err, &errs)
	require.Len(t, errs, 2, describeErrors(errs))
	for _, e := range errs {
		assert.Equal(t, filepath.Join(dir, "prod", "users.toml"), e.Pos.File)
		assert.Contains(t, e.Msg, `environment "prod" has its home in `+filepath.Join(dir, "test"))
	}

	// Moved back: the same objects pass again.
	require.NoError(t, os.Rename(filepath.Join(dir, "test", "prod.toml"), filepath.Join(dir, "prod", "prod.toml")))
	_, err = ld.Load()
	require.NoError(t, err)

	// A misplaced proxy in a file that did not change is found again when
	// another file makes it misplaced: prod declared in prod/sub/.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "prod", "sub"), 0o755))
	require.NoError(t, os.Rename(filepath.Join(dir, "prod", "prod.toml"), filepath.Join(dir, "prod", "sub", "prod.toml")))
	_, err = ld.Load()
	_, fresh = Load(dir)
	require.Error(t, err)
	require.Error(t, fresh)
	assert.Equal(t, fresh.Error(), err.Error())
}

// TestWorldWritableHomes: every file and directory from conf.d down that
// others may write to is named with the chmod that fixes it, and what it
// lets them change.
func TestWorldWritableHomes(t *testing.T) {
	dir := homeTree(t, map[string]string{
		"groups.toml":     homeGroup("../certs", "test", "uat", "prod"),
		"test/test.toml":  homeEnv("test") + homeProxy("test", "users"),
		"uat/uat.toml":    homeEnv("uat") + homeProxy("uat", "users"),
		"prod/prod.toml":  homeEnv("prod"),
		"prod/x/px.toml":  homeProxy("prod", "users"),
		"other/misc.toml": homeProxy("test", "other-dir") + homeProxy("uat", "other-dir"),
	})
	cfg, err := Load(dir)
	require.Error(t, err, "other/ is no home: its proxies are misplaced")
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "other")))
	cfg, err = Load(dir)
	require.NoError(t, err)
	assert.Empty(t, WorldWritable(cfg), "nothing is writable by others yet")

	chmod := func(p string, mode os.FileMode) {
		require.NoError(t, os.Chmod(filepath.Join(dir, p), mode))
	}
	chmod("prod", 0o777)
	chmod("prod/x", 0o1777) // sticky: others may still add files
	chmod("test/test.toml", 0o666)
	chmod("uat/uat.toml", 0o664) // group-writable is what operators want
	chmod(".", 0o757)
	chmod("groups.toml", 0o646)

	var got []string
	for _, w := range WorldWritable(cfg) {
		got = append(got, w.Warning())
	}
	at := func(p string) string { return filepath.Join(dir, p) }
	assert.Equal(t, []string{
		dir + `: warning: writable by every user: anyone on this machine can change environments "prod", "test", "uat" (mode 0757); run: chmod o-w ` + dir,
		at("groups.toml") + `: warning: writable by every user: anyone on this machine can change the configuration (mode 0646); run: chmod o-w ` + at("groups.toml"),
		at("prod") + `: warning: the home of environment "prod" is writable by every user: anyone on this machine can add files to it (mode 0777); run: chmod o-w ` + at("prod"),
		at("prod/x") + `: warning: writable by every user: anyone on this machine can change environment "prod" (mode 0777); run: chmod o-w ` + at("prod/x"),
		at("test/test.toml") + `: warning: writable by every user: anyone on this machine can change environment "test" (mode 0666); run: chmod o-w ` + at("test/test.toml"),
	}, got)
}

// TestHomesNameOwnerAndGroup: each environment's home with the names of
// its owner and group, numbers when the system has none.
func TestHomesNameOwnerAndGroup(t *testing.T) {
	dir := homeTree(t, map[string]string{
		"groups.toml":    homeGroup("../certs", "test", "prod"),
		"test.toml":      homeEnv("test"),
		"prod/prod.toml": homeEnv("prod") + homeProxy("prod", "users"),
	})
	cfg, err := Load(dir)
	require.NoError(t, err)
	if os.Geteuid() == 0 {
		// No system names uid 4242424: the number stands in.
		require.NoError(t, os.Chown(filepath.Join(dir, "prod"), 4242424, 4242425))
	}
	homes := Homes(cfg)
	require.Len(t, homes, 2)
	assert.Equal(t, dir, homes["test"].Dir)
	assert.Equal(t, filepath.Join(dir, "prod"), homes["prod"].Dir)
	if os.Geteuid() == 0 {
		assert.Equal(t, Home{Dir: dir, Owner: "root", Group: "root"}, homes["test"])
		assert.Equal(t, Home{Dir: filepath.Join(dir, "prod"), Owner: "4242424", Group: "4242425"}, homes["prod"])
	}
	assert.NotEmpty(t, homes["test"].Owner)
	assert.NotEmpty(t, homes["test"].Group)

	require.NoError(t, os.RemoveAll(filepath.Join(dir, "prod")))
	assert.Equal(t, Home{Dir: filepath.Join(dir, "prod")}, Homes(cfg)["prod"], "a home gone: no owner to name")
}

// BenchmarkCheckHomes is the ownership check of a reload of 1,000
// environments with 10 proxies each, one directory per environment: what
// the check adds to every load, since it reuses nothing.
func BenchmarkCheckHomes(b *testing.B) {
	var srcs []source
	for e := range 1000 {
		env := fmt.Sprintf("e%03d", e)
		var s strings.Builder
		s.WriteString(homeEnv(env) + homeUpstream(env))
		for p := range 10 {
			s.WriteString(homeProxy(env, fmt.Sprintf("p%d", p)))
		}
		srcs = append(srcs, source{path: "conf.d/" + env + "/" + env + ".toml", data: []byte(s.String())})
	}
	l := newLoader("conf.d", nil, nil, nil)
	l.load(srcs)
	require.Len(b, l.cfg.Proxies, 10000)
	envs := make(map[string]*Environment)
	for _, e := range l.cfg.Environments {
		envs[e.Name] = e
	}
	before := len(l.errs)
	b.ReportAllocs()
	for b.Loop() {
		l.checkHomes(envs)
	}
	require.Len(b, l.errs, before, "the layout is valid")
}

// TestHomeErrorsAreBounded: each misplaced object's message named every
// environment of the home it sits in. A home of 2,000 environments and
// 2,000 misplaced proxies (200 KiB of files) made 2,000 messages of
// 100 KiB each, 0.5 GB; ten times as many of each, inside the 8 MiB a
// load takes, would have been 50 GB. A message names a few and counts
// the rest.
func TestHomeErrorsAreBounded(t *testing.T) {
	const n = 2000
	var envs, proxies strings.Builder
	for i := range n {
		envs.WriteString(homeEnv(fmt.Sprintf("e%05d", i)))
		proxies.WriteString(homeProxy("test", fmt.Sprintf("p%d", i)))
	}
	srcs := []source{
		{path: "conf.d/b/envs.toml", data: []byte(envs.String())},
		{path: "conf.d/b/px.toml", data: []byte(proxies.String())},
		{path: "conf.d/test.toml", data: []byte(homeEnv("test"))},
	}
	_, err := loadSources("conf.d", srcs, nil, nil, nil)
	var errs Errors
	require.ErrorAs(t, err, &errs)
	misplaced := 0
	for _, e := range errs {
		if !strings.Contains(e.Msg, "conf.d/b is the home of") {
			continue
		}
		misplaced++
		require.Less(t, len(e.Msg), 1024, "message of %s", e.Object)
		assert.Contains(t, e.Msg, `conf.d/b is the home of environments "e00000" (conf.d/b/envs.toml:1), "e00001" (conf.d/b/envs.toml:4), "e00002" (conf.d/b/envs.toml:7) and 1997 more: `)
	}
	assert.Equal(t, n, misplaced)
}

// TestWorldWritableTLSFiles: edged check warned about configuration files
// and directories writable by every user, not about the certificate, key
// and CA files the configuration names, nor their directories, which live
// beside conf.d: anyone could write a CA into client_ca_file (and let
// themselves in by mutual TLS) or tls_ca_file (and stand in for a node),
// or rename a certificate and key of their own over a virtual host's.
// A sticky directory lets nobody replace another's file: not warned.
func TestWorldWritableTLSFiles(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-secure.toml": upstreamWith("https://10.0.0.5", `tls_ca_file = "../ca/ca.pem"`),
	})
	root := filepath.Dir(dir)
	c := testCert(t)
	writeTree(t, filepath.Join(root, "ca"), map[string]string{"ca.pem": string(c.cert)})
	cfg, err := Load(dir)
	require.NoError(t, err)
	assert.Empty(t, WorldWritable(cfg), "nothing is writable by others yet")

	certs, ca := filepath.Join(root, "certs"), filepath.Join(root, "ca")
	require.NoError(t, os.Chmod(certs, 0o777))
	require.NoError(t, os.Chmod(filepath.Join(certs, "test.pem"), 0o666))
	require.NoError(t, os.Chmod(filepath.Join(ca, "ca.pem"), 0o646))
	require.NoError(t, os.Chmod(ca, os.ModeSticky|0o777)) // nobody replaces another's file
	var got []string
	for _, w := range WorldWritable(cfg) {
		got = append(got, w.Warning())
	}
	assert.Equal(t, []string{
		ca + "/ca.pem: warning: writable by every user: anyone on this machine can replace a certificate, key or CA file edged loads (mode 0646); run: chmod o-w " + ca + "/ca.pem",
		certs + ": warning: writable by every user: anyone on this machine can replace a certificate, key or CA file edged loads (mode 0777); run: chmod o-w " + certs,
		certs + "/test.pem: warning: writable by every user: anyone on this machine can replace a certificate, key or CA file edged loads (mode 0666); run: chmod o-w " + certs + "/test.pem",
	}, got)
}
