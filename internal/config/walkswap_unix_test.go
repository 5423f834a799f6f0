//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

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
