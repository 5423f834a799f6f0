//go:build unix

// Package asnobody runs a test of the running test binary as uid and gid
// 65534 (nobody), for what only another user can show: a file it may not
// give back to its owner, a directory it creates. It is imported by tests
// only, and skips them unless the process is root.
package asnobody

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// binName is the copy of the test binary in the directory Dir makes.
const binName = "as-nobody.test"

// Dir makes a directory with mode that uid 65534 can reach, holding a copy
// of this test binary (go test builds it in a private directory;
// t.TempDir's parent is private too). It skips the test unless this
// process is root, or when a parent directory is not searchable by others.
func Dir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	dir, err := os.MkdirTemp("", "asnobody-*")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, mode))
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		require.NoError(t, err)
		if fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users", d)
		}
	}
	bin, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, binName), bin, 0o755))
	return dir
}

// Run runs test of the binary copied into dir (Dir) as uid and gid 65534,
// in dir, with env added, requires it to pass, and returns its output.
func Run(t *testing.T, dir, test string, env ...string) string {
	t.Helper()
	cmd := Command(dir, []string{"-test.run=^" + test + "$", "-test.v"}, env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// Command is the binary copied into dir (Dir), to be run with args as uid
// and gid 65534 (no supplementary groups), in dir, with env added.
func Command(dir string, args []string, env ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(dir, binName), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	return cmd
}
