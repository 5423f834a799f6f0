package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"b.toml": "", "a/a.toml": "", ".x.toml": "", "c.yaml": ""})
	paths, err := Files(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"a/a.toml", "b.toml"}, relPaths(t, dir, paths))

	_, err = Files(filepath.Join(dir, "missing"))
	var errs Errors
	require.ErrorAs(t, err, &errs)
}

// TestOverlayAndFilesPastTheTotalSizeAreRefused: LoadOverlay (edged
// promote) and LoadFiles (edged rollback) check a directory as it would
// be: past MaxTotalSize it would not load, so they must not pass it.
// They counted only what the directory held (a promotion adding a block
// to a directory a few bytes under the limit passed, was written, and
// every reload after it failed).
func TestOverlayAndFilesPastTheTotalSizeAreRefused(t *testing.T) {
	dir := setupDir(t, nil)
	paths, err := Files(dir)
	require.NoError(t, err)
	files := map[string][]byte{}
	total := 0
	for _, p := range paths {
		b, err := ReadFile(p)
		require.NoError(t, err)
		files[p] = b
		total += len(b)
	}
	// Padding up to 10 bytes under the limit, in files under MaxFileSize.
	for i := 0; total < MaxTotalSize-10; i++ {
		n := min(MaxFileSize-1024, MaxTotalSize-10-total)
		b := []byte(strings.Repeat("#", n-1) + "\n")
		p := filepath.Join(dir, fmt.Sprintf("pad%d.toml", i))
		require.NoError(t, os.WriteFile(p, b, 0o644))
		files[p] = b
		total += n
	}
	_, err = Load(dir)
	require.NoError(t, err, "10 bytes under the limit, the directory loads")

	more := filepath.Join(dir, "zz.toml")
	add := []byte("# twenty bytes more\n")
	_, err = LoadOverlay(dir, map[string][]byte{more: add})
	require.Error(t, err, "the overlay takes the directory past the limit")
	assert.Contains(t, err.Error(), dir+": configuration files add up to more than the 8388608 bytes (8 MiB) allowed, at "+more)

	files[more] = add
	_, err = LoadFiles(dir, files)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "add up to more than the 8388608 bytes (8 MiB) allowed, at "+more)

	// Written, it is what a load refuses.
	require.NoError(t, os.WriteFile(more, add, 0o644))
	_, err = Load(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+": configuration files add up to more than the 8388608 bytes (8 MiB) allowed, at "+more)
}
