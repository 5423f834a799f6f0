package edge

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// lineLog is an environment instance's access log or audit log: lines
// (JSON, or nginx's combined format for an access log) handed to the
// shared writer of its path (see logWriter). The request's goroutine only
// formats the line and hands it over, so a slow disk never holds a worker
// for an access line: when the writer's queue is full an access line is
// dropped and counted in the environment's edged_access_log_dropped_total.
// An audit line (mustWrite) is never dropped: the goroutine waits for
// room, since an audit trail with holes is no audit trail.
type lineLog struct {
	w         *logWriter
	mustWrite bool             // audit: wait for room rather than drop
	dropped   *metrics.Counter // edged_access_log_dropped_total{env}; nil in tests that build a lineLog alone
	release   sync.Once

	// gone budgets the lines of requests whose client went away (499):
	// an HTTP/2 client can open and reset streams by the thousand for a
	// few bytes each, and must not make edged write a line per stream.
	gone lineBudget
}

// Lines of 499 requests each log may write: goneLinesPerSec a second on
// average, goneLinesBurst at once. Past that they are counted, not written.
const (
	goneLinesPerSec = 50
	goneLinesBurst  = 100
)

// lineBudget is a token bucket for log lines: burst at once, then perSec
// a second. Only the lines it budgets take its lock (those of requests
// whose client went away, refusals), so the common path pays nothing.
type lineBudget struct {
	perSec, burst float64
	mu            sync.Mutex
	tokens        float64
	last          time.Time
	started       bool
	skipped       uint64           // left out since the last line allowed
	suppressed    *metrics.Counter // edged_log_lines_suppressed_total; nil when only take's count is wanted
}

// take takes a token, or counts the line as suppressed. When it allows
// the line it also says how many were left out since the previous one.
func (b *lineBudget) take() (ok bool, skipped uint64) {
	now := time.Now()
	b.mu.Lock()
	if !b.started {
		b.started, b.tokens = true, b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
	}
	b.last = now
	ok = b.tokens >= 1
	if ok {
		b.tokens--
		skipped, b.skipped = b.skipped, 0
	} else {
		b.skipped++
	}
	b.mu.Unlock()
	if !ok && b.suppressed != nil {
		b.suppressed.Inc()
	}
	return ok, skipped
}

// allowGone reports whether the line of a request whose client went away
// may be written (see lineBudget).
func (a *lineLog) allowGone() bool {
	ok, _ := a.gone.take()
	return ok
}

// Failed writes of a log file (a full disk) are reported on stderr
// within a budget: logWriteFailBurst at once, then one every
// 1/logWriteFailPerSec seconds, each saying how many were left out.
const (
	logWriteFailPerSec = 0.1
	logWriteFailBurst  = 3
)

// logCloseWait is how long closing a log waits for its writer to write
// what is queued. A writer blocked in a write that does not return (a
// pipe nobody reads, a stalled mount) must not hold a drain or the
// shutdown for ever: past it, the lines left are said on stderr.
const logCloseWait = 5 * time.Second

// lineLogQueue and lineLogQueueBytes are how many lines, and how many
// bytes of them, a writer holds before access lines are dropped and audit
// lines wait; logBufferSize is its write buffer. The bytes bound the
// memory a stuck file takes: a line can be 400 KiB (a 64 KiB request head
// whose bytes JSON escapes six-fold), and 4096 of them 1.6 GB.
const (
	lineLogQueue      = 4096
	lineLogQueueBytes = 4 << 20
	logBufferSize     = 64 << 10
)

