package edge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
)

// tlsBackend is an https node on 127.0.0.1 whose certificate can be
// swapped, and which records the server names its clients sent.
type tlsBackend struct {
	addr string
	mu   sync.Mutex
	cert *tls.Certificate
	snis []string
}

func (b *tlsBackend) use(cert tls.Certificate) {
	b.mu.Lock()
	b.cert = &cert
	b.mu.Unlock()
}

func (b *tlsBackend) sentNames() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.snis...)
}

func startTLSBackend(t *testing.T, cert tls.Certificate) *tlsBackend {
	t.Helper()
	b := &tlsBackend{}
	b.use(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		// Every connection shows its certificate: a resumed session
		// would not, and the test swaps it.
		SessionTicketsDisabled: true,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.snis = append(b.snis, hello.ServerName)
			return b.cert, nil
		},
	})
	require.NoError(t, err)
	b.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "private backend")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// privateCA makes a CA of its own in a fresh directory and a certificate
// it signs for backend.internal (no IP SAN).
func privateCA(t *testing.T) (caFile string, cert tls.Certificate) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, devcert.Generate(dir, map[string][]string{"backend.internal": {"backend.internal"}}))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "backend.internal.pem"), filepath.Join(dir, "backend.internal.key"))
	require.NoError(t, err)
	return filepath.Join(dir, devcert.CACertFile), cert
}

// privateUpstreamTOML is an environment whose one proxy goes to an https
// node with the upstream settings in tlsKeys; no connection is kept idle,
// so that every request makes a handshake.
func privateUpstreamTOML(node, tlsKeys string) string {
	return envTOML("test", "") + fmt.Sprintf(`
[[upstream]]
name = "private"
environment = "test"
nodes = [{ url = "https://%s" }]
max_idle_per_node = 0
retries = 0
%s

[[proxy]]
name = "private"
environment = "test"
base_path = "/private"
upstream = "private"
`, node, tlsKeys)
}

// An https node whose certificate a private CA signed, for a name that is
// not its address, is reached only with tls_ca_file and tls_server_name
// (nginx's proxy_ssl_trusted_certificate and proxy_ssl_name, HAProxy's
// ca-file and sni), and a renewed bundle written under unchanged config
// files is taken by the next reload.
func TestUpstreamTLSTrustsItsCAFileAndServerName(t *testing.T) {
	testCertDir(t)
	caFile, cert := privateCA(t)
	node := startTLSBackend(t, cert)
	bundle := filepath.Join(t.TempDir(), "backend-ca.pem")
	ca, err := os.ReadFile(caFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bundle, ca, 0o644))

	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com"),
		"test.toml":   privateUpstreamTOML(node.addr, ""),
	})
	get := func(what string, want int) {
		t.Helper()
		resp, body := te.get("test.acme.com", "/private/x")
		require.Equal(t, want, resp.StatusCode, "%s: %s", what, body)
		if want == http.StatusOK {
			assert.Equal(t, "private backend", body)
		}
	}
	get("the system roots do not know the private CA", http.StatusBadGateway)

	writeFiles(t, te.dir, map[string]string{"test.toml": privateUpstreamTOML(node.addr, fmt.Sprintf("tls_ca_file = %q", bundle))})
	te.reload()
	get("the CA is trusted, but the certificate is not for 127.0.0.1", http.StatusBadGateway)

	writeFiles(t, te.dir, map[string]string{"test.toml": privateUpstreamTOML(node.addr,
		fmt.Sprintf("tls_ca_file = %q\ntls_server_name = \"Backend.Internal\"", bundle))})
	te.reload()
	get("the CA and the name", http.StatusOK)
	names := node.sentNames()
	assert.Equal(t, "backend.internal", names[len(names)-1], "the server name is sent in SNI, lowercased")

	// The node's certificate is renewed under a new CA: the old bundle
	// refuses it until the new bundle is written to the same path and a
	// reload reads it, with every config file as it was.
	newCA, newCert := privateCA(t)
	node.use(newCert)
	get("a certificate of a CA the bundle does not hold", http.StatusBadGateway)
	ca, err = os.ReadFile(newCA)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bundle, ca, 0o644))
	ch := te.reload()
	assert.Contains(t, ch.Changed, "test", "a new bundle rebuilds the environment whose upstream names it")
	get("the renewed bundle", http.StatusOK)
}

