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

func relPaths(t *testing.T, dir string, paths []string) []string {
	t.Helper()
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		r, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func TestListFiles(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"b.toml":             "",
		"a.toml":             "",
		"a.toml.bak":         "",
		"a.yaml":             "",
		"A.TOML":             "",
		"toml":               "",
		".hidden.toml":       "",
		".#a.toml":           "",
		".a.toml.swp":        "",
		".git/config.toml":   "",
		"nested/c.toml":      "",
		"nested/deep/d.toml": "",
		"nested/.dot/e.toml": "",
		"a/x.toml":           "",
		"dir.toml/f.toml":    "",
	})
	paths, errs, warns := listFiles(dir)
	require.Empty(t, errs)
	require.Empty(t, warns)
	assert.Equal(t, []string{
		"a.toml", "a/x.toml", "b.toml", "dir.toml/f.toml", "nested/c.toml", "nested/deep/d.toml",
	}, relPaths(t, dir, paths), "sorted by path; dotfiles, dot-dirs and other names skipped")
}

// TestConfigMapLayout mirrors a Kubernetes ConfigMap volume: the files
// live in a timestamped dot-directory, "..data" links to it, and each key
// is a top-level symlink through "..data".
func TestConfigMapLayout(t *testing.T) {
	root := t.TempDir()
	c := testCert(t)
	writeTree(t, root, map[string]string{"certs/test.pem": string(c.cert), "certs/test.key": string(c.key)})
	dir := filepath.Join(root, "conf.d")
	ts := "..2026_11_22_10_00_00.123456789"
	writeTree(t, filepath.Join(dir, ts), map[string]string{
		"00-server.toml": baseServer,
		"10-base.toml":   baseObjects,
	})
	require.NoError(t, os.Symlink(ts, filepath.Join(dir, "..data")))
	for _, name := range []string{"00-server.toml", "10-base.toml"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}

	paths, errs, _ := listFiles(dir)
	require.Empty(t, errs)
	assert.Equal(t, []string{"00-server.toml", "10-base.toml"}, relPaths(t, dir, paths), "each file once, through its top-level link")

	cfg, err := Load(dir)
	require.NoError(t, err, "no duplicate definitions")
	assert.Equal(t, filepath.Join(dir, "10-base.toml"), cfg.Proxies[0].Pos.File, "positions use the path as found, not the link target")
	// The certificate path is relative to the directory of the file as
	// found (conf.d), not of the link target.
	assert.Equal(t, filepath.Join(root, "certs", "test.pem"), cfg.VirtualHosts[0].CertFile)
}

func TestSymlinks(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf.d")
	writeTree(t, root, map[string]string{
		"elsewhere/x.toml": "",
		"shared/s.toml":    "",
		"conf.d/a.toml":    "",
	})
	require.NoError(t, os.Symlink(filepath.Join(root, "elsewhere", "x.toml"), filepath.Join(dir, "x.toml")))
	require.NoError(t, os.Symlink(filepath.Join(root, "shared"), filepath.Join(dir, "shared")))
	require.NoError(t, os.Symlink(dir, filepath.Join(root, "shared", "loop")))        // loop back up
	require.NoError(t, os.Symlink(dir, filepath.Join(dir, "self")))                   // loop onto itself
	require.NoError(t, os.Symlink("missing.toml", filepath.Join(dir, "broken.toml"))) // dangling
	require.NoError(t, os.Symlink("missing", filepath.Join(dir, "broken-dir")))       // dangling, not .toml

	paths, errs, warns := listFiles(dir)
	assert.Equal(t, []string{"a.toml", "shared/s.toml", "x.toml"}, relPaths(t, dir, paths))
	require.Len(t, errs, 1)
	assert.Equal(t, filepath.Join(dir, "broken.toml"), errs[0].Pos.File)
	assert.Contains(t, errs[0].Msg, "broken symlink")
	var loops []string
	for _, w := range warns {
		loops = append(loops, filepath.Base(w.Pos.File))
		assert.Contains(t, w.Msg, "already read as "+dir)
	}
	assert.Equal(t, []string{"self", "loop"}, loops, "links back to a directory already read are skipped, with a warning")
}

// TestWalkCallsDirOncePerDirectory: the watcher adds a watch in dir before
// the directory is read; each real directory once, dot-directories never;
// what is not taken comes back by kind.
func TestWalkCallsDirOncePerDirectory(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a.toml": "", "sub/b.toml": "", ".dot/c.toml": "", "sub/deep/d.toml": ""})
	require.NoError(t, os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "zlink")))
	require.NoError(t, os.Symlink("gone.toml", filepath.Join(dir, "dangling.toml")))
	var dirs []string
	files, problems := Walk(dir, func(d string) { dirs = append(dirs, d) })
	assert.Equal(t, []string{"a.toml", "sub/b.toml", "sub/deep/d.toml"}, relPaths(t, dir, files))
	assert.Equal(t, []string{".", "sub", "sub/deep"}, relPaths(t, dir, dirs))
	kinds := map[string]WalkProblemKind{}
	for _, p := range problems {
		kinds[filepath.Base(p.Path)] = p.Kind
	}
	assert.Equal(t, map[string]WalkProblemKind{"zlink": DirAlreadyRead, "dangling.toml": BrokenLink}, kinds)
}

