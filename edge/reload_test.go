package edge

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// echoUpgradeBackend upgrades and echoes raw bytes.
func echoUpgradeBackend(t *testing.T) *backend {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			fmt.Fprint(w, "plain")
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
}

func TestReloadKeepsUnchangedEnvironmentsAndTheirConnections(t *testing.T) {
	testCertDir(t)
	ws := echoUpgradeBackend(t)
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "slow done")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml":   envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + proxyTOML("test", "ws", "/", ws.addr),
		"uat.toml":    envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") + proxyTOML("uat", "slow", "/", slow.addr),
	})
	before := te.srv.Snapshot()
	testEnv, uatEnv := before.Env("test"), before.Env("uat")

	// A WebSocket-style tunnel through the test environment.
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	echo := func(msg string) {
		t.Helper()
		_, err := conn.Write([]byte(msg))
		require.NoError(t, err)
		buf := make([]byte, len(msg))
		_, err = io.ReadFull(br, buf)
		require.NoError(t, err)
		require.Equal(t, msg, string(buf))
	}
	echo("before")

	// A slow request in flight on uat, the environment about to change.
	slowDone := make(chan string, 1)
	go func() {
		resp, err := te.client("uat.acme.com", nil).Get("https://uat.acme.com/x")
		if err != nil {
			slowDone <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slowDone <- string(b)
	}()
	require.Eventually(t, func() bool { return uatEnv.inflight.Load() == 1 }, 5*time.Second, 5*time.Millisecond)

	uatFile := filepath.Join(te.dir, "uat.toml")
	for i := 0; i < 5; i++ {
		b, err := os.ReadFile(uatFile)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(uatFile, []byte(strings.Replace(string(b), fmt.Sprintf("workers = %d", 16+i), fmt.Sprintf("workers = %d", 17+i), 1)), 0o644))
		ch := te.reload()
		assert.Equal(t, []string{"uat"}, ch.Changed)
		assert.Equal(t, []string{"test"}, ch.Kept)
		echo(fmt.Sprintf("after reload %d", i))
	}
	after := te.srv.Snapshot()
	assert.Same(t, testEnv, after.Env("test"), "the unchanged environment is the same object")
	assert.Same(t, testEnv.pool, after.Env("test").pool)
	assert.Same(t, testEnv.upstreams["ws-up"], after.Env("test").upstreams["ws-up"])
	assert.NotSame(t, uatEnv, after.Env("uat"))
	assert.Equal(t, 21, after.Env("uat").pool.Stats().Workers)

	// The request on the replaced environment finished on it.
	assert.Equal(t, "slow done", <-slowDone)
	select {
	case <-uatEnv.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced environment did not close after draining")
	}
	echo("still open")
}