// An upstream's idle connections are closed once idle for its
// idle_timeout, shorter than many backends' own keep-alive (nginx's
// upstream keepalive_timeout), so that edged never reuses one the backend
// is closing.
func TestUpstreamIdleTimeoutClosesIdleConnections(t *testing.T) {
	testCertDir(t)
	var opened, closed atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up := func(idle string) string {
		return envTOML("test", "") + fmt.Sprintf(`
[[upstream]]
name = "up"
environment = "test"
nodes = [{ url = "http://%s" }]
idle_timeout = %q

[[proxy]]
name = "p"
environment = "test"
base_path = "/p"
upstream = "up"
`, ln.Addr(), idle)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com"),
		"test.toml":   up("300ms"),
	})
	resp, body := te.get("test.acme.com", "/p/1")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, int64(1), opened.Load())
	require.Eventually(t, func() bool { return closed.Load() == 1 }, 10*time.Second, 20*time.Millisecond, "the idle connection is closed after idle_timeout")

	// The default keeps it for 90 s: a second request within a second
	// reuses the first one's connection.
	writeFiles(t, te.dir, map[string]string{"test.toml": up("90s")})
	te.reload()
	for i := range 2 {
		resp, body = te.get("test.acme.com", fmt.Sprintf("/p/%d", i))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	assert.Equal(t, int64(2), opened.Load(), "one new connection for both requests")
}

// An https node that asks for a client certificate (mutual TLS, Apigee's
// TargetEndpoint SSLInfo with ClientAuthEnabled, nginx's
// proxy_ssl_certificate) gets the one tls_cert_file and tls_key_file name.
// Also when the CAs its request names do not include the certificate's
// (a backend that lists another CA, or verifies against a bundle it does
// not advertise): as nginx and OpenSSL, edged sends it all the same, where
// crypto/tls by itself would send none and the handshake would fail.
func TestUpstreamTLSClientCertificate(t *testing.T) {
	testCertDir(t)
	dir := t.TempDir()
	require.NoError(t, devcert.Generate(dir, map[string][]string{"backend.internal": {"backend.internal"}}))
	require.NoError(t, devcert.ClientCert(dir, "edge"))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "backend.internal.pem"), filepath.Join(dir, "backend.internal.key"))
	require.NoError(t, err)
	ca := filepath.Join(dir, devcert.CACertFile)
	pool := caPoolOf(t, ca)

	for _, tc := range []struct {
		name      string
		advertise *x509.CertPool // the CAs the node's certificate request names
	}{
		{"the node names edged's CA", pool},
		{"the node names another CA", poolOf(t, newSelfSigned(t, "another CA"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var peers []string
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{cert},
				ClientAuth:   tls.RequireAnyClientCert,
				ClientCAs:    tc.advertise,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					leaf, err := x509.ParseCertificate(raw[0])
					if err != nil {
						return err
					}
					if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
						return err
					}
					mu.Lock()
					defer mu.Unlock()
					peers = append(peers, leaf.Subject.CommonName)
					return nil
				},
			})
			require.NoError(t, err)
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "private backend") })}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			trust := fmt.Sprintf("tls_ca_file = %q\ntls_server_name = \"backend.internal\"\n", ca)
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), ""),
				"groups.toml": groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com"),
				"test.toml":   privateUpstreamTOML(ln.Addr().String(), trust),
			})
			resp, body := te.get("test.acme.com", "/private/1")
			require.Equal(t, http.StatusBadGateway, resp.StatusCode, "no client certificate: %s", body)

			writeFiles(t, te.dir, map[string]string{"test.toml": privateUpstreamTOML(ln.Addr().String(), trust+fmt.Sprintf(
				"tls_cert_file = %q\ntls_key_file = %q", filepath.Join(dir, "edge-client.pem"), filepath.Join(dir, "edge-client.key")))})
			te.reload()
			resp, body = te.get("test.acme.com", "/private/2")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []string{"edge"}, peers, "the node verified edged's client certificate")
		})
	}
}

