package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A deploy that removes a directory a tree link or a certificate leads to
// and makes it again at once (rm -rf /srv/rel/x; mkdir -p /srv/rel/x and
// its files), or replaces it, or re-points a link to one made in the same
// instant, races the watcher: the new directory may be there, and its
// files in it, before the watcher has taken the events of the old one's
// removal, and on ext4 a directory made right after rm -rf often has the
// inode number of the one removed. Each round of these tests deploys at
// once, with the rescan off, and checks that the deploy is reported and
// that an edit after it is too: the watches are on what the deploy made,
// not on what it removed.

// deployRounds is how many deploys each test makes: the race is lost in
// some rounds only.
const deployRounds = 4

// deployAtOnce runs deploy deployRounds times; after each it awaits a
// report of each of files, as the watcher knows them, then edits each
// (through the links that lead to it now) and awaits that report too.
func deployAtOnce(t *testing.T, w *Watcher, deploy func(round int), files ...string) {
	t.Helper()
	for round := range deployRounds {
		deploy(round)
		awaitRound(t, w, round, "the deploy", files)
		settle(w)
		for _, f := range files {
			write(t, f, fmt.Sprintf("a = %d # edited\n", round))
		}
		awaitRound(t, w, round, "an edit after the deploy", files)
		settle(w)
	}
}

// awaitRound is await, naming the round and the step in its failure.
func awaitRound(t *testing.T, w *Watcher, round int, step string, files []string) {
	t.Helper()
	var seen []string
	deadline := time.After(waitFor)
	for {
		missing := slices.DeleteFunc(slices.Clone(files), func(f string) bool { return slices.Contains(seen, f) })
		if len(missing) == 0 {
			return
		}
		select {
		case ev := <-w.Events():
			seen = append(seen, ev.Paths...)
		case <-deadline:
			t.Fatalf("round %d: %s was not reported for %v, seen %v", round, step, missing, seen)
		}
	}
}

// TestLinkTargetMadeAgainAtOnce: conf.d/x -> /srv/rel/x (or a certificate
// directory certs/site -> /srv/rel/x); the deploy removes the target, or
// the target with its parents, and makes it again at once with its file.
func TestLinkTargetMadeAgainAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parent bool // rm -rf /srv/rel rather than /srv/rel/x
		extra  bool // a certificate directory, not a tree link
		file   bool // conf.d/x.toml -> /srv/rel/x/app.toml
		two    bool // conf.d/x and conf.d/y -> /srv/rel/y
		below  bool // and a certificate in /srv/rel/x/certs
	}{
		{name: "tree link, target removed"},
		{name: "tree link, target and parents removed", parent: true},
		{name: "two tree links, their targets' parents removed", parent: true, two: true},
		{name: "tree link with a certificate below, target and parents removed", parent: true, below: true},
		{name: "config file link, its directory and parents removed", parent: true, file: true},
		{name: "certificate directory link, target and parents removed", parent: true, extra: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, base, certs := t.TempDir(), t.TempDir(), t.TempDir()
			rel := filepath.Join(base, "srv", "rel")
			names := []string{"x"}
			if tc.two {
				names = append(names, "y")
			}
			file := "app.toml"
			if tc.extra {
				file = "site.pem"
			}
			opts := Options{Dir: dir}
			var files, targets []string
			for _, name := range names {
				target := filepath.Join(rel, name, file)
				write(t, target, "a = 0\n")
				targets = append(targets, target)
				switch {
				case tc.extra:
					link := filepath.Join(certs, name)
					require.NoError(t, os.Symlink(filepath.Dir(target), link))
					files = append(files, filepath.Join(link, file))
					opts.Extra = append(opts.Extra, filepath.Join(link, file))
				case tc.file:
					link := filepath.Join(dir, name+".toml")
					require.NoError(t, os.Symlink(target, link))
					files = append(files, link)
				default:
					link := filepath.Join(dir, name)
					require.NoError(t, os.Symlink(filepath.Dir(target), link))
					files = append(files, filepath.Join(link, file))
				}
			}
			if tc.below {
				target := filepath.Join(rel, "x", "certs", "site.pem")
				write(t, target, "a = 0\n")
				targets = append(targets, target)
				files = append(files, filepath.Join(dir, "x", "certs", "site.pem"))
				opts.Extra = append(opts.Extra, files[len(files)-1])
			}
			w := start(t, opts)

			gone := filepath.Join(rel, "x")
			if tc.parent {
				gone = rel
			}
			deployAtOnce(t, w, func(round int) {
				require.NoError(t, os.RemoveAll(gone))
				for _, target := range targets {
					write(t, target, fmt.Sprintf("a = %d\n", round))
				}
			}, files...)
		})
	}
}

// TestLinkTargetReplacedAtOnce: the deploy stages the new directory beside
// the target and renames it into place, the old one moved aside (mv x
// x.old; mv x.new x) or removed (rm -rf x; mv x.new x).
func TestLinkTargetReplacedAtOnce(t *testing.T) {
	for _, aside := range []bool{true, false} {
		t.Run(fmt.Sprintf("old one kept aside %v", aside), func(t *testing.T) {
			dir, base := t.TempDir(), t.TempDir()
			target := filepath.Join(base, "srv", "rel", "x")
			write(t, filepath.Join(target, "app.toml"), "a = 0\n")
			link := filepath.Join(dir, "x")
			require.NoError(t, os.Symlink(target, link))
			w := start(t, Options{Dir: dir})

			deployAtOnce(t, w, func(round int) {
				staged, old := target+".new", target+".old"
				write(t, filepath.Join(staged, "app.toml"), fmt.Sprintf("a = %d\n", round))
				if aside {
					require.NoError(t, os.RemoveAll(old))
					require.NoError(t, os.Rename(target, old))
				} else {
					require.NoError(t, os.RemoveAll(target))
				}
				require.NoError(t, os.Rename(staged, target))
			}, filepath.Join(link, "app.toml"))
		})
	}
}

