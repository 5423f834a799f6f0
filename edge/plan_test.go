package edge

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// planBlocks are the blocks of a three-environment configuration, by
// environment, that the hash tests lay out in files in different ways.
func planBlocks(t *testing.T) (server string, env, group, proxy map[string]string) {
	testCertDir(t)
	server = serverTOML(filepath.Join(t.TempDir(), "state"), "")
	env, group, proxy = map[string]string{}, map[string]string{}, map[string]string{}
	for i, e := range []string{"test", "uat", "prod"} {
		env[e] = envTOML(e, "[environment.rules.prometheus]\n")
		group[e] = groupTOML(e, e+"-group", e+".acme.com", e+".acme.com", "*."+e+".acme.com")
		proxy[e] = proxyTOML(e, "users", "/users", fmt.Sprintf("127.0.0.1:910%d", i+1), fmt.Sprintf("127.0.0.1:920%d", i+1)) +
			"\n[[proxy]]\nname = \"orders\"\nenvironment = \"" + e + "\"\nbase_path = \"/orders\"\ntarget = \"http://127.0.0.1:9300/v1\"\n"
	}
	return server, env, group, proxy
}

// compileFiles writes files into a fresh directory, loads and compiles it.
func compileFiles(t *testing.T, files map[string]string) *Plan {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	require.Empty(t, cfg.Warnings)
	p, err := Compile(cfg)
	require.NoError(t, err)
	return p
}

func envHashes(p *Plan) map[string]string {
	h := map[string]string{}
	for name, ep := range p.Envs {
		h[name] = ep.Hash
	}
	return h
}

// TestEnvHashIgnoresWhereBlocksAre: an environment's hash covers what it
// is built from, not the file or line a block is written at, so moving a
// block to another file or renaming files rebuilds nothing on reload.
func TestEnvHashIgnoresWhereBlocksAre(t *testing.T) {
	server, env, group, proxy := planBlocks(t)
	perEnv := func(e string) string { return env[e] + group[e] + proxy[e] }
	ref := envHashes(compileFiles(t, map[string]string{
		"server.toml": server,
		"test.toml":   perEnv("test"),
		"uat.toml":    perEnv("uat"),
		"prod.toml":   perEnv("prod"),
	}))
	require.Len(t, ref, 3)
	assert.NotEqual(t, ref["test"], ref["uat"], "different environments hash differently")
	assert.NotEqual(t, ref["uat"], ref["prod"])

	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"one-file", map[string]string{"all.toml": server + perEnv("test") + perEnv("uat") + perEnv("prod")}},
		{"one-file-reversed", map[string]string{"all.toml": perEnv("prod") + perEnv("uat") + perEnv("test") + server}},
		{"files-sorted-differently", map[string]string{
			"9-server.toml": server,
			"1-prod.toml":   perEnv("prod"),
			"2-uat.toml":    perEnv("uat"),
			"3-test.toml":   perEnv("test"),
		}},
		{"blocks-reordered-in-a-file", map[string]string{
			"server.toml": server,
			"test.toml":   proxy["test"] + group["test"] + env["test"],
			"uat.toml":    perEnv("uat"),
			"prod.toml":   perEnv("prod"),
		}},
		{"proxies-moved-to-another-file", map[string]string{
			"server.toml": server,
			"test.toml":   env["test"] + group["test"],
			"uat.toml":    perEnv("uat") + proxy["test"],
			"prod.toml":   perEnv("prod"),
		}},
		{"kind-per-file-in-subdirectories", map[string]string{
			"server.toml":          server,
			"envs.toml":            env["prod"] + env["test"] + env["uat"],
			"groups/all.toml":      group["uat"] + group["prod"] + group["test"],
			"proxies/test.toml":    proxy["test"],
			"proxies/uat-pro.toml": proxy["uat"] + proxy["prod"],
		}},
		{"one-directory-per-environment", map[string]string{
			"server.toml":          server,
			"groups.toml":          group["uat"] + group["prod"] + group["test"],
			"test/env.toml":        env["test"],
			"test/apis/users.toml": proxy["test"],
			"uat/uat.toml":         proxy["uat"] + env["uat"],
			"prod/prod.toml":       env["prod"],
			"prod/proxies.toml":    proxy["prod"],
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, ref, envHashes(compileFiles(t, tc.files)))
		})
	}
}

// TestEnvHashChangesWithItsEnvironmentOnly: a change to what one
// environment is built from changes its hash and no other.
func TestEnvHashChangesWithItsEnvironmentOnly(t *testing.T) {
	server, env, group, proxy := planBlocks(t)
	files := func(edit func(env, proxy map[string]string)) map[string]string {
		e, p := map[string]string{}, map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range proxy {
			p[k] = v
		}
		if edit != nil {
			edit(e, p)
		}
		out := map[string]string{"server.toml": server}
		for _, name := range []string{"test", "uat", "prod"} {
			out[name+".toml"] = e[name] + group[name] + p[name]
		}
		return out
	}
	replace := func(m map[string]string, key, old, new string) {
		require.Contains(t, m[key], old)
		m[key] = strings.Replace(m[key], old, new, 1)
	}
	ref := envHashes(compileFiles(t, files(nil)))

	for _, tc := range []struct {
		name, env string
		edit      func(env, proxy map[string]string)
	}{
		{"upstream-node", "uat", func(_, p map[string]string) {
			replace(p, "uat", `{ url = "http://127.0.0.1:9102" }`, `{ url = "http://127.0.0.1:9109" }`)
		}},
		{"upstream-node-weight", "test", func(_, p map[string]string) {
			replace(p, "test", `{ url = "http://127.0.0.1:9201" }`, `{ url = "http://127.0.0.1:9201", weight = 3 }`)
		}},
		{"upstream-setting", "prod", func(_, p map[string]string) {
			replace(p, "prod", `name = "users-up"`+"\n", `name = "users-up"`+"\nretries = 3\n")
		}},
		{"proxy-target", "test", func(_, p map[string]string) {
			replace(p, "test", `target = "http://127.0.0.1:9300/v1"`, `target = "http://127.0.0.1:9300/v2"`)
		}},
		{"proxy-base-path", "uat", func(_, p map[string]string) {
			replace(p, "uat", `base_path = "/orders"`, `base_path = "/orders/v2"`)
		}},
		{"environment-workers", "prod", func(e, _ map[string]string) {
			replace(e, "prod", "workers = 16", "workers = 17")
		}},
		{"environment-rule", "test", func(e, _ map[string]string) {
			replace(e, "test", "[environment.rules.prometheus]\n", "[environment.rules.prometheus]\nenabled = false\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := envHashes(compileFiles(t, files(tc.edit)))
			for name, h := range ref {
				if name == tc.env {
					assert.NotEqual(t, h, got[name], "%s changed", name)
				} else {
					assert.Equal(t, h, got[name], "%s did not change", name)
				}
			}
		})
	}
}
