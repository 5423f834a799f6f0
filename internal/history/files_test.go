package history

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Records written before causes and users were recorded load, and say
// the cause their trigger implies.
func TestOldRecordsLoadWithACauseFromTheirTrigger(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 10)
	require.NoError(t, err)
	for gen, trigger := range map[string]string{"1": "start", "2": "file change: /etc/edged/conf.d/a.toml", "3": "SIGHUP", "4": "edged reload", "5": "rescan"} {
		old := `{"generation": ` + gen + `, "time": "2026-11-01T10:00:00Z", "trigger": "` + trigger + `",
  "files": [{"path": "a.toml", "sha256": "00", "content": "[server]\n"}]}`
		require.NoError(t, os.WriteFile(filepath.Join(state, "history", "gen-000000000"+gen+".json"), []byte(old), 0o640))
	}
	recs, damaged, err := st.List()
	require.Empty(t, damaged)
	require.NoError(t, err)
	require.Len(t, recs, 5)
	var causes []string
	for _, r := range recs {
		assert.Empty(t, r.User)
		assert.Empty(t, r.Changed)
		causes = append(causes, CauseOf(r))
	}
	assert.Equal(t, []string{CauseStartup, CauseFileChange, CauseSIGHUP, CauseReload, CauseFileChange}, causes)
}

func TestCauseUserAndChangedFilesAreStored(t *testing.T) {
	st, err := Open(t.TempDir(), 3)
	require.NoError(t, err)
	mtime := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	rec := Record{Generation: 4, Time: time.Now(), Trigger: "edged promote", Cause: CausePromote, User: "alice (via sudo, uid 0)",
		Files:   []File{{Path: "uat.toml", SHA256: strings.Repeat("cd", 32), Content: "x"}},
		Changed: []FileChange{{Path: "uat.toml", Action: "changed", Owner: "alice", ModTime: mtime}, {Path: "old.toml", Action: "removed"}}}
	require.NoError(t, st.Save(rec))
	got, err := st.Meta(4)
	require.NoError(t, err)
	assert.Equal(t, CausePromote, CauseOf(got))
	assert.Equal(t, rec.User, got.User)
	assert.Equal(t, rec.Changed, got.Changed)
	assert.Empty(t, got.Files[0].Content, "Meta leaves the contents out")
	b, err := os.ReadFile(st.path(4))
	require.NoError(t, err)
	assert.NotContains(t, string(b), `"mtime":"0001`, "no time for a removed file")
}

func TestChangedFilesNamesOwnerAndTime(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "prod"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prod", "prod.toml"), []byte("new"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte("t"), 0o644))
	mtime := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(filepath.Join(dir, "prod", "prod.toml"), mtime, mtime))
	prev := map[string]string{"prod/prod.toml": "old-sum", "test.toml": "t-sum", "gone.toml": "g-sum"}
	now := []File{{Path: "prod/prod.toml", SHA256: "new-sum"}, {Path: "test.toml", SHA256: "t-sum"}, {Path: "uat.toml", SHA256: "u-sum"}}
	me, err := user.Current()
	require.NoError(t, err)
	got := ChangedFiles(dir, prev, now)
	assert.Equal(t, []FileChange{
		{Path: "gone.toml", Action: "removed"},
		{Path: "prod/prod.toml", Action: "changed", Owner: me.Username, ModTime: mtime},
		{Path: "uat.toml", Action: "added"}, // not on disk any more: no owner to tell
	}, got)
}
