//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A directory of the tree swapped for a named pipe between Walk's look at
// it and its open (a symbolic link in an environment's home, which its
// operators may turn at any moment: at a directory when Walk stats it,
// at a pipe when it opens it) is refused, never waited on: open(2) of a
// pipe waits for a writer for ever, and a load runs on edged serve's main
// loop, which would then reload nothing more, answer no edged reload and
// take no SIGTERM. Files are opened O_NONBLOCK for the same reason
// (TestLoadRefusesFIFOs); the walk's directories were opened plainly.
func TestWalkNeverWaitsOnADirectoryTurnedIntoAPipe(t *testing.T) {
	root := t.TempDir()
	conf := filepath.Join(root, "conf.d")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "apis"), 0o755))
	require.NoError(t, os.Mkdir(conf, 0o755))
	pipe := filepath.Join(root, "pipe")
	require.NoError(t, syscall.Mkfifo(pipe, 0o644))
	link := filepath.Join(conf, "apis")
	require.NoError(t, os.Symlink(filepath.Join(root, "apis"), link))

	stop, swapped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swapped)
		targets := []string{filepath.Join(root, "apis"), pipe}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := filepath.Join(root, "l"+strconv.Itoa(i%2))
			_ = os.Remove(tmp)
			if os.Symlink(targets[i%2], tmp) == nil {
				_ = os.Rename(tmp, link) // atomic: the link is always there
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-swapped
		// A walk stuck in open(2) of the pipe gets its writer and ends.
		if w, err := os.OpenFile(pipe, os.O_RDWR, 0); err == nil {
			time.Sleep(100 * time.Millisecond)
			w.Close()
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	walks := 0
	for ; walks < 5000 && time.Now().Before(deadline); walks++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			Walk(conf, nil)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("walk %d still waits, 3 s on: it opened the pipe the link was turned to as a directory", walks+1)
		}
	}
	t.Logf("%d walks, none waited", walks)
}

// TestLoadReadsOneReleaseOfASwappedLink: -c names a release link
// (current -> releases/v1) that a deploy re-points with ln -sfn, an
// atomic swap, as README's Reload section has it. A load under way when
// it was swapped read the files it had not read yet from the other
// release: a configuration never on disk as a whole (a proxy moved from
// one file to another by v2: in both, or in neither), applied until the
// swap's own reload. A load reads the release the link led to when it
// began, whole.
func TestLoadReadsOneReleaseOfASwappedLink(t *testing.T) {
	root := t.TempDir()
	current := releases(t, root)
	loadsOfOneRelease(t, root, current, current)
}

// TestLoadReadsOneReleaseOfASwappedSubdirectoryLink: the same for an
// environment's home that is a link to a team's release link
// (conf.d/prod -> /srv/prod/current).
func TestLoadReadsOneReleaseOfASwappedSubdirectoryLink(t *testing.T) {
	root := t.TempDir()
	current := releases(t, root)
	dir := filepath.Join(root, "conf.d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Symlink(current, filepath.Join(dir, "prod")))
	loadsOfOneRelease(t, root, current, dir)
}

const releaseFiles = 200

// releases makes releases/v1 and releases/v2 in root, releaseFiles files
// each that say which, and the link current -> releases/v1.
func releases(t *testing.T, root string) string {
	t.Helper()
	for _, v := range []string{"v1", "v2"} {
		for i := range releaseFiles {
			f := filepath.Join(root, "releases", v, "f"+strconv.Itoa(1000+i)+".toml")
			require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
			require.NoError(t, os.WriteFile(f, []byte("# release "+v+"\n"), 0o644))
		}
	}
	current := filepath.Join(root, "current")
	require.NoError(t, os.Symlink(filepath.Join("releases", "v1"), current))
	return current
}

// loadsOfOneRelease loads dir again and again while current is re-pointed
// from one release to the other without pause, and checks that no load
// read files of both.
func loadsOfOneRelease(t *testing.T, root, current, dir string) {
	t.Helper()
	files := releaseFiles

	stop, swapped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := filepath.Join(root, ".current.tmp")
			_ = os.Remove(tmp)
			if os.Symlink(filepath.Join("releases", "v"+strconv.Itoa(1+i%2)), tmp) == nil {
				_ = os.Rename(tmp, current)
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-swapped
	})

	ld := &Loader{Dir: dir}
	mixed, loads := 0, 0
	for deadline := time.Now().Add(3 * time.Second); loads < 100 && time.Now().Before(deadline); loads++ {
		cfg, _ := ld.Load()
		require.NotNil(t, cfg)
		require.Len(t, cfg.Files, files)
		seen := map[string]bool{}
		for _, f := range cfg.Files {
			seen[string(f.Data)] = true
			require.True(t, strings.HasPrefix(f.Path, dir+string(filepath.Separator)), "files are named under -c: %s", f.Path)
		}
		if len(seen) > 1 {
			mixed++
		}
	}
	assert.Zero(t, mixed, "loads that read files of both releases, of %d", loads)
}
