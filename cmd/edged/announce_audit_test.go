package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/control"
	"edged/internal/history"
)

// Every control action lands in state_dir/audit.log: an announcement too,
// since it decides whose the next generation is (accepted, with who sent
// it, the files it claims and the claim's number; refused, with why).
func TestAnnounceIsAudited(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	stateDir := filepath.Join(ex.root, "var", "state")

	files := map[string]string{"uat/uat.toml": "0123"}
	var out struct{ Claim uint64 }
	require.NoError(t, control.CallWith(ex.controlPath(), "announce",
		announceArgs{Cause: history.CausePromote, SudoUser: "alice", Files: files, TTL: 60}, 5*time.Second, &out))
	require.NotZero(t, out.Claim)
	err := control.CallWith(ex.controlPath(), "announce", announceArgs{Cause: "edged bogus", Files: files}, 5*time.Second, nil)
	require.Error(t, err)

	var got []auditLine
	for _, l := range auditLines(t, stateDir) {
		if l.Event == "announce" {
			got = append(got, l)
		}
	}
	require.Len(t, got, 2, "one line per announcement")
	ok := got[0]
	assert.Equal(t, "success", ok.Result)
	assert.Equal(t, history.CausePromote, ok.Cause)
	assert.Contains(t, ok.User, "alice (via sudo, uid ")
	assert.Equal(t, files, ok.Announced)
	assert.Equal(t, out.Claim, ok.Claim)
	assert.Equal(t, uint64(p.generation(t)), ok.Generation, "the generation serving when it came")
	bad := got[1]
	assert.Equal(t, "failure", bad.Result)
	assert.Equal(t, "edged bogus", bad.Cause)
	require.Len(t, bad.Errors, 1)
	assert.Contains(t, bad.Errors[0], "is not")
}
