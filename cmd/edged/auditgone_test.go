package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/history"
)

// envAuditLines reads an environment's own audit log's config lines.
func envAuditLines(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		if l.Event == "config" {
			out = append(out, l)
		}
	}
	return out
}

// An environment with rules.audit_log that a reload removes, or whose
// audit_log it turns off, gets the change in its own audit log, its last
// line: the trail says how it ended, and which file did it.
func TestRemovedEnvironmentAuditsItsEnd(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	state := filepath.Join(ex.root, "var", "state")
	reload := func() {
		t.Helper()
		code, _, stderr := runEdged(t, "reload", "--control", ex.controlPath())
		require.Equal(t, 0, code, stderr)
	}
	home := filepath.Join(ex.confDir, "extra")
	require.NoError(t, os.MkdirAll(home, 0o755))
	for _, name := range []string{"gone", "quiet"} {
		f := filepath.Join(home, name+".toml")
		require.NoError(t, os.WriteFile(f, []byte("[[environment]]\nname = \""+name+"\"\n[environment.rules.audit_log]\n"), 0o644))
	}
	reload()
	for _, name := range []string{"gone", "quiet"} {
		lines := envAuditLines(t, filepath.Join(state, "audit", name+".log"))
		require.Len(t, lines, 1, name)
		assert.Contains(t, lines[0].Changes[0].Action, "added")
	}

	require.NoError(t, os.Remove(filepath.Join(home, "gone.toml")))
	require.NoError(t, os.WriteFile(filepath.Join(home, "quiet.toml"), []byte("[[environment]]\nname = \"quiet\"\n"), 0o644))
	reload()
	gen := uint64(p.generation(t))

	gone := envAuditLines(t, filepath.Join(state, "audit", "gone.log"))
	require.Len(t, gone, 2, "the removal is in the removed environment's audit log")
	last := gone[1]
	assert.Equal(t, gen, last.Generation)
	require.Len(t, last.Changes, 1)
	assert.Equal(t, "removed", last.Changes[0].Action)
	assert.Equal(t, "environment", last.Changes[0].Kind)
	require.Len(t, last.Files, 1, "the file whose removal did it")
	assert.Equal(t, "extra/gone.toml", last.Files[0].Path)
	assert.Equal(t, "removed", last.Files[0].Action)

	quiet := envAuditLines(t, filepath.Join(state, "audit", "quiet.log"))
	require.Len(t, quiet, 2, "turning audit_log off is the log's last line")
	assert.Equal(t, gen, quiet[1].Generation)
	assert.Equal(t, "changed", quiet[1].Changes[0].Action)
}

// An environment removed while edged was stopped gets its removal in its
// own audit log at the next start, as a reload would have written it: the
// trail must not end on its last change with nothing after. A restart
// that changed nothing adds no line to the environments' logs.
func TestEnvironmentRemovedWhileStoppedAuditsItsEnd(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	state := filepath.Join(ex.root, "var", "state")
	home := filepath.Join(ex.confDir, "extra")
	require.NoError(t, os.MkdirAll(home, 0o755))
	for _, name := range []string{"gone", "kept"} {
		f := filepath.Join(home, name+".toml")
		require.NoError(t, os.WriteFile(f, []byte("[[environment]]\nname = \""+name+"\"\n[environment.rules.audit_log]\n"), 0o644))
	}
	stop := func(p *proc) {
		t.Helper()
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case <-p.done:
			p.done <- nil // for the cleanup's wait
		case <-time.After(20 * time.Second):
			t.Fatal("edged did not stop")
		}
	}
	stop(startServe(t, ex.confDir))
	for _, name := range []string{"gone", "kept"} {
		require.Len(t, envAuditLines(t, filepath.Join(state, "audit", name+".log")), 1, name)
	}

	require.NoError(t, os.Remove(filepath.Join(home, "gone.toml")))
	p := startServe(t, ex.confDir)
	gen := uint64(p.generation(t))
	stop(p)

	gone := envAuditLines(t, filepath.Join(state, "audit", "gone.log"))
	require.Len(t, gone, 2, "the removal is in the removed environment's audit log")
	last := gone[1]
	assert.Equal(t, gen, last.Generation)
	require.Len(t, last.Changes, 1)
	assert.Equal(t, history.Change{Env: "gone", Kind: "environment", Name: "gone", Action: "removed"}, last.Changes[0])
	require.Len(t, last.Files, 1, "the file whose removal did it")
	assert.Equal(t, "extra/gone.toml", last.Files[0].Path)
	assert.Equal(t, "removed", last.Files[0].Action)

	kept := envAuditLines(t, filepath.Join(state, "audit", "kept.log"))
	assert.Len(t, kept, 1, "a restart that did not change the environment is no change of it")
}
