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

// A file whose content passes the limit although stat said it was small
// (a file growing while it is read; /proc files, which stat as empty) is
// cut at the limit and refused by the read itself.
func TestReadRegularGrowingFile(t *testing.T) {
	fi, err := os.Stat("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps here")
	}
	require.Zero(t, fi.Size(), "stat says empty: the size check alone cannot refuse it")
	_, err = readRegular("/proc/self/maps", 16)
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
