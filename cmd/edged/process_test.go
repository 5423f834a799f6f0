package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
	"edged/internal/stderrlog"
)

// TestMain lets the test binary stand in for edged: a child started with
// EDGED_TEST_MAIN=1 runs main's run(), so the tests drive a real process
// (real signals, real sockets) without a separate build step.
func TestMain(m *testing.M) {
	if os.Getenv("EDGED_TEST_MAIN") == "1" {
		// Never the machine's journald: a test's own, or none.
		stderrlog.JournalSocket = "/nonexistent/journal/stdout"
		if sock := os.Getenv("EDGED_TEST_JOURNAL_SOCKET"); sock != "" {
			stderrlog.JournalSocket = sock
		}
		if os.Getenv("EDGED_TEST_WEDGE_RELOAD") == "1" {
			testHookReloadStarted = func() { time.Sleep(time.Hour) }
		}
		if fifo := os.Getenv("EDGED_TEST_HOLD_START"); fifo != "" {
			testHookStartLoaded = func() { holdStart(fifo) }
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv("EDGED_TEST_INOTIFY_HOG") == "1" {
		hogInotify()
	}
	os.Exit(m.Run())
}

// holdStart, in an edged started by a test with EDGED_TEST_HOLD_START
// set to a named pipe's path, says it is held (a file beside the pipe,
// ".held") and waits until the test has opened the pipe and closed it
// (startHeldAfterItsLoad).
func holdStart(fifo string) {
	_ = os.WriteFile(fifo+".held", nil, 0o600)
	_, _ = os.ReadFile(fifo)
}

// edgedCmd runs the edged "binary" with args.
func edgedCmd(t testing.TB, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "EDGED_TEST_MAIN=1")
	return cmd
}

// runEdged runs a short-lived subcommand and returns its exit code and output.
func runEdged(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	var code int
	exit := func() {
		stdout, stderr := &out, &errb
		code = run(args, stdout, stderr)
	}
	exit()
	return code, out.String(), errb.String()
}

// example copies conf.d into a temp dir with certificates, points its
// upstreams at fresh loopback backends and its listeners at port 0.
type example struct {
	root, confDir, certDir string
	backends               map[string]*http.Server  // by name: test, uat-a, ...
	conns                  map[string]*atomic.Int64 // connections each backend accepted
}

func newExample(t *testing.T) *example {
	t.Helper()
	root := t.TempDir()
	ex := &example{root: root, confDir: filepath.Join(root, "conf.d"), certDir: filepath.Join(root, "certs"), backends: map[string]*http.Server{}, conns: map[string]*atomic.Int64{}}
	require.NoError(t, devcert.Generate(ex.certDir, map[string][]string{
		"test.acme.com": {"test.acme.com", "*.test.acme.com"},
		"uat.acme.com":  {"uat.acme.com", "*.uat.acme.com"},
		"prod.acme.com": {"prod.acme.com", "*.prod.acme.com"},
	}))
	require.NoError(t, os.MkdirAll(ex.confDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "var", "log"), 0o755))
	addr := map[string]string{}
	for port, name := range examplePorts {
		addr[port] = ex.startBackend(t, name)
	}
	ex.copyConf(t, addr)
	return ex
}

// examplePorts are the node ports of conf.d/ and the demo backend that
// answers on each (tools/demo-backend's defaults).
var examplePorts = map[string]string{"9101": "test", "9201": "uat-a", "9202": "uat-b", "9301": "prod-a", "9302": "prod-b"}