// logWriter owns one log file: every lineLog naming the same path (the
// old and new instance of an environment during a drain, several
// environments sharing an access log, every stdout log) shares it, so the
// file has one descriptor and one writer goroutine, and lines from
// different environments never interleave inside a write.
type logWriter struct {
	path string // cleaned; "" = stdout
	// place is where an access log's file may be (openOutsideState),
	// at every open: the last opener's, as a reload found it; the zero
	// place for the audit logs. Guarded by logWriters.mu.
	place logPlace
	refs  int // lineLogs using it; guarded by logWriters.mu
	lines chan []byte
	quit  chan struct{}
	done  chan struct{}
	log   *slog.Logger

	// queued is the bytes of the lines in lines, up to lineLogQueueBytes
	// (see reserve). A goroutine waiting for room (an audit line) counts
	// itself in waiting and waits for room to be closed: free closes it
	// when it gives bytes back and someone waits.
	queued  atomic.Int64
	waiting atomic.Int32
	roomMu  sync.Mutex
	room    chan struct{}
	// turn (capacity 1) is held by the one line waiting for room, the
	// others waiting to take it in the order they came (a channel's
	// senders are served first come, first served); no line takes room
	// while it is held. Room comes a line at a time: shorter lines
	// coming all the time would otherwise take it before a long one
	// found enough, for as long as they came.
	turn chan struct{}

	// next is a file opened for the writer (SIGUSR1's reopen, a lineLog
	// joining the path) that it takes between two writes; swap (capacity
	// 1) tells it one is there. Whoever opens the file hands it over and
	// goes on: SIGUSR1 and reloads run on edged's main loop, which a
	// write blocked on a full pipe or a stalled disk must not hold.
	nextMu sync.Mutex
	next   *os.File
	exited bool // the writer is gone: a file handed over now is closed
	swap   chan struct{}
}

// handOver gives the writer f to write to from its next line on. A file
// handed over before and not yet taken is closed: the newer one wins.
func (w *logWriter) handOver(f *os.File) {
	w.nextMu.Lock()
	if w.exited {
		w.nextMu.Unlock()
		closeLogFile(f)
		return
	}
	old := w.next
	w.next = f
	w.nextMu.Unlock()
	if old != nil {
		closeLogFile(old)
	}
	select {
	case w.swap <- struct{}{}:
	default: // already signalled: it takes w.next, this file
	}
}

// takeNext returns the file handed over, if any; with exit it also
// closes it and refuses later ones (the writer is stopping).
func (w *logWriter) takeNext(exit bool) *os.File {
	w.nextMu.Lock()
	defer w.nextMu.Unlock()
	f := w.next
	w.next = nil
	if exit {
		w.exited = true
		if f != nil {
			closeLogFile(f)
		}
		return nil
	}
	return f
}

func closeLogFile(f *os.File) {
	if f != os.Stdout {
		_ = f.Close()
	}
}

// logWriters is the process-wide registry of log writers, by cleaned path.
var logWriters struct {
	mu sync.Mutex
	m  map[string]*logWriter
}

// openLineLog returns a lineLog writing to path through the path's shared
// writer. It opens the path even when another lineLog has it open, and
// the writer moves to the new descriptor: a rebuilt environment finds out,
// as a new one does, that its log cannot be opened any more, and writes to
// the file now at the path rather than one moved or removed since.
//
// place is where the file may be (an access log's; see
// openOutsideState); the zero place for an audit log.
func openLineLog(path string, place logPlace, log *slog.Logger) (*lineLog, error) {
	if path != "" {
		path = filepath.Clean(path)
	}
	f, err := openLogFile(path, place)
	if err != nil {
		return nil, err
	}
	logWriters.mu.Lock()
	w := logWriters.m[path]
	shared := w != nil
	if shared {
		w.place = place
	} else {
		w = &logWriter{
			path:  path,
			place: place,
			lines: make(chan []byte, lineLogQueue),
			quit:  make(chan struct{}),
			done:  make(chan struct{}),
			log:   log,
			swap:  make(chan struct{}, 1),
			turn:  make(chan struct{}, 1),
		}
		if logWriters.m == nil {
			logWriters.m = make(map[string]*logWriter)
		}
		logWriters.m[path] = w
		go w.run(f)
	}
	w.refs++
	logWriters.mu.Unlock()
	// The reference taken keeps w running until it takes the file.
	if shared && path != "" {
		w.handOver(f)
	}
	return &lineLog{w: w, gone: lineBudget{perSec: goneLinesPerSec, burst: goneLinesBurst}}, nil
}

// openLogFile opens path for appending, creating it. O_NONBLOCK keeps the
// open of a named pipe that no process reads from waiting for a reader
// for ever (and with it a reload or the start, on edged's main loop): it
// fails at once instead. A regular file ignores the flag; a pipe's writes
// then park the writer goroutine in Go's poller, not a thread. With
// a place, the file must be in it (openOutsideState).
func openLogFile(path string, place logPlace) (*os.File, error) {
	if path == "" {
		return os.Stdout, nil
	}
	const flags = os.O_WRONLY | os.O_APPEND | os.O_CREATE | syscall.O_NONBLOCK
	var f *os.File
	var err error
	if place == (logPlace{}) {
		f, err = os.OpenFile(path, flags, 0o640)
	} else {
		f, err = openOutsideState(path, place, flags, 0o640)
	}
	if errors.Is(err, syscall.ENXIO) {
		// Also what opening a socket through /proc says (/dev/stdout
		// under systemd, whose stdout is the journal's socket).
		if fi, serr := os.Stat(path); serr == nil && fi.Mode()&os.ModeNamedPipe != 0 {
			return nil, fmt.Errorf("%s is a named pipe and no process has it open for reading; start its reader first", path)
		} else if serr == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil, SocketLogPathError(path)
		}
	}
	return f, err
}

