package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"edged/internal/config"
	"edged/internal/devcert"
)

// testCerts makes (once per process) a CA and certificates for the three
// acme groups, plus a client certificate.
var (
	certsOnce sync.Once
	certsDir  string
	certsErr  error
)

func testCertDir(t testing.TB) string {
	t.Helper()
	certsOnce.Do(func() {
		certsDir, certsErr = os.MkdirTemp("", "edged-edge-certs-")
		if certsErr != nil {
			return
		}
		certsErr = devcert.Generate(certsDir, map[string][]string{
			"test.acme.com":  {"test.acme.com", "*.test.acme.com"},
			"uat.acme.com":   {"uat.acme.com", "*.uat.acme.com"},
			"prod.acme.com":  {"prod.acme.com", "*.prod.acme.com"},
			"other.acme.com": {"other.acme.com"},
		})
		if certsErr == nil {
			certsErr = devcert.ClientCert(certsDir, "client")
		}
	})
	require.NoError(t, certsErr)
	return certsDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if certsDir != "" {
		os.RemoveAll(certsDir)
	}
	os.Exit(code)
}

func caPool(t testing.TB) *x509.CertPool {
	return caPoolOf(t, filepath.Join(testCertDir(t), "ca.pem"))
}

// caPoolOf reads a PEM file of CA certificates.
func caPoolOf(t testing.TB, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	p := x509.NewCertPool()
	require.True(t, p.AppendCertsFromPEM(b))
	return p
}

// serverTOML is a [server] block on ephemeral loopback ports.
func serverTOML(stateDir string, extra string) string {
	return fmt.Sprintf(`[server]
https = "127.0.0.1:0"
admin = "127.0.0.1:0"
state_dir = %q
drain_timeout = "2s"
%s
`, stateDir, extra)
}

// groupTOML is an environment, its group and virtual host for one acme
// certificate.
func groupTOML(env, group, cert string, hostnames ...string) string {
	certs := filepath.ToSlash(certsDir)
	q := make([]string, len(hostnames))
	for i, h := range hostnames {
		q[i] = fmt.Sprintf("%q", h)
	}
	return fmt.Sprintf(`
[[env_group]]
name = %q
hostnames = [%s]
environments = [%q]

[[virtual_host]]
name = %q
cert_file = "%s/%s.pem"
key_file = "%s/%s.key"
`, group, strings.Join(q, ", "), env, group, certs, cert, certs, cert)
}

// testEdge is a running edged server on loopback.
type testEdge struct {
	t     testing.TB
	dir   string
	srv   *Server
	addr  string
	admin string
	// loader loads dir like a running process does: unchanged files'
	// upstreams and proxies are shared, so reloads take over what did not
	// change.
	loader *config.Loader
}

// startEdge writes files into a fresh config dir, applies it and listens.
func startEdge(t testing.TB, files map[string]string) *testEdge {
	t.Helper()
	return startEdgeOn(t, files, slog.NewTextHandler(io.Discard, nil))
}

// startEdgeOn is startEdge with edged's log written to h.
func startEdgeOn(t testing.TB, files map[string]string, h slog.Handler) *testEdge {
	t.Helper()
	testCertDir(t)
	dir := t.TempDir()
	writeFiles(t, dir, files)
	loader := &config.Loader{Dir: dir}
	cfg, err := loader.Load()
	require.NoError(t, err)
	srv := NewServer(slog.New(h))
	_, _, err = srv.Apply(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		// Every connection is closed: what the process's budgets lent
		// is all given back, whatever way each request ended.
		for _, b := range []*processBudget{srv.readAhead, srv.held, srv.uploads} {
			assert.Eventually(t, func() bool { return b.used.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
				"a process budget still lent after shutdown: %d bytes", b.used.Load())
		}
	})
	https, _, admin := srv.Addrs()
	te := &testEdge{t: t, dir: dir, srv: srv, addr: https.String(), loader: loader}
	if admin != nil {
		te.admin = admin.String()
	}
	return te
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

// reload loads the dir again and applies it.
func (te *testEdge) reload() Change {
	te.t.Helper()
	cfg, err := te.loader.Load()
	require.NoError(te.t, err)
	_, ch, err := te.srv.Apply(cfg)
	require.NoError(te.t, err)
	return ch
}

// client returns an HTTPS client that dials the edge whatever the URL's
// host, with sni as the TLS server name (the URL's host when empty).
func (te *testEdge) client(sni string, mod func(*tls.Config)) *http.Client {
	tc := &tls.Config{RootCAs: caPool(te.t), ServerName: sni}
	if mod != nil {
		mod(tc)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, te.addr)
		},
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   false,
		MaxIdleConnsPerHost: 64,
	}
	te.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2client returns an HTTP/2-only client that dials the edge whatever the
