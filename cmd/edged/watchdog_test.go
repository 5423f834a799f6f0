package main

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With WatchdogSec= in the unit, systemd sets WATCHDOG_USEC and kills a
// service that does not send WATCHDOG=1 within it: edged pings every
// half of it, from its signal loop, so that a loop held up for good (here
// a reload that never ends) stops the pings and systemd restarts edged,
// which would otherwise never act on SIGTERM or a reload again. A
// WATCHDOG_PID naming another process (the variables inherited from the
// service's main process) is not edged's to answer.
func TestWatchdogPingsComeFromTheSignalLoop(t *testing.T) {
	pings := func(messages func() []string) (n int, reloading bool) {
		for _, m := range messages() {
			if m == "WATCHDOG=1" {
				n++
			}
			if strings.HasPrefix(m, "RELOADING=1") {
				reloading = true
			}
		}
		return n, reloading
	}
	t.Run("watched", func(t *testing.T) {
		ex := newExample(t)
		sock, messages := notifySocket(t)
		p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000", "EDGED_TEST_WEDGE_RELOAD=1")
		require.Eventually(t, func() bool { n, _ := pings(messages); return n >= 5 }, 10*time.Second, 20*time.Millisecond,
			"WATCHDOG=1 every 100 ms: %q", messages())

		require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool { _, r := pings(messages); return r }, 10*time.Second, 20*time.Millisecond,
			"the reload started")
		before, _ := pings(messages)
		time.Sleep(2 * time.Second) // 20 intervals
		after, _ := pings(messages)
		assert.LessOrEqual(t, after-before, 1, "pings while the signal loop is held (one may have been on its way)")
	})
	// systemctl reload runs `edged reload`, whose reload the control
	// socket's goroutine runs, beside the signal loop: held up for good,
	// it stops the pings too. They used to go on, and an edged that no
	// reload could reach again was never restarted.
	t.Run("a reload over the control socket", func(t *testing.T) {
		ex := newExample(t)
		sock, messages := notifySocket(t)
		startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000", "EDGED_TEST_WEDGE_RELOAD=1")
		require.Eventually(t, func() bool { n, _ := pings(messages); return n >= 5 }, 10*time.Second, 20*time.Millisecond,
			"WATCHDOG=1 every 100 ms: %q", messages())

		asked := make(chan int, 1)
		go func() {
			code, _, _ := runEdged(t, "reload", "-c", ex.confDir, "--timeout", "5s")
			asked <- code
		}()
		require.Eventually(t, func() bool { _, r := pings(messages); return r }, 10*time.Second, 20*time.Millisecond,
			"the reload started")
		before, _ := pings(messages)
		time.Sleep(2 * time.Second) // 20 intervals
		after, _ := pings(messages)
		assert.LessOrEqual(t, after-before, 1, "pings while a reload is held up (one may have been on its way)")
		assert.Equal(t, 1, <-asked, "edged reload gave up")
	})
	t.Run("another process's", func(t *testing.T) {
		ex := newExample(t)
		sock, messages := notifySocket(t)
		startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000", "WATCHDOG_PID="+strconv.Itoa(syscall.Getpid()))
		require.Eventually(t, func() bool {
			for _, m := range messages() {
				if strings.HasPrefix(m, "READY=1") {
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond)
		time.Sleep(time.Second)
		n, _ := pings(messages)
		assert.Zero(t, n, "%q", messages())
	})
}
