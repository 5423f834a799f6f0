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
// function fn (/proc/PID/task/TID/wchan).
func blockedOn(pid int, fn string) bool {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "wchan"))
	for _, p := range tasks {
		if b, err := os.ReadFile(p); err == nil && string(b) == fn {
			return true
		}
	}
	return false
}

// A SIGHUP that arrives while edged starts (loading, opening its logs,
// binding) is a reload asked for, not the end of the process: edged
// subscribes to its signals first, and reloads once it serves. The start
// is held up where it opens an access log that is a FIFO nobody reads yet
// (a log shipper that comes up later).
func TestSIGHUPDuringStartIsAReloadAfterIt(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	ex := newExample(t)
	fifo := filepath.Join(ex.root, "var", "log", "uat-access.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	stderr := &syncBuffer{}
	cmd.Stderr, cmd.Stdout = stderr, io.Discard
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("edged stderr:\n%s", stderr.String())
		}
	})
	require.Eventually(t, func() bool { return blockedOn(cmd.Process.Pid, "wait_for_partner") }, 10*time.Second, 5*time.Millisecond,
		"edged opens the FIFO access log as it starts")

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	select {
	case err := <-done:
		done <- err
		t.Fatalf("a SIGHUP during the start ended edged: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	// The log's reader arrives: the start goes on, then the reload.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer r.Close()
	go io.Copy(io.Discard, r)
	require.Eventually(t, func() bool {
		return strings.Contains(stderr.String(), `"msg":"config unchanged","trigger":"SIGHUP"`)
	}, 10*time.Second, 10*time.Millisecond, "the SIGHUP is a reload once edged serves")
	assert.Contains(t, stderr.String(), `"msg":"listening"`)
}
