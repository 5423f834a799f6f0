//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// within runs f and fails the test when it has not returned after d: a
// read that blocks would otherwise hang the test binary.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still blocked after %s", d)
	}
}

func TestReadRegularRefusesFIFOAtOnce(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	var err error
	within(t, 10*time.Second, func() { _, err = readTLSFile(fifo) })
	require.Error(t, err)
	assert.Equal(t, fifo+" is a named pipe, not a regular file", err.Error())
}

func TestReadRegularLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, []byte(strings.Repeat("x", 100)), 0o600))
	b, err := readRegular(p, 100)
	require.NoError(t, err)
	assert.Len(t, b, 100)
	_, err = readRegular(p, 99)
	assert.EqualError(t, err, p+" is larger than the 99 bytes (99 bytes) allowed")
	b, err = readRegular(p, 1<<20)
	require.NoError(t, err)
	assert.Len(t, b, 100)
}

// A file that grows while it is read is cut at the limit: stat said it
// was small, the read sees more.
func TestReadRegularGrowingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, []byte("small"), 0o600))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	defer f.Close()
	// The reader's stat happens before this write only sometimes; either
	// way no more than limit+1 bytes are taken and the result is refused.
	_, err = f.Write([]byte(strings.Repeat("y", 1<<20)))
	require.NoError(t, err)
	_, err = readRegular(p, 1<<10)
	var tl *tooLargeError
	require.ErrorAs(t, err, &tl)
}

// A FIFO named *.toml, or named by cert_file, key_file or client_ca_file,
// fails the load at once and says what it is.
func TestLoadRefusesFIFOs(t *testing.T) {
	for _, field := range []string{"cert_file", "key_file", "client_ca_file", "conf"} {
		t.Run(field, func(t *testing.T) {
			dir := setupDir(t, nil)
			certs := filepath.Join(filepath.Dir(dir), "certs")
			fifo := filepath.Join(certs, "fifo.pem")
			require.NoError(t, syscall.Mkfifo(fifo, 0o644))
			switch field {
			case "conf":
				require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "20-fifo.toml"), 0o644))
			case "client_ca_file":
				writeTree(t, dir, map[string]string{"10-base.toml": strings.Replace(baseObjects,
					`key_file = "../certs/test.key"`, `key_file = "../certs/test.key"`+"\nclient_ca_file = \"../certs/fifo.pem\"", 1)})
			default:
				old := map[string]string{"cert_file": `cert_file = "../certs/test.pem"`, "key_file": `key_file = "../certs/test.key"`}[field]
				writeTree(t, dir, map[string]string{"10-base.toml": strings.Replace(baseObjects, old, field+` = "../certs/fifo.pem"`, 1)})
			}
			var err error
			within(t, 10*time.Second, func() { _, err = Load(dir) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), "is a named pipe, not a regular file")
			if field == "conf" {
				assert.Contains(t, err.Error(), filepath.Join(dir, "20-fifo.toml")+": is a named pipe, not a regular file")
			} else {
				assert.Contains(t, err.Error(), field+": ")
				assert.Contains(t, err.Error(), fifo+" is a named pipe")
			}
		})
	}
}

// The directory listing said regular file, then the file became a FIFO
// before it was read: the read refuses it rather than blocking.
func TestReadDirFIFOSwappedIn(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	require.NoError(t, syscall.Mkfifo(p, 0o644))
	var err error
	within(t, 10*time.Second, func() { _, err = ReadFile(p) })
	var nr *notRegularError
	require.ErrorAs(t, err, &nr)
	assert.Equal(t, "is a named pipe, not a regular file", readProblem(err))
	within(t, 10*time.Second, func() { StateDir(dir) })
}
