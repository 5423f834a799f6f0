package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/asnobody"
)

// TestCheckPassesWithWarnings: warnings do not fail check; each is one
// line "file:line: warning: object: message", and the summary counts them.
func TestCheckPassesWithWarnings(t *testing.T) {
	ex := newExample(t)
	file := filepath.Join(ex.confDir, "lonely.toml")
	require.NoError(t, os.WriteFile(file, []byte("\n[[environment]]\nname = \"lonely\"\n\n[[environment]]\nname = \"alone\"\n"), 0o644))

	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	require.Len(t, lines, 2, errOut)
	assert.Equal(t, file+`:2: warning: environment "lonely": attached to no env_group: none of its proxies can be reached; list it in the environments of an env_group`, lines[0])
	assert.True(t, strings.HasPrefix(lines[1], file+`:5: warning: environment "alone": attached to no env_group`), lines[1])
	assert.Contains(t, out, "configuration in "+ex.confDir+" is valid: 5 environments, 3 env groups, 6 hostnames, 3 proxies, 3 upstreams, 3 virtual hosts (6 files, 2 warnings)")
}

func TestCheckSummaryCountsInTheSingular(t *testing.T) {
	ex := newExample(t)
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "lonely.toml"), []byte("[[environment]]\nname = \"lonely\"\n"), 0o644))
	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "(6 files, 1 warning)\n")
}

// TestHelp: -h, --help and 'edged help NAME' print what the command does
// and each of its flags to stdout, and exit 0.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		about string   // from its description
		flags []string // every flag it defines
	}{
		{"serve", "reloads by itself", []string{"-c DIR", "-log-format"}},
		{"check", "Exit status: 0 valid (warnings do not fail it), 1 invalid, 2 wrong usage.", []string{"-c DIR"}},
		{"routes", "routing table", []string{"-c DIR"}},
		{"reload", "control socket", []string{"-c DIR", "-control PATH", "-timeout"}},
		{"history", "cause (startup, file change", []string{"-c DIR"}},
		{"rollback", "generation GEN", []string{"-c DIR", "-no-wait", "-control PATH", "-timeout"}},
		{"promote", "Copy proxy PROXY", []string{"-c DIR", "-from", "-to", "-upstream NAME", "-target URL", "-with-upstream", "-node URL", "-dry-run", "-no-wait", "-control PATH", "-timeout"}},
		{"diff", "unified diff", []string{"-c DIR", "-control PATH"}},
		{"version", "Print the version", nil},
	} {
		for _, args := range [][]string{{tc.cmd, "-h"}, {tc.cmd, "--help"}, {"help", tc.cmd}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errOut := runEdged(t, args...)
				assert.Equal(t, 0, code)
				assert.Empty(t, errOut)
				assert.True(t, strings.HasPrefix(out, "Usage: edged "+tc.cmd), out)
				assert.Contains(t, out, tc.about)
				for _, f := range tc.flags {
					assert.Contains(t, out, "\n  "+f, "flag %s", f)
				}
			})
		}
	}
}

// TestLeftoverArguments: an argument a command does not take is an error
// (exit 2), not silently ignored; the positional arguments of rollback and
// promote are still taken, before or after the flags.
func TestLeftoverArguments(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	// rollback and history open the state_dir named here, not /var/lib/edged.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.toml"), []byte("[server]\nstate_dir = \"../state\"\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string // on stderr; "" means parsing succeeded (any exit but 2)
	}{
		{[]string{"check", "-c", dir, "extra"}, `edged check: unexpected argument "extra"`},
		{[]string{"check", dir}, `edged check: unexpected argument "` + dir + `" (to name the configuration directory: -c ` + dir + `)`},
		{[]string{"check", dir, "-c", dir}, `unexpected arguments ["` + dir + `" "-c" "` + dir + `"]`},
		{[]string{"routes", "-c", dir, "a", "b"}, `edged routes: unexpected arguments ["a" "b"]`},
		{[]string{"serve", "-c", dir, "now"}, `edged serve: unexpected argument "now"`},
		{[]string{"reload", "-c", dir, "now"}, `edged reload: unexpected argument "now"`},
		{[]string{"history", "-c", dir, "10", "11"}, `edged history: unexpected argument "11"`},
		{[]string{"diff", "-c", dir, "1", "2", "3"}, `edged diff: unexpected argument "3"`},
		{[]string{"diff", "1", "2", "-c", dir, "3"}, `edged diff: unexpected argument "3"`},
		{[]string{"history", "-c", dir, "10"}, ""},
		{[]string{"diff", "1", "-c", dir, "2"}, ""},
		{[]string{"rollback", "3", "-c", dir, "4"}, `edged rollback: unexpected argument "4"`},
		{[]string{"rollback", "-c", dir, "3", "4"}, `edged rollback: unexpected argument "4"`},
		{[]string{"promote", "users", "--from", "test", "--to", "uat", "-c", dir, "extra"}, `edged promote: unexpected argument "extra"`},
		{[]string{"version", "extra"}, `edged version: unexpected arguments ["extra"]`},
		{[]string{"check", "-x"}, "flag provided but not defined: -x"},
		{[]string{"rollback", "3", "-c", dir}, ""},
		{[]string{"rollback", "-c", dir, "3"}, ""},
		{[]string{"promote", "users", "--from", "test", "--to", "uat", "-c", dir}, ""},
		{[]string{"promote", "--from", "test", "--to", "uat", "-c", dir, "users"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runEdged(t, tc.args...)
			if tc.want == "" {
				assert.NotEqual(t, 2, code, errOut)
				assert.NotContains(t, errOut, "unexpected argument")
				return
			}
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
		})
	}
}

