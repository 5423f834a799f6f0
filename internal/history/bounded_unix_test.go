//go:build unix

package history

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// within runs f and fails the test when it has not returned within 10 s:
// a read that waits on a named pipe for a writer. unblock, run then,
// lets the stuck goroutine go (it opens the pipe's other end).
func within(t *testing.T, what string, unblock func(), f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		unblock()
		<-done
		t.Fatalf("%s did not return within 10 s: it waited for a writer of the named pipe", what)
	}
}

// openWriter opens the writing end of a named pipe without waiting (a
// reader waits on it, or there is none), so a reader stuck in its open
// goes on; it returns a func that closes it.
func openWriter(fifo string) func() {
	return func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
}

// TestRecordThatIsAPipeOrTooLargeIsOneLostGeneration: state_dir/history
// is read by edged history, diff and rollback and by the running edged
// (its start, and the first record of each process). A record that is a
// named pipe made them wait for a writer for ever (open(2) of a FIFO for
// reading does), one that is a device (a link to /dev/zero) read without
// end, and one of any size was read whole into memory. Each is now one
// lost generation, as a record that does not parse: the others are
// listed and read, and the history goes on being recorded.
func TestRecordThatIsAPipeOrTooLargeIsOneLostGeneration(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 10)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("a"))
	rec := func(gen uint64) Record {
		return Record{Generation: gen, Time: time.Now(), Files: []File{{Path: "a.toml", SHA256: hex.EncodeToString(sum[:]), Content: "a"}}}
	}
	require.NoError(t, st.Save(rec(1)))

	fifo := filepath.Join(state, "history", "gen-0000000002.json")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	huge := filepath.Join(state, "history", "gen-0000000003.json")
	f, err := os.Create(huge)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(maxRecordSize+1)) // sparse: no disk taken
	require.NoError(t, f.Close())
	zero := filepath.Join(state, "history", "gen-0000000004.json")
	require.NoError(t, os.Symlink("/dev/zero", zero))

	// The CLI's reads: the list, one record, its contents.
	cli := OpenReadOnly(state)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var recs []*Record
	var damaged []error
	within(t, "List", openWriter(fifo), func() { recs, damaged, err = cli.List() })
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Len(t, recs, 1, "the readable record is listed")
	assert.Equal(t, uint64(1), recs[0].Generation)
	require.Len(t, damaged, 3)
	assert.ErrorContains(t, damaged[0], "generation 2 cannot be read: "+fifo+" is a named pipe, not a regular file")
	assert.ErrorContains(t, damaged[1], "generation 3 cannot be read: "+huge+" is larger than")
	assert.ErrorContains(t, damaged[2], "generation 4 cannot be read: "+zero+" is a character device, not a regular file")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated to list the history")

	within(t, "Get", openWriter(fifo), func() { _, err = cli.Get(2) })
	assert.ErrorContains(t, err, fifo+" is a named pipe, not a regular file")
	within(t, "Meta", openWriter(fifo), func() { _, err = cli.Meta(3) })
	assert.ErrorContains(t, err, huge+" is larger than")

	// The running edged's next process: its first Save reads every kept
	// record, and goes on past these.
	st, err = Open(state, 10)
	require.NoError(t, err)
	within(t, "Save", openWriter(fifo), func() { err = st.Save(rec(5)) })
	require.NoError(t, err, "the next process records its generations")
	got, err := st.Get(5)
	require.NoError(t, err)
	assert.Equal(t, "a", got.Files[0].Content)
}

// TestContentThatIsAPipeOrTooLargeIsRefused: a generation's content, kept
// in history/blobs, is read for edged diff and rollback; one that is a
// named pipe or larger than a configuration file may be is refused as
// damaged, never waited on or read whole.
func TestContentThatIsAPipeOrTooLargeIsRefused(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 10)
	require.NoError(t, err)
	for i, content := range []string{"a", "b"} {
		sum := sha256.Sum256([]byte(content))
		require.NoError(t, st.Save(Record{Generation: uint64(i + 1), Time: time.Now(), Files: []File{{Path: "a.toml", SHA256: hex.EncodeToString(sum[:]), Content: content}}}))
	}
	pipeRec, err := st.Meta(1)
	require.NoError(t, err)
	fifo := st.blobPath(pipeRec.Files[0].SHA256)
	require.NoError(t, os.Remove(fifo))
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	hugeRec, err := st.Meta(2)
	require.NoError(t, err)
	huge := st.blobPath(hugeRec.Files[0].SHA256)
	require.NoError(t, os.Truncate(huge, 64<<20))

	cli := OpenReadOnly(state)
	within(t, "Get", openWriter(fifo), func() { _, err = cli.Get(1) })
	assert.ErrorContains(t, err, "generation 1: content of a.toml: "+fifo+" is a named pipe, not a regular file")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = cli.Get(2)
	runtime.ReadMemStats(&after)
	assert.ErrorContains(t, err, "generation 2: content of a.toml: "+huge+" is larger than")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated to read generation 2")
}

// TestRecordTooLargeToReadIsNotWritten: a record larger than readers take
// (maxRecordSize) would be one lost generation as soon as written; Save
// refuses it, writing nothing (no content either), and goes on with the
// next.
func TestRecordTooLargeToReadIsNotWritten(t *testing.T) {
	defer func(n int64) { maxRecordSize = n }(maxRecordSize)
	maxRecordSize = 4096
	state := t.TempDir()
	st, err := Open(state, 10)
	require.NoError(t, err)
	var files []File
	for i := range 40 {
		content := fmt.Sprintf("# %d\n", i)
		sum := sha256.Sum256([]byte(content))
		files = append(files, File{Path: fmt.Sprintf("env%02d/%s.toml", i, strings.Repeat("x", 60)), SHA256: hex.EncodeToString(sum[:]), Content: content})
	}
	err = st.Save(Record{Generation: 1, Time: time.Now(), Files: files})
	require.Error(t, err)
	assert.Regexp(t, `^history: generation 1: its record is \d+ bytes, more than the 4096 a record may have: not recorded$`, err.Error())
	last, err := st.Last()
	require.NoError(t, err)
	assert.Zero(t, last, "nothing recorded")
	blobs, err := os.ReadDir(st.blobDir())
	require.NoError(t, err)
	assert.Empty(t, blobs, "no content written for it")

	require.NoError(t, st.Save(Record{Generation: 2, Time: time.Now(), Files: files[:1]}))
	got, err := st.Get(2)
	require.NoError(t, err)
	assert.Equal(t, "# 0\n", got.Files[0].Content)
}