// exampleFiles reads the repository's conf.d: every *.toml under it by
// its path relative to conf.d (test/test.toml: one directory per
// environment).
func exampleFiles(t *testing.T) map[string]string {
	t.Helper()
	const top = "../../conf.d"
	files := map[string]string{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".toml") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(top, p)
		files[rel] = string(b)
		return err
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

// copyConf copies conf.d, its subdirectories as they are, into ex.confDir
// with the node ports replaced by addr (port → address) and the listeners
// on port 0.
func (ex *example) copyConf(t *testing.T, addr map[string]string) {
	t.Helper()
	for rel, s := range exampleFiles(t) {
		for port, a := range addr {
			s = strings.ReplaceAll(s, "127.0.0.1:"+port, a)
		}
		for _, l := range []string{"8443", "8080", "9901"} {
			s = strings.ReplaceAll(s, `"127.0.0.1:`+l+`"`, `"127.0.0.1:0"`)
		}
		p := filepath.Join(ex.confDir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
	}
}

// home is the path of name in env's directory of the example: where the
// files declaring env's upstreams and proxies go.
func (ex *example) home(env, name string) string {
	return filepath.Join(ex.confDir, env, name)
}

// setServer sets key = value (TOML) in the example's server.toml, which
// must already set key.
func (ex *example) setServer(t *testing.T, key, value string) {
	t.Helper()
	p := filepath.Join(ex.confDir, "server.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + ` = [^#\n]*`)
	require.True(t, re.Match(b), "the example's server.toml sets %s", key)
	require.NoError(t, os.WriteFile(p, re.ReplaceAllLiteral(b, []byte(key+" = "+value+" ")), 0o644))
}

// newDemoExample is the example as `make run` serves it: conf.d/ copied
// (listeners on port 0), its nodes answered by a real tools/demo-backend
// process, its certificates made by tools/devcerts like `make certs`.
func newDemoExample(t *testing.T) *example {
	t.Helper()
	root := t.TempDir()
	ex := &example{root: root, confDir: filepath.Join(root, "conf.d"), certDir: filepath.Join(root, "certs")}
	require.NoError(t, os.MkdirAll(ex.confDir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "var", "log"), 0o755))
	bin := buildTools(t, "./tools/demo-backend", "./tools/devcerts")
	ex.copyConf(t, startDemoBackend(t, filepath.Join(bin, "demo-backend")))
	out, err := exec.Command(filepath.Join(bin, "devcerts"), "-c", ex.confDir, "-dir", ex.certDir).CombinedOutput()
	require.NoError(t, err, "devcerts: %s", out)
	return ex
}

// buildTools builds the packages (paths from the module root) into a
// temporary directory and returns it.
func buildTools(t *testing.T, pkgs ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %v: %s", pkgs, out)
	return dir
}

// startDemoBackend runs the demo backend with every backend of
// examplePorts on a free loopback port, waits until each answers
// /healthz and returns port → address. It is stopped with SIGTERM.
func startDemoBackend(t *testing.T, exe string) map[string]string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		// Free ports, released just before the backend binds them: another
		// process may take one meanwhile, so a failed start is retried.
		addr := map[string]string{}
		var listen []string
		for port, name := range examplePorts {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr[port] = ln.Addr().String()
			ln.Close()
			listen = append(listen, addr[port]+"="+name)
		}
		cmd := exec.Command(exe, "-listen", strings.Join(listen, ","))
		stderr := &syncBuffer{}
		cmd.Stderr, cmd.Stdout = stderr, io.Discard
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if up := awaitHealthy(addr, done); up {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
			return addr
		}
		_ = cmd.Process.Kill()
		<-done
		require.Less(t, attempt, 2, "demo-backend did not start: %s", stderr.String())
	}
}

// awaitHealthy polls /healthz of every address until all answer 200 (true)
// or the process exits or 15s pass (false).
func awaitHealthy(addr map[string]string, exited <-chan error) bool {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addr {
		for {
			resp, err := c.Get("http://" + a + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			select {
			case <-exited:
				return false
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	return true
}

func (ex *example) startBackend(t *testing.T, name string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	conns := new(atomic.Int64)
	ex.conns[name] = conns
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		if r.URL.Path == "/slow" {
			time.Sleep(700 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"backend": name, "path": r.URL.Path, "host": r.Host})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ex.backends[name] = srv
	return ln.Addr().String()
}

// proc is a running edged serve.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	https  string
	admin  string
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listeningRE = regexp.MustCompile(`"msg":"listening","https":"([^"]*)","http":"[^"]*","admin":"([^"]*)"`)

// startServe starts `edged serve -c dir` and waits until it listens.
func startServe(t *testing.T, dir string, env ...string) *proc {
	t.Helper()
	cmd := edgedCmd(t, "serve", "-c", dir)
	cmd.Env = append(cmd.Env, env...)
	return startServeCmd(t, cmd)
}

// startServeCmd starts cmd, an edged serve, and waits until it listens.
func startServeCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("edged stderr:\n%s", p.stderr.String())
		}
	})
	require.Eventually(t, func() bool {
		m := listeningRE.FindStringSubmatch(p.stderr.String())
		if m == nil {
			return false
		}
		p.https, p.admin = m[1], m[2]
		return true
	}, 15*time.Second, 20*time.Millisecond, "edged did not start listening")
	return p
}

