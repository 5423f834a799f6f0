package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// startWithStderr starts edged serve on ex with stderr the file w (the
// write end of a pipe, a socket), reads its lines from r until it
// listens and returns the process, its HTTPS address and what it read.
// r is left unread from then on: the caller reads it or not.
func startWithStderr(t *testing.T, ex *example, r, w *os.File, env ...string) (*proc, string) {
	t.Helper()
	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr, cmd.Stdout = w, io.Discard
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	require.NoError(t, cmd.Start())
	w.Close() // the child's copy stays: EOF once it exits
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				lines <- line
			}
			if err != nil || strings.Contains(line, `"msg":"listening"`) {
				return
			}
		}
	}()
	var read strings.Builder
	deadline := time.After(15 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "edged ended before it listened:\n%s", read.String())
			read.WriteString(line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				p.https, p.admin = m[1], m[2]
				return p, read.String()
			}
		case <-deadline:
			t.Fatalf("edged did not start listening:\n%s", read.String())
		}
	}
}

// A stderr that takes nothing (a pipe nobody reads, journald stalled)
// holds neither the requests whose failures edged logs nor the shutdown:
// edged's own log is queued for one writer, bounded, as the access log
// is, and the shutdown waits for it at most logFlushWait.
func TestBlockedStderrHoldsNeitherRequestsNorShutdown(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	// The smallest pipe: a few lines fill it.
	_, err = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 4096)
	require.NoError(t, err)
	p, _ := startWithStderr(t, ex, r, w)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	c.Timeout = 5 * time.Second

	// Requests for a host no group has are each logged ("request
	// refused", 10 a second): 120 of them, over 3 s, are 40 lines or
	// more, 10 KB, where the pipe holds 4 KiB.
	for i := range 120 {
		req, err := http.NewRequest("GET", "https://test.acme.com/users/1", nil)
		require.NoError(t, err)
		req.Host = "nowhere.acme.com"
		resp, err := c.Do(req)
		require.NoError(t, err, "request %d with stderr blocked: not answered", i)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		time.Sleep(25 * time.Millisecond)
	}
	code, _ := getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, http.StatusOK, code)
	// Its HELP and TYPE are edged's (edge's families).
	resp, err := http.Get("http://" + p.admin + "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(b), "# TYPE edged_stderr_lines_dropped_total counter\nedged_stderr_lines_dropped_total ")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not exit on SIGTERM with stderr blocked (shutdown_delay 0s)")
	}
}

// journalStream is the JOURNAL_STREAM systemd would set for f.
func journalStream(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(int(f.Fd()), &st))
	return fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino)
}

// Under systemd, stderr is a stream socket to journald, named by
// JOURNAL_STREAM: each line starts with its syslog priority, which
// journald takes (journalctl -p warning finds the errors and warnings).
// The same variable naming another stream (stdout's; or inherited by a
// process whose stderr is a pipe) adds no prefix.
func TestJournalStreamLinesCarryTheirPriority(t *testing.T) {
	t.Run("stderr is the journal", func(t *testing.T) {
		ex := newExample(t)
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		r, w := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "stderr")
		defer r.Close()
		p, head := startWithStderr(t, ex, r, w, journalStream(t, w))
		assert.Regexp(t, `(?m)^<6>\{"time":"[^"]*","level":"INFO","msg":"listening"`, head)
		for _, line := range strings.SplitAfter(head, "\n") {
			if line != "" {
				assert.Regexp(t, `^<[3467]>\{`, line)
			}
		}

		// A refused reload: an error.
		require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "broken.toml"), []byte("[[proxy]\n"), 0o644))
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
		rest := readUntil(t, r, `"msg":"reload failed"`)
		assert.Regexp(t, `(?m)^<3>\{"time":"[^"]*","level":"ERROR","msg":"reload failed"`, rest)
		assert.NotRegexp(t, `(?m)^\{`, rest, "every line has its priority")
	})
	t.Run("stderr is not the journal", func(t *testing.T) {
		ex := newExample(t)
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		so, sw, err := os.Pipe()
		require.NoError(t, err)
		defer so.Close()
		defer sw.Close()
		_, head := startWithStderr(t, ex, r, w, journalStream(t, sw))
		assert.Regexp(t, `(?m)^\{"time":"[^"]*","level":"INFO","msg":"listening"`, head, "no prefix")
		assert.NotContains(t, head, "<6>")
	})
}

