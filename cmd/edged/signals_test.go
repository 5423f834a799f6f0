package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The reader of edged's log (a pipe to a logger, `edged serve 2>&1 | tee`)
// goes away: the next log line meets a broken pipe. edged keeps serving
// and losing those lines, like nginx (which ignores SIGPIPE); a Go program
// that does not ask otherwise is killed by SIGPIPE on fd 2.
func TestClosedLogPipeDoesNotKillServe(t *testing.T) {
	ex := newExample(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Stderr = w
	require.NoError(t, cmd.Start())
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })

	var admin string
	sc := bufio.NewScanner(r)
	for admin == "" && sc.Scan() {
		if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
			admin = m[2]
		}
	}
	require.NotEmpty(t, admin, "edged did not start listening")
	require.NoError(t, r.Close(), "the log's reader is gone")

	// A SIGHUP logs the reload, twice: the first line meets the broken pipe.
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	select {
	case err := <-done:
		done <- err
		t.Fatalf("edged exited when its log's reader went away: %v", err)
	case <-time.After(time.Second):
	}
	resp, err := http.Get("http://" + admin + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	// It still stops as asked.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		done <- err
		assert.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not exit after SIGTERM")
	}
}

// A burst of SIGHUPs (a certificate renewal hook run once per certificate)
// while a reload is under way, then SIGTERM (systemctl stop): the SIGTERM
// is not lost behind the reloads asked for, and the process drains and
// exits instead of waiting for systemd's SIGKILL. The reload is held up
// where it tells systemd RELOADING=1: the test does not read its notify
// socket, whose queue it filled.
func TestSIGTERMAfterASIGHUPBurstStops(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()
	ready := make(chan struct{})
	drain := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		n, _, err := ln.ReadFromUnix(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1") {
			return
		}
		close(ready)
		<-drain
		for {
			if _, _, err := ln.ReadFromUnix(buf); err != nil {
				return
			}
		}
	}()
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no READY=1")
	}
	// Fill the notify socket's queue: edged's next notification waits.
	fill, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer fill.Close()
	for {
		require.NoError(t, fill.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
		if _, err := fill.Write([]byte("X=1")); err != nil {
			break
		}
	}

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	time.Sleep(300 * time.Millisecond) // the reload waits to say RELOADING=1
	for i := 0; i < 6; i++ {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
		time.Sleep(30 * time.Millisecond)
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	time.Sleep(100 * time.Millisecond)
	close(drain)

	select {
	case err := <-p.done:
		p.done <- err
		require.NoError(t, err, "exit 0 after draining")
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM after a burst of SIGHUPs was lost: edged still runs")
	}
	assert.Contains(t, p.stderr.String(), `"msg":"shutting down","signal":"terminated"`)
}
