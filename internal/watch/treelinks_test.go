package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Config files that are symlinks into another directory (nginx's
// sites-enabled -> ../available) are watched where they lead. A deploy
// or git checkout that makes thousands of them at once is thousands of
// events, and each must update the watched targets for its own link, not
// rebuild the index of all of them: that made a burst cost the square of
// its size (5,000 links: 4.7 s of the watcher's loop, which takes no
// other event meanwhile). Counted here in allocations per link.
func TestManyLinkedConfigFilesCostLinearly(t *testing.T) {
	root := t.TempDir()
	dir, avail := filepath.Join(root, "conf.d"), filepath.Join(root, "available")
	write(t, filepath.Join(dir, "a.toml"), "a = 1\n")
	const n = 3000
	for i := range n {
		write(t, filepath.Join(avail, fmt.Sprintf("f%05d.toml", i)), "a = 1\n")
	}
	w := start(t, Options{Dir: dir})

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		name := fmt.Sprintf("f%05d.toml", i)
		require.NoError(t, os.Symlink(filepath.Join("..", "available", name), filepath.Join(dir, name)))
	}
	seen := map[string]bool{}
	for len(seen) < n {
		for _, p := range next(t, w).Paths {
			seen[p] = true
		}
	}
	runtime.ReadMemStats(&after)
	perLink := (after.Mallocs - before.Mallocs) / n
	t.Logf("%d allocations per link made", perLink)
	assert.Less(t, perLink, uint64(300), "allocations per link made")

	// Each link is watched where it leads: an edit there is reported.
	settle(w)
	last := filepath.Join(dir, fmt.Sprintf("f%05d.toml", n-1))
	write(t, filepath.Join(avail, fmt.Sprintf("f%05d.toml", n-1)), "a = 2\n")
	assert.Contains(t, await(t, w, last), last)
}

// An environment's home linked into the tree (conf.d/prod -> a team's
// checkout) is deployed the ways releases are: the link's target reached
// through a release link that is re-pointed (conf.d/prod ->
// /srv/prod/current, current -> releases/v2), the target removed and
// made again (rm -rf, then a copy), or replaced by a new directory renamed
// into its place. The rescan is off: each deploy is reported, and so is
// every later edit where the link leads then, not where it led before.

func TestTreeDirectoryLinkThroughAReleaseLink(t *testing.T) {
	// conf.d/prod -> /srv/prod/current, current -> releases/v1.
	releaseLinkDeploy(t, "a.toml", func(dir, current string) string {
		link := filepath.Join(dir, "prod")
		require.NoError(t, os.Symlink(current, link))
		return filepath.Join(link, "a.toml")
	})
}

