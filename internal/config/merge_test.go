package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDuplicatesAcrossFiles(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-a.toml": "[[environment]]\nname = \"uat\"\n",
		"30-b.toml": "# again\n[[environment]]\nname = \"uat\"\n\n[[environment]]\nname = \"uat\"\n",
	})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 2, "%v", errs)
	for i, line := range []int{3, 6} {
		assert.Equal(t, Pos{filepath.Join(dir, "30-b.toml"), line}, errs[i].Pos)
		assert.Contains(t, errs[i].Error(), `environment "uat": name: "uat" is already defined at `+filepath.Join(dir, "20-a.toml")+":1")
	}
}

func TestServerInTwoFiles(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-server.toml": "\n[server]\nhttps = \":8443\"\n"})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 1, "%v", errs)
	assert.Equal(t, Pos{filepath.Join(dir, "20-server.toml"), 2}, errs[0].Pos)
	assert.Contains(t, errs[0].Msg, "already defined at "+filepath.Join(dir, "00-server.toml")+":1")
}

// TestMerge: objects of every kind may live in any file, the upstreams
// and proxies of an environment in its home or below it (see home.go).
func TestMerge(t *testing.T) {
	parts := strings.SplitAfter(baseObjects, "\n\n")
	require.Len(t, parts, 5)
	dir := setupDir(t, map[string]string{
		"10-base.toml":          "",
		"environment.toml":      parts[0],
		"b/groups.toml":         parts[1] + strings.ReplaceAll(parts[2], "../certs", "../../certs"),
		"c/upstream-proxy.toml": parts[3] + parts[4],
		"d/more.toml":           "[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\ntarget = \"HTTP://Orders.Internal/v1/\"\n",
	})
	cfg, err := Load(dir)
	require.NoError(t, err)
	require.NotNil(t, cfg.EnvironmentByName("test"))
	require.NotNil(t, cfg.GroupByName("test-group"))
	require.NotNil(t, cfg.VirtualHostByName("test-group"))
	require.NotNil(t, cfg.UpstreamByName("test", "pool"))
	assert.Nil(t, cfg.UpstreamByName("uat", "pool"))
	assert.Nil(t, cfg.EnvironmentByName("uat"))
	names := func(ps []*Proxy) (out []string) {
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	assert.Equal(t, []string{"orders", "users"}, names(cfg.ProxiesOf("test")), "sorted by name")
	assert.Len(t, cfg.UpstreamsOf("test"), 1)
	assert.Len(t, cfg.GroupsOf("test"), 1)

	orders := cfg.ProxiesOf("test")[0]
	assert.Equal(t, "http://orders.internal:80/v1/", orders.Target, "scheme and host lowercased, port made explicit")
	assert.Equal(t, "http://orders.internal:80", orders.TargetOrigin())
	assert.Equal(t, "/v1", orders.ForwardPath())
	assert.Equal(t, filepath.Join(dir, "d", "more.toml"), orders.Pos.File)

	var got []string
	for _, f := range cfg.Files {
		got = append(got, strings.TrimPrefix(f.Path, dir+string(filepath.Separator)))
		data, err := os.ReadFile(f.Path)
		require.NoError(t, err)
		sum := sha256.Sum256(data)
		assert.Equal(t, hex.EncodeToString(sum[:]), f.SHA256)
		assert.Equal(t, int64(len(data)), f.Size)
	}
	assert.Equal(t, []string{"00-server.toml", "b/groups.toml", "c/upstream-proxy.toml", "d/more.toml", "environment.toml"}, got)
}

// TestServerOnlyAtTheTop: [server] below the top of conf.d (where
// environments' homes are, writable by their operators) is refused with
// its line, and the running config keeps its own.
func TestServerOnlyAtTheTop(t *testing.T) {
	dir := setupDir(t, map[string]string{"00-server.toml": "", "prod/server.toml": "# moved\n[server]\nstate_dir = \"/tmp/elsewhere\"\n"})
	_, errs := loadErrors(t, dir)
	e, ok := findError(errs, "[server] must be declared in a file directly in "+dir)
	if assert.True(t, ok, "%v", errs) {
		assert.Equal(t, Pos{filepath.Join(dir, "prod", "server.toml"), 2}, e.Pos)
		assert.Contains(t, e.Msg, "move it to "+filepath.Join(dir, "server.toml"))
	}
}
