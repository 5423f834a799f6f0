package stderrlog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
)

// queueLines and queueBytes bound the lines handed to the writer and not
// written yet: past either, a line is dropped. edged's own log is a few
// lines a second at most (request failures and refusals are budgeted),
// so the queue fills only when stderr stops taking them.
const (
	queueLines = 1024
	queueBytes = 1 << 20
)

// MaxLine bounds a line written, its priority prefix and newline
// included. journald cuts a line longer than its LineMax= (48 KiB by
// default) into several entries, none of them a whole JSON object: a
// longer line is written in parts instead, each a line of its own that
// quotes partBytes of it (see inParts).
const (
	MaxLine   = 32 << 10
	partBytes = 8 << 10
)

// dropped counts the lines the queue could not take, and those lost in
// writes that failed.
var dropped = metrics.NewCounter(`edged_stderr_lines_dropped_total`)

// Options says how lines are written.
type Options struct {
	// Format is "json" (one JSON object a line) or "text" (slog's
	// key=value lines).
	Format string
	// Journal starts each line with its syslog priority, "<3>" for an
	// error, "<4>" a warning, "<6>" info, "<7>" debug, which journald
	// reads when stderr is its stream (IsJournal) and no one else
	// would.
	Journal bool
	// Escape, when set, rewrites each line before it is queued (the JSON
	// log's termsafe.JSON). It returns its argument or a new slice.
	Escape func([]byte) []byte
}

// Log is edged serve's own log on a stream: Logger's lines are queued and
// written by one goroutine, which Close stops.
type Log struct {
	w      io.Writer
	opts   Options
	logger *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond // signalled when lines come or closing is set
	lines   [][]byte   // queued, not yet taken by the writer
	pending int        // lines queued or being written
	bytes   int        // their bytes
	skipped uint64     // dropped since the last line saying so was queued
	closing bool       // Close was called: the writer exits once all is written
	closed  bool       // the writer is gone: lines are dropped
	done    chan struct{}
}

// New starts the writer of a log on w (stderr).
func New(w io.Writer, opts Options) *Log {
	l := &Log{w: w, opts: opts, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	var h levelHandler
	for i := range h.hs {
		h.hs[i] = l.newHandler(&lineWriter{l: l, prio: i})
	}
	l.logger = slog.New(&h)
	go l.run()
	return l
}

// Logger is the log's logger.
func (l *Log) Logger() *slog.Logger { return l.logger }

func (l *Log) newHandler(w io.Writer) slog.Handler {
	if l.opts.Format == "text" {
		return slog.NewTextHandler(w, nil)
	}
	return slog.NewJSONHandler(w, nil)
}

// Priorities by index: journald's (syslog's) numbers for err, warning,
// info and debug.
var priorities = [...]string{"<3>", "<4>", "<6>", "<7>"}

func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 0
	case l >= slog.LevelWarn:
		return 1
	case l >= slog.LevelInfo:
		return 2
	}
	return 3
}

func levelOf(prio int) slog.Level {
	return [...]slog.Level{slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug}[prio]
}

// levelHandler hands each record to the handler of its priority, whose
// writer knows the prefix: slog writes a record in one Write, which says
// nothing of its level.
type levelHandler struct {
	hs [len(priorities)]slog.Handler
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.hs[priority(l)].Enabled(ctx, l)
}

func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.hs[priority(r.Level)].Handle(ctx, r)
}

func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &levelHandler{}
	for i := range h.hs {
		n.hs[i] = h.hs[i].WithAttrs(as)
	}
	return n
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	n := &levelHandler{}
	for i := range h.hs {
		n.hs[i] = h.hs[i].WithGroup(name)
	}
	return n
}

// lineWriter takes the lines of one priority's handler.
type lineWriter struct {
	l    *Log
	prio int
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.l.add(w.prio, p)
	return len(p), nil
}

// add queues line (one record, ending in a newline), or drops it when
// the queue is full. It never waits for the writer.
func (l *Log) add(prio int, line []byte) {
	if l.opts.Escape != nil {
		line = l.opts.Escape(line)
	}
	prefix := ""
	if l.opts.Journal {
		prefix = priorities[prio]
	}
	if len(prefix)+len(line) > MaxLine {
		l.queue(prefix, l.inParts(prio, line)...)
		return
	}
	l.queue(prefix, line)
}

// queue queues lines, the parts of one line or the line, in one hold of
// the lock: a line of another level (another handler, another lock)
// never comes between two parts, which say what line they belong to only
// by their place. A part that does not fit is dropped, and those after
// it: the parts written are the line's first ones, in order.
func (l *Log) queue(prefix string, lines ...[]byte) {
	var one [1][]byte // a line: no slice to allocate
	bs := one[:]
	if len(lines) > 1 {
		bs = make([][]byte, len(lines))
	}
	for i, line := range lines {
		b := make([]byte, 0, len(prefix)+len(line))
		bs[i] = append(append(b, prefix...), line...)
	}
	l.mu.Lock()
	queued := 0
	for _, b := range bs {
		if l.closed || l.pending >= queueLines || l.bytes+len(b) > queueBytes {
			break
		}
		l.lines = append(l.lines, b)
		l.pending++
		l.bytes += len(b)
		queued++
	}
	lost := len(bs) - queued
	if lost > 0 && !l.closed {
		l.skipped += uint64(lost)
	}
	l.mu.Unlock()
	if lost > 0 {
		dropped.Add(lost)
	}
	if queued > 0 {
		l.cond.Signal()
	}
}

