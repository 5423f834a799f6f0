package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
			id, err := r.announce(&claim{cause: history.CausePromote, user: "alice", files: claimed, expires: expires})
			require.NoError(t, err)
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
	id, err := r.announce(&claim{cause: history.CauseRollback, user: "carol", files: map[string]string{"a.toml": "x"}, expires: time.Now().Add(time.Minute)})
	require.NoError(t, err)
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

// TestRecentGenerationsForTheStatusPage: the status page's list starts
// with the earlier runs' generations from the history, newest first, and
// keeps the last recentKept, each with at most changesShown changes.
func TestRecentGenerationsForTheStatusPage(t *testing.T) {
	dir := t.TempDir()
	st, err := history.Open(dir, 50)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("x"))
	file := history.File{Path: "a.toml", SHA256: hex.EncodeToString(sum[:]), Content: "x"}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for g := uint64(1); g <= 12; g++ {
		rec := history.Record{Generation: g, Time: t0.Add(time.Duration(g) * time.Minute), Trigger: "SIGHUP", Files: []history.File{file}}
		if g == 12 {
			rec.Changes = []history.Change{{Env: "uat", Kind: "proxy", Name: "users", Action: "changed"}, {Env: "uat", Kind: "environment", Name: "uat", Action: "changed"}}
		}
		require.NoError(t, st.Save(rec))
	}
	r := openHistory(config.Server{StateDir: dir, HistoryKeep: 50}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	got := r.recentGenerations()
	require.Len(t, got, recentKept)
	assert.Equal(t, uint64(12), got[0].Generation, "newest first")
	assert.Equal(t, uint64(3), got[recentKept-1].Generation)
	assert.Equal(t, []string{"changed proxy users (uat)", "changed environment uat"}, got[0].Changes)
	assert.Equal(t, t0.Add(12*time.Minute), got[0].Time.UTC())
	assert.Equal(t, history.CauseSIGHUP, got[0].Trigger, "an old record's cause, from its trigger")

	var many []history.Change
	for range changesShown + 3 {
		many = append(many, history.Change{Kind: "server", Name: "server", Action: "added"})
	}
	assert.Equal(t, []string{"added server"}, summary(1, t0, history.CauseStartup, "", many[:1]).Changes)
	r.remember(summary(13, t0, history.CausePromote, "alice", many))
	got = r.recentGenerations()
	require.Len(t, got, recentKept)
	assert.Equal(t, uint64(13), got[0].Generation)
	assert.Equal(t, "edged promote by alice", got[0].Trigger)
	assert.Len(t, got[0].Changes, changesShown+1)
	assert.Equal(t, "and 3 more (edged history)", got[0].Changes[changesShown])
}

// TestGenerationAnswerWaitsForTheReload: the control socket's
// "generation" is answered once a reload under way (swap and record) is
// over, so that edged diff finds the generation it is told in the history.
func TestGenerationAnswerWaitsForTheReload(t *testing.T) {
	ex := newExample(t)
	cfg, err := (&config.Loader{Dir: ex.confDir}).Load()
	require.NoError(t, err)
	srv := edge.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, _, err = srv.Apply(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	d := &daemon{srv: srv}

	d.reloadMu.Lock() // a reload under way
	got := make(chan uint64, 1)
	go func() { got <- d.servingGeneration() }()
	select {
	case g := <-got:
		t.Fatalf("answered %d while a reload was under way", g)
	case <-time.After(100 * time.Millisecond):
	}
	d.reloadMu.Unlock()
	select {
	case g := <-got:
		assert.Equal(t, srv.Snapshot().Generation, g)
	case <-time.After(5 * time.Second):
		t.Fatal("no answer once the reload was over")
	}
}

// TestAnnouncementsAreBounded: an announcement holds up to a control line
// (1 MiB) of file names for up to maxClaimTTL, and each reload's
// attribution goes through every live one. Any client of the control
// socket could announce without end, and edged's memory grew with it.
// Past maxClaims announcements, or maxClaimBytes of them, a new one is
// refused (the command then goes on unannounced, as when edged does not
// answer); one that ends makes room again.
func TestAnnouncementsAreBounded(t *testing.T) {
	r := &recorder{claims: map[uint64]*claim{}}
	expires := time.Now().Add(time.Minute)
	var ids []uint64
	for i := 0; i < maxClaims; i++ {
		id, err := r.announce(&claim{cause: history.CausePromote, files: map[string]string{"a.toml": "x"}, expires: expires})
		require.NoError(t, err, "announcement %d", i+1)
		ids = append(ids, id)
	}
	_, err := r.announce(&claim{cause: history.CausePromote, files: map[string]string{"a.toml": "x"}, expires: expires})
	require.ErrorContains(t, err, "announcements are pending")
	r.endClaim(ids[0])
	_, err = r.announce(&claim{cause: history.CausePromote, files: map[string]string{"a.toml": "x"}, expires: expires})
	require.NoError(t, err, "room again once one ended")

	// Bytes: a few large announcements fill the budget before the count.
	r = &recorder{claims: map[uint64]*claim{}}
	big := map[string]string{}
	for i := 0; len(big)*100 < 1<<20; i++ {
		big[fmt.Sprintf("%090d.toml", i)] = ""
	}
	n := 0
	for ; n < maxClaims; n++ {
		if _, err := r.announce(&claim{cause: history.CauseRollback, files: big, expires: expires}); err != nil {
			require.ErrorContains(t, err, "announcements are pending")
			break
		}
	}
	assert.Less(t, n, maxClaims, "refused by size")
	assert.LessOrEqual(t, r.claimBytes, maxClaimBytes)

	// Expired ones make room too.
	r.mu.Lock()
	for _, c := range r.claims {
		c.expires = time.Now().Add(-time.Second)
	}
	r.mu.Unlock()
	_, err = r.announce(&claim{cause: history.CauseRollback, files: big, expires: expires})
	require.NoError(t, err)
}
