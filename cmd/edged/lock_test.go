//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seenWriter is a goroutine-safe buffer that closes seen once what was
// written holds want.
type seenWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func newSeenWriter(want string) *seenWriter {
	return &seenWriter{want: want, seen: make(chan struct{})}
}

func (w *seenWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *seenWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestPromoteAndRollbackWaitForEachOther: edged promote and rollback each
// validate conf.d as it will be after their change, then write. Run at
// once, each validated the directory without the other's change, and
// together they could leave one that neither validated (a proxy promoted
// onto an upstream the rollback was moving aside); two rollbacks in the
// same second could pick the same name to move a file aside to. Each now
// holds a lock on the config directory from its first read to its last
// write: one started while another holds it says that it waits, writes
// nothing until the lock is free, then goes on.
func TestPromoteAndRollbackWaitForEachOther(t *testing.T) {
	type setup struct {
		dir   string
		args  []string
		file  string // a file the command changes
		wrote string // what that file holds once the command ran
	}
	cases := map[string]func(t *testing.T) setup{
		"promote": func(t *testing.T) setup {
			ex := newExample(t)
			orders := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
			require.NoError(t, os.WriteFile(orders, []byte(ordersProxy), 0o644))
			prod := envFile(t, ex.confDir, "prod")
			return setup{ex.confDir, []string{"promote", "orders", "--from", "test", "--to", "prod", "--target", "http://127.0.0.1:9301", "--no-wait", "-c", ex.confDir},
				prod, "name = \"orders\"\nenvironment = \"prod\""}
		},
		"rollback": func(t *testing.T) setup {
			dir := withGeneration3(t)
			p := filepath.Join(dir, "server.toml")
			require.NoError(t, os.WriteFile(p, []byte(stateServer+"\n[[environment]]\nname = \"uat\"\n"), 0o644))
			return setup{dir, []string{"rollback", "3", "--no-wait", "-c", dir}, p, `name = "test"`}
		},
	}
	for name, prepare := range cases {
		t.Run(name, func(t *testing.T) {
			s := prepare(t)
			before, err := os.ReadFile(s.file)
			require.NoError(t, err)
			require.NotContains(t, string(before), s.wrote)

			// Another promote or rollback holds the lock.
			d, err := os.Open(s.dir)
			require.NoError(t, err)
			defer d.Close()
			require.NoError(t, syscall.Flock(int(d.Fd()), syscall.LOCK_EX))

			var out bytes.Buffer
			errOut := newSeenWriter("waiting for another edged promote or rollback")
			done := make(chan int, 1)
			go func() { done <- run(s.args, &out, errOut) }()
			select {
			case <-errOut.seen:
			case code := <-done:
				t.Fatalf("%s ran to its end (exit %d) while another held the lock of %s; stdout:\n%s\nstderr:\n%s", name, code, s.dir, out.String(), errOut.String())
			case <-time.After(30 * time.Second):
				t.Fatalf("%s neither waited nor ended; stderr:\n%s", name, errOut.String())
			}
			now, err := os.ReadFile(s.file)
			require.NoError(t, err)
			assert.Equal(t, string(before), string(now), "nothing written while the lock is held")

			require.NoError(t, syscall.Flock(int(d.Fd()), syscall.LOCK_UN))
			select {
			case code := <-done:
				require.Equal(t, 0, code, errOut.String())
			case <-time.After(30 * time.Second):
				t.Fatalf("%s did not go on once the lock was free; stderr:\n%s", name, errOut.String())
			}
			now, err = os.ReadFile(s.file)
			require.NoError(t, err)
			assert.Contains(t, string(now), s.wrote)
		})
	}
}

// TestPromoteAndRollbackRemoveTheTempFilesOfAKilledOne: a promote or
// rollback killed between writing its temp file and renaming it (a
// SIGKILL, a crash, a lost ssh session) left ".NAME.tmp-N" beside the file
// for good: the loader skips it, but it piled up in the operators'
// directories. The next one, holding the directory's lock (so no other is
// writing), removes those of the files it writes, and nothing else.
func TestPromoteAndRollbackRemoveTheTempFilesOfAKilledOne(t *testing.T) {
	ex := newExample(t)
	orders := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	require.NoError(t, os.WriteFile(orders, []byte(ordersProxy), 0o644))
	prod := envFile(t, ex.confDir, "prod")
	left := filepath.Join(filepath.Dir(prod), "."+filepath.Base(prod)+".tmp-4242")
	other := filepath.Join(filepath.Dir(prod), ".notes.tmp-1")
	require.NoError(t, os.WriteFile(left, []byte("half a file"), 0o644))
	require.NoError(t, os.WriteFile(other, []byte("not edged's"), 0o644))

	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--target", "http://127.0.0.1:9301", "--no-wait", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	_, err := os.Lstat(left)
	assert.ErrorIs(t, err, os.ErrNotExist, "the killed promote's temp file is removed")
	assert.Contains(t, out, "removed "+left+" (left by an edged promote or rollback that did not finish)")
	_, err = os.Lstat(other)
	assert.NoError(t, err, "another name is not edged's to remove")

	// A rollback, likewise.
	dir := withGeneration3(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.toml"), []byte(stateServer+"\n[[environment]]\nname = \"uat\"\n"), 0o644))
	left = filepath.Join(dir, ".server.toml.tmp-7")
	require.NoError(t, os.WriteFile(left, []byte("half"), 0o644))
	code, out, errOut = runEdged(t, "rollback", "3", "--no-wait", "-c", dir)
	require.Equal(t, 0, code, errOut)
	_, err = os.Lstat(left)
	assert.ErrorIs(t, err, os.ErrNotExist, "the killed rollback's temp file is removed")
	assert.Contains(t, out, "removed "+left+" (left by an edged promote or rollback that did not finish)")
}
