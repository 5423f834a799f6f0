package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
	"edged/internal/termsafe"
)

func TestAccessAndAuditLogs(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	state := t.TempDir()
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, ""),
		"env.toml": envTOML("test", `
[environment.rules.access_log]
path = "`+access+`"
[environment.rules.audit_log]
`) + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/users/1?a=%22q%22")
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = te.get("test.acme.com", "/users/2")
	require.Equal(t, 200, resp.StatusCode)

	// Logrotate: move the file away, reopen, log again.
	rotated := access + ".1"
	require.Eventually(t, func() bool { b, _ := os.ReadFile(access); return strings.Count(string(b), "\n") == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.Rename(access, rotated))
	require.NoError(t, te.srv.ReopenLogs())
	resp, _ = te.get("test.acme.com", "/users/3")
	require.Equal(t, 200, resp.StatusCode)
	te.srv.AuditEnv("test", []byte(`{"event":"config"}`+"\n"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	lines := readJSONLines(t, rotated)
	require.Len(t, lines, 2)
	assert.Equal(t, "test", lines[0]["env"])
	assert.Equal(t, "users", lines[0]["proxy"])
	assert.Equal(t, "/users/1?a=%22q%22", lines[0]["uri"])
	assert.Equal(t, float64(200), lines[0]["status"])
	assert.Equal(t, b.addr, lines[0]["upstream_node"])
	assert.Len(t, lines[0]["request_id"], 32)
	assert.Contains(t, lines[0], "duration_ms")
	after := readJSONLines(t, access)
	require.Len(t, after, 1, "lines after SIGUSR1's reopen go to the new file")
	assert.Equal(t, "/users/3", after[0]["uri"])

	audit := readJSONLines(t, AuditLogPath(state, "test"))
	require.Len(t, audit, 4)
	assert.Equal(t, "request", audit[0]["event"])
	assert.Equal(t, "/users/1?a=%22q%22", audit[0]["uri"])
	assert.Equal(t, "config", audit[3]["event"])
}

// accessLinesAtShutdown shuts te down, which flushes its logs, and reads
// the access log at path, which must hold n lines.
func accessLinesAtShutdown(t *testing.T, te *testEdge, path string, n int) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx))
	lines := readJSONLines(t, path)
	require.Len(t, lines, n)
	return lines
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// jsonLine is a JSON line of about size bytes, numbered n.
func jsonLine(n, size int) []byte {
	return []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`+"\n", n, strings.Repeat("x", size)))
}

// The old and new instance of an environment (two lineLogs of one path)
// write long and short lines from many goroutines: every line in the file
// is whole, and none is lost.
func TestSharedLogPathKeepsLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var logs []*lineLog
	for i := 0; i < 2; i++ {
		l, err := openLineLog(path, logPlace{}, slog.Default())
		require.NoError(t, err)
		l.mustWrite = true
		logs = append(logs, l)
	}
	assert.Same(t, logs[0].w, logs[1].w, "one writer per path")
	const goroutines, perG = 8, 40
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				size := 300
				if i%3 == 0 {
					size = logBufferSize + 5000 // longer than the writer's buffer
				}
				logs[g%2].add(jsonLine(g*perG+i, size))
			}
		}()
	}
	wg.Wait()
	logs[0].close()
	logs[1].close()

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m struct{ N int }
		require.NoError(t, json.Unmarshal([]byte(l), &m), "a torn line: %.80q", l)
		seen[m.N] = true
	}
	assert.Len(t, seen, goroutines*perG, "every audit line is in the file")
	assert.Equal(t, goroutines*perG, strings.Count(string(b), "\n"))
}

// openFIFO makes a named pipe and opens its reading end (without waiting
// for a writer, which edged's log would be), so that the test's writer
// finds a reader. Read it only once the writer has it open: a pipe that
// no writer has open reads as ended.
func openFIFO(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	rc := make(chan *os.File, 1)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	rc <- f
	return path, rc
}

// lineLogOnFIFO opens a line log on a named pipe (at path) and returns
// it with the pipe's reading end, which nobody reads until the test does
// (closed at the test's end).
func lineLogOnFIFO(t *testing.T) (l *lineLog, r *os.File, path string) {
	t.Helper()
	path, rc := openFIFO(t)
	l, err := openLineLog(path, logPlace{}, slog.Default())
	require.NoError(t, err)
	r = <-rc
	require.NotNil(t, r)
	t.Cleanup(func() { r.Close() })
	return l, r, path
}

// countJSONLines reads r to its end and counts the JSON lines, failing on a
// torn one.
func countJSONLines(t *testing.T, r io.Reader) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if !assert.NoError(t, json.Unmarshal(sc.Bytes(), &m)) {
			break
		}
		n++
	}
	return n
}

// A full audit queue makes the writer wait; nothing is dropped. The file
// is a pipe nobody reads until the queue is full.
func TestAuditLogWaitsWhenWriterIsBehind(t *testing.T) {
	l, r, _ := lineLogOnFIFO(t)
	l.mustWrite = true

	// Pipe (64 KiB) + buffer (64 KiB) + queue hold about 5400 of these.
	const total = lineLogQueue + 4000
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := 0; i < total; i++ {
			l.add(jsonLine(i, 100))
		}
	}()
	require.Eventually(t, func() bool { return len(l.w.lines) == cap(l.w.lines) }, 10*time.Second, time.Millisecond)
	select {
	case <-added:
		t.Fatal("all lines were handed over with the queue full: some were dropped")
	case <-time.After(50 * time.Millisecond):
	}
	got := make(chan int, 1)
	go func() { got <- countJSONLines(t, r) }()
	select {
	case <-added:
	case <-time.After(20 * time.Second):
		t.Fatal("the writer stayed blocked with the pipe read")
	}
	l.close()
	assert.Equal(t, total, <-got, "every audit line reached the file")
}

var dropEnvs atomic.Int64

// Access lines dropped while the writer is behind are counted for their
// environment on /metrics, and the count is exact.
func TestAccessLogDropsAreCountedPerEnv(t *testing.T) {
	testCertDir(t)
	// An environment name no other test or run (-count) uses: /metrics
	// holds every environment set registered in the process.
	name := fmt.Sprintf("drop%d", dropEnvs.Add(1))
	b := nameBackend(t, "b")
	path, rc := openFIFO(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML(name, `
[environment.rules.access_log]
path = "`+path+`"
`) + groupTOML(name, "g", "test.acme.com", "test.acme.com") + proxyTOML(name, "users", "/users", b.addr),
	})
	r := <-rc
	require.NotNil(t, r)
	defer r.Close()
	env := te.srv.Snapshot().Env(name)
	const total = lineLogQueue + 3000
	for i := 0; i < total; i++ {
		env.access.add(jsonLine(i, 100))
	}
	_, text := adminGet(t, te, "/metrics")
	dropped, ok := metricValue(text, `edged_access_log_dropped_total{env="`+name+`"}`)
	require.True(t, ok, "the environment's drop counter is on /metrics")
	assert.Greater(t, dropped, float64(0))

	got := make(chan int, 1)
	go func() { got <- countJSONLines(t, r) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // closes the log: the reader sees the end
	assert.Equal(t, total, <-got+int(dropped), "lines written + lines counted dropped = lines logged")
	assert.Equal(t, float64(env.access.dropped.Get()), dropped)
}

// A lineLog joining the writer of a path that was moved away (logrotate
// without SIGUSR1 yet, or a file removed) writes to the file now at the
// path, as does the lineLog already there; an unopenable path is an error.
func TestJoiningALogPathOpensItAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	old, err := openLineLog(path, logPlace{}, slog.Default())
	require.NoError(t, err)
	old.mustWrite = true
	require.NoError(t, os.Rename(path, path+".1"))
	joined, err := openLineLog(filepath.Join(dir, ".", "access.log"), logPlace{}, slog.Default())
	require.NoError(t, err)
	joined.mustWrite = true
	assert.Same(t, old.w, joined.w, "the cleaned path names one writer")
	old.add(jsonLine(1, 10))
	joined.add(jsonLine(2, 10))
	old.close()
	joined.close()
	assert.Len(t, readJSONLines(t, path), 2)

	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir.log"), 0o755))
	_, err = openLineLog(filepath.Join(dir, "dir.log"), logPlace{}, slog.Default())
	assert.Error(t, err)
}

// The access log rule's format: "json" (the default) and "combined"
// (nginx's), each checked on a real request read back from its file.
func TestAccessLogFormats(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	dir := t.TempDir()
	jsonPath, combinedPath := filepath.Join(dir, "json.log"), filepath.Join(dir, "combined.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"json.toml": envTOML("fmt-json", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(jsonPath)+"\"\n") +
			groupTOML("fmt-json", "fmt-json", "test.acme.com", "test.acme.com") + proxyTOML("fmt-json", "p", "/p", b.addr),
		"combined.toml": envTOML("fmt-combined", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(combinedPath)+"\"\nformat = \"combined\"\n") +
			groupTOML("fmt-combined", "fmt-combined", "uat.acme.com", "uat.acme.com") + proxyTOML("fmt-combined", "p", "/p", b.addr),
	})
	for _, host := range []string{"test.acme.com", "uat.acme.com"} {
		req, err := http.NewRequest("GET", "https://"+host+"/p/1?q=a%22b", nil)
		require.NoError(t, err)
		req.Header.Set("Referer", "https://example.com/from")
		req.Header.Set("User-Agent", `agent "quoted"`)
		resp, err := te.client(host, nil).Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "b /1", string(body))
	}
	readLine := func(path string) string {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
				return string(b)
			}
		}
		t.Fatalf("no line in %s", path)
		return ""
	}

	var rec map[string]any
	line := readLine(jsonPath)
	require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
	assert.Equal(t, "access", rec["event"])
	assert.Equal(t, "fmt-json", rec["env"])
	assert.Equal(t, "GET", rec["method"])
	assert.Equal(t, "/p/1?q=a%22b", rec["uri"])
	assert.EqualValues(t, 200, rec["status"])
	assert.EqualValues(t, len("b /1"), rec["bytes_out"])

	line = readLine(combinedPath)
	re := regexp.MustCompile(`^127\.0\.0\.1 - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "GET /p/1\?q=a%22b HTTP/1\.1" 200 4 "https://example\.com/from" "agent \\x22quoted\\x22"\n$`)
	m := re.FindStringSubmatch(line)
	require.NotNil(t, m, "combined line: %q", line)
	at, err := time.Parse(combinedTime, m[1])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, time.Minute)
}

// A fault edged answers itself has a body too: the access line counts it
// in bytes_out (nginx's $body_bytes_sent counts its error pages), as
// edged_response_bytes_total does; a HEAD's fault sends none.
func TestAccessLogCountsTheFaultBody(t *testing.T) {
	testCertDir(t)
	refused := loopback.Refused(t)
	dir := t.TempDir()
	jsonPath, combinedPath := filepath.Join(dir, "json.log"), filepath.Join(dir, "combined.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"json.toml": envTOML("fault-json", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(jsonPath)+"\"\n") +
			groupTOML("fault-json", "fault-json", "test.acme.com", "test.acme.com") + proxyTOML("fault-json", "p", "/p", refused),
		"combined.toml": envTOML("fault-combined", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(combinedPath)+"\"\nformat = \"combined\"\n") +
			groupTOML("fault-combined", "fault-combined", "uat.acme.com", "uat.acme.com") + proxyTOML("fault-combined", "p", "/p", refused),
	})
	sizes := map[string]int{}
	for _, host := range []string{"test.acme.com", "uat.acme.com"} {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := do(t, te.client(host, nil), mustReq(t, method, "https://"+host+"/p/x", nil))
			require.Equal(t, 502, resp.StatusCode, body)
			if method == "GET" {
				require.Contains(t, body, `"upstream.failed"`)
				sizes[host] = len(body)
			}
		}
	}
	ex := scrape(t, te)
	assert.EqualValues(t, sizes["test.acme.com"], ex.samples[`edged_response_bytes_total{env="fault-json"}`])

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes the logs
	lines := readJSONLines(t, jsonPath)
	require.Len(t, lines, 2)
	assert.Equal(t, "upstream.failed", lines[0]["fault"])
	assert.EqualValues(t, sizes["test.acme.com"], lines[0]["bytes_out"], "GET: the fault body")
	assert.EqualValues(t, 0, lines[1]["bytes_out"], "HEAD: no body")
	b, err := os.ReadFile(combinedPath)
	require.NoError(t, err)
	combined := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	require.Len(t, combined, 2)
	assert.Contains(t, combined[0], fmt.Sprintf(`"GET /p/x HTTP/1.1" 502 %d `, sizes["uat.acme.com"]))
	assert.Contains(t, combined[1], `"HEAD /p/x HTTP/1.1" 502 0 `)
}

// A log whose writes fail (a full disk: /dev/full) says so on stderr
// within a budget, not once per flush: a busy environment flushes every
// time its queue runs dry, and must not flood the journal, which may
// well be on the full disk too.
func TestFailingLogWritesAreReportedWithinABudget(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	var warnings atomic.Int64
	log := slog.New(countingHandler{&warnings})
	l, err := openLineLog("/dev/full", logPlace{}, log)
	require.NoError(t, err)
	l.mustWrite = true
	const lines = 300
	for i := 0; i < lines; i++ {
		l.add(jsonLine(i, 10))
		// Each line alone in the queue: one flush, one failed write each.
		for len(l.w.lines) > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	l.close()
	n := warnings.Load()
	assert.Positive(t, n, "the failure is reported")
	assert.LessOrEqual(t, n, int64(logWriteFailBurst+5), "%d failed writes, %d warnings", lines, n)
}

// fillBehindABlockedWrite adds access lines to l, whose file is a pipe
// nobody reads, until its queue is full and stays full: the writer is then
// stuck in a write (the pipe's 64 KiB and its buffer's take about 1200
// lines). A fixed number of lines is not enough: with one P (make test's
// second pass) they can all be added, and the surplus dropped, before the
// writer first runs and takes its 1200 out of the queue.
func fillBehindABlockedWrite(t *testing.T, l *lineLog) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); {
		for ; len(l.w.lines) < cap(l.w.lines); i++ {
			l.add(jsonLine(i, 100))
		}
		time.Sleep(50 * time.Millisecond)
		if len(l.w.lines) == cap(l.w.lines) {
			return
		}
	}
	t.Fatal("the log's queue never stayed full")
}

// countingHandler counts the records logged through it.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h countingHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h countingHandler) WithGroup(string) slog.Handler             { return h }

// A writer blocked in a write (a pipe nobody reads, a stalled NFS mount)
// holds neither SIGUSR1's reopen nor a reload that opens the same path:
// both run on edged's main loop (signals, reloads, shutdown), which a log
// must never stop. The new file is taken once the write returns.
func TestBlockedWriteHoldsNeitherReopenNorJoin(t *testing.T) {
	l, r, path := lineLogOnFIFO(t)
	fillBehindABlockedWrite(t, l)

	within := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s waited for the blocked write", what)
		}
	}
	within("reopenFile (SIGUSR1)", func() { assert.NoError(t, l.reopenFile()) })
	var joined *lineLog
	within("openLineLog of the same path (a reload)", func() {
		var err error
		joined, err = openLineLog(path, logPlace{}, slog.Default())
		assert.NoError(t, err)
	})

	// Once the pipe is read, the writer takes the new descriptors and
	// every line still reaches the reader; closing ends the stream.
	got := make(chan int, 1)
	go func() { got <- countJSONLines(t, r) }()
	require.NotNil(t, joined)
	joined.add(jsonLine(-1, 10))
	l.close()
	joined.close()
	select {
	case n := <-got:
		assert.Positive(t, n)
	case <-time.After(10 * time.Second):
		t.Fatal("the reader never saw the end of the log")
	}
}

// A log path that is a named pipe no process reads is an error naming it,
// at once: opening its writing end would wait for a reader for ever, and
// with it the reload (edged's main loop: signals, reloads, shutdown) or
// the start. The running generation keeps serving and logging.
func TestLogFIFOWithoutReaderIsRefused(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	access := filepath.Join(t.TempDir(), "access.log")
	fifo := filepath.Join(t.TempDir(), "nobody-reads.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	env := func(path string) string {
		return envTOML("test", `
[environment.rules.access_log]
path = "`+path+`"
`) + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", b.addr)
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env(access)})
	writeFiles(t, te.dir, map[string]string{"env.toml": env(fifo)})
	cfg, err := te.loader.Load()
	require.NoError(t, err)
	applied := make(chan error, 1)
	go func() { _, _, err := te.srv.Apply(cfg); applied <- err }()
	select {
	case err := <-applied:
		require.Error(t, err)
		assert.Contains(t, err.Error(), fifo)
		assert.Contains(t, err.Error(), "no process has it open for reading")
	case <-time.After(3 * time.Second):
		// Let the test end: a reader releases the blocked open.
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			defer r.Close()
		}
		<-applied
		t.Fatal("the reload waited for a reader of the log's pipe")
	}
	resp, _ := te.get("test.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode, "the running generation serves")
	require.Eventually(t, func() bool { b, _ := os.ReadFile(access); return strings.Count(string(b), "\n") == 1 }, 5*time.Second, 10*time.Millisecond)
}

// The audit line of a config change is written by the reload, on edged's
// main loop: an environment's audit log that is behind (its disk stuck)
// must not hold it, as it holds that environment's requests. The line is
// not lost: it goes to edged's own log (stderr) instead.
func TestConfigAuditLineDoesNotWaitForAStuckAuditLog(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	state := t.TempDir()
	path := AuditLogPath(state, "test")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer r.Close()
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, ""),
		"env.toml": envTOML("test", "[environment.rules.audit_log]\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", b.addr),
	})
	var logged atomic.Int64
	te.srv.log = slog.New(countingHandler{&logged})
	env := te.srv.Snapshot().Env("test")
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		for i := 0; i < lineLogQueue+3000; i++ {
			env.audit.add(jsonLine(i, 100))
		}
	}()
	// Full, and still full a moment later: the writer is stuck on the
	// pipe, not merely late (with one P it may not have run yet).
	require.Eventually(t, func() bool {
		if len(env.audit.w.lines) != cap(env.audit.w.lines) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
		return len(env.audit.w.lines) == cap(env.audit.w.lines)
	}, 10*time.Second, time.Millisecond)

	done := make(chan struct{})
	go func() { defer close(done); te.srv.AuditEnv("test", []byte(`{"event":"config"}`+"\n")) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("AuditEnv waited for the stuck audit log")
	}
	assert.Positive(t, logged.Load(), "the line went to edged's own log")

	// Read the pipe: the requests' lines get through, the test ends.
	go func() { _, _ = io.Copy(io.Discard, r) }()
	<-filled
	<-done
}

// Shutdown (SIGTERM) ends even when a log's writer is blocked in a write
// that never returns (a pipe nobody reads): closing the log waits for it
// a bounded time, then says on stderr what it leaves unwritten. Before,
// edged never exited until killed.
func TestShutdownDoesNotWaitForABlockedLogForEver(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	path, rc := openFIFO(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", `
[environment.rules.access_log]
path = "`+path+`"
`) + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", b.addr),
	})
	r := <-rc
	require.NotNil(t, r)
	defer r.Close()
	var logged atomic.Int64
	env := te.srv.Snapshot().Env("test")
	env.access.w.log = slog.New(countingHandler{&logged})
	fillBehindABlockedWrite(t, env.access)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = te.srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(logCloseWait + 5*time.Second):
		t.Error("Shutdown waited for the blocked log writer")
	}
	assert.Positive(t, logged.Load(), "what is left unwritten is said")
	go func() { _, _ = io.Copy(io.Discard, r) }() // let the writer end
	<-done
}

// TestJSONLogStringsEscapeTerminalControls: what a client sends reaches
// the log lines as JSON strings, and operators read them with tail and
// less. C0 controls and DEL were escaped; the C1 controls (U+0080 to
// U+009F, CSI among them: "\u009b31m" acts as ESC [ on terminals that
// honour 8-bit controls) and the line and paragraph separators went out
// raw. nginx escapes every byte above 0x7e in its default log format.
// Each string still decodes to what was sent.
func TestJSONLogStringsEscapeTerminalControls(t *testing.T) {
	for _, s := range []string{"a\x1b[31mb", "a\u009b31mb", "\u0080\u009f", "x\u2028y\u2029z", "é ü 日本", "\x7f<>&\"\\", "CN=alice\u202etset\u2066\u200f"} {
		out := appendJSONString(nil, s)
		for i := 0; i < len(out); {
			r, size := utf8.DecodeRune(out[i:])
			assert.False(t, r < 0x20 || r >= 0x7f && r <= 0x9f || r == 0x2028 || r == 0x2029 || termsafe.Bidi(r), "%q: raw %U in %q", s, r, out)
			i += size
		}
		var back string
		require.NoError(t, json.Unmarshal(out, &back), "%q", out)
		assert.Equal(t, s, back)
	}
}

// A request head may be 64 KiB (max_header_bytes up to 1 MiB), and JSON
// writes a byte of invalid UTF-8 as six: one access line can be 400 KiB.
// With the file stuck (a pipe nobody reads, a stalled mount, a throttled
// journal), the writer's queue holds lineLogQueueBytes of such lines, not
// 4096 of them (1.6 GB per log): past it access lines are dropped and
// counted, audit lines wait; and once the file moves again, every line
// queued reaches it.
func TestLogQueueIsBoundedInBytes(t *testing.T) {
	path, rc := openFIFO(t)
	access, err := openLineLog(path, logPlace{}, slog.Default())
	require.NoError(t, err)
	access.dropped = metrics.NewSet().NewCounter("dropped")
	audit, err := openLineLog(path, logPlace{}, slog.Default())
	require.NoError(t, err)
	audit.mustWrite = true
	r := <-rc
	require.NotNil(t, r)
	defer r.Close()

	const size, total, audits = 256 << 10, 100, 20
	bound := lineLogQueueBytes/size + 2 // the queue's, the line in the writer's hands, one in its buffer
	for i := range total {
		access.add(jsonLine(i, size))
	}
	accepted := total - int(access.dropped.Get())
	assert.LessOrEqual(t, accepted, bound, "access lines of %d KiB taken with the file stuck", size>>10)

	var auditAdded atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range audits {
			audit.add(jsonLine(total+i, size))
			auditAdded.Add(1)
		}
	}()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
	}
	assert.LessOrEqual(t, auditAdded.Load(), int64(1), "audit lines queued past the bound with the file stuck")

	got := make(chan int, 1)
	go func() { got <- countJSONLines(t, r) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the audit lines stayed blocked with the pipe read")
	}
	access.close()
	audit.close()
	assert.Equal(t, accepted+audits, <-got, "every line queued reached the file")
}

// A write the disk cuts short (full, or past the file size limit) leaves
// the first part of a line in the file. Once writes succeed again the
// rest of that line comes first, so the line ends whole and the next one
// is not glued to half of it (one JSON line a parser throws away, two
// requests lost). The limit, RLIMIT_FSIZE, is the process's: the test
// binary, run again as a child, sets it for itself.
func TestLogLineCutByAShortWriteEndsWhole(t *testing.T) {
	if path := os.Getenv("EDGED_TEST_SHORT_WRITE_LOG"); path != "" {
		shortWriteChild(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "access.log")
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestLogLineCutByAShortWriteEndsWhole$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EDGED_TEST_SHORT_WRITE_LOG="+path)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child: %s", out)
	require.Contains(t, string(out), "log write failed", "the limit cut a write short")

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var got []int
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		var m struct{ N int }
		if assert.NoError(t, json.Unmarshal([]byte(l), &m), "a torn line: %.80q", l) {
			got = append(got, m.N)
		}
	}
	assert.Equal(t, []int{0, 1, 2}, got)
}

// shortWriteChild writes a line under a file size limit that cuts the
// second one short, lifts the limit, and writes a third.
func shortWriteChild(t *testing.T, path string) {
	failed := make(chan struct{}, 16)
	l, err := openLineLog(path, logPlace{}, slog.New(signalHandler{failed}))
	require.NoError(t, err)
	l.mustWrite = true
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	first := jsonLine(0, 500)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(len(first)) + 300, Max: old.Max}))
	size := func() int64 {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		return fi.Size()
	}
	l.add(first)
	require.Eventually(t, func() bool { return size() == int64(len(first)) }, 10*time.Second, time.Millisecond)
	l.add(jsonLine(1, 800))
	select {
	case <-failed:
		fmt.Fprintln(os.Stderr, "log write failed")
	case <-time.After(10 * time.Second):
		t.Fatal("no write failed")
	}
	require.Equal(t, int64(len(first))+300, size(), "the second line was cut short")
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old))
	l.add(jsonLine(2, 100))
	l.close()
}

// signalHandler tells of every record logged through it on ch.
type signalHandler struct{ ch chan<- struct{} }

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(context.Context, slog.Record) error {
	select {
	case h.ch <- struct{}{}:
	default:
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// A pipe's write is cut short when its reader goes away mid-line; the
// pipe keeps what that reader left unread, the line's middle, for the
// next one. The line's end follows it, so the next line is whole.
func TestLogPipeReaderAfterACutLineGetsWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.fifo")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	first, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	failed := make(chan struct{}, 16)
	l, err := openLineLog(path, logPlace{}, slog.New(signalHandler{failed}))
	require.NoError(t, err)
	l.mustWrite = true

	l.add(jsonLine(0, 300<<10)) // more than the pipe holds: the write waits for the reader
	_, err = io.ReadFull(first, make([]byte, 1000))
	require.NoError(t, err)
	require.NoError(t, first.Close())
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the write to a pipe without a reader did not fail")
	}

	next, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer next.Close()
	l.add(jsonLine(1, 10))
	l.close() // the reader sees the end
	b, err := io.ReadAll(next)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(b), "\n")
	require.Equal(t, 3, len(lines), "the middle of line 0, line 1, nothing after the last newline")
	var m struct{ N int }
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &m), "a line after the cut one: %.80q", lines[1])
	assert.Equal(t, 1, m.N)
}

// An audit line waits for room in the queue, and so do the shorter lines
// that come after it: they must not take, line by line, the room it
// waits for. With the file behind and short audit lines coming all the
// time (every worker of a busy environment waiting for room), a line
// longer than what one write frees (a long URI) would otherwise wait for
// as long as the others come, holding its request's worker.
func TestLongAuditLineIsNotOvertakenByShortOnes(t *testing.T) {
	l, r, _ := lineLogOnFIFO(t)
	l.mustWrite = true

	const writers, perWriter, short, long = 8, 1500, 1200, 256 << 10
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				l.add(jsonLine(g*perWriter+i, short))
			}
		}()
	}
	// The pipe is not read yet: the queue fills, every writer waits.
	for i := 0; i < 1000 && l.w.queued.Load() <= lineLogQueueBytes-2*short; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	require.Greater(t, l.w.queued.Load(), int64(lineLogQueueBytes-2*short), "the queue filled")
	const longN = -1
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.add(jsonLine(longN, long))
	}()
	time.Sleep(100 * time.Millisecond) // for it to wait beside the others

	// Read it all: the long line comes once the lines queued before it
	// are written, not after every short line.
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	before, total, found := 0, 0, false
	for total < writers*perWriter+1 && sc.Scan() {
		var m struct{ N int }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		total++
		if m.N == longN {
			found = true
		} else if !found {
			before++
		}
	}
	wg.Wait()
	l.close()
	require.True(t, found, "the long line reached the file")
	queuedBefore := lineLogQueueBytes/short + 64<<10/short*2 + writers + 1 // the queue, buffer and pipe, a line each writer holds
	assert.LessOrEqual(t, before, queuedBefore, "short lines written before the long one (of %d)", writers*perWriter)
}
