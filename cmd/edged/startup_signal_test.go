package main

import (
	"io"
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

// blockedOn reports whether a thread of process pid sleeps in the kernel
// function fn (/proc/PID/task/TID/wchan), or one ending in it: the name
// varies between kernels ("pipe_write", 6.x's "anon_pipe_write").
func blockedOn(pid int, fn string) bool {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "wchan"))
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && strings.HasSuffix(string(b), fn) {
			return true
		}
	}
	return false
}

// A SIGHUP that arrives while edged starts (loading, opening its logs,
// binding) is a reload asked for, not the end of the process: edged
// subscribes to its signals first, and reloads once it serves. The start
// is held up where it logs a config warning (a private key every user may
// read) to a stderr pipe that is full: a log shipper that reads late.
func TestSIGHUPDuringStartIsAReloadAfterIt(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	ex := newExample(t)
	keys, err := filepath.Glob(filepath.Join(ex.certDir, "*.acme.com.key"))
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, os.Chmod(keys[0], 0o644))

	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	for { // fill the pipe: edged's first line to stderr waits
		require.NoError(t, pw.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
		if _, err := pw.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Stderr, cmd.Stdout = pw, io.Discard
	require.NoError(t, cmd.Start())
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stderr := &syncBuffer{}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("edged stderr:\n%s", stderr.String())
		}
	})
	require.Eventually(t, func() bool { return blockedOn(cmd.Process.Pid, "pipe_write") }, 10*time.Second, 5*time.Millisecond,
		"edged writes its config warning as it starts")

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	select {
	case err := <-done:
		done <- err
		t.Fatalf("a SIGHUP during the start ended edged: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	// The reader catches up: the start goes on, then the reload.
	go func() {
		_, _ = io.CopyN(io.Discard, pr, 64<<10)
		_, _ = io.Copy(stderr, pr)
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(stderr.String(), `"msg":"config unchanged","trigger":"SIGHUP"`)
	}, 10*time.Second, 10*time.Millisecond, "the SIGHUP is a reload once edged serves")
	assert.Contains(t, stderr.String(), `"msg":"listening"`)
}
