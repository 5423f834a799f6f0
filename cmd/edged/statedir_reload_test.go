package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/control"
)

// `edged reload -c DIR` finds the control socket in the state_dir DIR's
// files name. After state_dir is changed in them (applied by the watcher;
// the history moves at the next restart), the running edged answers there
// too, as nginx writes its pid file where a reloaded nginx.conf says:
// otherwise every later `edged reload` and `systemctl reload` said "edged
// is not running" until a restart.
func TestReloadFindsTheRunningEdgedAfterStateDirChanged(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)
	moved := filepath.Join(ex.root, "var", "state2")
	ex.setServer(t, "state_dir", strconv.Quote(moved))
	// The socket comes just after the new generation is served: wait for
	// both, as an operator's reload comes after the edit.
	require.Eventually(t, func() bool {
		_, err := os.Stat(control.Path(moved))
		return p.generation(t) > gen && err == nil
	}, 10*time.Second, 20*time.Millisecond)

	code, stdout, stderr := runEdged(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "reloaded: nothing changed")
	fi, err := os.Stat(control.Path(moved))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(moved)
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&0o027, "state_dir created %v", fi.Mode())

	// The socket where the process started still answers (--control).
	var out struct{ Generation uint64 }
	require.NoError(t, control.Call(ex.controlPath(), "generation", 5*time.Second, &out))
}

// A reload that changes state_dir warns that it takes effect at the next
// restart, and the history and audit.log stay where they are until then;
// the environments' own audit logs (rules.audit_log) stay with them,
// rather than moving at once to a directory edged has not checked, one
// environment's trail split between two places.
func TestEnvironmentAuditLogStaysUntilARestart(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := filepath.Join(ex.confDir, "test", "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	conf := strings.Replace(string(b), "[environment.rules.access_log]", "[environment.rules.audit_log]\n[environment.rules.access_log]", 1)
	require.NotEqual(t, string(b), conf)
	require.NoError(t, os.WriteFile(p, []byte(conf), 0o644))
	proc := startServe(t, ex.confDir)
	state := filepath.Join(ex.root, "var", "state")
	moved := filepath.Join(ex.root, "var", "state2")

	ex.setServer(t, "state_dir", strconv.Quote(moved))
	code, _, stderr := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, proc.stderr.String(), `"key":"state_dir"`, "the reload warns: a restart is needed")

	c := proc.client(t, filepath.Join(ex.certDir, "ca.pem"))
	status, _ := getBody(t, c, "https://test.acme.com/users/audited")
	require.Equal(t, 200, status)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(state, "audit", "test.log"))
		return strings.Contains(string(b), "/users/audited")
	}, 10*time.Second, 20*time.Millisecond, "the request's audit line is in the running state_dir")
	_, err = os.Stat(filepath.Join(moved, "audit", "test.log"))
	assert.True(t, os.IsNotExist(err), "no audit log in the state_dir of the next restart: %v", err)
}
