package sdnotify

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket at addr (a path, or "@name") and points
// NOTIFY_SOCKET at it.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", addr)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

func monotonicUsec(t *testing.T) uint64 {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	return uint64(ts.Sec)*1_000_000 + uint64(ts.Nsec)/1_000
}

func TestPathSocketInOrder(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))

	require.NoError(t, Ready("generation 1"))
	require.NoError(t, Status("reloading: conf.d/uat.toml:14: bad\nconf.d/prod.toml:3: worse"))
	before := monotonicUsec(t)
	require.NoError(t, Reloading())
	after := monotonicUsec(t)
	require.NoError(t, Ready(""))
	require.NoError(t, Notify("WATCHDOG=1"))
	require.NoError(t, Stopping(0))
	require.NoError(t, Stopping(95*time.Second+250*time.Microsecond))

	assert.Equal(t, "READY=1\nSTATUS=generation 1", recv(t, conn))
	assert.Equal(t, "STATUS=reloading: conf.d/uat.toml:14: bad; conf.d/prod.toml:3: worse", recv(t, conn),
		"a newline in a status must not start another assignment")

	reloading := recv(t, conn)
	lines := strings.Split(reloading, "\n")
	require.Len(t, lines, 2, reloading)
	assert.Equal(t, "RELOADING=1", lines[0])
	usecText, ok := strings.CutPrefix(lines[1], "MONOTONIC_USEC=")
	require.True(t, ok, reloading)
	usec, err := strconv.ParseUint(usecText, 10, 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, usec, before, "MONOTONIC_USEC is CLOCK_MONOTONIC")
	assert.LessOrEqual(t, usec, after, "MONOTONIC_USEC is CLOCK_MONOTONIC")

	assert.Equal(t, "READY=1", recv(t, conn))
	assert.Equal(t, "WATCHDOG=1", recv(t, conn))
	assert.Equal(t, "STOPPING=1", recv(t, conn))
	assert.Equal(t, "STOPPING=1\nEXTEND_TIMEOUT_USEC=95000250", recv(t, conn), "how long the stop may take, in µs")
}

func TestAbstractSocket(t *testing.T) {
	addr := fmt.Sprintf("@edged-sdnotify-test-%d-%d", unix.Getpid(), time.Now().UnixNano())
	conn := listen(t, addr)

	require.NoError(t, Ready("listening"))
	require.NoError(t, Stopping(0))
	assert.Equal(t, "READY=1\nSTATUS=listening", recv(t, conn))
	assert.Equal(t, "STOPPING=1", recv(t, conn))
}

func TestUnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	assert.NoError(t, Notify("READY=1"))
	assert.NoError(t, Ready("x"))
	assert.NoError(t, Reloading())
	assert.NoError(t, Status("x"))
	assert.NoError(t, Stopping(time.Minute))
}

func TestErrors(t *testing.T) {
	t.Run("nobody listening", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
		err := Ready("")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "sdnotify:")
	})
	t.Run("unsupported address", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
		err := Ready("")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "vsock:2:1234")
	})
}

// TestStatusFitsSystemd: systemd reads a notification into a PIPE_BUF
// (4096 bytes) buffer and ignores (or cuts) a longer one, and ignores a
// STATUS= that is not valid UTF-8. A status made of a long error message
// or a file name that is not UTF-8 still arrives, clipped and cleaned.
func TestStatusFitsSystemd(t *testing.T) {
	conn := listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	read := func() string {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		buf := make([]byte, 1<<16)
		n, err := conn.Read(buf)
		require.NoError(t, err)
		return string(buf[:n])
	}

	require.NoError(t, Status("reload failed: "+strings.Repeat("é", 5000)))
	got := read()
	assert.Less(t, len(got), 4096, "the datagram fits systemd's buffer")
	assert.True(t, utf8.ValidString(got), "clipped on a character boundary")
	assert.True(t, strings.HasPrefix(got, "STATUS=reload failed: éé"), got[:40])

	require.NoError(t, Ready("reload failed: conf.d/bad\xffname.toml:3: unknown key"))
	got = read()
	assert.True(t, utf8.ValidString(got), "%q", got)
	assert.Equal(t, "READY=1\nSTATUS=reload failed: conf.d/bad\uFFFDname.toml:3: unknown key", got)
}

// A notify socket nobody reads (systemd stuck, or a NOTIFY_SOCKET left
// from an environment whose reader is gone) fills up; a notification then
// gives up after writeTimeout with an error rather than holding its
// caller, edged's main loop (signals, reloads), for ever.
func TestNotifyGivesUpOnASocketNobodyReads(t *testing.T) {
	listen(t, filepath.Join(t.TempDir(), "notify.sock"))
	done := make(chan error, 1)
	go func() {
		for {
			if err := Notify("STATUS=x"); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "timeout")
	case <-time.After(writeTimeout + 60*time.Second): // a safety net, not a bound
		t.Fatal("Notify still waits on a full socket")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"30000000", "", 30 * time.Second},
		{"30000000", strconv.Itoa(unix.Getpid()), 30 * time.Second},
		{"30000000", strconv.Itoa(unix.Getpid() + 1), 0}, // inherited from the service's main process
		{"0", "", 0},
		{"-5", "", 0},
		{"30s", "", 0},
		{"1", "", time.Microsecond},
		// Past time.Duration's 292 years: as long as it goes, never a
		// product that wrapped (18446744073709552 µs made 384 ns, and
		// edged pinged systemd in a busy loop).
		{"18446744073709552", "", math.MaxInt64},
		{"9223372036854775807", "", math.MaxInt64},
		{"18446744073709551614", "", math.MaxInt64},
		{"18446744073709551615", "", 0}, // USEC_INFINITY: no watchdog
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		assert.Equal(t, c.want, WatchdogInterval(), "WATCHDOG_USEC=%q WATCHDOG_PID=%q", c.usec, c.pid)
	}
}
