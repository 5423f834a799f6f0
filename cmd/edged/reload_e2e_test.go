package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Process tests of live reload: a real edged, real files changed the way
// operators, editors, cp and the kubelet change them, real signals.

// servedWithin bounds how long a file change may take to be served.
const servedWithin = 3 * time.Second

// orderedProxy is a proxy file of the example's test environment serving
// base path.
func orderedProxy(basePath string) string {
	return strings.Replace(ordersProxy, `base_path = "/orders"`, `base_path = "`+basePath+`"`, 1)
}

// try is one request that reports failure instead of failing the test, for
// polling (require must not be called off the test goroutine).
func try(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// awaitCode polls url until it answers code, for at most within, and
// returns the last body.
func awaitCode(t *testing.T, c *http.Client, url string, code int, within time.Duration) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(within)
	for i := 0; ; i++ {
		got, body, err := try(c, url)
		if err == nil && got == code {
			return body
		}
		last = fmt.Sprintf("%d %s %v", got, body, err)
		if time.Now().After(deadline) || i > 10000 {
			require.Failf(t, "not served in time", "%s: want %d within %s, last answer: %s", url, code, within, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestFileOperationsOnConfDAreServed(t *testing.T) {
	type op func(t *testing.T, path, content string)
	for _, tc := range []struct {
		name string
		// change turns the file holding /orders into one holding /shop.
		change    op
		sameInode bool
	}{
		{"edit in place", func(t *testing.T, path, content string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			require.NoError(t, err)
			// Two writes: the watcher may see the half-written file.
			half := len(content) / 2
			_, err = f.WriteString(content[:half])
			require.NoError(t, err)
			_, err = f.WriteString(content[half:])
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}, true},
		{"write temp then rename", func(t *testing.T, path, content string) {
			tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
			require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
			require.NoError(t, os.Rename(tmp, path))
		}, false},
		{"cp over the file", func(t *testing.T, path, content string) {
			src := filepath.Join(t.TempDir(), "orders.toml")
			require.NoError(t, os.WriteFile(src, []byte(content), 0o644))
			out, err := exec.Command("cp", src, path).CombinedOutput()
			require.NoError(t, err, string(out))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := newExample(t)
			ex.fastReloads(t)
			path := ex.home("test", "orders.toml")
			require.NoError(t, os.WriteFile(path, []byte(orderedProxy("/orders")), 0o644))
			p := startServe(t, ex.confDir)
			c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
			code, body := getBody(t, c, "https://test.acme.com/orders/1")
			require.Equal(t, 200, code, body)
			code, _ = getBody(t, c, "https://test.acme.com/shop/1")
			require.Equal(t, 404, code)

			ino := inode(t, path)
			tc.change(t, path, orderedProxy("/shop"))
			if tc.sameInode {
				require.Equal(t, ino, inode(t, path), "the file was written in place")
			} else {
				require.NotEqual(t, ino, inode(t, path), "the file was replaced")
			}

			body = awaitCode(t, c, "https://test.acme.com/shop/7", 200, servedWithin)
			assert.Contains(t, body, `"backend":"test"`)
			assert.Contains(t, body, `"path":"/7"`)
			code, body = getBody(t, c, "https://test.acme.com/orders/1")
			assert.Equal(t, 404, code, body)
			assert.Contains(t, body, `"code":"proxy.not_found"`)
		})
	}
}

func TestDeletedProxyFileTakesTheRouteAway(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	path := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(path, []byte(ordersProxy), 0o644))
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/orders/1")
	require.Equal(t, 200, code, body)

	require.NoError(t, os.Remove(path))
	body = awaitCode(t, c, "https://test.acme.com/orders/1", 404, servedWithin)
	assert.Contains(t, body, `"code":"proxy.not_found"`)
	code, _ = getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, 200, code, "the rest keeps serving")
}

// configMapVersion publishes files the way the kubelet updates a ConfigMap
// volume: a new timestamped directory, a "..data_tmp" link to it renamed
// over "..data", top-level links for new keys, then the old directory and
// the links of removed keys go.
func configMapVersion(t *testing.T, dir, version string, files map[string]string) {
	t.Helper()
	data := filepath.Join(dir, "..2026_01_01_00_00_00."+version)
	require.NoError(t, os.Mkdir(data, 0o755))
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(data, name), []byte(content), 0o644))
	}
	link := filepath.Join(dir, "..data")
	old, _ := os.Readlink(link)
	tmp := filepath.Join(dir, "..data_tmp")
	require.NoError(t, os.Symlink(filepath.Base(data), tmp))
	require.NoError(t, os.Rename(tmp, link))
	for name := range files {
		if _, err := os.Lstat(filepath.Join(dir, name)); os.IsNotExist(err) {
			require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if _, ok := files[e.Name()]; !ok && !strings.HasPrefix(e.Name(), ".") {
			require.NoError(t, os.Remove(filepath.Join(dir, e.Name())))
		}
	}
	if old != "" {
		require.NoError(t, os.RemoveAll(filepath.Join(dir, old)))
	}
}