func poolOf(t *testing.T, c tls.Certificate) *x509.CertPool {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	require.NoError(t, err)
	p := x509.NewCertPool()
	p.AddCert(leaf)
	return p
}

// A reload that takes the node's CA out of tls_ca_file holds for the
// connections and sessions made under the old bundle too (nginx's
// proxy_ssl_verify, HAProxy's verify required, Envoy's validation
// context: each new generation verifies anew): the next request is not
// sent on a kept-alive connection nor over a session resumed from the
// old trust, but makes a full handshake that fails, answered 502
// upstream.failed as the node's failure, logged with the verifier's
// reason.
func TestUpstreamTLSReloadThatNarrowsTrustDropsConnectionsAndSessions(t *testing.T) {
	testCertDir(t)
	caFile, cert := privateCA(t)
	otherCA, _ := privateCA(t)
	var served, handshakes, resumed atomic.Int64
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert}, // session tickets on, as by default
		VerifyConnection: func(cs tls.ConnectionState) error {
			handshakes.Add(1)
			if cs.DidResume {
				resumed.Add(1)
			}
			return nil
		},
	})
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			served.Add(1)
			fmt.Fprint(w, "private backend")
		})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	files := func(ca string) map[string]string {
		return map[string]string{"test.toml": envTOML("test", "") + fmt.Sprintf(`
[[upstream]]
name = "private"
environment = "test"
nodes = [{ url = "https://%s" }]
retries = 0
tls_ca_file = %q
tls_server_name = "backend.internal"

[[proxy]]
name = "private"
environment = "test"
base_path = "/private"
upstream = "private"
`, ln.Addr(), ca)}
	}
	all := files(caFile)
	all["server.toml"] = serverTOML(t.TempDir(), "")
	all["groups.toml"] = groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com")
	te, logs := startEdgeLogged(t, all)
	for i := range 3 {
		resp, body := te.get("test.acme.com", fmt.Sprintf("/private/%d", i))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	require.EqualValues(t, 1, handshakes.Load(), "one kept-alive connection")

	writeFiles(t, te.dir, files(otherCA))
	require.Contains(t, te.reload().Changed, "test")
	resp, body := te.get("test.acme.com", "/private/after")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
	assert.Contains(t, body, `"code":"upstream.failed"`)
	assert.EqualValues(t, 3, served.Load(), "nothing sent under the trust the reload took away")
	assert.Zero(t, resumed.Load(), "no session of the old trust resumed")
	assert.Contains(t, logs.String(), "certificate signed by unknown authority")
}

// The SNI sent to an https node, and the name its certificate is checked
// for, is the node's host (or tls_server_name), whatever Host pass_host
// sends: nginx's proxy_ssl_name is $proxy_host too. A rewritten Host
// does not move the TLS name with it.
func TestUpstreamTLSServerNameIsTheNodesWhateverPassHost(t *testing.T) {
	testCertDir(t)
	dir := t.TempDir()
	require.NoError(t, devcert.Generate(dir, map[string][]string{"localhost": {"localhost"}}))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "localhost.pem"), filepath.Join(dir, "localhost.key"))
	require.NoError(t, err)
	node := startTLSBackend(t, cert)
	_, port, err := net.SplitHostPort(node.addr)
	require.NoError(t, err)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com"),
		"test.toml": privateUpstreamTOML("localhost:"+port, fmt.Sprintf("tls_ca_file = %q\npass_host = \"rewrite\"\nupstream_host = \"api.internal\"",
			filepath.Join(dir, devcert.CACertFile))),
	})
	resp, body := te.get("test.acme.com", "/private/1")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, []string{"localhost"}, node.sentNames())
}