// URL's host; dials counts its connections when not nil.
func (te *testEdge) h2client(dials *atomic64) *http.Client {
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: caPool(te.t)},
		DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			if dials != nil {
				dials.add()
			}
			d := tls.Dialer{Config: cfg}
			return d.DialContext(ctx, network, te.addr)
		},
	}
	te.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// answer is what a client got for one request.
type answer struct {
	status int
	body   string
	err    error
}

// getAsync sends GET url on c in the background.
func getAsync(c *http.Client, url string) <-chan answer {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		done := make(chan answer, 1)
		done <- answer{err: err}
		return done
	}
	return doAsync(c, req)
}

// doAsync sends req in the background; the answer comes on the channel.
func doAsync(c *http.Client, req *http.Request) <-chan answer {
	done := make(chan answer, 1)
	go func() {
		resp, err := c.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, string(b), err}
	}()
	return done
}

// get sends GET https://host/path with SNI = host.
func (te *testEdge) get(host, path string) (*http.Response, string) {
	te.t.Helper()
	resp, err := te.client(host, nil).Get("https://" + host + path)
	require.NoError(te.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(te.t, err)
	return resp, string(b)
}

// backend is an httptest-like server on loopback that names itself.
type backend struct {
	*http.Server
	addr  string
	conns atomic64
}

type atomic64 struct {
	mu sync.Mutex
	n  int64
}

func (a *atomic64) add() { a.mu.Lock(); a.n++; a.mu.Unlock() }
func (a *atomic64) load() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// startBackend serves h on 127.0.0.1:0 and counts accepted connections.
func startBackend(t testing.TB, h http.Handler) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &backend{addr: ln.Addr().String()}
	b.Server = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.add()
		}
	}}
	go b.Serve(ln)
	t.Cleanup(func() { b.Close() })
	return b
}

// nameBackend answers "<name> <path>" with the request's headers echoed as
// X-Seen-* response headers.
func nameBackend(t testing.TB, name string) *backend {
	// The forwarded fields' values are joined with " | ": a field sent
	// twice shows.
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Uri", r.RequestURI)
		w.Header().Set("X-Seen-Xff", strings.Join(r.Header.Values("X-Forwarded-For"), " | "))
		w.Header().Set("X-Seen-Proto", strings.Join(r.Header.Values("X-Forwarded-Proto"), " | "))
		w.Header().Set("X-Seen-Fwd-Host", strings.Join(r.Header.Values("X-Forwarded-Host"), " | "))
		w.Header().Set("X-Seen-Forwarded", strings.Join(r.Header.Values("Forwarded"), " | "))
		w.Header().Set("X-Seen-Request-Id", strings.Join(r.Header.Values("X-Request-Id"), " | "))
		w.Header().Set("X-Seen-Connection", r.Header.Get("Connection"))
		w.Header().Set("X-Seen-Keep-Alive", r.Header.Get("Keep-Alive"))
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
}

// envTOML is an environment with a proxy to nodes.
func envTOML(env string, extra string) string {
	return fmt.Sprintf(`
[[environment]]
name = %q
workers = 16
queue = 16
queue_timeout = "1s"
%s
`, env, extra)
}

func proxyTOML(env, name, base string, nodes ...string) string {
	var ns []string
	for _, n := range nodes {
		ns = append(ns, fmt.Sprintf(`{ url = "http://%s" }`, n))
	}
	return fmt.Sprintf(`
[[upstream]]
name = "%s-up"
environment = %q
nodes = [%s]

[[proxy]]
name = %q
environment = %q
base_path = %q
upstream = "%s-up"
`, name, env, strings.Join(ns, ", "), name, env, base, name)
}