// client talks HTTPS to the process with SNI = the URL's host.
func (p *proc) client(t *testing.T, caFile string) *http.Client {
	b, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(b))
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, p.https)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func getBody(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// demoEcho is what the demo backend answers about a request it got.
type demoEcho struct {
	Backend         string `json:"backend"`
	Path            string `json:"path"`
	Host            string `json:"host"`
	XForwardedProto string `json:"x_forwarded_proto"`
	XRequestID      string `json:"x_request_id"`
	ClientCert      string `json:"client_cert"`
}

func parseEcho(t *testing.T, body string) demoEcho {
	t.Helper()
	var e demoEcho
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	return e
}

// resolveGet is curl --resolve HOST:PORT:127.0.0.1 with Go's client: the
// connection goes to 127.0.0.1, the TLS name and Host stay HOST.
func resolveGet(t *testing.T, caFile, hostPort, url string) (int, string) {
	t.Helper()
	b, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(b))
	_, port, err := net.SplitHostPort(hostPort)
	require.NoError(t, err)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == hostPort {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}
	defer tr.CloseIdleConnections()
	return getBody(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, url)
}

func TestExampleServesEndToEnd(t *testing.T) {
	ex := newDemoExample(t)
	p := startServe(t, ex.confDir)
	port := p.https[strings.LastIndexByte(p.https, ':')+1:]
	caFile := filepath.Join(ex.certDir, "ca.pem")

	// What the README tells operators to run.
	url := "https://test.acme.com:" + port + "/users/1"
	var code int
	var body string
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", caFile, "-w", "\n%{http_code}",
			"--resolve", "test.acme.com:"+port+":127.0.0.1", url).CombinedOutput()
		require.NoError(t, err, string(out))
		i := bytes.LastIndexByte(out, '\n')
		require.Positive(t, i, string(out))
		body = string(out[:i])
		code, err = strconv.Atoi(string(out[i+1:]))
		require.NoError(t, err, string(out))
	} else {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed: CI must run the README's curl check")
		}
		t.Log("curl is not installed: the README's request made with Go's client, --resolve-style")
		code, body = resolveGet(t, caFile, "test.acme.com:"+port, url)
	}
	require.Equal(t, 200, code, body)
	e := parseEcho(t, body)
	require.Equal(t, "test", e.Backend)
	require.Equal(t, "/1", e.Path, "base path /users taken off")
	require.Equal(t, "test.acme.com:"+port, e.Host, "pass_host = pass")
	require.Equal(t, "https", e.XForwardedProto)
	require.Len(t, e.XRequestID, 32)

	c := p.client(t, caFile)
	code, body = getBody(t, c, "https://test.acme.com/users/1")
	require.Equal(t, 200, code, body)
	require.Equal(t, "test", parseEcho(t, body).Backend)
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		code, body := getBody(t, c, "https://uat.acme.com/users/2")
		require.Equal(t, 200, code, body)
		seen[parseEcho(t, body).Backend] = true
	}
	require.True(t, seen["uat-a"] && seen["uat-b"], "uat balances over both nodes: %v", seen)
	code, body = getBody(t, c, "https://prod.acme.com/users/3")
	require.Equal(t, 200, code, body)
	require.Contains(t, []string{"prod-a", "prod-b"}, parseEcho(t, body).Backend)

	code, body = getBody(t, http.DefaultClient, "http://"+p.admin+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, `edged_requests_total{env="uat",stage="uat",proxy="user-service",class="2xx"} 6`)
	require.Contains(t, body, `edged_requests_total{env="uat",stage="uat",class="2xx"} 6`)
	require.Contains(t, body, `edged_requests_total{env="test",stage="test",class="2xx"} 2`)
	require.Contains(t, body, `edged_pool_workers{env="prod",stage="prod"} 128`)
	require.Contains(t, body, `edged_certificate_not_after_seconds{virtual_host="test-group"}`)
	require.Contains(t, body, `edged_config_generation`)
}

