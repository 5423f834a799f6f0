package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/history"
)

// TestHistoryListMemoryIsBoundedByARecord: edged history read every kept
// record whole (each file's name and hash, each change) and held them all
// until it had listed the last one, so its memory grew with history_keep
// (up to 10,000) times the configuration's size: 150 generations of
// 2,000 files held about 50 MB here, 10,000 of them would hold gigabytes.
// It now reads a record, lists it and lets it go; and a generation that
// changed more objects than a row shows (a first start adds every one)
// lists the first few and how many more, as the status page does, rather
// than a line of every change.
func TestHistoryListMemoryIsBoundedByARecord(t *testing.T) {
	const gens, nfiles = 150, 2000
	dir, state := historyConf(t, stateServer)
	st, err := history.Open(state, gens)
	require.NoError(t, err)
	files := make([]history.File, nfiles)
	var changes []history.Change
	for i := range files {
		files[i] = history.File{Path: fmt.Sprintf("team-%03d/apis/proxy-%04d.toml", i/20, i), SHA256: config.SHA256Hex(nil)}
		changes = append(changes, history.Change{Env: fmt.Sprintf("team-%03d", i/20), Kind: "proxy", Name: fmt.Sprintf("proxy-%04d", i), Action: "added"})
	}
	for g := uint64(1); g <= gens; g++ {
		rec := history.Record{Generation: g, Time: time.Now(), Trigger: "file change", Cause: history.CauseFileChange, Files: files,
			Changes: []history.Change{{Env: "team-000", Kind: "proxy", Name: "proxy-0000", Action: "changed"}}}
		if g == 1 {
			rec.Trigger, rec.Cause, rec.Changes = "start", history.CauseStartup, changes
		}
		require.NoError(t, st.Save(rec))
	}

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	var peak uint64
	listed := 0
	testHookListed = func() {
		listed++
		peak = max(peak, heap())
	}
	t.Cleanup(func() { testHookListed = nil })
	code, out, errOut := runEdged(t, "history", "-c", dir)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, gens, listed)
	held := int64(peak) - int64(base)
	t.Logf("held while listing: %d bytes beyond the start", held)
	assert.Less(t, held, int64(8<<20), "memory held while listing grows with one record, not with the history")

	first := historyRow(t, out, 1)
	assert.Contains(t, first, "added team-000/proxy proxy-0000; ")
	assert.True(t, strings.HasSuffix(first, fmt.Sprintf("; and %d more (edged history 1)", nfiles-changesShown)), "the first generation's row: %.300s...", first)
	assert.Less(t, len(first), 1000)
	assert.Regexp(t, `\s+file change\s+-\s+2000\s+changed team-000/proxy proxy-0000$`, historyRow(t, out, 2))
}
