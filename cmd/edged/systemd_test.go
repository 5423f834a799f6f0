package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSystemdUnit checks the unit's contract with the design, and has
// systemd-analyze verify it where systemd is installed.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../systemd/edged.service")
	require.NoError(t, err)
	unit := string(b)
	for _, line := range []string{
		"Type=notify",
		"ExecStartPre=/usr/local/bin/edged check -c /etc/edged/conf.d",
		"ExecStart=/usr/local/bin/edged serve -c /etc/edged/conf.d",
		"ExecReload=/usr/local/bin/edged reload -c /etc/edged/conf.d",
		"User=edged",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"StateDirectory=edged",
		"ConfigurationDirectory=edged",
		"LimitNOFILE=",
	} {
		assert.Contains(t, unit, "\n"+line, "unit has %s", line)
	}
	// systemd bounds ExecReload by TimeoutStartSec: a reload still
	// waiting for edged's outcome then is killed and reported failed,
	// whatever edged did. edged reload must give up first.
	start, err := time.ParseDuration(strings.ToLower(unitValue(t, unit, "TimeoutStartSec")))
	require.NoError(t, err)
	wait := 60 * time.Second // edged reload's --timeout default
	if _, after, ok := strings.Cut(unitValue(t, unit, "ExecReload"), "--timeout "); ok {
		wait, err = time.ParseDuration(strings.Fields(after)[0])
		require.NoError(t, err)
	}
	assert.Less(t, wait, start, "edged reload waits less than systemd lets ExecReload run")

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: verified the unit's lines only")
		return
	}
	// verify wants the executables to exist: point them at this binary.
	exe, err := os.Executable()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "edged.service")
	require.NoError(t, os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/edged", exe)), 0o644))
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "no warnings")
}

// unitValue is the value of the unit's line key=, which must be there
// once.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	var vals []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vals = append(vals, strings.TrimSpace(v))
		}
	}
	require.Len(t, vals, 1, "%s= once in the unit", key)
	return vals[0]
}

// A port already taken ends the start with a JSON line in edged's log and
// the reason in the unit's status, as every other failed start does; it
// was one plain line among the JSON, and systemd heard nothing.
func TestTakenPortIsLoggedAndToldToSystemd(t *testing.T) {
	ex := newExample(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	ex.setServer(t, "https", strconv.Quote(taken.Addr().String()))
	sock, messages := notifySocket(t)

	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &v), "every line of edged's log is JSON: %q", line)
	}
	assert.Contains(t, stderr.String(), `"msg":"cannot listen"`)
	assert.Contains(t, stderr.String(), "address already in use")
	require.Eventually(t, func() bool {
		for _, m := range messages() {
			if strings.Contains(m, "STATUS=cannot listen: ") && strings.Contains(m, "address already in use") {
				return true
			}
		}
		return false
	}, 2*time.Second, 10*time.Millisecond, "systemd was told: %q", messages())
}

// A READY=1 that cannot be sent (NOTIFY_SOCKET names a socket that is
// gone, or one nobody reads) makes systemd kill the service when
// TimeoutStartSec runs out, with no word from edged as to why: the
// failure is logged.
func TestFailedReadyNotificationIsLogged(t *testing.T) {
	ex := newExample(t)
	sock := filepath.Join(t.TempDir(), "gone.sock")
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	require.Eventually(t, func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"cannot tell systemd`)
	}, 10*time.Second, 20*time.Millisecond, p.stderr.String())
	assert.Contains(t, p.stderr.String(), "READY=1")
	assert.Contains(t, p.stderr.String(), sock)
}

// The notifications around a reload (RELOADING=1, then READY=1 and the
// STATUS= line) that cannot be sent are logged too: systemd waits for
// the READY=1 that ends a reload, and edged said nothing of why it never
// came.
func TestFailedReloadNotificationIsLogged(t *testing.T) {
	ex := newExample(t)
	sock := filepath.Join(t.TempDir(), "gone.sock")
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	failures := func() int { return strings.Count(p.stderr.String(), `"msg":"cannot tell systemd`) }
	require.Eventually(t, func() bool { return failures() == 1 }, 10*time.Second, 20*time.Millisecond, "the start's READY=1: %s", p.stderr.String())

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), `"msg":"config unchanged"`) }, 10*time.Second, 20*time.Millisecond, p.stderr.String())
	require.Eventually(t, func() bool { return failures() >= 2 }, 5*time.Second, 20*time.Millisecond, "%s", p.stderr.String())
	assert.Contains(t, p.stderr.String(), "RELOADING=1")
	assert.Contains(t, p.stderr.String(), `"state":"READY=1"`)
}