// inParts is line, longer than MaxLine, as lines of the same level that
// each quote partBytes of it or less (cut on character boundaries), in
// order, with their number: the texts of its parts joined are the line,
// nothing of it is lost (the audit line that cannot be written to its
// file comes here), and each part is an entry of its own in the journal.
func (l *Log) inParts(prio int, line []byte) [][]byte {
	text := bytes.TrimSuffix(line, []byte("\n"))
	total := len(text) // what the parts' texts joined make
	var cuts [][]byte
	for len(text) > 0 {
		n := min(partBytes, len(text))
		for n < len(text) && n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		if n == 0 {
			n = min(partBytes, len(text)) // no character boundary: not UTF-8
		}
		cuts = append(cuts, text[:n])
		text = text[n:]
	}
	parts := make([][]byte, 0, len(cuts))
	var buf bytes.Buffer
	log := slog.New(l.newHandler(&buf))
	for i, c := range cuts {
		buf.Reset()
		log.Log(context.Background(), levelOf(prio), "log line longer than the journal takes: in parts",
			"part", i+1, "parts", len(cuts), "bytes", total, "text", string(c))
		out := bytes.Clone(buf.Bytes())
		if l.opts.Escape != nil {
			out = l.opts.Escape(out)
		}
		parts = append(parts, out)
	}
	return parts
}

// run writes what is queued, as one write, until Close. Once a write
// went through, the lines dropped since the last such line, by the queue
// or lost in writes that failed, are said in one.
func (l *Log) run() {
	defer close(l.done)
	var buf []byte
	var rest []byte   // the end of a line a failed write cut short
	var failed uint64 // lines lost in failed writes, not said yet
	var lastErr error // the last failed write's error
	for {
		l.mu.Lock()
		for len(l.lines) == 0 && !l.closing {
			l.cond.Wait()
		}
		if len(l.lines) == 0 {
			l.closed = true
			l.mu.Unlock()
			return
		}
		batch := l.lines
		l.lines = nil
		l.mu.Unlock()

		buf = append(buf[:0], rest...)
		for _, b := range batch {
			buf = append(buf, b...)
		}
		queued := len(buf) - len(rest)
		// A failed write (the reader gone, SIGPIPE being ignored; a full
		// disk) loses the lines it did not reach. One it cut short is
		// ended by the next write, so that the line after it is not
		// glued to its first part.
		n, err := l.w.Write(buf)
		if err != nil {
			var lost int
			lastErr = err
			rest, lost = cutAt(buf, n, len(rest), batch)
			failed += uint64(lost)
			dropped.Add(lost)
		} else {
			rest = rest[:0]
		}
		if cap(buf) > 64<<10 {
			buf = nil // a burst's buffer is not kept
		}

		l.mu.Lock()
		l.pending -= len(batch)
		l.bytes -= queued
		skipped := l.skipped
		if err == nil {
			l.skipped = 0
		}
		l.mu.Unlock()
		// Said only after a write that went through: a line saying so
		// to a stream that fails would be lost in turn, and make another.
		if err != nil || skipped+failed == 0 {
			continue
		}
		attrs := []any{"dropped", skipped + failed}
		if failed > 0 {
			attrs = append(attrs, "error", lastErr.Error())
		}
		failed = 0
		l.logger.Warn("stderr was not taking edged's log: lines dropped", attrs...)
	}
}

// cutAt is, for buf (the end of a cut line, restLen bytes, then batch's
// lines) of which a failed write wrote n bytes, what is left of the line
// the write cut short (nil when it ended between two lines, or before
// the first one of batch began) and how many of batch's lines were not
// written at all.
func cutAt(buf []byte, n, restLen int, batch [][]byte) (rest []byte, lost int) {
	if n < restLen {
		// Still in the line cut before: its end is still owed.
		return append([]byte(nil), buf[n:restLen]...), len(batch)
	}
	end := restLen
	for i, b := range batch {
		start := end
		end += len(b)
		if n >= end {
			continue
		}
		if n > start {
			return append([]byte(nil), buf[n:end]...), len(batch) - i - 1
		}
		return nil, len(batch) - i
	}
	return nil, 0
}

// Close writes what is queued and stops the writer, waiting at most
// wait for a write that does not return (a pipe nobody reads). It
// reports whether all was written.
func (l *Log) Close(wait time.Duration) bool {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.cond.Signal()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-l.done:
		return true
	case <-t.C:
		return false
	}
}

// IsJournal reports whether f is the stream systemd connected to the
// journal. For a service whose stdout or stderr goes to the journal,
// systemd sets JOURNAL_STREAM to that stream's device and inode numbers,
// in decimal, "DEV:INODE" (systemd.exec(5)); f is the journal when its
// own are those. A process started from such a service with its stderr
// elsewhere (a pipe, a file) inherits the variable, and is not.
func IsJournal(f *os.File) bool {
	devText, inoText, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	dev, err := strconv.ParseUint(devText, 10, 64)
	if err != nil {
		return false
	}
	ino, err := strconv.ParseUint(inoText, 10, 64)
	if err != nil {
		return false
	}
	d, i, ok := devIno(f)
	return ok && d == dev && i == ino
}