// readUntil reads lines from r until one matches re (a substring), 15 s
// at most, and returns them.
func readUntil(t *testing.T, r io.Reader, sub string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil || strings.Contains(line, sub) {
				got <- b.String()
				return
			}
		}
	}()
	select {
	case s := <-got:
		require.Contains(t, s, sub)
		return s
	case <-time.After(15 * time.Second):
		t.Fatalf("no line with %s in 15 s", sub)
		return ""
	}
}

// journald cuts a line longer than its LineMax= (48 KiB) into several
// entries, none of them JSON. A reload that adds 900 environments of long
// names made "config applied" 56 KB long; every line edged writes is now
// at most 32 KiB, a longer one written in parts, each a JSON line.
func TestLongLogLinesStayWholeForTheJournal(t *testing.T) {
	ex := newExample(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	p, _ := startWithStderr(t, ex, r, w)
	out := &syncBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()

	var many bytes.Buffer
	for i := range 900 {
		fmt.Fprintf(&many, "[[environment]]\nname = \"env-%04d-%s\"\n", i, strings.Repeat("x", 50))
	}
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "many.toml"), many.Bytes(), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), `config applied`)
	}, 30*time.Second, 50*time.Millisecond, "the reload is logged")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(60 * time.Second):
		t.Fatal("edged did not exit")
	}
	<-copied

	// The parts of a line too long, joined, are the line.
	var joined strings.Builder
	var applied map[string]any
	for _, line := range strings.SplitAfter(out.String(), "\n") {
		if line == "" {
			continue
		}
		assert.LessOrEqual(t, len(line), 32<<10, "a line of %d bytes: %.200s", len(line), line)
		var v struct {
			Msg         string
			Part, Parts int
			Text        string
		}
		if !assert.NoError(t, json.Unmarshal([]byte(line), &v), "%.200s", line) || v.Parts == 0 {
			continue
		}
		joined.WriteString(v.Text)
		if v.Part == v.Parts {
			var whole map[string]any
			require.NoError(t, json.Unmarshal([]byte(joined.String()), &whole))
			if whole["msg"] == "config applied" {
				applied = whole
			}
			joined.Reset()
		}
	}
	require.NotNil(t, applied, "the reload's line, in parts")
	assert.Len(t, applied["added"], 900)
}

