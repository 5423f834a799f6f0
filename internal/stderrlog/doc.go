// Package stderrlog is edged serve's own log: the slog handler whose
// lines go to stderr, which under systemd is a stream to the journal.
//
// Lines are handed to one writer goroutine through a bounded queue, so
// that whoever logs (a request that failed, a reload, the signal loop on
// its way to a shutdown) never waits on stderr: a pipe nobody reads or a
// stalled journald must hold neither the request path nor signals. What
// the queue cannot take is dropped, and so are the lines of a write that
// fails (EPIPE, a full disk): counted in edged_stderr_lines_dropped_total,
// and said once a write goes through again.
//
// Under the journal, CrashesToJournal gives fd 2 a stream of its own at
// priority crit, for what the Go runtime writes there itself (a panic, a
// fatal error, SIGABRT's dump), which has no priority prefix.
//
// It must never block a caller on the stream, and never write a line
// longer than journald takes as one entry.
package stderrlog
