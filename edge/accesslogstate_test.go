package edge

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// An environment's access_log path is its operators' to set (the
// environment is declared in its home), but state_dir is edged's alone:
// an access log there would have edged append a line per request, what
// clients send, to the trail of who changed what (audit.log), another
// environment's audit log, or a generation's record or content in the
// history, which edged rollback would then refuse as damaged. A path
// naming one of them, straight or through a symlink in the
// environment's home, fails the environment's build and leaves the file
// as it was.
func TestAccessLogCannotBeAFileOfTheStateDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	stateDir := t.TempDir()
	for _, dir := range []string{"audit", "history"} {
		require.NoError(t, os.Mkdir(filepath.Join(stateDir, dir), 0o750))
	}
	own := map[string]string{
		"audit.log":           "{\"event\":\"reload\"}\n",
		"audit/other.log":     "{\"event\":\"config\"}\n",
		"history/000001.json": "{\"generation\":1}\n",
	}
	for name, content := range own {
		require.NoError(t, os.WriteFile(filepath.Join(stateDir, name), []byte(content), 0o640))
	}
	for _, tc := range []struct{ name, path string }{
		{"audit.log", filepath.Join(stateDir, "audit.log")},
		{"another environment's audit log", filepath.Join(stateDir, "audit", "other.log")},
		{"a new file in the audit directory", filepath.Join(stateDir, "audit", "new.log")},
		{"a history record", filepath.Join(stateDir, "history", "000001.json")},
		{"not cleaned", stateDir + "/history/../audit.log"},
		{"through a symlink in the home", "state/audit.log"},
		{"a symlink to the file", "trail.log"},
		{"a dangling symlink with .. after a symlink", "new.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Symlink(stateDir, filepath.Join(dir, "state")))
			require.NoError(t, os.Symlink(filepath.Join(stateDir, "audit.log"), filepath.Join(dir, "trail.log")))
			// The kernel follows hist before its "..": hist/../audit is
			// state_dir/audit, not the home's audit.
			require.NoError(t, os.Symlink(filepath.Join(stateDir, "history"), filepath.Join(dir, "hist")))
			require.NoError(t, os.Symlink("hist/../audit/new.log", filepath.Join(dir, "new.log")))
			writeFiles(t, dir, map[string]string{
				"server.toml": serverTOML(stateDir, ""),
				"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(tc.path)+"\"\n") +
					groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
			})
			cfg, err := config.Load(dir)
			require.NoError(t, err)
			srv := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
			_, _, err = srv.Apply(cfg)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}
			if assert.Error(t, err, "an access log in state_dir is refused") {
				assert.Contains(t, err.Error(), `environment "sd": access_log`)
				assert.Contains(t, err.Error(), "state_dir")
			}
			for name, content := range own {
				got, err := os.ReadFile(filepath.Join(stateDir, name))
				require.NoError(t, err)
				assert.Equal(t, content, string(got), "%s is as it was", name)
			}
			_, err = os.Stat(filepath.Join(stateDir, "audit", "new.log"))
			assert.True(t, os.IsNotExist(err), "no file made in the state_dir")
		})
	}
}

// SIGUSR1 opens the access log's path again: a path that led to a file
// of the environment's operators when the environment was built, and
// leads into state_dir by then (its directory swapped for a symlink), is
// not opened; the log goes on in the file it had.
func TestReopenDoesNotFollowAnAccessLogIntoTheStateDir(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	stateDir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(stateDir, "history"), 0o750))
	home := t.TempDir()
	logs := filepath.Join(home, "logs")
	require.NoError(t, os.Mkdir(logs, 0o755))
	access := filepath.Join(logs, "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(stateDir, ""),
		"a.toml": envTOML("sd", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") +
			groupTOML("sd", "sd", "test.acme.com", "test.acme.com") + proxyTOML("sd", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)

	require.NoError(t, os.Rename(logs, logs+".1"))
	require.NoError(t, os.Symlink(filepath.Join(stateDir, "history"), logs))
	err := te.srv.ReopenLogs()
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "state_dir")
	}
	resp, _ = te.get("test.acme.com", "/api/2")
	require.Equal(t, 200, resp.StatusCode)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	_, err = os.Stat(filepath.Join(stateDir, "history", "access.log"))
	assert.True(t, os.IsNotExist(err), "no access log made in state_dir/history")
	assert.Len(t, readJSONLines(t, filepath.Join(logs+".1", "access.log")), 2, "both lines in the file the log had")
}