// TestCheckRefusesAnAccessLogServeCannotOpen: edged serve opens every
// access log before it listens and refuses to start when one cannot be
// opened; check (the unit's ExecStartPre) must refuse the same directory,
// not pass it to a service that then fails in a restart loop.
func TestCheckRefusesAnAccessLogServeCannotOpen(t *testing.T) {
	ex := newExample(t)
	logDir := filepath.Join(ex.root, "var", "log")
	require.NoError(t, os.RemoveAll(logDir))

	code, _, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 1, code, errOut)
	prod := filepath.Join(ex.confDir, "prod", "prod.toml")
	assert.Contains(t, errOut, prod+`:17: environment "prod": rules.access_log.path: `+filepath.Join(logDir, "prod-access.log")+`: directory `+logDir+` does not exist; create it`)
	assert.Contains(t, errOut, `environment "uat": rules.access_log.path`)

	// A file in its place, not a directory: the same.
	require.NoError(t, os.WriteFile(logDir, nil, 0o644))
	code, _, errOut = runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, logDir+" is not a directory")

	// A log that is a directory.
	require.NoError(t, os.Remove(logDir))
	require.NoError(t, os.MkdirAll(filepath.Join(logDir, "prod-access.log"), 0o755))
	code, _, errOut = runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, filepath.Join(logDir, "prod-access.log")+" is a directory")

	require.NoError(t, os.Remove(filepath.Join(logDir, "prod-access.log")))
	code, _, errOut = runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	_, err := os.Stat(filepath.Join(logDir, "prod-access.log"))
	assert.ErrorIs(t, err, os.ErrNotExist, "check creates no log file")
}

// TestTimeoutMustBePositive: --timeout 0 or below set a deadline already
// passed on the control socket, so a reload the running edged applied was
// reported as an i/o timeout (exit 1). It is a usage error.
func TestTimeoutMustBePositive(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"reload", "-c", dir, "--timeout", "0s"},
		{"reload", "-c", dir, "--timeout=-5s"},
		{"rollback", "1", "-c", dir, "--timeout", "0"},
		{"promote", "p", "--from", "a", "--to", "b", "-c", dir, "--timeout", "-1s"},
	} {
		code, out, errOut := runEdged(t, args...)
		assert.Equal(t, 2, code, "%q: %s%s", args, out, errOut)
		assert.Contains(t, errOut, "must be a positive duration", "%q", args)
	}
}

// TestExtraArgumentHintOnlyWithoutC: the hint to write -c DIR is for an
// argument given in its place; with -c given, it named the wrong fix.
func TestExtraArgumentHintOnlyWithoutC(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runEdged(t, "check", "-c", dir, "extra")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `edged check: unexpected argument "extra"`)
	assert.NotContains(t, errOut, "to name the configuration directory", "-c was given")
	code, _, errOut = runEdged(t, "check", dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "(to name the configuration directory: -c "+dir+")")
}

// TestCheckRefusesAnAccessLogInTheStateDir: an environment's operators
// set its access_log path, and edged serve refuses one that writes into
// state_dir's own files (its audit log, the environments' audit logs,
// the history); check, the unit's ExecStartPre, refuses it at its line.
func TestCheckRefusesAnAccessLogInTheStateDir(t *testing.T) {
	ex := newExample(t)
	prod := filepath.Join(ex.confDir, "prod", "prod.toml")
	b, err := os.ReadFile(prod)
	require.NoError(t, err)
	conf := strings.Replace(string(b), `path = "../../var/log/prod-access.log"`, `path = "../../var/state/audit.log"`, 1)
	require.NotEqual(t, string(b), conf)
	require.NoError(t, os.WriteFile(prod, []byte(conf), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(ex.root, "var", "state"), 0o750))
	// Without access_log_dir, which would refuse it first: state_dir is
	// refused whatever the server's other keys.
	ex.setServer(t, "access_log_dir", `""`)

	code, _, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, prod+`:17: environment "prod": rules.access_log.path: `+filepath.Join(ex.root, "var", "state", "audit.log")+` is in state_dir `)
}