// TestFileCountIsBounded: MaxTotalSize bounds the bytes of a load, not
// its files, and an empty file costs a read, a decode, an entry in every
// generation's record and in the watcher's rescan: 100,000 empty files
// took edged check 3 s and 120 MB, a million ten times that. Past
// MaxFiles (lowered here) the load fails before reading any.
func TestFileCountIsBounded(t *testing.T) {
	old := maxFiles
	maxFiles = 5
	t.Cleanup(func() { maxFiles = old })
	dir := setupDir(t, map[string]string{"a/1.toml": "#\n", "a/2.toml": "#\n", "a/3.toml": "#\n"})
	_, err := Load(dir)
	require.NoError(t, err, "5 files: at the limit")

	writeTree(t, dir, map[string]string{"a/4.toml": ""})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 1, describeErrors(errs))
	assert.Equal(t, Pos{File: dir}, errs[0].Pos)
	assert.Equal(t, "6 configuration files (*.toml), more than the 5 allowed; remove files that are not configuration, or merge small ones", errs[0].Msg)
}

// TestWalkIsBounded: symlinks are followed, to directories too, so one
// link anywhere under conf.d to "/" (or to a large share) made every load
// and every rescan walk the whole file system, /proc included, and the
// watcher put a watch on each directory met; MaxFiles counts only the
// *.toml files found, after the walk. The walk now stops past
// MaxWalkDirs directories or MaxWalkEntries entries (both lowered here),
// and the load fails naming where it stopped.
func TestWalkIsBounded(t *testing.T) {
	oldDirs, oldEntries := maxWalkDirs, maxWalkEntries
	t.Cleanup(func() { maxWalkDirs, maxWalkEntries = oldDirs, oldEntries })
	maxWalkDirs, maxWalkEntries = 20, 1000

	dir := setupDir(t, nil)
	big := t.TempDir()
	for i := range 50 {
		require.NoError(t, os.MkdirAll(filepath.Join(big, fmt.Sprintf("d%02d", i), "x"), 0o755))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "team"), 0o755))
	require.NoError(t, os.Symlink(big, filepath.Join(dir, "team", "share")))

	read := 0
	_, problems := Walk(dir, func(string) { read++ })
	assert.LessOrEqual(t, read, 20, "directories read")
	require.NotEmpty(t, problems)
	_, errs := loadErrors(t, dir)
	e, ok := findError(errs, "more than the 20 directories a configuration tree may have")
	require.True(t, ok, "%s", describeErrors(errs))
	assert.Contains(t, e.Pos.File, filepath.Join(dir, "team", "share"))

	// Entries, in few directories.
	maxWalkDirs = 100
	many := t.TempDir()
	for i := range 1001 {
		require.NoError(t, os.WriteFile(filepath.Join(many, fmt.Sprintf("f%04d.txt", i)), nil, 0o644))
	}
	require.NoError(t, os.Remove(filepath.Join(dir, "team", "share")))
	require.NoError(t, os.Symlink(many, filepath.Join(dir, "team", "share")))
	_, errs = loadErrors(t, dir)
	_, ok = findError(errs, "more than the 1000 entries a configuration tree may have")
	require.True(t, ok, "%s", describeErrors(errs))
}

// TestDeepTreeIsResolvedOnce: the walk resolved every directory of the
// tree by its whole path (filepath.EvalSymlinks, an lstat of each
// directory above it), so a tree's cost grew with the square of its
// depth: a chain of 1,800 directories, within MaxWalkDirs, took every
// load and every rescan 1.6 million lstats. Only the root and the
// entries that are symlinks need resolving: a plain directory listed in a
// resolved one is where it is. The links are followed as before.
func TestDeepTreeIsResolvedOnce(t *testing.T) {
	const depth = 400
	root := t.TempDir()
	d := root
	for range depth {
		d = filepath.Join(d, "a")
	}
	writeTree(t, d, map[string]string{"deep.toml": ""})
	other := t.TempDir()
	writeTree(t, other, map[string]string{"sub/linked.toml": ""})
	require.NoError(t, os.Symlink(other, filepath.Join(root, "a", "a", "link")))

	resolved := 0 // path components resolved
	defer func(f func(string) (os.FileInfo, error)) { lstat = f }(lstat)
	lstat = func(p string) (os.FileInfo, error) {
		resolved++
		return os.Lstat(p)
	}
	var dirs int
	files, problems := Walk(root, func(string) { dirs++ })
	assert.Empty(t, problems)
	assert.Equal(t, []string{strings.Repeat("a/", depth) + "deep.toml", "a/a/link/sub/linked.toml"}, relPaths(t, root, files))
	assert.Equal(t, depth+3, dirs, "directories read")
	// The root and the link, each by its path: a few hundred
	// components. Every directory by its path: 80,000 and more.
	assert.Less(t, resolved, 4*depth, "path components resolved to walk %d directories", dirs)
}