// systemd kills a service still running TimeoutStopSec= (45 s in the
// unit) after the SIGTERM it sent, in the middle of its drain, whatever
// drain_timeout the configuration sets; README promises the drain its
// drain_timeout. edged's STOPPING=1 asks for what its stop may take,
// shutdown_delay and drain_timeout and the closing after them, as
// EXTEND_TIMEOUT_USEC=, which systemd grants when it is the longer.
func TestStoppingTellsSystemdHowLongTheStopMayTake(t *testing.T) {
	b, err := os.ReadFile("../../systemd/edged.service")
	require.NoError(t, err)
	stopSec, err := time.ParseDuration(strings.ToLower(unitValue(t, string(b), "TimeoutStopSec")))
	require.NoError(t, err)
	const delay, drain = 20 * time.Second, 70 * time.Second
	require.Greater(t, delay+drain, stopSec, "a configuration the unit's TimeoutStopSec= alone would cut")

	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"20s"`)
	ex.setServer(t, "drain_timeout", `"70s"`)
	sock, messages := notifySocket(t)
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), `"msg":"shutting down"`) },
		10*time.Second, 10*time.Millisecond)
	// The second ends the lame duck; nothing is in flight to drain.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err)
		p.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not exit")
	}

	var stopping string
	for _, m := range messages() {
		if strings.HasPrefix(m, "STOPPING=1") {
			stopping = m
		}
	}
	require.NotEmpty(t, stopping, "%q", messages())
	_, usecText, ok := strings.Cut(stopping, "\nEXTEND_TIMEOUT_USEC=")
	require.True(t, ok, "STOPPING=1 asks for the stop's time: %q", stopping)
	usec, err := strconv.ParseUint(usecText, 10, 64)
	require.NoError(t, err, "%q", stopping)
	asked := time.Duration(usec) * time.Microsecond
	assert.GreaterOrEqual(t, asked, delay+drain, "shutdown_delay and drain_timeout")
	assert.LessOrEqual(t, asked, delay+drain+time.Minute, "not more than the stop may take")
}

// A file changed while edged starts, after its first load and before its
// watcher, is reloaded once edged listens. When that reload is refused,
// systemd's STATUS= says so, as it does for every refused reload: the
// start's own READY=1, sent after it, put "serving generation 1" over it,
// and `systemctl status` showed all well while the files on disk were
// refused. The start is held after its load (startHeldAfterItsLoad) while
// the test writes the file.
func TestRefusedReloadDuringTheStartStaysInTheStatus(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	sock, messages := notifySocket(t)
	cmd, pr, done, release := startHeldAfterItsLoadOn(t, ex, "NOTIFY_SOCKET="+sock)
	broken := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(broken, []byte(ordersSyntaxError), 0o644))
	stderr := &syncBuffer{}
	go func() { _, _ = io.Copy(stderr, pr) }()
	release()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), `"msg":"listening"`) },
		15*time.Second, 10*time.Millisecond, "edged starts")
	require.Contains(t, stderr.String(), `"msg":"reload failed","trigger":"file change during start"`)

	// STOPPING=1 is the last word: every notification of the start came
	// before it.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		done <- err
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("edged did not exit")
	}
	msgs := messages()
	require.NotEmpty(t, msgs)
	require.True(t, strings.HasPrefix(msgs[len(msgs)-1], "STOPPING=1"), "%q", msgs)
	var ready bool
	var status string
	for _, m := range msgs {
		ready = ready || strings.Contains(m, "READY=1")
		if _, s, ok := strings.Cut(m, "STATUS="); ok {
			status = s
		}
	}
	assert.True(t, ready, "%q", msgs)
	assert.True(t, strings.HasPrefix(status, "reload failed; still serving generation 1: "+broken+":5:"),
		"the last STATUS=: %q (all: %q)", status, msgs)
}