func TestRemovedEnvironmentDrainsThenCloses(t *testing.T) {
	te, _ := threeGroups(t, "")
	prod := te.srv.Snapshot().Env("prod")
	require.NoError(t, os.Remove(filepath.Join(te.dir, "prod.toml")))
	ch := te.reload()
	assert.Equal(t, []string{"prod"}, ch.Removed)
	select {
	case <-prod.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("removed environment not closed")
	}
	resp, body := te.get("test.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode, body)
}

func TestFailedApplyChangesNothing(t *testing.T) {
	te, _ := threeGroups(t, "")
	before := te.srv.Snapshot()
	// An access log in a directory that does not exist fails the build of
	// the environment, after validation passed.
	p := filepath.Join(te.dir, "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	broken := strings.Replace(string(b), "queue_timeout = \"1s\"", "queue_timeout = \"1s\"\n[environment.rules.access_log]\npath = \"/nonexistent/dir/access.log\"", 1)
	require.NoError(t, os.WriteFile(p, []byte(broken), 0o644))
	cfg, err := config.Load(te.dir)
	require.NoError(t, err)
	_, _, err = te.srv.Apply(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `environment "test": access_log`)
	assert.Same(t, before, te.srv.Snapshot())
	resp, _ := te.get("test.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode)
}

// TestReloadKeepsUnchangedGroups: a reload rebuilds the routing of the env
// groups whose environments or virtual host changed, and keeps the others
// as they are; both serve what the new files say.
func TestReloadKeepsUnchangedGroups(t *testing.T) {
	testCertDir(t)
	tb, ub, pb := nameBackend(t, "test"), nameBackend(t, "uat"), nameBackend(t, "prod")
	groups := func(testTLS, uatHosts string) string {
		certs := filepath.ToSlash(certsDir)
		return fmt.Sprintf(`
[[env_group]]
name = "test-group"
hostnames = ["test.acme.com"]
environments = ["test"]

[[virtual_host]]
name = "test-group"
cert_file = "%[1]s/test.acme.com.pem"
key_file = "%[1]s/test.acme.com.key"
%[2]s

[[env_group]]
name = "uat-group"
hostnames = [%[3]s]
environments = ["uat", "prod"]

[[virtual_host]]
name = "uat-group"
cert_file = "%[1]s/uat.acme.com.pem"
key_file = "%[1]s/uat.acme.com.key"
`, certs, testTLS, uatHosts)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groups("", `"uat.acme.com"`),
		"test.toml":   envTOML("test", "") + proxyTOML("test", "t", "/t", tb.addr),
		"uat.toml":    envTOML("uat", "") + proxyTOML("uat", "u", "/u", ub.addr),
		"prod.toml":   envTOML("prod", "") + proxyTOML("prod", "p", "/p", pb.addr),
	})
	serves := func(host, path, want string) {
		t.Helper()
		resp, body := te.get(host, path)
		assert.Equal(t, want, resp.Header.Get("X-Backend"), "%s%s: %d %s", host, path, resp.StatusCode, body)
	}
	before := te.srv.Snapshot()

	// prod moves to another base path: its group's routes are rebuilt.
	writeFiles(t, te.dir, map[string]string{"prod.toml": envTOML("prod", "") + proxyTOML("prod", "p", "/p2", pb.addr)})
	ch := te.reload()
	assert.Equal(t, []string{"prod"}, ch.Changed)
	snap := te.srv.Snapshot()
	assert.Same(t, before.groups["test-group"], snap.groups["test-group"], "a group whose environments did not change is kept")
	assert.NotSame(t, before.groups["uat-group"], snap.groups["uat-group"])
	serves("uat.acme.com", "/p2/x", "prod")
	serves("uat.acme.com", "/u/x", "uat")
	serves("test.acme.com", "/t/x", "test")
	resp, _ := te.get("uat.acme.com", "/p/x")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the old base path is gone")

	// A hostname added to a group whose routes did not change.
	before = snap
	writeFiles(t, te.dir, map[string]string{"groups.toml": groups("", `"uat.acme.com", "api.uat.acme.com"`)})
	ch = te.reload()
	assert.Empty(t, ch.Changed)
	snap = te.srv.Snapshot()
	assert.Same(t, before.groups["uat-group"], snap.groups["uat-group"])
	serves("api.uat.acme.com", "/u/x", "uat")

	// The test group's virtual host now requires TLS 1.3: its group is
	// rebuilt although its environment did not change.
	before = snap
	writeFiles(t, te.dir, map[string]string{"groups.toml": groups(`min_tls = "1.3"`, `"uat.acme.com", "api.uat.acme.com"`)})
	ch = te.reload()
	assert.Equal(t, []string{"prod", "test", "uat"}, ch.Kept)
	snap = te.srv.Snapshot()
	assert.NotSame(t, before.groups["test-group"], snap.groups["test-group"])
	assert.Same(t, before.groups["uat-group"], snap.groups["uat-group"])
	tls12 := &tls.Config{RootCAs: caPool(t), MaxVersion: tls.VersionTLS12}
	tls12.ServerName = "test.acme.com"
	_, err := handshake(t, te.addr, tls12)
	assert.Error(t, err, "test.acme.com refuses TLS 1.2 now")
	tls12.ServerName = "uat.acme.com"
	_, err = handshake(t, te.addr, tls12)
	assert.NoError(t, err, "uat.acme.com still takes TLS 1.2")
	serves("test.acme.com", "/t/x", "test")
}

// TestEmptiedFileIsTakenAsHalfWritten: a file rewritten in place is empty
// for a moment; a reload that catches it then must not remove what the
// file holds. Deleting the file does remove it.
func TestEmptiedFileIsTakenAsHalfWritten(t *testing.T) {
	te, _ := threeGroups(t, "")
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log}
	before := te.srv.Snapshot()
	uat := filepath.Join(te.dir, "uat.toml")
	content, err := os.ReadFile(uat)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(uat, nil, 0o644))
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Len(t, rec.Errors, 1)
	assert.Equal(t, uat, rec.Errors[0].Pos.File)
	assert.Contains(t, rec.Errors[0].Error(), "empty now")
	assert.Same(t, before, te.srv.Snapshot(), "nothing changed")
	resp, _ := te.get("uat.acme.com", "/users/1")
	assert.Equal(t, 200, resp.StatusCode)

	require.NoError(t, os.WriteFile(uat, content, 0o644))
	rec = rl.Reload("test")
	require.True(t, rec.OK, "%v", rec.Errors)
	assert.True(t, rec.Unchanged, "the same content again changes nothing")
	assert.Same(t, before, te.srv.Snapshot(), "and builds nothing")

	require.NoError(t, os.Remove(uat))
	rec = rl.Reload("test")
	require.True(t, rec.OK, "%v", rec.Errors)
	assert.Equal(t, []string{"uat"}, rec.Change.Removed)
}

