package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// bytesRead is what this process has read so far (/proc/self/io rchar).
func bytesRead(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no rchar in /proc/self/io")
	return 0
}

// A rescan (and the reference the watcher takes at each burst) reads no
// more of the config tree than a load does: the loader stops at
// config.MaxTotalSize, since past it a load fails whatever the rest
// holds. Forty files each at the per-file limit (sparse: they take no
// disk) are 80 MiB to hash on every rescan and every burst otherwise.
// What decides a load's outcome is still seen: a file before the limit
// that changes, and one that brings the total back under it.
func TestScanReadsNoMoreThanALoad(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("needs /proc/self/io")
	}
	dir := t.TempDir()
	var files []string
	for i := range 40 {
		f := filepath.Join(dir, fmt.Sprintf("f%02d.toml", i))
		require.NoError(t, os.WriteFile(f, nil, 0o644))
		require.NoError(t, os.Truncate(f, config.MaxFileSize))
		files = append(files, f)
	}
	before := bytesRead(t)
	s1 := takeScan(dir, nil)
	read := bytesRead(t) - before
	assert.LessOrEqual(t, read, int64(config.MaxTotalSize+config.MaxFileSize),
		"bytes read by one scan of 40 files of %d bytes", config.MaxFileSize)
	require.Len(t, s1.config, 40)

	// A change before the limit is one.
	require.NoError(t, os.WriteFile(files[0], []byte("a = 1\n"), 0o644))
	s2 := takeScan(dir, nil)
	assert.Equal(t, []string{files[0]}, changed(s1, s2))

	// Files removed until the rest fit: a load may pass now, and every
	// file it reads is looked at.
	for _, f := range files[4:] {
		require.NoError(t, os.Remove(f))
	}
	s3 := takeScan(dir, nil)
	assert.Equal(t, files[4:], changed(s2, s3))
	require.NoError(t, os.Truncate(files[3], 10))
	s4 := takeScan(dir, nil)
	assert.Equal(t, []string{files[3]}, changed(s3, s4))
}
