package watch

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReplacedConfigDirectory: the config directory itself is replaced by
// a deployment (the old one moved aside, a new one renamed into its
// place), with the rescan off. The swap is reported, and so is every later
// edit in the new directory: the watch follows the path, not the inode
// that was moved away.
func TestReplacedConfigDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "conf.d")
	write(t, filepath.Join(dir, "a.toml"), "a = 1\n")
	w := start(t, Options{Dir: dir})

	staged := filepath.Join(base, "conf.d.new")
	write(t, filepath.Join(staged, "a.toml"), "a = 2\n")
	require.NoError(t, os.Rename(dir, filepath.Join(base, "conf.d.old")))
	require.NoError(t, os.Rename(staged, dir))
	await(t, w, dir)
	settle(w)

	f := filepath.Join(dir, "a.toml")
	write(t, f, "a = 3\n")
	await(t, w, f)
	sub := filepath.Join(dir, "prod", "b.toml")
	write(t, sub, "b = 1\n")
	await(t, w, sub)
}

// TestRecreatedConfigDirectory: the config directory is removed and made
// again (rm -rf, then a copy), the rescan off. What is written in the new
// one is reported.
func TestRecreatedConfigDirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "conf.d")
	write(t, filepath.Join(dir, "a.toml"), "a = 1\n")
	w := start(t, Options{Dir: dir})

	require.NoError(t, os.RemoveAll(dir))
	await(t, w, dir)
	settle(w)

	f := filepath.Join(dir, "a.toml")
	write(t, f, "a = 2\n")
	await(t, w, f)
	write(t, f, "a = 3\n")
	await(t, w, f)
}

// TestReplacedExtraDirectory: the directory of a certificate is replaced
// by a new one renamed into its place, with the rescan off and no
// SetExtra after it (a reload that found the same certificate makes
// none). The swap is reported, and so is a later renewal written there.
func TestReplacedExtraDirectory(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	certs := filepath.Join(base, "certs")
	crt := filepath.Join(certs, "site.pem")
	write(t, crt, "cert 1\n")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	staged := filepath.Join(base, "certs.new")
	write(t, filepath.Join(staged, "site.pem"), "cert 1\n")
	require.NoError(t, os.Rename(certs, filepath.Join(base, "certs.old")))
	require.NoError(t, os.Rename(staged, certs))
	next(t, w)
	settle(w)

	write(t, crt, "cert 2\n")
	await(t, w, crt)
}

// TestRecreatedExtraDirectory: the directory of a certificate is removed
// and made again, the rescan off and no SetExtra after it. The
// certificate written into the new directory is reported, and so is its
// next renewal.
func TestRecreatedExtraDirectory(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	certs := filepath.Join(base, "certs")
	crt := filepath.Join(certs, "site.pem")
	write(t, crt, "cert 1\n")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	require.NoError(t, os.RemoveAll(certs))
	await(t, w, crt)
	settle(w)

	write(t, crt, "cert 1\n")
	await(t, w, crt)
	settle(w)
	write(t, crt, "cert 2\n")
	await(t, w, crt)
}

// TestConfigDirLinkTargetRecreated: the config directory is a symlink to a
// release (-c /srv/edged/current, current -> releases/v1), and the release
// directory is removed and made again in place rather than the link
// re-pointed; the rescan is off. The new release's files are reported, and
// so is a later edit of them.
func TestConfigDirLinkTargetRecreated(t *testing.T) {
	base := t.TempDir()
	v1 := filepath.Join(base, "releases", "v1")
	write(t, filepath.Join(v1, "a.toml"), "a = 1\n")
	dir := filepath.Join(base, "current")
	require.NoError(t, os.Symlink(filepath.Join("releases", "v1"), dir))
	w := start(t, Options{Dir: dir})

	require.NoError(t, os.RemoveAll(v1))
	next(t, w)
	settle(w)

	f := filepath.Join(dir, "a.toml")
	write(t, filepath.Join(v1, "a.toml"), "a = 2\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(v1, "a.toml"), "a = 3\n")
	await(t, w, f)
}
