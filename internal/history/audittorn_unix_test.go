//go:build linux

package history

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A write of the audit log that the disk cuts short (full, or past the
// file size limit) must not leave the first part of its line in the
// file: the next line would be glued to it, and a reader of the trail
// of who changed what would lose that one too. The limit, RLIMIT_FSIZE,
// is the process's: the test binary, run again as a child, sets it for
// itself (Go ignores the SIGXFSZ that comes with it).
func TestAuditLineCutByAShortWriteLeavesNoPart(t *testing.T) {
	if dir := os.Getenv("EDGED_TEST_SHORT_AUDIT_DIR"); dir != "" {
		shortAuditChild(t, dir)
		return
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestAuditLineCutByAShortWriteLeavesNoPart$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EDGED_TEST_SHORT_AUDIT_DIR="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child: %s", out)

	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
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
	assert.Equal(t, []int{0, 2}, got, "the line the limit cut is not in the file; the others are whole")
}

// shortAuditChild writes a line, then one under a file size limit that
// cuts it short (Audit fails), lifts the limit and writes a third.
func shortAuditChild(t *testing.T, dir string) {
	st, err := Open(dir, 5)
	require.NoError(t, err)
	line := func(n, pad int) any {
		return struct {
			N   int
			Pad string
		}{n, strings.Repeat("x", pad)}
	}
	require.NoError(t, st.Audit(line(0, 500)))
	fi, err := os.Stat(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old))
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(fi.Size()) + 300, Max: old.Max}))
	require.Error(t, st.Audit(line(1, 800)), "the limit cuts the second line short")
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old))
	require.NoError(t, st.Audit(line(2, 100)))
}

// A line that a crash cut short (the power went mid-write, before the
// sync) is in the file without its newline: the next line starts a line
// of its own rather than be glued to it.
func TestAuditLineAfterACutOneStartsALine(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, 5)
	require.NoError(t, err)
	require.NoError(t, st.Audit(map[string]int{"N": 0}))
	f, err := os.OpenFile(filepath.Join(dir, "audit.log"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"N":1,"Pad":"xx`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, st.Audit(map[string]int{"N": 2}))

	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	assert.Equal(t, "{\"N\":0}\n{\"N\":1,\"Pad\":\"xx\n{\"N\":2}\n", string(b))
}

// An audit.log that is a named pipe, read by a log shipper, gets each
// line whole and Audit reports no error: the writer opens it write only
// (opened for reading too, edged was the pipe's reader itself, and a
// start meant to wait for the shipper went on, its lines in the pipe's
// buffer), and a pipe is not synced (fsync: EINVAL, reported as a failed
// write of every line).
func TestAuditLogThatIsAPipeGetsItsLines(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, 5)
	require.NoError(t, err)
	fifo := filepath.Join(dir, "audit.log")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // until the writer closes
		got <- string(b)
	}()
	require.NoError(t, st.Audit(map[string]int{"N": 1}))
	select {
	case line := <-got:
		assert.Equal(t, "{\"N\":1}\n", line)
	case <-time.After(10 * time.Second):
		t.Fatal("the shipper got nothing")
	}
}
