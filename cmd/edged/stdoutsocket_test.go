package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Under systemd, stdout is a socket to the journal, and opening
// /dev/stdout (a link to it through /proc) fails with ENXIO, "no such
// device or address": an access log with path = "/dev/stdout", which works
// from a shell, stops the service. Both edged check (ExecStartPre) and
// edged serve say what it is and what to write instead: path = "".
func TestAccessLogOnDevStdoutUnderSystemdSaysWhy(t *testing.T) {
	ex := newExample(t)
	p := filepath.Join(ex.confDir, "test", "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	conf := strings.Replace(string(b), `path = ""`, `path = "/dev/stdout"`, 1)
	require.NotEqual(t, string(b), conf, "the example's test access log is on stdout")
	require.NoError(t, os.WriteFile(p, []byte(conf), 0o644))
	// What open(2) says of it, not access_log_dir's refusal (which gives
	// the same hint: TestAccessLogDirBoundsEnvironmentsLogs).
	ex.setServer(t, "access_log_dir", `""`)

	// stdout as systemd gives it: one end of a Unix socket.
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	journal, other := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "stdout")
	defer journal.Close()
	defer other.Close()

	exe, err := os.Executable()
	require.NoError(t, err)
	// serve logs JSON: its quotes are escaped.
	for cmdName, hint := range map[string]string{"check": `path = ""`, "serve": `path = \"\"`} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, exe, cmdName, "-c", ex.confDir)
		cmd.Env = append(os.Environ(), "EDGED_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = other, &stderr
		err := cmd.Run()
		cancel()
		require.Error(t, err, "edged %s: %s", cmdName, stderr.String())
		assert.Contains(t, stderr.String(), "/dev/stdout is a socket", cmdName)
		assert.Contains(t, stderr.String(), hint, cmdName)
	}
}
