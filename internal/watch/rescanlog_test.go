package watch

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer the watcher's goroutines may log to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRescanLogLineIsBounded: a rescan that finds 2000 new files (a tree
// copied onto a mount inotify does not see) logs one line that names a few
// of them and counts the others, not one line holding every path.
func TestRescanLogLineIsBounded(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.toml"), "a = 1\n")
	var logs lockedBuffer
	w := start(t, Options{Dir: dir, Rescan: 50 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	w.ignoreFS.Store(true) // as on a mount where inotify sees nothing

	staged := filepath.Join(t.TempDir(), "notes")
	require.NoError(t, os.Mkdir(staged, 0o755))
	for i := range 2000 {
		name := fmt.Sprintf("note-with-a-long-descriptive-name-%04d.toml", i)
		require.NoError(t, os.WriteFile(filepath.Join(staged, name), []byte("# nothing\n"), 0o644))
	}
	require.NoError(t, os.Rename(staged, filepath.Join(dir, "notes")))
	ev := next(t, w)
	require.True(t, ev.Rescan)
	require.Len(t, ev.Paths, 2000, "the event itself holds every path")

	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "rescan found changed files") {
			line = l
		}
	}
	require.NotEmpty(t, line)
	assert.Less(t, len(line), 2048, "log line of %d bytes", len(line))
	assert.Contains(t, line, `"changed":2000`)
}
