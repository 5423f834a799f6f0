package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fileData is the loaded content of the file named name.
func fileData(t *testing.T, cfg *Config, name string) []byte {
	t.Helper()
	for _, f := range cfg.Files {
		if filepath.Base(f.Path) == name {
			return f.Data
		}
	}
	t.Fatalf("no file %s in the config", name)
	return nil
}

func TestLoaderStatsUnchangedFilesAndRereadsChangedOnes(t *testing.T) {
	slack := stampSlack
	stampSlack = 0 // the test waits past the file clock's tick instead
	t.Cleanup(func() { stampSlack = slack })
	const tick = 50 * time.Millisecond // > a jiffy, the file times' granularity

	dir := setupDir(t, nil)
	base := filepath.Join(dir, "10-base.toml")
	if _, ok := stampOf(base, map[uint64]bool{}); !ok {
		t.Skip("the temporary directory is on a filesystem whose stamps are not trusted")
	}
	time.Sleep(tick)
	ld := &Loader{Dir: dir}
	first, err := ld.Load()
	require.NoError(t, err)
	second, err := ld.Load()
	require.NoError(t, err)
	assert.Same(t, &fileData(t, first, "10-base.toml")[0], &fileData(t, second, "10-base.toml")[0],
		"an unchanged file is stat'ed, not read again")

	// Same size, same modification time: only the change time tells.
	fi, err := os.Stat(base)
	require.NoError(t, err)
	time.Sleep(tick)
	old, err := os.ReadFile(base)
	require.NoError(t, err)
	edited := strings.Replace(string(old), `base_path = "/users"`, `base_path = "/sales"`, 1)
	require.Len(t, edited, len(old))
	f, err := os.OpenFile(base, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte(edited), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chtimes(base, fi.ModTime(), fi.ModTime()))

	third, err := ld.Load()
	require.NoError(t, err)
	assert.Equal(t, "/sales", third.Proxies[0].BasePath, "the edit in place is read")

	// Read just after a change, a file is read again next time (its stamp
	// could hide a second write in the same tick).
	stampSlack = time.Hour
	require.NoError(t, os.WriteFile(base, old, 0o644))
	fourth, err := ld.Load()
	require.NoError(t, err)
	assert.Equal(t, "/users", fourth.Proxies[0].BasePath)
	fifth, err := ld.Load()
	require.NoError(t, err)
	assert.NotSame(t, &fileData(t, fourth, "10-base.toml")[0], &fileData(t, fifth, "10-base.toml")[0])
}

func TestStampOfTrustsOnlyLocalFilesystems(t *testing.T) {
	local := map[uint64]bool{}
	_, ok := stampOf("/proc/self/status", local) // procfs: not a place for config, not in the list
	assert.False(t, ok)
	_, ok = stampOf("/proc/self/stat", local) // the same device, answered from local
	assert.False(t, ok)
	assert.Len(t, local, 1, "one statfs per device")
	_, ok = stampOf(filepath.Join(t.TempDir(), "missing.toml"), local)
	assert.False(t, ok)
}

// TestLoaderTotalSizeCountsUnchangedFiles: the files a Loader takes from
// its last load without reading them count towards MaxTotalSize like
// those it reads, so a running process refuses a directory that a restart
// (or edged check) would refuse: here a new file sorted first, then the
// unchanged files, which alone were within the limit.
func TestLoaderTotalSizeCountsUnchangedFiles(t *testing.T) {
	slack := stampSlack
	stampSlack = 0 // the test waits past the file clock's tick instead
	t.Cleanup(func() { stampSlack = slack })
	const tick = 50 * time.Millisecond

	dir := t.TempDir()
	pad := strings.Repeat("# padding\n", (MaxFileSize-1024)/10)
	n := MaxTotalSize / len(pad) // within the limit together
	for i := 1; i <= n; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.toml", i)), []byte(pad), 0o644))
	}
	if _, ok := stampOf(filepath.Join(dir, "f01.toml"), map[uint64]bool{}); !ok {
		t.Skip("the temporary directory is on a filesystem whose stamps are not trusted")
	}
	time.Sleep(tick)
	ld := &Loader{Dir: dir}
	_, err := ld.Load()
	require.NoError(t, err, "within the limit")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "f00.toml"), []byte(pad), 0o644))
	_, err = Load(dir)
	require.ErrorContains(t, err, "add up to", "from scratch")
	_, err = ld.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+": configuration files add up to more than the 8388608 bytes (8 MiB) allowed, at "+filepath.Join(dir, fmt.Sprintf("f%02d.toml", n)))
}