// releaseLinkDeploy makes releases v1 and v2, each with name, and a
// current link to v1, then the tree's link through it (linkInto, which
// returns the file watched through it); it re-points
// current to v2 (ln -sfn) and checks that the deploy is reported, that an
// edit in v2 is, and that one in v1 no longer is.
func releaseLinkDeploy(t *testing.T, name string, linkInto func(dir, current string) string) {
	t.Helper()
	dir, base := t.TempDir(), t.TempDir()
	v1, v2 := filepath.Join(base, "releases", "v1"), filepath.Join(base, "releases", "v2")
	write(t, filepath.Join(v1, name), "a = 1\n")
	write(t, filepath.Join(v2, name), "a = 2\n")
	current := filepath.Join(base, "current")
	require.NoError(t, os.Symlink(filepath.Join("releases", "v1"), current))
	f := linkInto(dir, current)
	w := start(t, Options{Dir: dir})

	lnsfn(t, filepath.Join("releases", "v2"), current)
	assert.Contains(t, await(t, w, f), f)
	settle(w)

	write(t, filepath.Join(v2, name), "a = 3\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(v1, name), "a = 4\n")
	quiet(t, w)
}

func TestTreeDirectoryLinkTargetMadeAgain(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	home := filepath.Join(base, "prod")
	write(t, filepath.Join(home, "a.toml"), "a = 1\n")
	link := filepath.Join(dir, "prod")
	require.NoError(t, os.Symlink(home, link))
	w := start(t, Options{Dir: dir})

	f := filepath.Join(link, "a.toml")
	require.NoError(t, os.RemoveAll(home))
	await(t, w, f)
	settle(w)

	write(t, filepath.Join(home, "a.toml"), "a = 2\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(home, "a.toml"), "a = 3\n")
	await(t, w, f)
}

func TestTreeDirectoryLinkTargetReplaced(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	home := filepath.Join(base, "prod")
	write(t, filepath.Join(home, "a.toml"), "a = 1\n")
	link := filepath.Join(dir, "prod")
	require.NoError(t, os.Symlink(home, link))
	w := start(t, Options{Dir: dir})

	staged := filepath.Join(base, "prod.new")
	write(t, filepath.Join(staged, "a.toml"), "a = 2\n")
	require.NoError(t, os.Rename(home, filepath.Join(base, "prod.old")))
	require.NoError(t, os.Rename(staged, home))
	f := filepath.Join(link, "a.toml")
	await(t, w, link)
	settle(w)

	write(t, filepath.Join(home, "a.toml"), "a = 3\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(base, "prod.old", "a.toml"), "a = 4\n")
	quiet(t, w)
}

// The same for a config file linked into a release (conf.d/prod.toml ->
// /srv/prod/current/prod.toml, as nginx's sites-enabled).
func TestTreeFileLinkThroughAReleaseLink(t *testing.T) {
	// conf.d/prod.toml -> /srv/prod/current/prod.toml.
	releaseLinkDeploy(t, "prod.toml", func(dir, current string) string {
		f := filepath.Join(dir, "prod.toml")
		require.NoError(t, os.Symlink(filepath.Join(current, "prod.toml"), f))
		return f
	})
}

func TestTreeFileLinkTargetDirectoryMadeAgain(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	home := filepath.Join(base, "prod")
	write(t, filepath.Join(home, "prod.toml"), "a = 1\n")
	f := filepath.Join(dir, "prod.toml")
	require.NoError(t, os.Symlink(filepath.Join(home, "prod.toml"), f))
	w := start(t, Options{Dir: dir})

	require.NoError(t, os.RemoveAll(home))
	await(t, w, f)
	settle(w)

	write(t, filepath.Join(home, "prod.toml"), "a = 2\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(home, "prod.toml"), "a = 3\n")
	await(t, w, f)
}

// A subdirectory link whose target is not there yet, when edged starts
// or when the link is made (conf.d/prod -> /srv/prod/current before the
// first deploy makes current and the releases): the deploy is reported,
// and so are later edits where the link leads.
func TestTreeDirectoryLinkMadeBeforeItsTarget(t *testing.T) {
	for _, when := range []string{"at start", "while running"} {
		t.Run(when, func(t *testing.T) {
			dir, base := t.TempDir(), t.TempDir()
			current := filepath.Join(base, "srv", "prod", "current")
			require.NoError(t, os.MkdirAll(filepath.Dir(current), 0o755))
			link := filepath.Join(dir, "prod")
			if when == "at start" {
				require.NoError(t, os.Symlink(current, link))
			}
			w := start(t, Options{Dir: dir})
			if when != "at start" {
				require.NoError(t, os.Symlink(current, link))
			}
			settle(w)
			rel := filepath.Join(base, "srv", "prod", "releases", "v1")
			write(t, filepath.Join(rel, "a.toml"), "a = 1\n")
			require.NoError(t, os.Symlink(rel, current))
			f := filepath.Join(link, "a.toml")
			await(t, w, f)
			settle(w)
			write(t, filepath.Join(rel, "a.toml"), "a = 2\n")
			await(t, w, f)
		})
	}
}