// SocketLogPathError says why a log path that is a socket cannot be
// opened, and what to write instead. The common case is /dev/stdout under
// systemd, where stdout is a socket to the journal: open(2) of it through
// /proc fails with ENXIO, a message that names neither.
func SocketLogPathError(path string) error {
	return fmt.Errorf("%s is a socket, which cannot be opened as a file (under systemd, stdout is the journal's socket and /dev/stdout leads to it); for stdout, set path = \"\"", path)
}

// run owns the file: it writes lines as they come, flushes when the queue
// runs dry, and takes the file handed over (logrotate's SIGUSR1). Every
// write holds whole lines only: the buffer is flushed before a line that
// would not fit, and a line longer than the buffer is written alone, so
// another process appending to the file (or reading a pipe) never sees
// half a line followed by someone else's.
func (w *logWriter) run(f *os.File) {
	buf := make([]byte, 0, logBufferSize)
	failures := lineBudget{perSec: logWriteFailPerSec, burst: logWriteFailBurst}
	// rest is the end of a line that a write cut short (a full disk)
	// left out of the file: it goes first in the next write, so that the
	// line ends whole there rather than the next line is glued to its
	// first part (one line no parser reads, two requests lost). In a
	// pipe whose reader went away mid-line, the next reader finds the
	// line's middle, which the pipe kept: its end follows, so the lines
	// after it are whole.
	var rest []byte
	write := func(b []byte) {
		if len(rest) > 0 {
			b = append(rest, b...)
		}
		if len(b) == 0 {
			return
		}
		n, err := f.Write(b)
		if err == nil {
			rest = nil
			return
		}
		if n > 0 { // else the file is as it was, rest too
			rest = nil
			if b[n-1] != '\n' {
				end := len(b)
				if i := bytes.IndexByte(b[n:], '\n'); i >= 0 {
					end = n + i + 1
				}
				rest = append([]byte(nil), b[n:end]...)
			}
		}
		if ok, skipped := failures.take(); ok {
			w.log.Warn("log write failed", "path", w.path, "error", err.Error(), "suppressed", skipped)
		}
	}
	flush := func() { write(buf); buf = buf[:0] }
	put := func(line []byte) {
		if len(buf)+len(line) > cap(buf) {
			flush()
		}
		if len(line) > cap(buf) {
			write(line)
			return
		}
		buf = append(buf, line...)
	}
	closeFile := func() {
		flush()
		closeLogFile(f)
		rest = nil // the end of a line of that file, not of the next one
	}
	swapped := func() {
		if nf := w.takeNext(false); nf != nil {
			closeFile()
			f = nf
		}
	}
	// A line queued after handOver returned goes to the new file: its
	// signal is checked before each line, not left to select's choice.
	takeSwap := func() {
		select {
		case <-w.swap:
			swapped()
		default:
		}
	}
	defer close(w.done)
	for {
		select {
		case <-w.quit:
			takeSwap()
			for len(w.lines) > 0 {
				put(<-w.lines)
			}
			closeFile()
			w.takeNext(true)
			return
		case line := <-w.lines:
			w.free(len(line))
			takeSwap()
			put(line)
			if len(w.lines) == 0 {
				flush()
			}
		case <-w.swap:
			swapped()
		}
	}
}

// reopenFile opens the log file again, after logrotate moved it, and hands
// it to the writer, which closes the old one once it is done with the
// write under way. Every lineLog of the path shares the writer: reopen it
// once. The error is the open's; the writer is never waited for.
func (a *lineLog) reopenFile() error {
	if a.w.path == "" {
		return nil // stdout: nothing to reopen
	}
	select {
	case <-a.w.done:
		return nil
	default:
	}
	logWriters.mu.Lock()
	place := a.w.place
	logWriters.mu.Unlock()
	f, err := openLogFile(a.w.path, place)
	if err != nil {
		return err
	}
	a.w.handOver(f)
	return nil
}