// TestBuildErrorsNameTheFile: what fails after validation (an access log
// that cannot be opened) is reported at the environment's file and line.
func TestBuildErrorsNameTheFile(t *testing.T) {
	te, _ := threeGroups(t, "")
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log}
	p := filepath.Join(te.dir, "test.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	broken := strings.Replace(string(b), "queue_timeout = \"1s\"", "queue_timeout = \"1s\"\n[environment.rules.access_log]\npath = \"/nonexistent/dir/access.log\"", 1)
	require.NoError(t, os.WriteFile(p, []byte(broken), 0o644))
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Len(t, rec.Errors, 1)
	assert.Equal(t, p, rec.Errors[0].Pos.File)
	assert.Positive(t, rec.Errors[0].Pos.Line)
	assert.Contains(t, rec.Errors[0].Error(), `environment "test": access_log`)
}

// TestReloadHooksFrameEveryAttempt: Starting before the load, Done after
// the server recorded the outcome, for a success and a failure; neither
// once the Reloader is stopped.
func TestReloadHooksFrameEveryAttempt(t *testing.T) {
	te, _ := threeGroups(t, "")
	var calls []string
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: te.srv.log,
		Starting: func(trigger string) { calls = append(calls, "starting "+trigger) },
		Done: func(rec ReloadRecord) {
			te.srv.statusMu.Lock()
			recorded := te.srv.lastResult != nil && te.srv.lastResult.Trigger == rec.Trigger
			te.srv.statusMu.Unlock()
			calls = append(calls, fmt.Sprintf("done %s ok=%v recorded=%v", rec.Trigger, rec.OK, recorded))
		},
	}
	require.True(t, rl.Reload("one").OK)
	p := filepath.Join(te.dir, "test.toml")
	require.NoError(t, os.WriteFile(p, []byte("[[proxy]]\nname = 1\n"), 0o644))
	require.False(t, rl.Reload("two").OK)
	rl.Stop()
	require.False(t, rl.Reload("three").OK)
	assert.Equal(t, []string{"starting one", "done one ok=true recorded=true", "starting two", "done two ok=false recorded=true"}, calls)
}

// A reload that changes a [server] key read only at start logs a warning
// naming it and keeps serving with the running value; write_timeout and
// history_keep are among them.
func TestReloadWarnsOfServerKeysReadAtStart(t *testing.T) {
	testCertDir(t) // groupTOML names its files
	state := t.TempDir()
	be := nameBackend(t, "b")
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(state, ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/p", be.addr),
	})
	const warning = "server setting changed; it takes effect after a restart"
	te.reload()
	require.NotContains(t, logs.String(), warning, "nothing changed")

	writeFiles(t, te.dir, map[string]string{"server.toml": serverTOML(state, "write_timeout = \"5s\"\nhistory_keep = 7\nmax_body_bytes = 1000")})
	te.reload()
	var keys []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, warning) {
			var rec struct{ Key, Running, Configured string }
			require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
			keys = append(keys, rec.Key+": "+rec.Running+" -> "+rec.Configured)
		}
	}
	assert.ElementsMatch(t, []string{"write_timeout: 1m0s -> 5s", "history_keep: 50 -> 7"}, keys, "max_body_bytes applies on reload: no warning")
	resp, body := te.get("test.acme.com", "/p/x")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "b /x", body)
}