func TestConfigMapDataSwapIsServed(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	// Turn the example's conf.d into a ConfigMap volume holding the same
	// files, plus orders.toml. A ConfigMap's keys are one flat directory:
	// every environment's home is conf.d itself, and the paths the
	// environments' files name are one level up less.
	files := map[string]string{"orders.toml": orderedProxy("/orders")}
	err := filepath.WalkDir(ex.confDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[d.Name()] = strings.ReplaceAll(string(b), `"../../var/`, `"../var/`)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, files, 6, "the example's five files and orders.toml, none of the same name")
	entries, err := os.ReadDir(ex.confDir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NoError(t, os.RemoveAll(filepath.Join(ex.confDir, e.Name())))
	}
	configMapVersion(t, ex.confDir, "1", files)
	fi, err := os.Lstat(filepath.Join(ex.confDir, "server.toml"))
	require.NoError(t, err)
	require.Equal(t, os.ModeSymlink, fi.Mode().Type(), "top-level names are links into ..data")

	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/orders/1")
	require.Equal(t, 200, code, body)

	// Version 2 moves the proxy.
	files["orders.toml"] = orderedProxy("/shop")
	configMapVersion(t, ex.confDir, "2", files)
	body = awaitCode(t, c, "https://test.acme.com/shop/7", 200, servedWithin)
	assert.Contains(t, body, `"path":"/7"`)
	code, body = getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 404, code, body)

	// Version 3 adds a key (a new top-level link) and drops one.
	delete(files, "orders.toml")
	files["billing.toml"] = strings.ReplaceAll(orderedProxy("/billing"), `"orders"`, `"billing"`)
	configMapVersion(t, ex.confDir, "3", files)
	awaitCode(t, c, "https://test.acme.com/billing/1", 200, servedWithin)
	body = awaitCode(t, c, "https://test.acme.com/shop/7", 404, servedWithin)
	assert.Contains(t, body, `"code":"proxy.not_found"`)
	code, _ = getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, 200, code)
}

// A syntax error at line 5: the string is not closed.
const ordersSyntaxError = `
[[proxy]]
name = "orders"
environment = "test"
base_path = "/shop
upstream = "user-backend"
`

