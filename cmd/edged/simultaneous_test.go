package main

import (
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/history"
)

// Two edged serve started at the same moment on one state_dir (two copies
// of a directory, other ports; a unit and a shell): exactly one serves,
// and the other refuses before it records anything. The check of the
// control socket alone left the whole start between it and the socket's
// bind to race in: both recorded a startup generation in the one history
// and audit.log, and both could end up serving, one unreachable.
func TestSimultaneousStartsOnOneStateDir(t *testing.T) {
	first := newExample(t)
	state := filepath.Join(first.root, "var", "state")
	second := newExample(t)
	second.setServer(t, "state_dir", strconv.Quote(state))

	type run struct {
		stderr *syncBuffer
		done   chan error
	}
	start := func(dir string) run {
		r := run{stderr: &syncBuffer{}, done: make(chan error, 1)}
		cmd := edgedCmd(t, "serve", "-c", dir)
		cmd.Stderr, cmd.Stdout = r.stderr, io.Discard
		require.NoError(t, cmd.Start())
		go func() { r.done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-r.done })
		return r
	}
	a, b := start(first.confDir), start(second.confDir)

	// One of them gives up; give the other time to be up too.
	var loser, winner run
	select {
	case err := <-a.done:
		a.done <- err
		loser, winner = a, b
	case err := <-b.done:
		b.done <- err
		loser, winner = b, a
	case <-time.After(30 * time.Second):
		t.Fatalf("both serve on one state_dir:\n%s\n---\n%s", a.stderr.String(), b.stderr.String())
	}
	require.Eventually(t, func() bool { return listeningRE.MatchString(winner.stderr.String()) }, 15*time.Second, 20*time.Millisecond,
		"the other serves: %s", winner.stderr.String())
	assert.Contains(t, loser.stderr.String(), "another edged", "the loser says why")
	select {
	case err := <-winner.done:
		t.Fatalf("the winner exited too: %v\n%s", err, winner.stderr.String())
	default:
	}

	st, err := history.Open(state, 0)
	require.NoError(t, err)
	recs, _, err := st.List()
	require.NoError(t, err)
	assert.Len(t, recs, 1, "one startup generation in the history")
	var starts []string
	for _, l := range auditLines(t, state) {
		if l.Trigger == "start" {
			starts = append(starts, strings.TrimSpace(l.Cause))
		}
	}
	assert.Len(t, starts, 1, "one startup in audit.log")
}