// TestCheckRefusesAnAuditLogServeCannotOpen: an environment with
// rules.audit_log writes state_dir/audit/ENV.log, which edged serve
// makes and opens before it listens, refusing to start when it cannot
// (as for an access log). check, the unit's ExecStartPre, passed such a
// state_dir (exit 0), and the service then failed to start.
func TestCheckRefusesAnAuditLogServeCannotOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	server := filepath.Join(dir, "server.toml")
	require.NoError(t, os.WriteFile(server, []byte("[server]\nstate_dir = \"../state\"\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\n\n"+
		"[[environment]]\nname = \"test\"\n[environment.rules.audit_log]\n"), 0o644))
	state := filepath.Join(filepath.Dir(dir), "state")
	require.NoError(t, os.MkdirAll(state, 0o750))
	auditLog := filepath.Join(state, "audit", "test.log")

	serve := func() (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := edgedCmd(t, "serve", "-c", dir)
		cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		cmd.Env = append(os.Environ(), "EDGED_TEST_MAIN=1")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	for _, tc := range []struct {
		name, want string
		make       func()
	}{
		{"a directory in the log's place", auditLog + " is a directory", func() {
			require.NoError(t, os.MkdirAll(auditLog, 0o750))
		}},
		{"a file in the audit directory's place", auditLog + ": " + filepath.Join(state, "audit") + " is not a directory", func() {
			require.NoError(t, os.WriteFile(filepath.Join(state, "audit"), nil, 0o640))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.RemoveAll(filepath.Join(state, "audit")))
			tc.make()
			code, serveOut := serve()
			require.Equal(t, 1, code, "edged serve cannot start:\n%s", serveOut)
			require.Contains(t, serveOut, "audit_log")

			code, _, errOut := runEdged(t, "check", "-c", dir)
			assert.Equal(t, 1, code, "edged check passed what edged serve refuses: %s", errOut)
			assert.Contains(t, errOut, server+`:8: environment "test": rules.audit_log: `+tc.want)
		})
	}

	require.NoError(t, os.RemoveAll(filepath.Join(state, "audit")))
	code, _, errOut := runEdged(t, "check", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.NoDirExists(t, filepath.Join(state, "audit"), "check creates nothing")
}

// TestReloadOfAMissingDirectoryFails: edged reload -c DIR asks the edged
// whose state_dir DIR names. A DIR that does not exist (a typo), or a
// file, names none, and the command went to the default state_dir's
// socket: the edged running there, if any, was reloaded and the command
// said "reloaded: generation N", exit 0, for a directory nobody serves.
// As edged history and diff do, it says the directory is not there.
func TestReloadOfAMissingDirectoryFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "conf.d")
	code, out, errOut := runEdged(t, "reload", "-c", missing, "--timeout", "2s")
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "edged reload: config directory "+missing+" does not exist (-c names the directory of the .toml files)\n", errOut)

	file := filepath.Join(t.TempDir(), "server.toml")
	require.NoError(t, os.WriteFile(file, []byte("[server]\n"), 0o644))
	code, _, errOut = runEdged(t, "reload", "-c", file, "--timeout", "2s")
	assert.Equal(t, 1, code)
	assert.Equal(t, "edged reload: "+file+" is not a directory (-c names the directory of the .toml files)\n", errOut)

	// --control names the socket itself: no directory is needed.
	code, _, errOut = runEdged(t, "reload", "-c", missing, "--control", filepath.Join(missing, "edged.sock"), "--timeout", "2s")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "edged is not running (no control socket): "+filepath.Join(missing, "edged.sock"))
}

// TestCheckRefusesAnAuditLogTheServiceUserCannotMake: the common case of
// TestCheckRefusesAnAuditLogServeCannotOpen. A state_dir made by root
// (0755: not writable by group or others, and root's, which edged serve
// accepts) leaves the service user unable to make state_dir/audit: edged
// serve, as that user, refuses to start, and check, as that user (the
// unit's ExecStartPre), must say so rather than pass.
func TestCheckRefusesAnAuditLogTheServiceUserCannotMake(t *testing.T) {
	base := asnobody.Dir(t, 0o755)
	dir, state := filepath.Join(base, "conf.d"), filepath.Join(base, "state")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Mkdir(state, 0o755)) // root's
	server := filepath.Join(dir, "server.toml")
	require.NoError(t, os.WriteFile(server, []byte("[server]\nstate_dir = \"../state\"\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\n\n"+
		"[[environment]]\nname = \"test\"\n[environment.rules.audit_log]\n"), 0o644))

	// The test binary stands in for edged.
	as := func(args ...string) (int, string) {
		cmd := asnobody.Command(base, args, "EDGED_TEST_MAIN=1")
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	code, out := as("serve", "-c", dir)
	require.Equal(t, 1, code, "edged serve as nobody cannot start:\n%s", out)
	require.Contains(t, out, "audit_log: mkdir "+filepath.Join(state, "audit")+": permission denied")

	code, out = as("check", "-c", dir)
	assert.Equal(t, 1, code, "edged check passed what edged serve refuses: %s", out)
	assert.Contains(t, out, server+`:8: environment "test": rules.audit_log: `+filepath.Join(state, "audit", "test.log")+
		": directory "+state+" is not writable by this user (uid 65534); edged serve could not create the log in it")
}
