package main

import (
	"bufio"
	"net/http"
	"os"
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