// The settings read at start are compared with the values edged runs
// with, not with the last reload's: a key changed once (warned) and left
// so is still not applied at every later reload, which says so again; a
// key changed back to its running value needs no restart, and the warning
// must not name as running a value that never was.
func TestReloadWarnsAgainstTheRunningServerSettings(t *testing.T) {
	testCertDir(t)
	state := t.TempDir()
	be := nameBackend(t, "b")
	env := envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/p", be.addr)
	te, logs := startEdgeLogged(t, map[string]string{"server.toml": serverTOML(state, ""), "env.toml": env})
	const warning = "server setting changed; it takes effect after a restart"
	seen := 0 // of logs, read by earlier calls
	warned := func() []string {
		var keys []string
		all := logs.String()
		fresh := all[seen:]
		seen = len(all)
		for _, line := range strings.Split(fresh, "\n") {
			if strings.Contains(line, warning) {
				var rec struct{ Key, Running, Configured string }
				require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
				keys = append(keys, rec.Key+": "+rec.Running+" -> "+rec.Configured)
			}
		}
		return keys
	}
	reload := func(server string) []string {
		t.Helper()
		writeFiles(t, te.dir, map[string]string{"server.toml": serverTOML(state, server)})
		te.reload()
		return warned()
	}
	assert.Equal(t, []string{"write_timeout: 1m0s -> 5s"}, reload("write_timeout = \"5s\""))
	assert.Equal(t, []string{"write_timeout: 1m0s -> 5s"}, reload("write_timeout = \"5s\"\nmax_body_bytes = 1000"),
		"still not applied: said again at the next reload")
	assert.Empty(t, reload("max_body_bytes = 1000"), "back to the running value: nothing to restart for")
}

// TestReloadLogsItsFirstWarnings: a reload logged every warning of the
// configuration, a line each, at every reload that loaded it (one that
// found nothing changed too), however many: 140,000 IP addresses among
// an env group's hostnames, one 2 MB file, are 140,000 warnings, 52 MB of
// text, and 8 MiB of files four times that, each time, past journald's
// rate limit, which then drops the lines that follow. As a refused
// reload's errors, the first maxReportedErrors are logged, then one line
// with how many more there were.
func TestReloadLogsItsFirstWarnings(t *testing.T) {
	te, _ := threeGroups(t, "")
	var logged syncBuffer
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: slog.New(slog.NewJSONHandler(&logged, nil))}
	const n = 300
	var b strings.Builder
	for i := range n {
		// tls_server_name without an https node: a warning each.
		fmt.Fprintf(&b, "[[upstream]]\nname = \"w%d\"\nenvironment = \"test\"\nnodes = [{ url = \"http://127.0.0.1:9\" }]\ntls_server_name = \"w.internal\"\n", i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(te.dir, "zz-warn.toml"), []byte(b.String()), 0o644))
	for _, trigger := range []string{"change", "unchanged"} {
		seen := len(logged.String())
		rec := rl.Reload(trigger)
		require.True(t, rec.OK, "%v", rec.Errors)
		require.Equal(t, trigger == "unchanged", rec.Unchanged)
		log := logged.String()[seen:]
		lines := strings.Count(log, `"msg":"config warning"`)
		assert.Equal(t, maxReportedErrors, lines, "%s: one log line per warning kept", trigger)
		want := fmt.Sprintf(`"msg":"config warnings: more not logged","omitted":%d`, n-maxReportedErrors)
		assert.True(t, strings.Contains(log, want), "%s: no %s", trigger, want)
	}
}

// TestRefusedReloadReportsItsFirstErrors: a 2 MiB file of "[[proxy]]"
// lines is refused with 838,820 errors. Every one went to the log (a line
// each), into the audit line the recorder writes for the attempt (one
// line of ~100 MB in state_dir/audit.log per save of the file) and to
// `edged reload`. The record a reload makes keeps the first
// maxReportedErrors, in file and line order, and how many more there
// were; the log has one line for those.
func TestRefusedReloadReportsItsFirstErrors(t *testing.T) {
	te, _ := threeGroups(t, "")
	var logged syncBuffer
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: slog.New(slog.NewJSONHandler(&logged, nil))}
	const n = 500
	require.NoError(t, os.WriteFile(filepath.Join(te.dir, "zz-bad.toml"), []byte(strings.Repeat("[[proxy]]\n", n)), 0o644))
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Equal(t, maxReportedErrors, len(rec.Errors))
	assert.Equal(t, 1, rec.Errors[0].Pos.Line, "the first ones, in order")
	assert.Greater(t, rec.ErrorsOmitted, n-maxReportedErrors)
	lines := strings.Count(logged.String(), `"msg":"reload failed"`)
	assert.Equal(t, maxReportedErrors, lines, "one log line per error kept")
	assert.Contains(t, logged.String(), fmt.Sprintf(`"msg":"reload failed: more errors not logged","trigger":"test","omitted":%d`, rec.ErrorsOmitted))
}
