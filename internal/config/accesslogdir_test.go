package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// [server] access_log_dir bounds where the environments' access logs may
// be, as the kernel reaches them: a home's operators set their log's
// path, and edged appends what clients send to it. Relative to the
// server's file; stdout is always allowed; a path outside, written
// plainly, through "..", or through a link in the directory, is an error
// on the path's line.
func TestAccessLogDirBoundsEnvironmentsLogs(t *testing.T) {
	server := baseServer + "access_log_dir = \"logs\"\n"
	env := func(path string) string {
		return "[[environment]]\nname = \"uat\"\n[environment.rules.access_log]\npath = " + path + " #!\n"
	}
	for _, tc := range []struct {
		name, path string
		link       bool // logs/out.log is a link to a file outside
		ok         bool
	}{
		{"inside", `"../logs/uat.log"`, false, true},
		{"below", `"../logs/uat/access.log"`, false, true},
		{"stdout", `""`, false, true},
		{"outside", `"/tmp/edged-test-bashrc"`, false, false},
		{"dot-dot", `"../logs/../uat.log"`, false, false},
		{"the directory itself", `"../logs"`, false, false},
		{"link leading out", `"../logs/out.log"`, true, false},
		{"/dev/stdout", `"/dev/stdout"`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"00-server.toml": server, "uat/uat.toml": env(tc.path)})
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "logs", "uat"), 0o755))
			if tc.link {
				require.NoError(t, os.Symlink(filepath.Join(t.TempDir(), "x.log"), filepath.Join(dir, "logs", "out.log")))
			}
			cfg, errs := loadErrors(t, dir)
			if tc.ok {
				require.Empty(t, errs)
				assert.Equal(t, filepath.Join(dir, "logs"), cfg.Server.AccessLogDir, "relative to the server's file")
				return
			}
			e, ok := findErrorOf(errs, `environment "uat"`, "rules.access_log.path", "is outside [server] access_log_dir "+filepath.Join(dir, "logs"))
			require.True(t, ok, "got:\n%s", describeErrors(errs))
			assert.Equal(t, filepath.Join(dir, "uat", "uat.toml"), e.Pos.File)
			assert.Equal(t, 4, e.Pos.Line, "the path's line")
			if tc.name == "/dev/stdout" {
				assert.Contains(t, e.Msg, `for stdout, set path = ""`)
			}
		})
	}
	// Without access_log_dir, anywhere, as before; a home below conf.d/
	// (one made to be given to others) has a warning on the path's line,
	// conf.d/ itself (the platform team's) none.
	dir := setupDir(t, map[string]string{"uat/uat.toml": env(`"/tmp/edged-test-elsewhere.log"`)})
	cfg, errs := loadErrors(t, dir)
	require.Empty(t, errs)
	e, ok := findErrorOf(cfg.Warnings, `environment "uat"`, "rules.access_log.path", "set [server] access_log_dir")
	require.True(t, ok, "got:\n%s", describeErrors(cfg.Warnings))
	assert.Equal(t, filepath.Join(dir, "uat", "uat.toml"), e.Pos.File)
	dir = setupDir(t, map[string]string{"uat.toml": env(`"/tmp/edged-test-elsewhere.log"`)})
	cfg, errs = loadErrors(t, dir)
	require.Empty(t, errs)
	_, ok = findErrorOf(cfg.Warnings, `environment "uat"`, "rules.access_log.path")
	assert.False(t, ok, "conf.d/ is the platform team's: %s", describeErrors(cfg.Warnings))
}