func TestSyntaxErrorKeepsServingAndReloadByDirTellsTheTruth(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	broken := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(broken, []byte(ordersProxy), 0o644))
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	gen := p.generation(t)

	require.NoError(t, os.WriteFile(broken, []byte(ordersSyntaxError), 0o644))
	// The watcher tries it and fails; /status says where.
	var st map[string]any
	require.Eventually(t, func() bool {
		_, body, err := try(http.DefaultClient, "http://"+p.admin+"/status")
		if err != nil || json.Unmarshal([]byte(body), &st) != nil {
			return false
		}
		last, _ := st["last_reload"].(map[string]any)
		return last != nil && last["ok"] == false
	}, servedWithin, 10*time.Millisecond, "the watcher's failed reload on /status")
	assert.Equal(t, float64(gen), st["generation"])
	last := st["last_reload"].(map[string]any)
	errs := last["errors"].([]any)
	require.NotEmpty(t, errs)
	pos := errs[0].(map[string]any)["pos"].(map[string]any)
	assert.Equal(t, broken, pos["file"])
	assert.Equal(t, float64(5), pos["line"])
	fileErrs, _ := st["file_errors"].(map[string]any)[broken].([]any)
	require.NotEmpty(t, fileErrs, "file_errors: %v", st["file_errors"])
	assert.Contains(t, fileErrs[0], broken+":5:")

	// The last good config serves.
	code, body := getBody(t, c, "https://test.acme.com/orders/1")
	assert.Equal(t, 200, code, body)
	code, _ = getBody(t, c, "https://test.acme.com/shop/1")
	assert.Equal(t, 404, code)

	// `edged reload -c DIR` finds the socket through the [server] file and
	// says what is wrong, where.
	code, out, errOut := runEdged(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, errOut, broken+":5:")
	assert.Contains(t, errOut, fmt.Sprintf("still serving generation %d", gen))

	// Fixed: the watcher applies it; then reload says which generation
	// serves. (Waiting for the watcher first: a reload of the same files
	// racing it would apply a generation of its own in between.)
	require.NoError(t, os.WriteFile(broken, []byte(orderedProxy("/shop")), 0o644))
	awaitCode(t, c, "https://test.acme.com/shop/1", 200, servedWithin)
	code, out, errOut = runEdged(t, "reload", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	m := regexp.MustCompile(`^reloaded: (?:nothing changed, )?generation (\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, out)
	assert.Equal(t, m[1], fmt.Sprint(p.generation(t)), "the generation printed is the one serving")
	assert.Greater(t, p.generation(t), gen)
	assert.Equal(t, true, p.status(t)["last_reload"].(map[string]any)["ok"])

	// The [server] file itself broken: its state_dir still leads to the
	// socket (the default state_dir would not), and reload says why.
	gen = p.generation(t)
	serverFile := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(serverFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(serverFile, append(b, "this is not toml\n"...), 0o644))
	code, out, errOut = runEdged(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, errOut, serverFile+":")
	assert.Contains(t, errOut, fmt.Sprintf("still serving generation %d", gen))
}

// notifySocket listens like systemd on a unixgram socket for sd_notify
// messages; messages returns those received so far.
func notifySocket(t *testing.T) (path string, messages func() []string) {
	path = filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	var mu sync.Mutex
	var msgs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	t.Cleanup(func() { ln.Close(); <-done })
	return path, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
}

func TestFailedReloadTellsSystemdWhy(t *testing.T) {
	ex := newExample(t)
	sock, messages := notifySocket(t)
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	require.Eventually(t, func() bool { return len(messages()) >= 1 }, 5*time.Second, 10*time.Millisecond)
	gen := p.generation(t)

	broken := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(broken, []byte(ordersSyntaxError), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	want := fmt.Sprintf("STATUS=reload failed; still serving generation %d: %s:5:", gen, broken)
	var status string
	require.Eventually(t, func() bool {
		for _, m := range messages() {
			if strings.HasPrefix(m, want) {
				status = m
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "a STATUS= with the failure; got %q", messages())
	assert.NotContains(t, status, "\n", "one assignment, one line")
	msgs := messages()
	assert.True(t, strings.HasPrefix(msgs[0], "READY=1\nSTATUS=serving generation"), "%q", msgs)
	var reloading, readyAgain bool
	for _, m := range msgs[1:] {
		reloading = reloading || strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=")
		readyAgain = readyAgain || (reloading && strings.HasPrefix(m, "READY=1"))
	}
	assert.True(t, reloading && readyAgain, "a failed reload still ends in READY=1: %q", msgs)
}

func TestSIGINTDrainsAndExitsLikeSIGTERM(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`) // the drain, not the lame duck
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, _, err := try(c, "https://test.acme.com/users/slow") // the backend takes 700 ms
		done <- result{code, err}
	}()
	inFlight := regexp.MustCompile(`(?m)^edged_pool_in_flight\{env="test"[^}]*\} 1$`)
	require.Eventually(t, func() bool {
		_, body, err := try(http.DefaultClient, "http://"+p.admin+"/metrics")
		return err == nil && inFlight.MatchString(body)
	}, 5*time.Second, 5*time.Millisecond, "the slow request is in flight")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	r := <-done
	require.NoError(t, r.err, "the in-flight request completes")
	assert.Equal(t, 200, r.code)
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit 0 after draining")
		p.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("edged did not exit after SIGINT")
	}
	assert.Contains(t, p.stderr.String(), `"msg":"shutting down","signal":"interrupt"`)
	assert.Contains(t, p.stderr.String(), `"msg":"stopped"`)
}

func TestSIGUSR1ReopensTheAccessLog(t *testing.T) {
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	logPath := filepath.Join(ex.root, "var", "log", "uat-access.log")
	rotated := logPath + ".1"
	contains := func(path, s string) bool {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), s)
	}

	code, _ := getBody(t, c, "https://uat.acme.com/users/before-rotate")
	require.Equal(t, 200, code)
	require.Eventually(t, func() bool { return contains(logPath, `"uri":"/users/before-rotate"`) }, 5*time.Second, 10*time.Millisecond)

	// logrotate: move the file away, then SIGUSR1.
	require.NoError(t, os.Rename(logPath, rotated))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGUSR1))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), `"msg":"access logs reopened"`) }, 5*time.Second, 10*time.Millisecond)

	code, _ = getBody(t, c, "https://uat.acme.com/users/after-rotate")
	require.Equal(t, 200, code)
	require.Eventually(t, func() bool { return contains(logPath, `"uri":"/users/after-rotate"`) }, 5*time.Second, 10*time.Millisecond,
		"the line goes to a new file at the original path")
	assert.False(t, contains(logPath, "before-rotate"), "the new file starts empty")
	assert.True(t, contains(rotated, "before-rotate"))
	assert.False(t, contains(rotated, "after-rotate"), "nothing more goes to the rotated file")
}

