package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/history"
)

// A generation is the announced command's when every file it changed is
// one the command announced, with the announced content; otherwise it is
// what triggered the reload.
func TestAttributeMatchesAnnouncedFilesOnly(t *testing.T) {
	claimed := map[string]string{"uat.toml": "new-uat", "orders.toml": "new-orders", "old.toml": ""}
	changed := func(action, path string) history.FileChange { return history.FileChange{Path: path, Action: action} }
	cases := []struct {
		name      string
		changes   []history.FileChange
		now       map[string]string
		origin    origin
		expired   bool
		wantCause string
		wantUser  string
	}{
		{"all announced", []history.FileChange{changed("changed", "uat.toml"), changed("added", "orders.toml")},
			map[string]string{"uat.toml": "new-uat", "orders.toml": "new-orders"}, origin{cause: history.CauseFileChange}, false, history.CausePromote, "alice"},
		{"half written yet", []history.FileChange{changed("changed", "uat.toml")},
			map[string]string{"uat.toml": "new-uat"}, origin{cause: history.CauseFileChange}, false, history.CausePromote, "alice"},
		{"moved away", []history.FileChange{changed("removed", "old.toml")},
			nil, origin{cause: history.CauseFileChange}, false, history.CausePromote, "alice"},
		{"another file too", []history.FileChange{changed("changed", "uat.toml"), changed("changed", "prod.toml")},
			map[string]string{"uat.toml": "new-uat", "prod.toml": "x"}, origin{cause: history.CauseFileChange}, false, history.CauseFileChange, ""},
		{"other content", []history.FileChange{changed("changed", "uat.toml")},
			map[string]string{"uat.toml": "hand-edited"}, origin{cause: history.CauseSIGHUP}, false, history.CauseSIGHUP, ""},
		{"announced content removed", []history.FileChange{changed("removed", "uat.toml")},
			nil, origin{cause: history.CauseFileChange}, false, history.CauseFileChange, ""},
		{"expired", []history.FileChange{changed("changed", "uat.toml")},
			map[string]string{"uat.toml": "new-uat"}, origin{cause: history.CauseFileChange}, true, history.CauseFileChange, ""},
		{"nothing changed in config files", nil, nil, origin{cause: history.CauseReload, user: "bob"}, false, history.CauseReload, "bob"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{claims: map[uint64]*claim{}}
			expires := time.Now().Add(time.Minute)
			if c.expired {
				expires = time.Now().Add(-time.Second)
			}
			id := r.announce(&claim{cause: history.CausePromote, user: "alice", files: claimed, expires: expires})
			r.setOrigin(c.origin)
			r.mu.Lock()
			cause, user := r.attribute(9, c.changes, c.now)
			r.mu.Unlock()
			assert.Equal(t, c.wantCause, cause)
			assert.Equal(t, c.wantUser, user)
			gen := r.endClaim(id)
			if c.wantCause == history.CausePromote {
				assert.Equal(t, uint64(9), gen, "the command's reload learns which generation was its")
			} else {
				assert.Zero(t, gen)
			}
		})
	}
}

// The command's own reload is the command's, whatever it changed.
func TestAttributeTheCommandsOwnReload(t *testing.T) {
	r := &recorder{claims: map[uint64]*claim{}}
	id := r.announce(&claim{cause: history.CauseRollback, user: "carol", files: map[string]string{"a.toml": "x"}, expires: time.Now().Add(time.Minute)})
	r.setOrigin(origin{cause: history.CauseRollback, user: "carol", claim: id})
	r.mu.Lock()
	cause, user := r.attribute(3, nil, nil)
	r.mu.Unlock()
	assert.Equal(t, history.CauseRollback, cause)
	assert.Equal(t, "carol", user)
	assert.Equal(t, uint64(3), r.endClaim(id))
	assert.Nil(t, r.claimOf(id), "ended")
}

// An environment's own audit log gets the changes touching it, with only
// the changed files that hold its objects, and the cause and user.
func TestEnvironmentAuditLinesCarryTheirOwnFiles(t *testing.T) {
	dir := t.TempDir()
	env := func(name, base string) string {
		return "[[environment]]\nname = \"" + name + "\"\n[environment.rules.audit_log]\n\n" +
			"[[proxy]]\nname = \"api\"\nenvironment = \"" + name + "\"\nbase_path = \"" + base + "\"\ntarget = \"http://127.0.0.1:9\"\n"
	}
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("server.toml", "[server]\nstate_dir = \"../state\"\n")
	write("test.toml", env("test", "/a"))
	write("prod.toml", env("prod", "/a"))
	lines := map[string][]auditLine{}
	r := &recorder{claims: map[uint64]*claim{}, prev: map[string]string{}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		auditEnv: func(env string, b []byte) {
			var l auditLine
			require.NoError(t, json.Unmarshal(b, &l))
			lines[env] = append(lines[env], l)
		}}
	load := func() *config.Config {
		cfg, err := config.Load(dir)
		require.NoError(t, err)
		return cfg
	}
	r.applied(dir, load(), edge.ReloadRecord{Generation: 1})
	require.Len(t, lines["prod"], 1)
	lines = map[string][]auditLine{}

	write("prod.toml", env("prod", "/b"))
	write("test.toml", "# a comment: the file changes, none of its objects\n"+env("test", "/a"))
	r.setOrigin(origin{cause: history.CauseReload, user: "bob"})
	r.applied(dir, load(), edge.ReloadRecord{Generation: 2})
	assert.Empty(t, lines["test"], "nothing of test changed")
	require.Len(t, lines["prod"], 1)
	l := lines["prod"][0]
	assert.Equal(t, "config", l.Event)
	assert.Equal(t, history.CauseReload, l.Cause)
	assert.Equal(t, "bob", l.User)
	require.Len(t, l.Files, 1, "test.toml changed too, but holds nothing of prod")
	assert.Equal(t, "prod.toml", l.Files[0].Path)
	assert.Equal(t, "changed", l.Files[0].Action)
}
