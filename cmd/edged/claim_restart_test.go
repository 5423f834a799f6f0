package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// TestReloadNamingAnAnnouncementEdgedNoLongerHolds: edged promote and
// rollback announce their files, write them, then ask for a reload naming
// the announcement. The running edged may no longer hold it by then: it
// was restarted in between (announcements live in its memory), or the
// announcement outlived its --timeout while a large rollback wrote. The
// reload was refused ("announcement N is unknown or expired"), and the
// command said the running edged "did not answer" and exited 1, its files
// written but not applied by it; and since each process numbered its
// announcements from 1, a restarted edged took the old number for its
// own first announcement, another command's: the generation was recorded
// as that command's, with its cause and user. Now a reload whose
// announcement is gone is still made, as the command's cause and by its
// caller, and announcements are numbered from a random start.
func TestReloadNamingAnAnnouncementEdgedNoLongerHolds(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	orders := ex.home("test", "orders.toml")
	rel, err := filepath.Rel(ex.confDir, orders)
	require.NoError(t, err)
	rel = filepath.ToSlash(rel)
	announceAs := func(cause, sudoUser string, files map[string]string) uint64 {
		t.Helper()
		var out struct{ Claim uint64 }
		require.NoError(t, control.CallWith(ex.controlPath(), "announce", announceArgs{Cause: cause, SudoUser: sudoUser, Files: files, TTL: 60}, 5*time.Second, &out))
		require.NotZero(t, out.Claim)
		return out.Claim
	}

	// alice's rollback announces orders.toml; edged restarts before she
	// writes it and asks for her reload.
	p := startServe(t, ex.confDir)
	alice := announceAs(history.CauseRollback, "alice", map[string]string{rel: config.SHA256Hex([]byte(ordersProxy))})
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("edged did not stop")
	}
	p = startServe(t, ex.confDir)
	gen := p.generation(t)
	// bob's promote, meanwhile, announces another file.
	bob := announceAs(history.CausePromote, "bob", map[string]string{"uat/other.toml": config.SHA256Hex([]byte("x"))})
	t.Logf("alice's announcement %d, bob's %d", alice, bob)

	require.NoError(t, os.WriteFile(orders, []byte(ordersProxy), 0o644))
	var rec reloadReply
	err = control.CallWith(ex.controlPath(), "reload", reloadArgs{Cause: history.CauseRollback, SudoUser: "alice", Claim: alice}, 30*time.Second, &rec)
	require.NoError(t, err, "the reload alice's rollback asked for is made")
	require.True(t, rec.OK, "%+v", rec)
	assert.Equal(t, uint64(gen+1), rec.Generation)

	code, out, errOut := runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `\s+edged rollback\s+`+regexp.QuoteMeta(fmt.Sprintf("alice (via sudo, uid %d)", os.Getuid()))+`\s+`, historyRow(t, out, gen+1),
		"alice's rollback, not bob's promote")
}
