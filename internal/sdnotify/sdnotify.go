package sdnotify

import (
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Notify sends state, newline-separated VAR=value assignments such as
// "READY=1\nSTATUS=generation 3", as one datagram to the socket named by
// $NOTIFY_SOCKET. It returns nil without doing anything when the variable
// is unset or empty, that is when not run by systemd as a Type=notify unit.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	switch {
	case addr[0] == '/', addr[0] == '@':
		// Go maps a leading '@' to the Linux abstract namespace itself.
	default:
		// systemd also knows vsock: addresses, for VMs; edged runs on hosts.
		return fmt.Errorf("sdnotify: NOTIFY_SOCKET=%q: only absolute paths and @abstract sockets are supported", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	// A datagram to a full queue waits for room: bounded, like every
	// write of edged's.
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// writeTimeout bounds a notification's write. systemd reads its notify
// socket at once unless it is overloaded; a socket nobody reads (a
// NOTIFY_SOCKET inherited from a unit's environment by a process started
// by hand, a container runtime's relay that stopped) must not hold the
// caller: edged's main loop, which also takes SIGTERM. Long enough that a
// busy systemd still gets READY=1, whose loss would fail the start.
const writeTimeout = 5 * time.Second

// Ready tells systemd that start-up or a reload is complete, with status as
// the STATUS= line when it is not empty.
func Ready(status string) error {
	if status == "" {
		return Notify("READY=1")
	}
	return Notify("READY=1\nSTATUS=" + oneLine(status))
}

// Reloading tells systemd a reload has begun. MONOTONIC_USEC is required by
// Type=notify-reload and harmless for Type=notify; follow it with Ready.
func Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sdnotify: clock_gettime: %w", err)
	}
	usec := uint64(ts.Sec)*1_000_000 + uint64(ts.Nsec)/1_000
	return Notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatUint(usec, 10))
}

// Stopping tells systemd the service is shutting down and, when within
// is positive, that the stop may take that long (EXTEND_TIMEOUT_USEC=):
// systemd kills a service still running TimeoutStopSec= after it was
// told to stop, and waits instead until within has passed when that is
// later (systemd 236 and later; older ones ignore it).
func Stopping(within time.Duration) error {
	if within <= 0 {
		return Notify("STOPPING=1")
	}
	return Notify("STOPPING=1\nEXTEND_TIMEOUT_USEC=" + strconv.FormatInt(within.Microseconds(), 10))
}

// Status sets the free-form status line `systemctl status` shows.
func Status(s string) error {
	return Notify("STATUS=" + oneLine(s))
}

// maxStatus bounds a STATUS= text in bytes: systemd reads a notification
// into a PIPE_BUF (4096-byte) buffer and drops or cuts a longer one, and a
// status line is read by people in `systemctl status` anyway.
const maxStatus = 1024

// oneLine makes a status (often an error message, possibly joined from
// several) fit one STATUS= assignment systemd takes: a newline would
// start another, unintended, assignment; systemd ignores a status that
// is not valid UTF-8 (a file name need not be); and a longer one than
// maxStatus is clipped, on a character boundary, with "...".
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxStatus {
		cut := maxStatus - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// WatchdogInterval is how often systemd wants to hear WATCHDOG=1 at the
// least, as sd_watchdog_enabled(3) reads it: $WATCHDOG_USEC, when
// $WATCHDOG_PID is unset or this process's id (a process the service
// started, which inherited the variables, is not watched). Zero when
// the service has no WatchdogSec=, for a value that does not parse, and
// for systemd's infinity (2^64-1); past what a time.Duration holds (292
// years), that. systemd advises a ping every half of it.
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec == 0 || usec == math.MaxUint64 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	// The product must not wrap: 18446744073709552 µs would be 384 ns.
	if usec > uint64(math.MaxInt64/time.Microsecond) {
		return math.MaxInt64
	}
	return time.Duration(usec) * time.Microsecond
}

// Watchdog tells systemd the service is alive (WATCHDOG=1): with
// WatchdogSec= set, systemd kills a service (SIGABRT, then as
// WatchdogSignal= says) that has not said so for that long.
func Watchdog() error { return Notify("WATCHDOG=1") }