func TestSIGTERMDrainIsBoundedByDrainTimeout(t *testing.T) {
	ex := newExample(t)
	p := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := strings.Replace(string(b), `drain_timeout = "30s"`, `drain_timeout = "1s"`, 1)
	require.NotEqual(t, string(b), s, "the example's server.toml sets drain_timeout")
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
	ex.setServer(t, "shutdown_delay", `"0s"`)

	arrived := ex.slowProxy(t, 10*time.Second)

	proc := startServe(t, ex.confDir)
	c := proc.client(t, filepath.Join(ex.certDir, "ca.pem"))
	answered := make(chan int, 1)
	go func() {
		code, _, _ := try(c, "https://test.acme.com/slow/x")
		answered <- code
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the slow backend")
	}

	start := time.Now()
	require.NoError(t, proc.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-proc.done:
		took := time.Since(start)
		require.NoError(t, err, "exit 0 after the drain timeout")
		proc.done <- nil
		assert.GreaterOrEqual(t, took, 900*time.Millisecond, "drain waited for the in-flight request")
		assert.Less(t, took, 5*time.Second, "drain_timeout bounds the shutdown")
	case <-time.After(8 * time.Second):
		t.Fatal("edged did not exit within 8 s of SIGTERM with drain_timeout = 1s")
	}
	assert.Contains(t, proc.stderr.String(), `"msg":"drain incomplete"`)
	select {
	case code := <-answered:
		assert.NotEqual(t, 200, code, "the 10 s request could not have completed")
	case <-time.After(5 * time.Second):
		t.Fatal("the client's request hung after edged exited")
	}
}

// slowProxy adds proxy "slow" (base path /slow) to environment test, whose
// backend answers after d unless the test is over first; arrived gets a
// value when a request reaches it.
func (ex *example) slowProxy(t *testing.T, d time.Duration) (arrived <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	got := make(chan struct{}, 1)
	release := make(chan struct{})
	backend := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- struct{}{}:
		default:
		}
		select {
		case <-time.After(d):
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go backend.Serve(ln)
	t.Cleanup(func() { close(release); backend.Close() })
	slow := fmt.Sprintf("\n[[proxy]]\nname = \"slow\"\nenvironment = \"test\"\nbase_path = \"/slow\"\ntarget = \"http://%s\"\n", ln.Addr())
	require.NoError(t, os.WriteFile(ex.home("test", "slow.toml"), []byte(slow), 0o644))
	return got
}

// TestFailedReloadStatusShowsControlCharacters: the STATUS= of a failed
// reload carried its first error as it was, with the file's name: a file
// "x\x1b]0;owned\x07\u202eevil.toml" under conf.d sent ESC, BEL and
// U+202E to systemd, which shows the status as it came (`systemctl
// status`), to the terminal of whoever reads it. They are shown as
// escapes, as the log and edged check show them.
func TestFailedReloadStatusShowsControlCharacters(t *testing.T) {
	ex := newExample(t)
	sock, messages := notifySocket(t)
	p := startServe(t, ex.confDir, "NOTIFY_SOCKET="+sock)
	require.Eventually(t, func() bool { return len(messages()) >= 1 }, 5*time.Second, 10*time.Millisecond)

	broken := filepath.Join(ex.confDir, "x\x1b]0;owned\x07\u202eevil.toml")
	require.NoError(t, os.WriteFile(broken, []byte("[[environment]\n"), 0o644))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	var status string
	require.Eventually(t, func() bool {
		for _, m := range messages() {
			if strings.HasPrefix(m, "STATUS=reload failed") {
				status = m
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "a STATUS= with the failure; got %q", messages())
	assert.NotContains(t, status, "\x1b", "ESC sent to systemd")
	assert.NotContains(t, status, "\x07")
	assert.NotContains(t, status, "\u202e")
	assert.Contains(t, status, `x\x1b]0;owned\x07\u202eevil.toml`)
}
