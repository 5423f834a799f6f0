package edge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEmptiedFileIsTakenAsHalfWritten: a file rewritten in place is empty
// for a moment; a reload that catches it then must not remove what the
// file holds. Deleting the file does remove it.
func TestEmptiedFileIsTakenAsHalfWritten(t *testing.T) {
	te, _ := threeGroups(t, "")
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log}
	before := te.srv.Snapshot()
	uat := filepath.Join(te.dir, "uat.toml")
	content, err := os.ReadFile(uat)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(uat, nil, 0o644))
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Len(t, rec.Errors, 1)
	assert.Equal(t, uat, rec.Errors[0].Pos.File)
	assert.Contains(t, rec.Errors[0].Error(), "empty now")
	assert.Same(t, before, te.srv.Snapshot(), "nothing changed")
	resp, _ := te.get("uat.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode)

	require.NoError(t, os.WriteFile(uat, content, 0o644))
	rec = rl.Reload("test")
	require.True(t, rec.OK, "%v", rec.Errors)
	assert.True(t, rec.Unchanged, "the same content again changes nothing")
	assert.Same(t, before, te.srv.Snapshot(), "and builds nothing")

	require.NoError(t, os.Remove(uat))
	rec = rl.Reload("test")
	require.True(t, rec.OK, "%v", rec.Errors)
	assert.Equal(t, []string{"uat"}, rec.Change.Removed)
}

// TestBuildErrorsNameTheFile: what fails after validation (an access log
// that cannot be opened) is reported at the environment's file and line.
func TestBuildErrorsNameTheFile(t *testing.T) {
	te, _ := threeGroups(t, "")
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log}
	p := filepath.Join(te.dir, "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	broken := strings.Replace(string(b), "queue_timeout = \"1s\"", "queue_timeout = \"1s\"\n[environment.rules.access_log]\npath = \"/nonexistent/dir/access.log\"", 1)
	require.NoError(t, os.WriteFile(p, []byte(broken), 0o644))
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Len(t, rec.Errors, 1)
	assert.Equal(t, p, rec.Errors[0].Pos.File)
	assert.Positive(t, rec.Errors[0].Pos.Line)
	assert.Contains(t, rec.Errors[0].Error(), `environment "test": access_log`)
}

// TestReloadHooksFrameEveryAttempt: Starting before the load, Done after
// the server recorded the outcome, for a success and a failure; neither
// once the Reloader is stopped.
func TestReloadHooksFrameEveryAttempt(t *testing.T) {
	te, _ := threeGroups(t, "")
	var calls []string
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log,
		Starting: func(trigger string) { calls = append(calls, "starting "+trigger) },
		Done: func(rec ReloadRecord) {
			te.srv.statusMu.Lock()
			recorded := te.srv.lastResult != nil && te.srv.lastResult.Trigger == rec.Trigger
			te.srv.statusMu.Unlock()
			calls = append(calls, fmt.Sprintf("done %s ok=%v recorded=%v", rec.Trigger, rec.OK, recorded))
		},
	}
	require.True(t, rl.Reload("one").OK)
	p := filepath.Join(te.dir, "test.toml")
	require.NoError(t, os.WriteFile(p, []byte("[[proxy]]\nname = 1\n"), 0o644))
	require.False(t, rl.Reload("two").OK)
	rl.Stop()
	require.False(t, rl.Reload("three").OK)
	assert.Equal(t, []string{"starting one", "done one ok=true recorded=true", "starting two", "done two ok=false recorded=true"}, calls)
}
