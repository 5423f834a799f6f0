package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// hogInotify takes every inotify instance its user may have, says how
// many on stdout, and holds them until stdin closes.
func hogInotify() {
	n := 0
	for {
		if _, err := unix.InotifyInit1(unix.IN_CLOEXEC); err != nil {
			break
		}
		n++
	}
	fmt.Println("held", n)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// hogUID is the user the test runs edged as: one no other process uses,
// since the inotify limits are per user.
const hogUID = 54329

// exampleAsUser hands ex over to hogUID (t.TempDir's directories are
// 0700: the user is let reach it, and owns it) with a copy of the test
// binary, which stands in for edged (its build directory is root's), and
// returns that copy's path.
func exampleAsUser(t *testing.T, ex *example) string {
	t.Helper()
	require.NoError(t, os.Chmod(filepath.Dir(ex.root), 0o755))
	require.NoError(t, filepath.Walk(ex.root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, hogUID, hogUID)
	}))
	self, err := os.Executable()
	require.NoError(t, err)
	exe := filepath.Join(ex.root, "edged")
	bin, err := os.ReadFile(self)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(exe, bin, 0o755))
	return exe
}

// The inotify limits are per user and per machine (other programs may
// have taken every instance): edged serve, already listening, then
// cannot create its watcher. It keeps serving, says so, and applies file
// changes found by the rescan; it used to exit 1 after binding its ports
// (a restart loop under systemd).
func TestServeWithoutInotifyFallsBackToTheRescan(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run edged as a user whose inotify instances it can take")
	}
	ex := newExample(t)
	server := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(server)
	require.NoError(t, err)
	conf := strings.Replace(string(b), `reload_debounce = "200ms"`, `reload_debounce = "50ms"`+"\nrescan_interval = \"1s\"", 1)
	require.NotEqual(t, string(b), conf)
	require.NoError(t, os.WriteFile(server, []byte(conf), 0o644))
	exe := exampleAsUser(t, ex)
	as := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: hogUID, Gid: hogUID, Groups: []uint32{}}}

	hog := exec.Command(exe)
	hog.Env = []string{"EDGED_TEST_INOTIFY_HOG=1"}
	hog.SysProcAttr = as
	hogIn, err := hog.StdinPipe()
	require.NoError(t, err)
	hogOut, err := hog.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, hog.Start())
	t.Cleanup(func() { hogIn.Close(); _ = hog.Wait() })
	line, err := bufio.NewReader(hogOut).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "held "), line)

	cmd := exec.Command(exe, "serve", "-c", ex.confDir)
	cmd.Env = []string{"EDGED_TEST_MAIN=1", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = as
	p := startServeCmd(t, cmd)
	assert.Contains(t, p.stderr.String(), "cannot watch the config files (inotify)")
	gen := p.generation(t)

	// An edit is applied by the rescan.
	f := filepath.Join(ex.confDir, "test", "orders.toml")
	require.NoError(t, os.WriteFile(f, []byte(ordersProxy), 0o644))
	require.NoError(t, os.Lchown(f, hogUID, hogUID))
	require.Eventually(t, func() bool { return p.generation(t) > gen }, 20*time.Second, 50*time.Millisecond,
		"the rescan applied the edit: %s", p.stderr.String())
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 200, code, body)
}
