package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/control"
	"edged/internal/devcert"
)

// fastReloads shortens the example's debounce so file tests run quickly.
func (ex *example) fastReloads(t *testing.T) {
	p := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := strings.Replace(string(b), `reload_debounce = "200ms"`, `reload_debounce = "50ms"`, 1)
	s = strings.Replace(s, `drain_timeout = "30s"`, `drain_timeout = "3s"`, 1)
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

func (ex *example) controlPath() string {
	return control.Path(filepath.Join(ex.root, "var", "state"))
}

// status reads /status from the admin listener.
func (p *proc) status(t *testing.T) map[string]any {
	t.Helper()
	code, body := getBody(t, http.DefaultClient, "http://"+p.admin+"/status")
	require.Equal(t, 200, code)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	return st
}

func (p *proc) generation(t *testing.T) int {
	return int(p.status(t)["generation"].(float64))
}

const ordersProxy = `
[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "user-backend"
`

func TestNewProxyFileIsServedWithinASecond(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, _ := getBody(t, c, "https://test.acme.com/orders/1")
	require.Equal(t, 404, code)

	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	start := time.Now()
	require.Eventually(t, func() bool {
		code, _ := getBody(t, c, "https://test.acme.com/orders/1")
		return code == 200
	}, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(start), time.Second, "write to serving")

	// Deleting the file takes the route away again.
	require.NoError(t, os.Remove(ex.home("test", "orders.toml")))
	require.Eventually(t, func() bool {
		code, _ := getBody(t, c, "https://test.acme.com/orders/1")
		return code == 404
	}, 5*time.Second, 10*time.Millisecond)
}

func TestBrokenFileKeepsServingAndReloadTellsTheTruth(t *testing.T) {
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	gen := p.generation(t)

	broken := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(broken, []byte(ordersProxy+"\nupstreem = \"x\"\n"), 0o644))
	code, out, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 1, code, out)
	assert.Contains(t, errOut, broken+":8:", "file and line of the unknown key")
	assert.Contains(t, errOut, "upstreem")

	// Still serving the last good generation.
	code, body := getBody(t, c, "https://test.acme.com/users/1")
	require.Equal(t, 200, code, body)
	st := p.status(t)
	assert.Equal(t, float64(gen), st["generation"])
	last := st["last_reload"].(map[string]any)
	assert.Equal(t, false, last["ok"])
	errs := last["errors"].([]any)
	require.NotEmpty(t, errs)
	first := errs[0].(map[string]any)
	pos := first["pos"].(map[string]any)
	assert.Equal(t, broken, pos["file"])
	assert.Equal(t, float64(8), pos["line"])
	assert.Contains(t, first["message"], "upstreem")
	fileErrs := st["file_errors"].(map[string]any)[broken].([]any)
	assert.Contains(t, fileErrs[0], broken+":8:")

	code, body = getBody(t, http.DefaultClient, "http://"+p.admin+"/metrics")
	require.Equal(t, 200, code)
	assert.Regexp(t, `edged_config_reloads_total\{result="failure"\} [1-9]`, body)

	// A dangling reference is refused the same way.
	require.NoError(t, os.WriteFile(broken, []byte(strings.Replace(ordersProxy, "user-backend", "nope", 1)), 0o644))
	code, _, errOut = runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 1, code)
	assert.Contains(t, errOut, broken+":6:")
	assert.Contains(t, errOut, `proxy "orders"`)

	// Every attempt is in the audit log, the failures with their errors.
	audit, err := os.ReadFile(filepath.Join(ex.root, "var", "state", "audit.log"))
	require.NoError(t, err)
	assert.Regexp(t, `"result":"failure".*upstreem`, string(audit))

	// Fixed: applied.
	require.NoError(t, os.WriteFile(broken, []byte(ordersProxy), 0o644))
	code, out, errOut = runEdged(t, "reload", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^reloaded: (nothing changed, )?generation \d+`, out)
	code, _ = getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 200, code)
}

func TestReloadUnderLoadLosesNothingAndKeepsUnchangedEnvironments(t *testing.T) {
	ex := newExample(t)
	// `edged reload` is the only trigger here: a file event firing between
	// a write and the reload (reload_max_wait) would apply the change first
	// and leave the reload with nothing to report.
	server := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(server)
	require.NoError(t, err)
	noWatch := strings.Replace(string(b), `reload_debounce = "200ms"`, `reload_debounce = "1h"`+"\nreload_max_wait = \"1h\"\nrescan_interval = \"0s\"", 1)
	require.NotEqual(t, string(b), noWatch)
	require.NoError(t, os.WriteFile(server, []byte(noWatch), 0o644))
	testConns := ex.conns["test"]
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	// Warm up: open the upstream connections the load will use.
	for i := 0; i < 20; i++ {
		code, _ := getBody(t, c, "https://test.acme.com/users/w")
		require.Equal(t, 200, code)
	}

	var ok, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, host := range []string{"test.acme.com", "test.acme.com", "uat.acme.com", "uat.acme.com"} {
		wg.Add(1)
		go func(host string) {
			defer wg.Done()
			deadline := time.Now().Add(30 * time.Second)
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://" + host + "/users/" + fmt.Sprint(i))
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					failures.Store(resp.Status, true)
					continue
				}
				ok.Add(1)
			}
		}(host)
	}
	time.Sleep(200 * time.Millisecond)
	before := testConns.Load()
	uat := ex.home("uat", "uat.toml")
	orig, err := os.ReadFile(uat)
	require.NoError(t, err)
	for i := 0; i < 15; i++ {
		// Change only the uat environment: its workers count.
		changed := strings.Replace(string(orig), "workers = 32", fmt.Sprintf("workers = %d", 40+i), 1)
		require.NotEqual(t, string(orig), changed, "the example's uat.toml sets workers = 32")
		require.NoError(t, os.WriteFile(uat, []byte(changed), 0o644))
		code, out, errOut := runEdged(t, "reload", "--control", ex.controlPath())
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "changed uat", out)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	var msgs []string
	failures.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
	assert.Zero(t, failed.Load(), "failed requests during reloads: %v", msgs)
	assert.Greater(t, ok.Load(), int64(100))
	assert.Equal(t, before, testConns.Load(), "the unchanged test environment kept its upstream connections")
}

func TestCertificateRenewalSwapsOnlyTLS(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	serial := func() string {
		b, err := os.ReadFile(filepath.Join(ex.certDir, "ca.pem"))
		require.NoError(t, err)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b)
		conn, err := tls.Dial("tcp", p.https, &tls.Config{ServerName: "test.acme.com", RootCAs: pool})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old := serial()
	gen := p.generation(t)
	// Renew: remove the leaf and let devcert issue a new one (written
	// through a temp file and a rename, like certbot or cert-manager).
	require.NoError(t, os.Remove(filepath.Join(ex.certDir, "test.acme.com.pem")))
	require.NoError(t, devcert.Generate(ex.certDir, map[string][]string{"test.acme.com": {"test.acme.com", "*.test.acme.com"}}))
	// A renewal writes the certificate and the key one after the other: a
	// reload may catch the pair half-renewed, fail, and keep serving the
	// old pair until the next event completes it.
	var st map[string]any
	require.Eventually(t, func() bool {
		if serial() == old {
			return false
		}
		st = p.status(t)
		last, _ := st["last_reload"].(map[string]any)
		return last != nil && last["ok"] == true
	}, 5*time.Second, 20*time.Millisecond)
	assert.Greater(t, st["generation"].(float64), float64(gen))
	change := st["last_reload"].(map[string]any)["change"].(map[string]any)
	assert.Nil(t, change["changed"], "no environment was rebuilt")
	assert.Nil(t, change["added"])
	assert.Len(t, change["kept"], 3)
}

// TestCertificateDirectoryLinkSwapIsServed: the certificate directory is a
// symlink (certs -> certs.v1) that a deployment re-points with ln -sfn at
// a directory holding a renewed certificate. The new certificate is served
// within seconds, long before the 30 s rescan would have found it.
func TestCertificateDirectoryLinkSwapIsServed(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	v1, v2 := ex.certDir+".v1", ex.certDir+".v2"
	require.NoError(t, os.Rename(ex.certDir, v1))
	require.NoError(t, os.Symlink(filepath.Base(v1), ex.certDir))
	require.NoError(t, os.Mkdir(v2, 0o755))
	entries, err := os.ReadDir(v1)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(v1, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(v2, e.Name()), b, 0o600))
	}
	require.NoError(t, os.Remove(filepath.Join(v2, "test.acme.com.pem")))
	require.NoError(t, devcert.Generate(v2, map[string][]string{"test.acme.com": {"test.acme.com", "*.test.acme.com"}}))

	p := startServe(t, ex.confDir)
	b, err := os.ReadFile(filepath.Join(v1, "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	serial := func() string {
		conn, err := tls.Dial("tcp", p.https, &tls.Config{ServerName: "test.acme.com", RootCAs: pool})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old := serial()

	tmp := ex.certDir + ".tmp"
	require.NoError(t, os.Symlink(filepath.Base(v2), tmp))
	require.NoError(t, os.Rename(tmp, ex.certDir))
	require.Eventually(t, func() bool { return serial() != old }, 5*time.Second, 20*time.Millisecond,
		"the certificate behind the re-pointed link is served")
}

func TestSIGTERMDrainsInFlightAndNotifiesSystemd(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`) // the drain, not the lame duck
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer ln.Close()
	var msgs []string
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, string(buf[:n]))
			mu.Unlock()
		}
	}()
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(msgs) >= 1 }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(msgs) >= 3 }, 5*time.Second, 10*time.Millisecond)

	// A slow request is in flight when SIGTERM arrives: it completes.
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://test.acme.com/users/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, 200, r.code)
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit 0 after draining")
		p.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not exit after SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(msgs), 4, "%q", msgs)
	assert.True(t, strings.HasPrefix(msgs[0], "READY=1"), "%q", msgs[0])
	assert.Contains(t, msgs[0], "STATUS=serving generation")
	assert.True(t, strings.HasPrefix(msgs[1], "RELOADING=1\nMONOTONIC_USEC="), "%q", msgs[1])
	assert.True(t, strings.HasPrefix(msgs[2], "READY=1"), "%q", msgs[2])
	// The SIGHUP changed nothing: ready again, with the same generation.
	assert.Equal(t, strings.TrimPrefix(msgs[0], "READY=1\n"), strings.TrimPrefix(msgs[2], "READY=1\n"))
	// With the time the stop may take: drain_timeout 30s, no lame duck,
	// and what comes after the drain.
	assert.Equal(t, "STOPPING=1\nEXTEND_TIMEOUT_USEC=45000000", msgs[len(msgs)-1])
}

