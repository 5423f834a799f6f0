package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unitMode finds the octal mode that re captures in the unit.
func unitMode(t *testing.T, unit, re string) os.FileMode {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(unit)
	require.NotNil(t, m, "the unit has %s", re)
	v, err := strconv.ParseUint(m[1], 8, 32)
	require.NoError(t, err)
	return os.FileMode(v)
}

// The service runs as User=edged, Group=edged; systemd makes
// ConfigurationDirectory= root's. The test lays out /etc/edged as the unit
// and its install steps make it (modes read from the unit file), with an
// unprivileged user in the edged group's place, and runs `edged check` as
// that user: the ExecStartPre must pass. The unit's former 0750 on a
// root-owned /etc/edged locks the user out.
func TestSystemdLayoutIsReadableByTheServiceUser(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root, to run edged check as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, err := strconv.ParseUint(nobody.Uid, 10, 32)
	require.NoError(t, err)
	gid, err := strconv.ParseUint(nobody.Gid, 10, 32)
	require.NoError(t, err)
	require.NotZero(t, gid, "nobody's group stands for edged: it must not be root's")

	b, err := os.ReadFile("../../systemd/edged.service")
	require.NoError(t, err)
	unit := string(b)
	etcMode := unitMode(t, unit, `(?m)^ConfigurationDirectoryMode=([0-7]+)$`)
	dirMode := unitMode(t, unit, `(?m)^#\s+install -d -o root -g edged -m ([0-7]+) /etc/edged/conf\.d /etc/edged/certs$`)
	confMode := unitMode(t, unit, `(?m)^#\s+install -o root -g edged -m ([0-7]+) conf\.d/\*\.toml /etc/edged/conf\.d/$`)
	certMode := unitMode(t, unit, `(?m)^#\s+install -o root -g edged -m ([0-7]+) certs/\*\.pem certs/\*\.key /etc/edged/certs/$`)
	stateMode := unitMode(t, unit, `(?m)^StateDirectoryMode=([0-7]+)$`)
	logsMode := unitMode(t, unit, `(?m)^LogsDirectoryMode=([0-7]+)$`)
	require.Contains(t, unit, "\nUser=edged\nGroup=edged\n")

	ex := newExample(t)
	base := t.TempDir()
	// t.TempDir's directories are 0700: let the user through to base.
	require.NoError(t, os.Chmod(base, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(base), 0o755))
	etc := filepath.Join(base, "etc", "edged")
	conf, certs := filepath.Join(etc, "conf.d"), filepath.Join(etc, "certs")
	state := filepath.Join(base, "var", "lib", "edged")
	logs := filepath.Join(base, "var", "log", "edged")
	for _, d := range []string{conf, certs, state, logs} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	// ConfigurationDirectory=: root:root, the unit's mode.
	require.NoError(t, os.Chown(etc, 0, 0))
	require.NoError(t, os.Chmod(etc, etcMode))
	// StateDirectory=: the service user's, the unit's mode.
	require.NoError(t, os.Chown(state, int(uid), int(gid)))
	require.NoError(t, os.Chmod(state, stateMode))
	// LogsDirectory=: the same.
	require.NoError(t, os.Chown(logs, int(uid), int(gid)))
	require.NoError(t, os.Chmod(logs, logsMode))
	var install func(srcDir, dstDir string, mode os.FileMode)
	install = func(srcDir, dstDir string, mode os.FileMode) {
		ents, err := os.ReadDir(srcDir)
		require.NoError(t, err)
		for _, e := range ents {
			if e.IsDir() {
				// An environment's home, made like conf.d itself.
				require.Regexp(t, `(?m)^#\s+install -d -o root -g edged -m `+fmt.Sprintf("%04o", dirMode)+` /etc/edged/conf\.d/\$env$`, unit)
				sub := filepath.Join(dstDir, e.Name())
				require.NoError(t, os.Mkdir(sub, 0o700))
				install(filepath.Join(srcDir, e.Name()), sub, mode)
				continue
			}
			b, err := os.ReadFile(filepath.Join(srcDir, e.Name()))
			require.NoError(t, err)
			if e.Name() == "server.toml" {
				b = regexp.MustCompile(`(?m)^state_dir = "[^"]*"`).ReplaceAll(b, []byte(`state_dir = "`+state+`"`))
				b = regexp.MustCompile(`(?m)^access_log_dir = "[^"]*"`).ReplaceAll(b, []byte(`access_log_dir = "`+logs+`"`))
			}
			// As the unit says: access_log_dir /var/log/edged and the access
			// logs under it (the example's relative paths resolve under
			// read-only /etc).
			b = regexp.MustCompile(`(?m)^path = "[^"]*/([^/"]+\.log)"`).ReplaceAll(b, []byte(`path = "`+logs+`/$1"`))
			p := filepath.Join(dstDir, e.Name())
			require.NoError(t, os.WriteFile(p, b, 0o600))
			require.NoError(t, os.Chown(p, 0, int(gid)))
			require.NoError(t, os.Chmod(p, mode))
		}
		require.NoError(t, os.Chown(dstDir, 0, int(gid)))
		require.NoError(t, os.Chmod(dstDir, dirMode))
	}
	install(ex.confDir, conf, confMode)
	install(ex.certDir, certs, certMode)

	// The test binary stands in for edged; its build directory is root's
	// alone, so a copy goes where the user can run it.
	self, err := os.Executable()
	require.NoError(t, err)
	src, err := os.Open(self)
	require.NoError(t, err)
	defer src.Close()
	exe := filepath.Join(base, "edged")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())

	check := func() (string, error) {
		cmd := exec.Command(exe, "check", "-c", conf)
		cmd.Env = []string{"EDGED_TEST_MAIN=1", "PATH=/usr/bin:/bin"}
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := check()
	require.NoError(t, err, "edged check as %s (group %s) on the unit's layout:\n%s", nobody.Username, nobody.Gid, out)
	assert.Contains(t, out, "is valid")
	assert.Contains(t, out, " 0 warnings)", "no key readable by every user")

	// A logs directory the service user cannot write to: edged serve
	// could not open its access logs, so its ExecStartPre refuses.
	require.NoError(t, os.Chown(logs, 0, 0))
	out, err = check()
	require.Error(t, err, "a logs directory the service user cannot write to")
	assert.Contains(t, out, "directory "+logs+" is not writable by this user (uid "+nobody.Uid+")")
	require.NoError(t, os.Chown(logs, int(uid), int(gid)))

	// The unit's former mode: root's /etc/edged 0750 locks the user out.
	require.NoError(t, os.Chmod(etc, 0o750))
	out, err = check()
	require.Error(t, err, "a root-owned 0750 /etc/edged cannot be read by the service user")
	assert.True(t, strings.Contains(out, "permission denied"), out)
}
