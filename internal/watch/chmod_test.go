package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A change of mode or owner (chmod, chown, setfacl: IN_ATTRIB) changes no
// content but may change whether edged can read a file: a key certbot
// wrote 0600 root that a deploy hook then gives to edged's group, a file
// `sudo` made 0600 in conf.d that its author then opens up. The reload
// that failed on it ("permission denied") must be retried then, not at
// the next rescan (never, with the rescan off). So such a change of a
// config file, a config directory or an extra file is reported; of other
// names it is not, nor is reading a file (its access time).
func TestModeChangeIsReported(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	sub := filepath.Join(dir, "uat")
	write(t, filepath.Join(sub, "uat.toml"), "a = 1\n")
	key := filepath.Join(certs, "site.key")
	write(t, key, "key")
	write(t, filepath.Join(dir, "README.md"), "x")
	w := start(t, Options{Dir: dir, Extra: []string{key}})

	require.NoError(t, os.Chmod(f, 0o600))
	assert.Equal(t, []string{f}, await(t, w, f), "chmod of a config file")
	require.NoError(t, os.Chmod(key, 0o640))
	assert.Equal(t, []string{key}, await(t, w, key), "chmod of a key")
	require.NoError(t, os.Chmod(sub, 0o750))
	assert.Contains(t, await(t, w, sub), sub, "chmod of a config directory")
	settle(w)

	require.NoError(t, os.Chmod(filepath.Join(dir, "README.md"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(certs), 0o750))
	quiet(t, w)

	// Reading a file just written updates its access time: no event, or
	// every reload would make another.
	write(t, f, "a = 2\n")
	await(t, w, f)
	settle(w)
	time.Sleep(10 * time.Millisecond)
	_, err := os.ReadFile(f)
	require.NoError(t, err)
	_, err = os.ReadFile(key)
	require.NoError(t, err)
	quiet(t, w)
}
