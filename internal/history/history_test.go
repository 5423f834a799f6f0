package history

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

func TestSaveKeepsTheNewestAndLists(t *testing.T) {
	st, err := Open(t.TempDir(), 3)
	require.NoError(t, err)
	for g := uint64(1); g <= 5; g++ {
		require.NoError(t, st.Save(Record{Generation: g, Time: time.Now(), Trigger: "test"}))
	}
	recs, err := st.List()
	require.NoError(t, err)
	require.Len(t, recs, 3)
	assert.Equal(t, uint64(3), recs[0].Generation)
	last, err := st.Last()
	require.NoError(t, err)
	assert.Equal(t, uint64(5), last)
	_, err = st.Get(1)
	assert.ErrorContains(t, err, "generation 1 is not in the history")
}

func TestRestoreWritesFilesAndMovesNewerOnesAside(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	a := write("a.toml", "a1")
	sub := write("sub/b.toml", "b1")
	files, err := ReadFiles(dir, []string{a, sub})
	require.NoError(t, err)
	rec := &Record{Generation: 4, Files: files}
	assert.Equal(t, "sub/b.toml", files[1].Path)

	write("a.toml", "a2")
	c := write("c.toml", "new since")
	written, aside, err := Restore(rec, dir, []string{a, c, sub})
	require.NoError(t, err)
	assert.Equal(t, []string{a}, written, "only the file that differs is rewritten")
	require.Len(t, aside, 1)
	assert.Contains(t, filepath.Base(aside[0]), ".c.toml.rolled-back-")
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	assert.Equal(t, "a1", string(b))
	kept, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.Equal(t, "new since", string(kept), "moved aside, not deleted")
}

func TestRestoreRefusesPathsOutsideTheDirectory(t *testing.T) {
	rec := &Record{Generation: 1, Files: []File{{Path: "../etc/passwd", Content: "x"}}}
	_, _, err := Restore(rec, t.TempDir(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "leaves the config directory")
}

func TestDiffPerEnvironment(t *testing.T) {
	old := &config.Config{
		Environments: []*config.Environment{{Name: "test", Workers: 1}, {Name: "uat", Workers: 1}},
		Proxies: []*config.Proxy{
			{Name: "users", Environment: "test", BasePath: "/users"},
			{Name: "gone", Environment: "uat", BasePath: "/gone"},
		},
	}
	next := &config.Config{
		Environments: []*config.Environment{{Name: "test", Workers: 1, Pos: config.Pos{File: "moved.toml", Line: 9}}, {Name: "uat", Workers: 2}},
		Proxies: []*config.Proxy{
			{Name: "users", Environment: "test", BasePath: "/users/v2"},
			{Name: "orders", Environment: "uat", BasePath: "/orders"},
		},
	}
	got := Diff(old, next)
	assert.Equal(t, []Change{
		{Env: "test", Kind: "proxy", Name: "users", Action: "changed"},
		{Env: "uat", Kind: "environment", Name: "uat", Action: "changed"},
		{Env: "uat", Kind: "proxy", Name: "gone", Action: "removed"},
		{Env: "uat", Kind: "proxy", Name: "orders", Action: "added"},
	}, got, "a block moved to another file is no change")
}

func TestAuditAppendsJSONLines(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, 5)
	require.NoError(t, err)
	require.NoError(t, st.Audit(map[string]string{"result": "success"}))
	require.NoError(t, st.Audit(map[string]string{"result": "failure"}))
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	assert.Equal(t, "{\"result\":\"success\"}\n{\"result\":\"failure\"}\n", string(b))
}