func TestCheckAndRoutesOnTheExample(t *testing.T) {
	ex := newExample(t)
	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "3 environments, 3 env groups, 6 hostnames, 3 proxies, 3 upstreams, 3 virtual hosts")

	code, out, errOut = runEdged(t, "routes", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	routes, homes, ok := strings.Cut(strings.TrimSpace(out), "\n\n")
	require.True(t, ok, "the routes, then the environments' homes: %s", out)
	lines := strings.Split(routes, "\n")
	require.Len(t, lines, 7, out)
	require.Regexp(t, `^\*\.prod\.acme\.com\s+/users\s+prod-group\s+prod\s+user-service\s+http://127\.0\.0\.1:\d+ http://127\.0\.0\.1:\d+$`, lines[1])
	require.Regexp(t, `^uat\.acme\.com\s+/users\s+uat-group\s+uat\s+user-service\s+`, lines[6])
	lines = strings.Split(homes, "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ENVIRONMENT\s+HOME\s+OWNER\s+GROUP$`, lines[0])
	require.Regexp(t, `^prod\s+`+regexp.QuoteMeta(ex.home("prod", ""))+`\s+\S+\s+\S+$`, lines[1])
}

func TestCheckReportsEveryErrorWithFileAndLine(t *testing.T) {
	ex := newExample(t)
	broken := `
[[proxy]]
name = "orders"
environment = "uat"
base_path = "/orders"
upstream = "missing-pool"
workerz = 3
`
	require.NoError(t, os.WriteFile(ex.home("uat", "broken.toml"), []byte(broken), 0o644))
	code, _, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 1, code)
	file := ex.home("uat", "broken.toml")
	require.Contains(t, errOut, file+":7:", "unknown key with its line")
	require.Contains(t, errOut, "workerz")
	require.Contains(t, errOut, file+":6:", "dangling upstream with its line")
	require.Contains(t, errOut, `proxy "orders"`)
	require.Contains(t, errOut, "missing-pool")
}

var _ = bufio.NewReader
var _ = syscall.SIGTERM

// The example's prod-group has mutual TLS and forward_client_cert
// commented out: uncommented, as its comment says, the lines load, a
// client without a certificate is refused, and one with the demo
// client's is served, the node getting that certificate as Client-Cert.
func TestExampleMutualTLSLinesWork(t *testing.T) {
	ex := newDemoExample(t)
	p := filepath.Join(ex.confDir, "groups.toml")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	uncommented := 0
	for _, key := range []string{"client_ca_file", "forward_client_cert"} {
		re := regexp.MustCompile(`(?m)^# (` + key + ` = )`)
		require.Len(t, re.FindAll(b, -1), 1, "groups.toml has one commented %s line", key)
		b = re.ReplaceAll(b, []byte("$1"))
		uncommented++
	}
	require.NoError(t, os.WriteFile(p, b, 0o644))
	require.Equal(t, 2, uncommented)

	srv := startServe(t, ex.confDir)
	caFile := filepath.Join(ex.certDir, "ca.pem")
	_, err = srv.client(t, caFile).Get("https://prod.acme.com/users/3")
	require.Error(t, err, "no client certificate, no answer")

	pair, err := tls.LoadX509KeyPair(filepath.Join(ex.certDir, "demo-client.pem"), filepath.Join(ex.certDir, "demo-client.key"))
	require.NoError(t, err)
	c := srv.client(t, caFile)
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	code, body := getBody(t, c, "https://prod.acme.com/users/3")
	require.Equal(t, 200, code, body)
	e := parseEcho(t, body)
	require.Contains(t, []string{"prod-a", "prod-b"}, e.Backend)
	require.Equal(t, ":"+base64.StdEncoding.EncodeToString(pair.Certificate[0])+":", e.ClientCert, "the node got the demo client's certificate")
}
