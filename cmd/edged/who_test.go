package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/control"
)

// envFile is the file declaring environment env in dir, wherever the
// layout puts it.
func envFile(t *testing.T, dir, env string) string {
	t.Helper()
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	e := cfg.EnvironmentByName(env)
	require.NotNil(t, e, "environment %q", env)
	return e.Pos.File
}

// me is how the history names whoever runs the test.
func me(t *testing.T) string {
	u, err := user.Current()
	require.NoError(t, err)
	return u.Username
}

// historyRow finds the row of generation gen in `edged history`'s output.
func historyRow(t *testing.T, out string, gen int) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, strconv.Itoa(gen)+" ") {
			return l
		}
	}
	t.Fatalf("generation %d is not listed:\n%s", gen, out)
	return ""
}

// auditLines reads state_dir/audit.log.
func auditLines(t *testing.T, stateDir string) []auditLine {
	t.Helper()
	f, err := os.Open(filepath.Join(stateDir, "audit.log"))
	require.NoError(t, err)
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		out = append(out, l)
	}
	return out
}

func auditOf(t *testing.T, stateDir string, gen int) auditLine {
	t.Helper()
	for _, l := range auditLines(t, stateDir) {
		if l.Generation == uint64(gen) && l.Result == "success" {
			return l
		}
	}
	t.Fatalf("no audit line for generation %d", gen)
	return auditLine{}
}

// TestHistoryNamesTheCauseAndTheUser: edged running with its watcher on
// (which may apply the files a command wrote before the command asks),
// `edged reload`, `edged promote` under sudo and `edged rollback` each make
// a generation that history and the audit log attribute to the command
// and its user; `edged diff` between two of them shows the exact lines.
func TestHistoryNamesTheCauseAndTheUser(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	stateDir := filepath.Join(ex.root, "var", "state")
	start := p.generation(t)
	uatFile := envFile(t, ex.confDir, "uat")
	uatRel, err := filepath.Rel(ex.confDir, uatFile)
	require.NoError(t, err)
	uatBefore, err := os.ReadFile(uatFile)
	require.NoError(t, err)

	ordersFile := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	require.NoError(t, os.WriteFile(ordersFile, []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	withOrders := p.generation(t)
	require.Greater(t, withOrders, start)

	t.Setenv("SUDO_USER", "alice")
	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "promoted orders")
	promoted := p.generation(t)
	require.Equal(t, withOrders+1, promoted, out)
	code, _ = getBody(t, c, "https://uat.acme.com/orders/1")
	require.Equal(t, 200, code)
	uatPromoted, err := os.ReadFile(uatFile)
	require.NoError(t, err)
	os.Unsetenv("SUDO_USER")

	code, out, errOut = runEdged(t, "rollback", strconv.Itoa(withOrders), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	rolledBack := p.generation(t)
	require.Equal(t, promoted+1, rolledBack, out)

	code, out, errOut = runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^GENERATION\s+TIME\s+CAUSE\s+USER\s+FILES\s+CHANGES\n`, out)
	assert.Regexp(t, `\s+startup\s+-\s+`, historyRow(t, out, start))
	// The watcher may have applied orders.toml before `edged reload` asked.
	assert.Regexp(t, `\s+(edged reload\s+`+regexp.QuoteMeta(me(t))+`|file change\s+-)\s+`, historyRow(t, out, withOrders))
	sudo := fmt.Sprintf("alice (via sudo, uid %d)", os.Getuid())
	assert.Regexp(t, `\s+edged promote\s+`+regexp.QuoteMeta(sudo)+`\s+\d+\s+added uat/proxy orders$`, historyRow(t, out, promoted))
	assert.Regexp(t, `\s+edged rollback\s+`+regexp.QuoteMeta(me(t))+`\s+\d+\s+removed uat/proxy orders$`, historyRow(t, out, rolledBack))

	// The audit log says the same, with the files changed.
	a := auditOf(t, stateDir, promoted)
	assert.Equal(t, "edged promote", a.Cause)
	assert.Equal(t, sudo, a.User)
	require.Len(t, a.Files, 1)
	assert.Equal(t, filepath.ToSlash(uatRel), a.Files[0].Path)
	assert.Equal(t, "changed", a.Files[0].Action)
	assert.Equal(t, me(t), a.Files[0].Owner)
	assert.WithinDuration(t, time.Now(), a.Files[0].ModTime, time.Minute)
	a = auditOf(t, stateDir, rolledBack)
	assert.Equal(t, "edged rollback", a.Cause)
	assert.Equal(t, me(t), a.User)

	// One generation in detail.
	code, out, errOut = runEdged(t, "history", strconv.Itoa(promoted), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^cause\s+edged promote$`, out)
	assert.Regexp(t, `(?m)^user\s+`+regexp.QuoteMeta(sudo)+`$`, out)
	assert.Regexp(t, `(?m)^  changed\s+`+regexp.QuoteMeta(filepath.ToSlash(uatRel))+`\s+owner `+regexp.QuoteMeta(me(t))+`\s+modified \S+$`, out)
	assert.Contains(t, out, "\n  added uat/proxy orders\n")

	// The diff between the promotion and the rollback is exactly the
	// block promote appended, taken away again.
	code, out, errOut = runEdged(t, "diff", strconv.Itoa(promoted), strconv.Itoa(rolledBack), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	before := splitKeep(string(uatBefore))
	added := splitKeep(string(uatPromoted))[len(before):]
	require.NotEmpty(t, added)
	var want strings.Builder
	rel := filepath.ToSlash(uatRel)
	fmt.Fprintf(&want, "--- a/%s\tgeneration %d\n+++ b/%s\tgeneration %d\n", rel, promoted, rel, rolledBack)
	fmt.Fprintf(&want, "@@ -%d,%d +%d,3 @@\n", len(before)-2, 3+len(added), len(before)-2)
	for _, l := range before[len(before)-3:] {
		want.WriteString(" " + l)
	}
	for _, l := range added {
		want.WriteString("-" + l)
	}
	assert.Equal(t, want.String(), out)
	assert.Contains(t, out, "\n-name = \"orders\"\n-environment = \"uat\"\n-base_path = \"/orders\"\n")

	// Against the serving generation by default, and the other way round.
	code, out2, errOut := runEdged(t, "diff", strconv.Itoa(promoted), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, out, out2)
	code, out, errOut = runEdged(t, "diff", strconv.Itoa(withOrders), strconv.Itoa(promoted), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "\n+name = \"orders\"\n+environment = \"uat\"\n")
	assert.NotContains(t, out, "\n-")

	// Nothing of the keys reaches the history or a diff.
	assertNoKeyMaterial(t, stateDir)
	assert.NotContains(t, out, "PRIVATE KEY")
}

// awaitRecorded waits until the history has generation gen: a generation
// serves (and /status shows it) a moment before it is recorded.
func awaitRecorded(t *testing.T, dir string, gen int) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, _, _ := runEdged(t, "history", strconv.Itoa(gen), "-c", dir)
		return code == 0
	}, 5*time.Second, 20*time.Millisecond, "generation %d recorded", gen)
}

