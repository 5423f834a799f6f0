package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/control"
	"edged/internal/history"
)

// TestAnnouncementHoldsNoLongerThanTheTimeout: a command's announcement
// holds for its --timeout, sent in whole seconds. A --timeout under a
// second was sent as 0, which the running edged takes as "none given"
// and holds for its most, 10 minutes: the files a command announced then
// counted as its own (and, written empty, as restored on purpose) for 10
// minutes rather than half a second.
func TestAnnouncementHoldsNoLongerThanTheTimeout(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "edged.sock")
	var mu sync.Mutex
	var got []int
	srv, err := control.Listen(context.Background(), sock, func(_ context.Context, req control.Request) (any, error) {
		var a announceArgs
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		mu.Lock()
		got = append(got, a.TTL)
		mu.Unlock()
		return map[string]uint64{"claim": 1}, nil
	}, nil)
	require.NoError(t, err)
	defer srv.Close()
	for _, d := range []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond} {
		claim := announce(dir, sock, history.CauseRollback, map[string]string{filepath.Join(dir, "a.toml"): ""}, d)
		require.Equal(t, uint64(1), claim)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1, 1, 2}, got, "whole seconds, rounded up: never 0")
}
