package stderrlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingWriter blocks every write until open is closed, then keeps
// what it is given.
type blockingWriter struct {
	open chan struct{}
	mu   sync.Mutex
	b    bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *blockingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A stderr that takes nothing does not hold whoever logs: lines past the
// queue's bound are dropped, counted, and said once writes go through.
func TestBlockedStreamDropsAndCounts(t *testing.T) {
	w := &blockingWriter{open: make(chan struct{})}
	l := New(w, Options{Format: "json"})
	before := dropped.Get()
	const n = 3000
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		for i := range n {
			l.Logger().Info("line", "i", i)
		}
	}()
	select {
	case <-logged:
	case <-time.After(30 * time.Second): // a safety net, not a bound
		t.Fatal("logging waits for a stream that takes nothing")
	}
	lost := dropped.Get() - before
	assert.Greater(t, lost, uint64(0))
	assert.Less(t, lost, uint64(n))
	close(w.open)
	require.True(t, l.Close(10*time.Second), "written once the stream takes lines")

	var written, said uint64
	for _, line := range strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n") {
		var v struct {
			Msg     string `json:"msg"`
			Level   string `json:"level"`
			Dropped uint64 `json:"dropped"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		if v.Msg == "line" {
			written++
			continue
		}
		assert.Equal(t, "WARN", v.Level)
		said += v.Dropped
	}
	assert.Equal(t, uint64(n), written+lost, "every line written or counted")
	assert.Equal(t, lost, said, "the drops are said in the log")
	assert.LessOrEqual(t, written, uint64(queueLines+1), "the queue is bounded")
}

// Close gives up on a stream that never takes the last lines.
func TestCloseDoesNotWaitForEver(t *testing.T) {
	w := &blockingWriter{open: make(chan struct{})}
	defer close(w.open)
	l := New(w, Options{Format: "json"})
	l.Logger().Error("last words")
	start := time.Now()
	assert.False(t, l.Close(200*time.Millisecond))
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestJournalPriorities(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			l := New(&b, Options{Format: format, Journal: true})
			log := l.Logger().With("env", "prod")
			log.Error("e")
			log.Warn("w")
			log.Info("i")
			log.Debug("d") // below the handlers' level
			require.True(t, l.Close(5*time.Second))
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			require.Len(t, lines, 3, b.String())
			for i, prio := range []string{"<3>", "<4>", "<6>"} {
				assert.True(t, strings.HasPrefix(lines[i], prio), lines[i])
				assert.Contains(t, lines[i], "prod", "attributes of With reach every priority")
			}
		})
	}
}

// A line longer than MaxLine (journald would cut it into several
// entries, none of them JSON) is written as lines of the same level, each
// quoting a part of it: joined, the parts are the line.
func TestLongLineIsWrittenInParts(t *testing.T) {
	var b bytes.Buffer
	l := New(&b, Options{Format: "json", Journal: true, Escape: func(p []byte) []byte { return p }})
	long := strings.Repeat("é\"", 20000)
	l.Logger().Warn("audit log is behind", "line", long)
	l.Logger().Info("short")
	require.True(t, l.Close(5*time.Second))
	lines := strings.SplitAfter(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Greater(t, len(lines), 3)
	var joined strings.Builder
	bytesSaid := 0
	for i, line := range lines[:len(lines)-1] {
		assert.LessOrEqual(t, len(line), MaxLine)
		require.True(t, strings.HasPrefix(line, "<4>"), line[:40])
		var v struct {
			Msg   string `json:"msg"`
			Part  int    `json:"part"`
			Parts int    `json:"parts"`
			Bytes int    `json:"bytes"`
			Text  string `json:"text"`
		}
		require.NoError(t, json.Unmarshal([]byte(line[3:]), &v))
		bytesSaid = v.Bytes
		assert.Equal(t, "log line longer than the journal takes: in parts", v.Msg)
		assert.Equal(t, i+1, v.Part)
		assert.Equal(t, len(lines)-1, v.Parts)
		joined.WriteString(v.Text)
	}
	assert.Equal(t, joined.Len(), bytesSaid, "bytes: the length of the texts joined")
	var whole struct{ Msg, Line string }
	require.NoError(t, json.Unmarshal([]byte(joined.String()), &whole))
	assert.Equal(t, "audit log is behind", whole.Msg)
	assert.Equal(t, long, whole.Line, "nothing lost")
	assert.True(t, strings.HasPrefix(lines[len(lines)-1], "<6>"))
}

func TestIsJournal(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/stderr")
	require.NoError(t, err)
	defer f.Close()
	dev, ino, ok := devIno(f)
	require.True(t, ok)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", dev, ino))
	assert.True(t, IsJournal(f))
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", dev, ino+1))
	assert.False(t, IsJournal(f))
	t.Setenv("JOURNAL_STREAM", "")
	assert.False(t, IsJournal(f))
	t.Setenv("JOURNAL_STREAM", "x:y")
	assert.False(t, IsJournal(f))
}

// The parts of a long line are written one after the other, whoever
// else logs at the same moment: they say which line they are part of
// only by their place, and the reader joins them in order.
func TestPartsOfALineAreNotInterleaved(t *testing.T) {
	var w blockingWriter
	w.open = make(chan struct{})
	close(w.open)
	l := New(&w, Options{Format: "json"})
	before := dropped.Get()
	const rounds = 20
	long := strings.Repeat("a", 20*partBytes)
	for range rounds {
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Logger().Warn("long", "line", long)
		}()
		for i := 0; i < queueLines-100; i++ {
			select {
			case <-done:
				i = queueLines
			default:
				l.Logger().Info("short")
				runtime.Gosched()
			}
		}
		<-done
		// The next round once this one is written: the queue has room.
		for i := 0; ; i++ {
			l.mu.Lock()
			pending := l.pending
			l.mu.Unlock()
			if pending == 0 {
				break
			}
			require.Less(t, i, 3000, "the writer does not empty the queue")
			time.Sleep(10 * time.Millisecond)
		}
	}
	require.True(t, l.Close(30*time.Second))
	require.Zero(t, dropped.Get()-before, "nothing dropped: the queue had room")

	var joined strings.Builder
	in, whole, cut := false, 0, 0
	for _, s := range strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n") {
		var v struct {
			Msg         string
			Part, Parts int
			Text        string
		}
		require.NoError(t, json.Unmarshal([]byte(s), &v), s[:min(len(s), 80)])
		if v.Msg == "short" {
			if in {
				cut++ // another line between two parts of one
			}
			continue
		}
		in = v.Part != v.Parts
		joined.WriteString(v.Text)
		if in {
			continue
		}
		var line struct{ Line string }
		require.NoError(t, json.Unmarshal([]byte(joined.String()), &line))
		assert.Equal(t, long, line.Line)
		whole++
		joined.Reset()
	}
	assert.Equal(t, rounds, whole)
	assert.Zero(t, cut, "lines written between the parts of a line")
}

// A line costs its copy into the queue and nothing else.
func TestALineCostsOneAllocation(t *testing.T) {
	l := New(io.Discard, Options{Format: "json", Journal: true})
	defer l.Close(5 * time.Second)
	line := []byte(`{"msg":"x"}` + "\n")
	allocs := testing.AllocsPerRun(100, func() { l.add(1, line) })
	assert.LessOrEqual(t, allocs, 1.0)
}

// failingWriter fails every write while failing is set (EPIPE: the
// reader went away; ENOSPC: a full disk), having written cut bytes of
// the first one it fails, and keeps what it is given otherwise.
type failingWriter struct {
	mu      sync.Mutex
	failing bool
	cut     int
	b       bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing {
		n := min(w.cut, len(p))
		w.cut = 0
		w.b.Write(p[:n])
		return n, syscall.EPIPE
	}
	return w.b.Write(p)
}

func (w *failingWriter) set(failing bool) {
	w.mu.Lock()
	w.failing = failing
	w.mu.Unlock()
}

func (w *failingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitWritten waits until the writer has taken every queued line.
func waitWritten(t *testing.T, l *Log) {
	t.Helper()
	for i := 0; ; i++ {
		l.mu.Lock()
		pending := l.pending
		l.mu.Unlock()
		if pending == 0 {
			return
		}
		require.Less(t, i, 3000, "the writer does not take the lines")
		time.Sleep(time.Millisecond)
	}
}

// Lines lost in writes that fail (stderr's reader gone, a full disk)
// are dropped lines as much as those the queue could not take: counted
// in edged_stderr_lines_dropped_total, and said, with the error, once a
// write goes through again. A line a write cut short is ended before the
// next one, so that the next line is not glued to its first part.
func TestFailedWritesAreCountedAndSaid(t *testing.T) {
	w := &failingWriter{failing: true, cut: 5}
	l := New(w, Options{Format: "json"})
	before := dropped.Get()
	const n = 10
	for i := range n {
		l.Logger().Info("while failing", "i", i)
		waitWritten(t, l) // one write each
	}
	assert.Equal(t, uint64(n-1), dropped.Get()-before, "the lines lost in failed writes are counted (the first one, cut, is ended later)")
	w.set(false)
	l.Logger().Info("works again")
	require.True(t, l.Close(10*time.Second))

	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	require.Len(t, lines, 3, w.String())
	var first struct {
		Msg string
		I   int
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first), "the cut line is ended whole: %s", lines[0])
	assert.Equal(t, "while failing", first.Msg)
	assert.Zero(t, first.I)
	assert.Contains(t, lines[1], `"msg":"works again"`)
	var said struct {
		Level, Msg, Error string
		Dropped           uint64
	}
	require.NoError(t, json.Unmarshal([]byte(lines[2]), &said), lines[2])
	assert.Equal(t, "WARN", said.Level)
	assert.Equal(t, "stderr was not taking edged's log: lines dropped", said.Msg)
	assert.Equal(t, uint64(n-1), said.Dropped)
	assert.Equal(t, syscall.EPIPE.Error(), said.Error)
}

// While every write fails, the lines lost are not said in more lines
// that fail in turn: the writer waits for the next line logged.
func TestFailingStreamIsNotABusyLoop(t *testing.T) {
	w := &failingWriter{failing: true}
	l := New(w, Options{Format: "json"})
	l.Logger().Info("lost")
	waitWritten(t, l)
	before := dropped.Get()
	time.Sleep(50 * time.Millisecond)
	l.mu.Lock()
	pending := l.pending
	l.mu.Unlock()
	assert.Zero(t, pending, "no line queued by the writer itself")
	assert.Zero(t, dropped.Get()-before, "no more lines written and lost")
	l.Close(time.Second)
}
