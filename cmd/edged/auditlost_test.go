package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/edge"
	"edged/internal/config"
	"edged/internal/history"
)

// A line of state_dir/audit.log that cannot be written (a full disk, a
// file system gone read-only; here audit.log is a directory) is the
// trail of who changed what: it goes to edged's own log instead, with
// its content, as an environment's audit line does ("audit log is
// behind"), not only the error.
func TestAuditLineThatCannotBeWrittenGoesToTheLog(t *testing.T) {
	state := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(state, "audit.log"), 0o750))
	st, err := history.Open(state, 5)
	require.NoError(t, err)
	var logged bytes.Buffer
	r := &recorder{store: st, log: slog.New(slog.NewJSONHandler(&logged, nil)), claims: map[uint64]*claim{}}
	r.setOrigin(origin{cause: history.CauseReload, user: "alice"})
	r.failed(edge.ReloadRecord{Time: time.Now(), Trigger: "edged reload", Generation: 7,
		Errors: []config.Error{{Pos: config.Pos{File: "uat.toml", Line: 3}, Msg: "broken"}}})

	out := logged.String()
	require.Contains(t, out, "audit log", "the failure is logged")
	for _, want := range []string{`\"user\":\"alice\"`, `\"result\":\"failure\"`, `\"generation\":7`, `uat.toml:3: broken`} {
		assert.True(t, strings.Contains(out, want), "the log has the line's %s: %s", want, out)
	}
}
