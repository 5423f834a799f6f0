package stderrlog

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// JournalSocket is where journald takes log streams (sd_journal_stream_fd(3)).
var JournalSocket = "/run/systemd/journal/stdout"

// crashPriority is the priority of what reaches stderr with none of its
// own: crit, as systemd logs a service's crash.
const crashPriority = 2

// CrashesToJournal makes fd 2 a stream of its own to the journal, whose
// lines with no "<N>" prefix are at priority crit (2), and returns the
// stream fd 2 was, for the log's lines: the Go runtime writes a panic
// nobody recovered, a fatal error (a concurrent map write, out of
// memory) and SIGABRT's goroutine dump (the watchdog's kill) straight to
// fd 2, one journal entry a line and none with a prefix, which journald
// would take as info like any line without one. identifier is the
// stream's SYSLOG_IDENTIFIER (systemd's own stream has the executable's
// name unless SyslogIdentifier= says otherwise).
//
// Only for a process whose stderr is the journal (IsJournal): fd 2 keeps
// what it was when the stream cannot be made (no journald socket, a
// sandbox without AF_UNIX), and the error says why.
func CrashesToJournal(identifier string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	defer unix.Close(fd) // fd 2 is its copy
	// A journald that does not take connections (its backlog full) must
	// not hold the start: connect and the header's write wait 1 s at most.
	tv := unix.NsecToTimeval(time.Second.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: JournalSocket}); err != nil {
		return nil, fmt.Errorf("journal stream: connect %s: %w", JournalSocket, err)
	}
	_ = unix.Shutdown(fd, unix.SHUT_RD)
	// identifier, unit (journald finds it itself), priority, level prefix
	// ("<N>" read), and no forwarding to syslog, kmsg or the console.
	header := fmt.Sprintf("%s\n\n%d\n1\n0\n0\n0\n", identifier, crashPriority)
	for b := []byte(header); len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return nil, fmt.Errorf("journal stream: %w", err)
		}
		b = b[n:]
	}
	// A crash's write waits for journald as any write to stderr did.
	var none unix.Timeval
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &none); err != nil {
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	old, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	if err := unix.Dup3(fd, 2, 0); err != nil {
		unix.Close(old)
		return nil, fmt.Errorf("journal stream: %w", err)
	}
	return os.NewFile(uintptr(old), "stderr"), nil
}
