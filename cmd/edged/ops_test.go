package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/history"
)

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

	var many []history.Change
	for range changesShown + 3 {
		many = append(many, history.Change{Kind: "server", Name: "server", Action: "added"})
	}
	assert.Equal(t, []string{"added server"}, summary(1, t0, "start", many[:1]).Changes)
	r.mu.Lock()
	r.remember(summary(13, t0, "start", many))
	r.mu.Unlock()
	got = r.recentGenerations()
	require.Len(t, got, recentKept)
	assert.Equal(t, uint64(13), got[0].Generation)
	assert.Len(t, got[0].Changes, changesShown+1)
	assert.Equal(t, "and 3 more (edged history)", got[0].Changes[changesShown])
}