// droppedStderrLines is edged_stderr_lines_dropped_total on admin.
func droppedStderrLines(t *testing.T, admin string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^edged_stderr_lines_dropped_total (\d+)$`).FindSubmatch(b)
	require.NotNil(t, m, "no edged_stderr_lines_dropped_total")
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return n
}

// The reader of stderr (a pipe to a logger) went away: edged keeps
// serving (SIGPIPE is ignored), and the lines its writes lose (EPIPE)
// are counted as dropped, as those the queue could not take are, so that
// edged_stderr_lines_dropped_total says edged's log is being lost.
func TestLinesLostOnABrokenStderrAreCounted(t *testing.T) {
	ex := newExample(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	p, _ := startWithStderr(t, ex, r, w)
	require.NoError(t, r.Close()) // the logger is gone
	require.Zero(t, droppedStderrLines(t, p.admin))

	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	c.Timeout = 5 * time.Second
	// Requests for a host no group has are each logged ("request
	// refused"; 10 at once).
	for range 5 {
		req, err := http.NewRequest("GET", "https://test.acme.com/users/1", nil)
		require.NoError(t, err)
		req.Host = "nowhere.acme.com"
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	}
	require.Eventually(t, func() bool { return droppedStderrLines(t, p.admin) >= 5 }, 10*time.Second, 20*time.Millisecond,
		"the refusals' lines, lost to EPIPE, counted: %d", droppedStderrLines(t, p.admin))
	code, _ := getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, http.StatusOK, code, "still serving")
}

// An error that ends edged once it listens (here its config directory
// gone before the watcher starts; a listener that stops) is its log's
// last line, as an error: under the journal with "<3>" (journalctl -p
// err shows why edged exited), and JSON like every line before it. It
// used to be printed after the log, as "edged serve: ..." with no
// priority: journald took it as info.
func TestErrorEndingServeIsLoggedAsAnError(t *testing.T) {
	ex := newExample(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	r, w := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "stderr")
	defer r.Close()
	fifo := filepath.Join(t.TempDir(), "hold")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	cmd := edgedCmd(t, "serve", "-c", ex.confDir)
	cmd.Env = append(cmd.Env, journalStream(t, w), "EDGED_TEST_HOLD_START="+fifo)
	cmd.Stderr, cmd.Stdout = w, io.Discard
	require.NoError(t, cmd.Start())
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	out := &syncBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()
	require.Eventually(t, func() bool {
		_, err := os.Stat(fifo + ".held")
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "edged's start reaches the hold")

	// Loaded: the directory goes before the watcher looks at it.
	require.NoError(t, os.Rename(ex.confDir, ex.confDir+".gone"))
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	select {
	case err := <-done:
		done <- err
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, 1, exit.ExitCode())
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not exit")
	}
	<-copied
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, line := range lines {
		assert.Regexp(t, `^<[3467]>\{`, line, "every line has its priority and is JSON")
	}
	last := lines[len(lines)-1]
	assert.Regexp(t, `^<3>\{"time":"[^"]*","level":"ERROR",`, last)
	assert.Contains(t, last, "watch: config dir")
}

// What the Go runtime writes to fd 2 itself (a panic nobody recovered, a
// fatal error, SIGABRT's goroutine dump: the watchdog's kill) has no
// priority prefix, and journald took each of its lines as info. Under the
// journal, fd 2 is a stream of its own to journald (its stdout socket,
// here the test's) whose default priority is crit (2), level prefixes
// read; edged's log goes on in the stream systemd connected.
func TestCrashReachesTheJournalAsCritical(t *testing.T) {
	ex := newExample(t)
	sock := filepath.Join(t.TempDir(), "stdout")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer ln.Close()
	crit := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		crit <- string(b)
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	r, w := os.NewFile(uintptr(fds[0]), "journal"), os.NewFile(uintptr(fds[1]), "stderr")
	defer r.Close()
	p, head := startWithStderr(t, ex, r, w, journalStream(t, w), "EDGED_TEST_JOURNAL_SOCKET="+sock)
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		rest <- string(b)
	}()

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGABRT))
	select {
	case err := <-p.done:
		p.done <- err
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, 2, exit.ExitCode())
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not exit on SIGABRT")
	}
	var stream string
	select {
	case stream = <-crit:
	case <-time.After(10 * time.Second):
		t.Fatal("no stream of edged's own to the journal")
	}
	header := strings.SplitN(stream, "\n", 8)
	require.Len(t, header, 8, "%q", stream)
	assert.Equal(t, filepath.Base(p.cmd.Path), header[0], "SYSLOG_IDENTIFIER: the executable's name, as systemd's")
	assert.Equal(t, []string{"", "2", "1", "0", "0", "0"}, header[1:7], "no unit named, crit, level prefixes read, no forwarding")
	assert.True(t, strings.HasPrefix(header[7], "SIGABRT: abort\n"), "%.200q", header[7])
	assert.Contains(t, header[7], "\ngoroutine ")

	logged := head + <-rest
	assert.NotContains(t, logged, "SIGABRT")
	for _, line := range strings.SplitAfter(logged, "\n") {
		if line != "" {
			assert.Regexp(t, `^<[3467]>\{`, line, "the log's lines go on in systemd's stream")
		}
	}
}
