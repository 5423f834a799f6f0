package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A SIGHUP that arrives while edged starts (loading, opening its logs,
// binding) is a reload asked for, not the end of the process: edged
// subscribes to its signals first, and reloads once it serves. The start
// is held up after its load (startHeldAfterItsLoad).
func TestSIGHUPDuringStartIsAReloadAfterIt(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	cmd, pr, done, release := startHeldAfterItsLoad(t)
	stderr := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edged stderr:\n%s", stderr.String())
		}
	})

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	select {
	case err := <-done:
		done <- err
		t.Fatalf("a SIGHUP during the start ended edged: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	// The start goes on, then the reload.
	go func() { _, _ = io.Copy(stderr, pr) }()
	release()
	require.Eventually(t, func() bool {
		return strings.Contains(stderr.String(), `"msg":"config unchanged","trigger":"SIGHUP"`)
	}, 10*time.Second, 10*time.Millisecond, "the SIGHUP is a reload once edged serves")
	assert.Contains(t, stderr.String(), `"msg":"listening"`)
}

// startHeldAfterItsLoad starts edged on an example and returns once its
// start is held where it has loaded the configuration and logged its
// warnings, before the listeners (testHookStartLoaded, as a slow disk
// would hold it): pr is edged's stderr, done has the process's end (a
// test that takes it puts it back: the cleanup kills the process and
// waits for it), release lets the start go on.
func startHeldAfterItsLoad(t *testing.T) (cmd *exec.Cmd, pr *os.File, done chan error, release func()) {
	t.Helper()
	return startHeldAfterItsLoadOn(t, newExample(t))
}

// startHeldAfterItsLoadOn is startHeldAfterItsLoad on ex, with env added
// to edged's environment.
func startHeldAfterItsLoadOn(t *testing.T, ex *example, env ...string) (cmd *exec.Cmd, pr *os.File, done chan error, release func()) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "hold")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { pr.Close() })
	cmd = edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Env = append(cmd.Env, append(env, "EDGED_TEST_HOLD_START="+fifo)...)
	cmd.Stderr, cmd.Stdout = pw, io.Discard
	require.NoError(t, cmd.Start())
	pw.Close()
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	require.Eventually(t, func() bool {
		_, err := os.Stat(fifo + ".held")
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "edged's start reaches the hold")
	var once sync.Once
	release = func() {
		once.Do(func() {
			// The hold reads the pipe until its writer closes it.
			f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		})
	}
	return cmd, pr, done, release
}

// startHeldAtItsAuditLog starts edged on ex (no shutdown_delay) with its
// audit log a named pipe no one reads yet, and returns once edged listens:
// its start is then held up where it opens that log, after the
// listeners. fifo is the pipe; done has the process's end (a test that
// takes it puts it back: the cleanup kills the process and waits for it).
func startHeldAtItsAuditLog(t *testing.T, ex *example) (p *proc, fifo string, stderr *syncBuffer, done chan error) {
	t.Helper()
	ex.setServer(t, "shutdown_delay", `"0s"`)
	httpsAddr := freeLoopbackAddr(t)
	ex.setServer(t, "https", `"`+httpsAddr+`"`)
	stateDir := filepath.Join(ex.root, "var", "state")
	require.NoError(t, os.MkdirAll(stateDir, 0o750))
	fifo = filepath.Join(stateDir, "audit.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o640))

	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	stderr = &syncBuffer{}
	cmd.Stderr, cmd.Stdout = stderr, io.Discard
	require.NoError(t, cmd.Start())
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("edged stderr:\n%s", stderr.String())
		}
	})
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", httpsAddr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "edged listens")
	require.NotContains(t, stderr.String(), `"msg":"listening"`, "the start is held up at its audit log")
	return &proc{cmd: cmd, https: httpsAddr}, fifo, stderr, done
}

// freeLoopbackAddr is a loopback address with a port free a moment ago,
// for a listener whose address a test must know before edged logs it.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// A SIGTERM that arrives once edged listens, but before its start is over
// (the first generation's history record and audit line, synced; the
// watcher; the control socket), is a graceful stop: the request already
// being served is answered, and edged exits 0. It ended the process at
// once (Go's default), cutting that request. The start is held up where
// it opens its audit log, a named pipe the test opens for reading only
// after the signal.
func TestSIGTERMOnceListeningDrainsEvenDuringTheStart(t *testing.T) {
	ex := newExample(t)
	arrived := ex.slowProxy(t, 2*time.Second)
	p, fifo, stderr, done := startHeldAtItsAuditLog(t, ex)
	cmd := p.cmd
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	type answer struct {
		code int
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		code, _, err := try(c, "https://test.acme.com/slow/x")
		answered <- answer{code, err}
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the slow backend")
	}
	require.NotContains(t, stderr.String(), `"msg":"listening"`, "the start is still held up at its audit log")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(200 * time.Millisecond) // the signal is delivered while the start is held
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer r.Close()
	go func() { _, _ = io.Copy(io.Discard, r) }()

	select {
	case a := <-answered:
		require.NoError(t, a.err, "the request in flight at the SIGTERM is answered")
		assert.Equal(t, 200, a.code)
	case <-time.After(10 * time.Second):
		t.Fatal("the request was not answered")
	}
	select {
	case err := <-done:
		done <- err
		require.NoError(t, err, "exit 0 after the drain")
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not exit after SIGTERM")
	}
	assert.Contains(t, stderr.String(), `"msg":"shutting down","signal":"terminated"`)
}

// SIGQUIT is nginx's graceful stop, which edged takes as SIGTERM; while
// edged starts and listens on nothing yet, SIGTERM ends the start at once.
// SIGQUIT did not: Go's default dumped every goroutine on stderr (the
// journal) and exited 2, a failure that Restart=on-failure answers by
// starting edged again. The start is held up after its load
// (startHeldAfterItsLoad).
func TestSIGQUITDuringStartEndsItAsSIGTERMDoes(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	cmd, pr, done, _ := startHeldAfterItsLoad(t)

	require.NoError(t, cmd.Process.Signal(syscall.SIGQUIT))
	time.Sleep(200 * time.Millisecond) // delivered while the start is held
	stderr := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		stderr <- string(b)
	}()
	var out string
	select {
	case err := <-done:
		done <- err
		out = <-stderr
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		ws, ok := ee.Sys().(syscall.WaitStatus)
		require.True(t, ok)
		assert.True(t, ws.Signaled() && ws.Signal() == syscall.SIGTERM, "ended as by SIGTERM, got %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not end after SIGQUIT during its start")
	}
	assert.False(t, strings.Contains(out, "goroutine "), "no goroutine dump")
}

// A start held up once edged listens (its audit log a FIFO nobody reads,
// a stuck network file system) takes a SIGTERM as a graceful stop, for
// after the start; a second SIGTERM means the process gone now, as it
// ends a drain. Both were kept for a start that never ended: edged did
// not exit until SIGKILL. SIGQUIT, passed on by its own subscriber, the
// same.
func TestSecondSIGTERMEndsAStartHeldOnceListening(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			p, _, _, done := startHeldAtItsAuditLog(t, newExample(t))
			cmd := p.cmd

			require.NoError(t, cmd.Process.Signal(sig))
			time.Sleep(200 * time.Millisecond) // both delivered while the start is held
			require.NoError(t, cmd.Process.Signal(sig))
			select {
			case err := <-done:
				done <- err
				assert.Error(t, err, "the start did not end: no exit 0")
			case <-time.After(5 * time.Second):
				t.Fatalf("edged did not exit after a second %v during a held start", sig)
			}
		})
	}
}