// close gives the lineLog's share of the writer back; the last one out
// flushes what is queued and closes the file, waiting at most
// logCloseWait for the writer. Lines logged after it still
// reach the file while another lineLog holds it, and are dropped, never a
// panic, once it is closed: a request may outlive its environment's drain.
func (a *lineLog) close() {
	a.release.Do(func() {
		w := a.w
		logWriters.mu.Lock()
		w.refs--
		last := w.refs == 0
		if last {
			delete(logWriters.m, w.path)
		}
		logWriters.mu.Unlock()
		if last {
			close(w.quit)
			t := time.NewTimer(logCloseWait)
			defer t.Stop()
			select {
			case <-w.done:
			case <-t.C:
				// It ends, and closes the file, once its write returns.
				w.log.Error("log writer is blocked in a write: closed without waiting for it", "path", w.path, "lines_queued", len(w.lines))
			}
		}
	})
}

// add queues one line. An access line is dropped and counted when the
// writer is behind; an audit line waits for room, for as long as the disk
// takes, and is dropped only once its writer has been closed.
func (a *lineLog) add(line []byte) {
	if a.w.enqueue(line, a.mustWrite, nil) || a.mustWrite {
		return
	}
	if a.dropped != nil {
		a.dropped.Inc()
	}
}

// addWithin queues one line like add, but waits for room at most wait.
// It reports false when the line was not queued: the caller keeps it.
func (a *lineLog) addWithin(line []byte, wait time.Duration) bool {
	if a.w.enqueue(line, false, nil) {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	return a.w.enqueue(line, true, t.C)
}

// enqueue queues line when the queue has room for it, in lines and in
// bytes. With wait it waits for room until the writer is gone or stop
// fires (nil: never); without, it gives up at once. It reports whether
// the line was queued.
func (w *logWriter) enqueue(line []byte, wait bool, stop <-chan time.Time) bool {
	n := len(line)
	// A line waits for room (turn is held): this one comes after it.
	reserved := len(w.turn) == 0 && w.reserve(n)
	if !reserved && (!wait || !w.waitRoom(n, stop)) {
		return false
	}
	if wait {
		select {
		case w.lines <- line:
			return true
		case <-w.done:
		case <-stop:
		}
	} else {
		select {
		case w.lines <- line:
			return true
		default:
		}
	}
	w.free(n)
	return false
}

// reserve counts n bytes more in the queue, unless that would take it
// past lineLogQueueBytes. A line longer than that still goes into an
// empty queue.
func (w *logWriter) reserve(n int) bool {
	for {
		q := w.queued.Load()
		if q > 0 && q+int64(n) > lineLogQueueBytes {
			return false
		}
		if w.queued.CompareAndSwap(q, q+int64(n)) {
			return true
		}
	}
}

// free gives n bytes of the queue back (the writer took a line, or a
// reservation went unused) and wakes those waiting for room.
func (w *logWriter) free(n int) {
	w.queued.Add(-int64(n))
	if w.waiting.Load() == 0 {
		return
	}
	w.roomMu.Lock()
	if w.room != nil {
		close(w.room)
		w.room = nil
	}
	w.roomMu.Unlock()
}

// waitRoom reserves n bytes, waiting for its turn (see turn), then while
// the queue holds too many; it reports false when the writer is gone or
// stop fires first. A waiter counts itself in waiting before it looks
// again, and free gives bytes back before it looks at waiting: one of
// the two sees the other.
func (w *logWriter) waitRoom(n int, stop <-chan time.Time) bool {
	select {
	case w.turn <- struct{}{}:
	case <-w.done:
		return false
	case <-stop:
		return false
	}
	defer func() { <-w.turn }()
	for {
		w.roomMu.Lock()
		if w.room == nil {
			w.room = make(chan struct{})
		}
		room := w.room
		w.waiting.Add(1)
		w.roomMu.Unlock()
		ok, gone := w.reserve(n), false
		if !ok {
			select {
			case <-room:
			case <-w.done:
				gone = true
			case <-stop:
				gone = true
			}
		}
		w.waiting.Add(-1)
		if ok || gone {
			return ok
		}
	}
}

// AuditEnvGone appends a line to the audit log of an environment the
// serving generation no longer audits, removed or its rules.audit_log
// turned off: the change that ended its trail is the trail's last line.
// The log is the file the environment wrote (state_dir as at the start,
// see compile), through its shared writer when a draining instance
// still has it open. Like AuditEnv, it waits at most auditEnvWait for
// room, and closing the file at most logCloseWait; a line it cannot
// write goes to edged's own log.
func (s *Server) AuditEnvGone(env string, line []byte) {
	snap := s.snap.Load()
	if snap == nil {
		return
	}
	path := AuditLogPath(snap.Plan.stateDir, env)
	l, err := openLineLog(path, logPlace{}, s.log)
	if err != nil {
		s.log.Error("audit log cannot be opened: its line is logged here instead", "env", env, "path", path, "error", err.Error(), "line", strings.TrimSuffix(string(line), "\n"))
		return
	}
	defer l.close()
	if !l.addWithin(line, auditEnvWait) {
		s.log.Error("audit log is behind: its line is logged here instead", "env", env, "path", path, "line", strings.TrimSuffix(string(line), "\n"))
	}
}

// appendRequestLine starts a log line with what both logs say of a
// request: time, event, environment, proxy, request id, client.
func (x *exchange) appendRequestLine(b []byte, event string) []byte {
	b = append(b, `{"time":"`...)
	b = x.start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","event":"`...)
	b = append(b, event...)
	b = append(b, `","env":`...)
	b = appendJSONString(b, x.px.env.Name)
	b = append(b, `,"proxy":`...)
	b = appendJSONString(b, x.px.name)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, x.rid)
	b = append(b, `,"client":`...)
	return appendJSONString(b, x.r.RemoteAddr)
}