// splitKeep splits s into lines keeping their newlines.
func splitKeep(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// assertNoKeyMaterial fails when any file under dir holds PEM.
func assertNoKeyMaterial(t *testing.T, dir string) {
	t.Helper()
	n := 0
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		assert.NotContains(t, string(b), "-----BEGIN", "%s holds PEM", p)
		return nil
	}))
	require.Greater(t, n, 2, "the history was written")
}

// A command's files applied by the watcher, with the command not asking
// (--no-wait), are still the command's generation; a hand edit after it is
// a file change, with the file's owner; `edged diff` alone shows what a
// reload would apply.
func TestWatcherAppliedFilesKeepTheCommandsCause(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	start := p.generation(t)
	ordersFile := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	require.NoError(t, os.WriteFile(ordersFile, []byte(ordersProxy), 0o644))
	require.Eventually(t, func() bool { return p.generation(t) == start+1 }, 10*time.Second, 20*time.Millisecond)

	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "--no-wait", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "reloaded")
	require.Eventually(t, func() bool { return p.generation(t) == start+2 }, 10*time.Second, 20*time.Millisecond, "the watcher applies it")
	awaitRecorded(t, ex.confDir, start+2)

	code, out, errOut = runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `\s+file change\s+-\s+`, historyRow(t, out, start+1))
	assert.Regexp(t, `\s+edged promote\s+`+regexp.QuoteMeta(me(t))+`\s+`, historyRow(t, out, start+2))

	// Pending: the serving generation against the files in the directory.
	require.NoError(t, os.WriteFile(ordersFile, []byte(strings.Replace(ordersProxy, `"/orders"`, `"/orders2"`, 1)), 0o644))
	code, out, errOut = runEdged(t, "diff", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	if !strings.Contains(out, "+base_path = \"/orders2\"") {
		// The watcher was quicker: the change serves already.
		assert.Contains(t, errOut, "no differences")
	}
	require.Eventually(t, func() bool { return p.generation(t) == start+3 }, 10*time.Second, 20*time.Millisecond)
	awaitRecorded(t, ex.confDir, start+3)
	code, out, errOut = runEdged(t, "history", strconv.Itoa(start+3), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^cause\s+file change$`, out)
	assert.Regexp(t, `(?m)^  changed\s+\S*orders.toml\s+owner `+regexp.QuoteMeta(me(t))+`\s+modified `, out)
}

// Without a watcher, `edged diff` shows exactly the pending lines.
func TestDiffShowsThePendingChanges(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)
	ordersFile := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	rel, err := filepath.Rel(ex.confDir, ordersFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ordersFile, []byte(ordersProxy), 0o644))

	code, out, errOut := runEdged(t, "diff", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	want := fmt.Sprintf("--- /dev/null\tgeneration %d\n+++ b/%s\tpending in %s\n@@ -0,0 +1,6 @@\n", gen, filepath.ToSlash(rel), ex.confDir)
	for _, l := range splitKeep(ordersProxy) {
		want += "+" + l
	}
	assert.Equal(t, want, out)

	// With nobody answering, the newest generation of the history is used.
	code, out2, errOut := runEdged(t, "diff", "-c", ex.confDir, "--control", filepath.Join(ex.root, "nobody.sock"))
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, out, out2)
	assert.Contains(t, errOut, fmt.Sprintf("comparing with the newest generation in the history, %d", gen))

	t.Setenv("SUDO_USER", "bob")
	code, _, errOut = runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	code, out, errOut = runEdged(t, "diff", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "no differences")

	code, out, errOut = runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `\s+edged reload\s+`+regexp.QuoteMeta(fmt.Sprintf("bob (via sudo, uid %d)", os.Getuid()))+`\s+`, historyRow(t, out, gen+1))
	a := auditOf(t, filepath.Join(ex.root, "var", "state"), gen+1)
	assert.Equal(t, "edged reload", a.Cause)
	require.Len(t, a.Files, 1)
	assert.Equal(t, "added", a.Files[0].Action)
}

// --dry-run prints the diff of the file promote would write, and
// --with-upstream copies the upstream (prod here lacks "orders-pool").
func TestPromoteDryRunPrintsTheDiff(t *testing.T) {
	ex := newExample(t)
	ordersFile := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	require.NoError(t, os.WriteFile(ordersFile, []byte(`
[[upstream]]
name = "orders-pool"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9101" }]
balance = "least_request"

[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "orders-pool"
`), 0o644))
	prodFile := envFile(t, ex.confDir, "prod")
	before, err := os.ReadFile(prodFile)
	require.NoError(t, err)

	code, _, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--dry-run", "-c", ex.confDir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `"orders-pool" is not defined in environment "prod"`)
	code, _, errOut = runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--with-upstream", "--dry-run", "-c", ex.confDir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "--with-upstream needs --node URL")

	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--with-upstream", "--node", "http://127.0.0.1:9301", "--node", "http://127.0.0.1:9302", "--dry-run", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	rel, err := filepath.Rel(ex.confDir, prodFile)
	require.NoError(t, err)
	rel = filepath.ToSlash(rel)
	assert.Contains(t, out, "--- a/"+rel+"\n+++ b/"+rel+"\n@@ -")
	assert.Contains(t, out, "\n+[[upstream]]\n+name = \"orders-pool\"\n+environment = \"prod\"\n+nodes = [{ url = \"http://127.0.0.1:9301\" }, { url = \"http://127.0.0.1:9302\" }]\n+balance = \"least_request\"\n")
	assert.Contains(t, out, "\n+[[proxy]]\n+name = \"orders\"\n+environment = \"prod\"\n")
	assert.Contains(t, out, "dry run: the configuration would be valid; nothing written")
	after, err := os.ReadFile(prodFile)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "nothing written")
}

// An announcement is refused for a cause no command has; a reload
// naming an unknown one is made all the same (see
// TestReloadNamingAnAnnouncementEdgedNoLongerHolds).
func TestControlRefusesBadAnnouncements(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	startServe(t, ex.confDir)
	err := control.CallWith(ex.controlPath(), "announce", announceArgs{Cause: "hand edit"}, 5*time.Second, nil)
	assert.ErrorContains(t, err, `cause "hand edit" is not`)
	var rec reloadReply
	require.NoError(t, control.CallWith(ex.controlPath(), "reload", reloadArgs{Claim: 99}, 5*time.Second, &rec))
	assert.True(t, rec.OK)
	assert.True(t, rec.Unchanged)
}

// The first generation after a restart lists the files changed while edged
// was stopped, with their owner; SIGHUP is its own cause.
func TestStartupListsTheFilesChangedWhileStopped(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	p := startServe(t, ex.confDir)
	first := p.generation(t)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("edged did not stop")
	}

	ordersFile := filepath.Join(filepath.Dir(envFile(t, ex.confDir, "test")), "orders.toml")
	require.NoError(t, os.WriteFile(ordersFile, []byte(ordersProxy), 0o644))
	rel, err := filepath.Rel(ex.confDir, ordersFile)
	require.NoError(t, err)
	p = startServe(t, ex.confDir)
	second := p.generation(t)
	require.Equal(t, first+1, second)
	code, out, errOut := runEdged(t, "history", strconv.Itoa(second), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `(?m)^cause\s+startup$`, out)
	assert.Regexp(t, `(?m)^  added\s+`+regexp.QuoteMeta(filepath.ToSlash(rel))+`\s+owner `+regexp.QuoteMeta(me(t))+`\s+modified `, out)

	require.NoError(t, os.WriteFile(ordersFile, []byte(strings.Replace(ordersProxy, `"/orders"`, `"/orders2"`, 1)), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return p.generation(t) == second+1 }, 10*time.Second, 20*time.Millisecond)
	awaitRecorded(t, ex.confDir, second+1)
	code, out, errOut = runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `\s+SIGHUP\s+-\s+\d+\s+changed test/proxy orders$`, historyRow(t, out, second+1))
}