func TestHistoryAndRollback(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	gen := p.generation(t)

	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	code, _ = getBody(t, c, "https://test.acme.com/orders/1")
	require.Equal(t, 200, code)

	code, out, errOut := runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "added test/proxy orders")
	assert.Contains(t, out, fmt.Sprintf("\n%d ", gen))

	code, out, errOut = runEdged(t, "rollback", fmt.Sprint(gen), "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "moved aside")
	// rollback waits for the running edged's outcome (the watcher's
	// reload may have applied the files first: then nothing changed).
	assert.Regexp(t, `\nreloaded: (nothing changed, )?generation \d+`, out)
	_, err := os.Stat(ex.home("test", "orders.toml"))
	assert.True(t, os.IsNotExist(err), "orders.toml moved aside")
	code, _ = getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 404, code, "the rolled-back generation serves once rollback has returned")
	code, _ = getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, 200, code)
	aside, _ := filepath.Glob(ex.home("test", ".orders.toml.rolled-back-*"))
	assert.Len(t, aside, 1, "the newer file is kept aside, not deleted")
}

// TestRollbackAndPromoteReportARefusal: the files written are only half the
// story; when the running edged refuses them, promote says why and exits 1
// (with --no-wait it does not ask, nor does rollback); a rollback whose files
// would not load is refused before it writes.
func TestRollbackAndPromoteReportARefusal(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)

	// uat's access log cannot be opened any more: the promotion validates,
	// but the uat environment it rebuilds cannot start.
	uatLog := filepath.Join(ex.root, "var", "log", "uat-access.log")
	require.NoError(t, os.Remove(uatLog))
	require.NoError(t, os.Mkdir(uatLog, 0o755))
	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "-c", ex.confDir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "promoted orders")
	assert.Contains(t, errOut, `environment "uat": access_log`)
	assert.Contains(t, errOut, fmt.Sprintf("edged promote: the running edged refused the files written; still serving generation %d", gen+1))

	// The certificate goes bad: a rollback is refused before it writes
	// (TestRollbackRefusesAGenerationThatNoLongerLoads).
	cert := filepath.Join(ex.certDir, "test.acme.com.pem")
	good, err := os.ReadFile(cert)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cert, []byte("not a certificate\n"), 0o644))
	code, out, errOut = runEdged(t, "rollback", fmt.Sprint(gen), "-c", ex.confDir)
	assert.Equal(t, 1, code, out)
	assert.NotContains(t, out, "restored into")
	assert.Contains(t, errOut, cert)
	assert.Contains(t, errOut, "nothing written")
	assert.Equal(t, gen+1, p.generation(t))
	require.NoError(t, os.WriteFile(cert, good, 0o644))

	code, out, errOut = runEdged(t, "rollback", fmt.Sprint(gen+1), "--no-wait", "-c", ex.confDir)
	assert.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "reloaded")
	assert.Equal(t, gen+1, p.generation(t), "not asked")

	// No running edged to ask: the files are written, and it says so.
	code, _, errOut = runEdged(t, "rollback", fmt.Sprint(gen), "--control", filepath.Join(ex.root, "nobody.sock"), "-c", ex.confDir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the files are written, but the running edged did not answer")
}

func TestPromoteIsServedByTheRunningProcess(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)

	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "--dry-run", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "dry run")
	status, _ := getBody(t, c, "https://uat.acme.com/orders/1")
	assert.Equal(t, 404, status)

	code, out, errOut = runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, ex.home("uat", "uat.toml"))
	require.Eventually(t, func() bool {
		status, body := getBody(t, c, "https://uat.acme.com/orders/1")
		return status == 200 && strings.Contains(body, `"backend":"uat-`)
	}, 5*time.Second, 20*time.Millisecond, "the uat environment serves the promoted proxy with its own upstream")

	code, _, errOut = runEdged(t, "promote", "orders", "--from", "test", "--to", "prod", "--upstream", "nope", "-c", ex.confDir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, `"nope" is not defined in environment "prod"`)
}