// TestLinkRetargetedToADirectoryMadeAtOnce: conf.d/x -> /srv/rel/current
// (or certs/site -> /srv/rel/current), current -> releases/vN: the deploy
// makes the next release, re-points current at it (ln -sfn) and removes
// the one before, at once.
func TestLinkRetargetedToADirectoryMadeAtOnce(t *testing.T) {
	for _, extra := range []bool{false, true} {
		t.Run(fmt.Sprintf("certificate %v", extra), func(t *testing.T) {
			dir, base, certs := t.TempDir(), t.TempDir(), t.TempDir()
			rel := filepath.Join(base, "srv", "rel")
			file := "app.toml"
			if extra {
				file = "site.pem"
			}
			release := func(n int) string { return filepath.Join("releases", fmt.Sprintf("v%d", n)) }
			write(t, filepath.Join(rel, release(0), file), "a = 0\n")
			current := filepath.Join(rel, "current")
			require.NoError(t, os.Symlink(release(0), current))
			link, opts := filepath.Join(dir, "x"), Options{Dir: dir}
			if extra {
				link = filepath.Join(certs, "site")
			}
			require.NoError(t, os.Symlink(current, link))
			f := filepath.Join(link, file)
			if extra {
				opts.Extra = []string{f}
			}
			w := start(t, opts)

			deployAtOnce(t, w, func(round int) {
				write(t, filepath.Join(rel, release(round+1), file), fmt.Sprintf("a = %d\n", round+1))
				lnsfn(t, release(round+1), current)
				require.NoError(t, os.RemoveAll(filepath.Join(rel, release(round))))
			}, f)
		})
	}
}

// TestTwoLevelsOfLinks: conf.d/x -> /srv/a/x, itself a link to the
// directory (/srv/a/x -> /srv/rN/x): the second link re-pointed at a
// directory made at once, the one before removed; or the second link's
// target removed with its parents and made again at once.
func TestTwoLevelsOfLinks(t *testing.T) {
	for _, repoint := range []bool{true, false} {
		t.Run(fmt.Sprintf("second link re-pointed %v", repoint), func(t *testing.T) {
			dir, base := t.TempDir(), t.TempDir()
			target := func(n int) string { return filepath.Join(base, "srv", fmt.Sprintf("r%d", n), "x") }
			write(t, filepath.Join(target(0), "app.toml"), "a = 0\n")
			second := filepath.Join(base, "srv", "a", "x")
			require.NoError(t, os.MkdirAll(filepath.Dir(second), 0o755))
			require.NoError(t, os.Symlink(target(0), second))
			link := filepath.Join(dir, "x")
			require.NoError(t, os.Symlink(second, link))
			w := start(t, Options{Dir: dir})

			deployAtOnce(t, w, func(round int) {
				if !repoint {
					require.NoError(t, os.RemoveAll(filepath.Dir(target(0))))
					write(t, filepath.Join(target(0), "app.toml"), fmt.Sprintf("a = %d\n", round+1))
					return
				}
				write(t, filepath.Join(target(round+1), "app.toml"), fmt.Sprintf("a = %d\n", round+1))
				lnsfn(t, target(round+1), second)
				require.NoError(t, os.RemoveAll(filepath.Dir(target(round))))
			}, filepath.Join(link, "app.toml"))
		})
	}
}

// TestConfigDirLinkDeployedAtOnce: the config directory is a release
// link (-c /etc/edged/current, current -> releases/vN): the next release
// made, current re-pointed at it and the one before removed, at once; or
// the release current names removed and made again at once.
func TestConfigDirLinkDeployedAtOnce(t *testing.T) {
	for _, repoint := range []bool{true, false} {
		t.Run(fmt.Sprintf("re-pointed %v", repoint), func(t *testing.T) {
			base := t.TempDir()
			release := func(n int) string { return filepath.Join("releases", fmt.Sprintf("v%d", n)) }
			write(t, filepath.Join(base, release(0), "prod", "a.toml"), "a = 0\n")
			dir := filepath.Join(base, "current")
			require.NoError(t, os.Symlink(release(0), dir))
			w := start(t, Options{Dir: dir})

			deployAtOnce(t, w, func(round int) {
				if !repoint {
					require.NoError(t, os.RemoveAll(filepath.Join(base, release(0))))
					write(t, filepath.Join(base, release(0), "prod", "a.toml"), fmt.Sprintf("a = %d\n", round+1))
					return
				}
				write(t, filepath.Join(base, release(round+1), "prod", "a.toml"), fmt.Sprintf("a = %d\n", round+1))
				lnsfn(t, release(round+1), dir)
				require.NoError(t, os.RemoveAll(filepath.Join(base, release(round))))
			}, filepath.Join(dir, "prod", "a.toml"))
		})
	}
}
