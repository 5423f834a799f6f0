package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/control"
	"edged/internal/history"
)

// TestRollbackAnnouncesTheFilesItChanges: edged rollback announces the
// files it is about to write, so that a generation the watcher makes of
// them is recorded as the rollback's. It announced every configuration
// file, those it leaves as they are too, one control line of about 130
// bytes each: a conf.d of some 8,000 files or more passed the 1 MiB a
// control request may have, and the rollback went on unannounced, saying
// nothing, its generations recorded as file changes by nobody. It now
// announces the files it changes: those whose content differs from the
// generation's, and those it moves aside.
func TestRollbackAnnouncesTheFilesItChanges(t *testing.T) {
	const n = 12000
	dir, state := historyConf(t, stateServer)
	files := []history.File{{Path: "server.toml", SHA256: config.SHA256Hex([]byte(stateServer)), Content: stateServer}}
	const same = "# a proxy's file\n"
	for i := range n {
		rel := fmt.Sprintf("team-%03d/apis/proxy-%05d-of-a-long-descriptive-name.toml", i/100, i)
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if i%100 == 0 {
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		}
		require.NoError(t, os.WriteFile(p, []byte(same), 0o644))
		files = append(files, history.File{Path: rel, SHA256: config.SHA256Hex([]byte(same)), Content: same})
	}
	const was, now = "# a: 1\n", "# a: 2\n"
	files = append(files, history.File{Path: "a.toml", SHA256: config.SHA256Hex([]byte(was)), Content: was})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.toml"), []byte(now), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "new.toml"), []byte("# added since\n"), 0o644))
	st, err := history.Open(state, 10)
	require.NoError(t, err)
	require.NoError(t, st.Save(history.Record{Generation: 3, Time: time.Now(), Trigger: "start", Files: files}))

	sock := filepath.Join(t.TempDir(), "edged.sock")
	var mu sync.Mutex
	var announced map[string]string
	srv, err := control.Listen(context.Background(), sock, func(_ context.Context, req control.Request) (any, error) {
		var a announceArgs
		if err := json.Unmarshal(req.Args, &a); err != nil {
			return nil, err
		}
		mu.Lock()
		announced = a.Files
		mu.Unlock()
		return map[string]uint64{"claim": 7}, nil
	}, nil)
	require.NoError(t, err)
	defer srv.Close()

	code, out, errOut := runEdged(t, "rollback", "3", "-c", dir, "--control", sock, "--no-wait")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "generation 3 restored")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]string{"a.toml": config.SHA256Hex([]byte(was)), "new.toml": ""}, announced,
		"the rollback announced the files it changes")
}