// appendRequestOutcome adds method, host, URI and status.
func (x *exchange) appendRequestOutcome(b []byte) []byte {
	r := x.r
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"uri":`...)
	b = appendJSONString(b, r.RequestURI)
	b = append(b, `,"status":`...)
	return strconv.AppendInt(b, int64(x.status), 10)
}

// accessLine formats the access log line of a finished request.
func (x *exchange) accessLine(d time.Duration) []byte {
	b := x.appendRequestLine(make([]byte, 0, 384), "access")
	b = x.appendRequestOutcome(b)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, x.r.Proto)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, x.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, x.bytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
	if x.node != "" {
		b = append(b, `,"upstream_node":`...)
		b = appendJSONString(b, x.node)
	}
	if x.faultCode != "" {
		b = append(b, `,"fault":`...)
		b = appendJSONString(b, x.faultCode)
	}
	return append(b, "}\n"...)
}

// combinedTime is nginx's $time_local.
const combinedTime = "02/Jan/2006:15:04:05 -0700"

// combinedLine formats the access log line of a finished request in
// nginx's combined format:
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//
// $remote_user is always "-" (edged authenticates no user), an absent
// Referer or User-Agent is "-", and what the client sent is escaped as
// nginx does: '"', '\', control characters and bytes above 0x7e as \xHH.
func (x *exchange) combinedLine() []byte {
	r := x.r
	b := make([]byte, 0, 256)
	b = appendCombinedEscaped(b, clientIP(x.w, r))
	b = append(b, " - - ["...)
	b = x.start.AppendFormat(b, combinedTime)
	b = append(b, `] "`...)
	b = appendCombinedEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendCombinedEscaped(b, r.RequestURI)
	b = append(b, ' ')
	b = appendCombinedEscaped(b, r.Proto)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(x.status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, x.bytesOut, 10)
	b = append(b, ` "`...)
	b = appendCombinedValue(b, r.Header["Referer"])
	b = append(b, `" "`...)
	b = appendCombinedValue(b, r.Header["User-Agent"])
	return append(b, "\"\n"...)
}

// appendCombinedValue appends a header's first value, or "-".
func appendCombinedValue(b []byte, v []string) []byte {
	if len(v) == 0 || v[0] == "" {
		return append(b, '-')
	}
	return appendCombinedEscaped(b, v[0])
}

func appendCombinedEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// auditLine formats the audit record of a request: who (client address,
// verified client certificate), what (method, host, URI) and the outcome.
func (x *exchange) auditLine() []byte {
	b := x.appendRequestLine(make([]byte, 0, 320), "request")
	if st := x.r.TLS; st != nil && len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		b = append(b, `,"client_cert":`...)
		b = appendJSONString(b, st.VerifiedChains[0][0].Subject.String())
	}
	b = x.appendRequestOutcome(b)
	return append(b, "}\n"...)
}
