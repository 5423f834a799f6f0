package edge

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"

	"edged/internal/devcert"
)

// threeGroups is a config with test, uat and prod behind one backend each.
func threeGroups(t *testing.T, extraServer string) (*testEdge, map[string]*backend) {
	backs := map[string]*backend{}
	testCertDir(t)
	files := map[string]string{"server.toml": serverTOML(t.TempDir(), extraServer)}
	for _, env := range []string{"test", "uat", "prod"} {
		b := nameBackend(t, env)
		backs[env] = b
		files[env+".toml"] = envTOML(env, "") +
			groupTOML(env, env+"-group", env+".acme.com", env+".acme.com", "*."+env+".acme.com") +
			proxyTOML(env, "user-service", "/users", b.addr)
	}
	return startEdge(t, files), backs
}

func handshake(t *testing.T, addr string, cfg *tls.Config) (*tls.ConnectionState, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.ConnectionState()
	return &st, nil
}

func TestSNIPicksTheVirtualHostsCertificate(t *testing.T) {
	te, _ := threeGroups(t, "")
	for _, sni := range []string{"test.acme.com", "uat.acme.com", "prod.acme.com", "api.prod.acme.com"} {
		st, err := handshake(t, te.addr, &tls.Config{ServerName: sni, RootCAs: caPool(t), NextProtos: []string{"h2", "http/1.1"}})
		require.NoError(t, err, sni)
		leaf := st.PeerCertificates[0]
		assert.NoError(t, leaf.VerifyHostname(sni), "certificate for %s", sni)
		assert.Equal(t, "h2", st.NegotiatedProtocol, "ALPN offers HTTP/2")
	}
	// The uat certificate must not be the one served for test.
	st, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t)})
	require.NoError(t, err)
	assert.Error(t, st.PeerCertificates[0].VerifyHostname("uat.acme.com"))
}

// Without default_virtual_host, a handshake for a name no virtual host
// serves, or for none, is refused with the alert RFC 6066 (3) names for
// it, unrecognized_name, as nginx's ssl_reject_handshake refuses it.
// crypto/tls answers any error of GetConfigForClient with internal_error,
// which told the client that edged had failed (curl: "tlsv1 alert
// internal error"), where the name was the client's mistake.
func TestUnknownSNIFailsWithoutDefault(t *testing.T) {
	te, _ := threeGroups(t, "")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, sni := range []string{"nobody.example.com", ""} { // "": no SNI at all
			_, err := handshake(t, te.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MaxVersion: v})
			requireAlert(t, err, "tls: unrecognized name")
		}
	}
}

func TestUnknownSNIUsesDefaultVirtualHost(t *testing.T) {
	te, _ := threeGroups(t, `default_virtual_host = "prod-group"`)
	st, err := handshake(t, te.addr, &tls.Config{ServerName: "nobody.example.com", InsecureSkipVerify: true})
	require.NoError(t, err)
	assert.NoError(t, st.PeerCertificates[0].VerifyHostname("prod.acme.com"))
}

// TestSNILongerThanAnyHostnameMatchesNone: a ClientHello may carry an SNI
// of nearly 64 KiB. Looked up as it came, each of its labels was a probe
// of the wildcard table that hashed the rest of the name: 42 ms of CPU a
// lookup with 21 wildcard groups, at the handshake and again for every
// request of the connection (its 421 check), and the name matched
// *.prod.acme.com. No DNS name is longer than 253 bytes: a longer SNI is
// an unknown name, looked up nowhere.
func TestSNILongerThanAnyHostnameMatchesNone(t *testing.T) {
	te, _ := threeGroups(t, "")
	atLimit := strings.Repeat("a.", 120) + "prod.acme.com"
	require.Len(t, atLimit, 253)
	// (A certificate's wildcard covers one label: the name routes to the
	// group, the client does not verify it.)
	st, err := handshake(t, te.addr, &tls.Config{ServerName: atLimit, InsecureSkipVerify: true})
	require.NoError(t, err, "a name of 253 bytes is a hostname")
	assert.NoError(t, st.PeerCertificates[0].VerifyHostname("x.prod.acme.com"), "prod's certificate")

	before := noVhost.handshakes[handshakeUnknownSNI].Load()
	long := strings.Repeat("a.", 30000) + "prod.acme.com"
	_, err = handshake(t, te.addr, &tls.Config{ServerName: long, InsecureSkipVerify: true})
	require.Error(t, err, "a 60,013-byte name is no hostname of any group")
	assert.Greater(t, noVhost.handshakes[handshakeUnknownSNI].Load(), before, "counted as unknown_sni")
}

// requireAlert checks that a handshake failed because the server sent the
// TLS alert named msg (crypto/tls reports it as a "remote error").
func requireAlert(t *testing.T, err error, msg string) {
	t.Helper()
	require.Error(t, err)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr, "%v", err)
	assert.Equal(t, "remote error", opErr.Op, "the server refused with an alert: %v", err)
	assert.EqualError(t, opErr.Err, msg)
}

func TestTLS11RefusedByDefault(t *testing.T) {
	te, _ := threeGroups(t, "")
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	requireAlert(t, err, "tls: protocol version not supported")
	st, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MaxVersion: tls.VersionTLS12})
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS12), st.Version)
}

// vhostEdge serves one group test.acme.com whose [[virtual_host]] gets
// the extra keys.
func vhostEdge(t *testing.T, vhostKeys string) *testEdge {
	testCertDir(t)
	b := nameBackend(t, "b")
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + vhostKeys + "\n" + proxyTOML("test", "p", "/", b.addr),
	})
}

func TestVirtualHostVersionsAndCiphers(t *testing.T) {
	aead := func(id uint16) bool {
		name := tls.CipherSuiteName(id)
		return strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")
	}
	cases := []struct {
		name   string
		vhost  string // keys of the virtual host
		client *tls.Config
		alert  string // "" = the handshake succeeds
		check  func(t *testing.T, st *tls.ConnectionState)
	}{
		{
			name: "legacy opt-in accepts TLS 1.1 with an ECDHE-CBC suite", vhost: "min_tls = \"1.1\"\nallow_legacy_tls = true",
			client: &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11},
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, uint16(tls.VersionTLS11), st.Version)
				assert.Contains(t, legacyCipherSuites, st.CipherSuite, tls.CipherSuiteName(st.CipherSuite))
			},
		},
		{
			name: "legacy opt-in accepts TLS 1.0", vhost: "min_tls = \"1.0\"\nallow_legacy_tls = true",
			client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, uint16(tls.VersionTLS10), st.Version)
			},
		},
		{
			name: "legacy opt-in still gives TLS 1.2 clients an AEAD suite", vhost: "min_tls = \"1.1\"\nallow_legacy_tls = true",
			client: &tls.Config{MaxVersion: tls.VersionTLS12},
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, uint16(tls.VersionTLS12), st.Version)
				assert.True(t, aead(st.CipherSuite), tls.CipherSuiteName(st.CipherSuite))
			},
		},
		{
			name:   "a TLS 1.2 client offering only CBC is refused by default",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
			alert:  "tls: handshake failure",
		},
		{
			name: "min_tls 1.3 refuses a TLS 1.2 client", vhost: `min_tls = "1.3"`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12},
			alert:  "tls: protocol version not supported",
		},
		{
			name: "min_tls 1.3 serves TLS 1.3", vhost: `min_tls = "1.3"`,
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, uint16(tls.VersionTLS13), st.Version)
			},
		},
		{
			name: "max_tls 1.2 caps the version", vhost: `max_tls = "1.2"`,
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, uint16(tls.VersionTLS12), st.Version)
			},
		},
		{
			name: "cipher_suites is the only TLS 1.2 suite offered", vhost: `cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12},
			check: func(t *testing.T, st *tls.ConnectionState) {
				assert.Equal(t, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", tls.CipherSuiteName(st.CipherSuite))
			},
		},
		{
			name: "cipher_suites refuses a client without that suite", vhost: `cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
			alert:  "tls: handshake failure",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			te := vhostEdge(t, c.vhost)
			cfg := &tls.Config{}
			if c.client != nil {
				cfg = c.client.Clone()
			}
			cfg.ServerName, cfg.RootCAs = "test.acme.com", caPool(t)
			st, err := handshake(t, te.addr, cfg)
			if c.alert != "" {
				requireAlert(t, err, c.alert)
				return
			}
			require.NoError(t, err)
			c.check(t, st)
		})
	}
}

func TestMutualTLS(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "mtls")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" +
			proxyTOML("test", "p", "/", b.addr),
	})
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)

	ok := te.client("test.acme.com", func(c *tls.Config) { c.Certificates = []tls.Certificate{clientCert} })
	resp, err := ok.Get("https://test.acme.com/x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)

	_, err = te.client("test.acme.com", nil).Get("https://test.acme.com/x")
	require.Error(t, err, "a client without a certificate is refused")

	selfSigned := newSelfSigned(t, "intruder")
	_, err = te.client("test.acme.com", func(c *tls.Config) { c.Certificates = []tls.Certificate{selfSigned} }).Get("https://test.acme.com/x")
	require.Error(t, err, "a client certificate from another CA is refused")
}

// anySessionCache gives the last session it was given for any server
// name: a client that offers one host's ticket to another.
type anySessionCache struct {
	mu sync.Mutex
	s  *tls.ClientSessionState
}

func (c *anySessionCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s, c.s != nil
}

func (c *anySessionCache) Put(_ string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != nil {
		c.s = s
	}
}

// TestSessionOfAnotherHostDoesNotSkipClientCertificate: every virtual
// host's tls.Config encrypts its session tickets with the listener's
// keys, so a ticket of test.acme.com decrypts under uat.acme.com's SNI
// too. Resumed, a session carries no new client certificate: uat, which
// wants one, must not take test's session without one. crypto/tls checks
// a ticket's certificates against the config the SNI picked
// (checkForResumption); this fails if it ever stops. No defect: a guard.
func TestSessionOfAnotherHostDoesNotSkipClientCertificate(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "any")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml":   envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", b.addr),
		"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" + proxyTOML("uat", "p", "/", b.addr),
	})
	get := func(cfg *tls.Config, host string) (resumed bool, status string, err error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", te.addr, cfg)
		if err != nil {
			return false, "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
			return c.ConnectionState().DidResume, "", err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return c.ConnectionState().DidResume, line, err
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			// A client that checks no certificate offers its ticket to
			// any name (Go's checks that the session's certificate covers
			// the name first), as an attacker's does.
			cfg := &tls.Config{ServerName: "test.acme.com", InsecureSkipVerify: true, ClientSessionCache: &anySessionCache{}, MaxVersion: v, NextProtos: []string{"http/1.1"}}
			_, status, err := get(cfg, "test.acme.com")
			require.NoError(t, err)
			require.Contains(t, status, " 200 ")
			resumed, _, err := get(cfg, "test.acme.com")
			require.NoError(t, err)
			require.True(t, resumed, "the session resumes on its own host: the ticket is offered")

			other := cfg.Clone()
			other.ServerName = "uat.acme.com"
			resumed, status, err = get(other, "uat.acme.com")
			assert.Error(t, err, "no client certificate: refused (%q)", status)
			assert.False(t, resumed)
			assert.NotContains(t, status, "200")
		})
	}
}

// newSelfSigned makes a certificate no CA of the tests signed.
func newSelfSigned(t *testing.T, cn string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A reload that gives a group's virtual host a client_ca_file also holds
// for the connections opened before it: one that was made without a
// client certificate is answered 421 (a client makes a new connection,
// whose handshake then asks for the certificate), never forwarded. A
// connection lives across reloads, so without the check a kept-alive
// client, or a browser's HTTP/2 connection, went on unauthenticated for
// as long as it stayed open.
func TestClientCAAddedByReloadHoldsForOpenConnections(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "mtls")
	env := func(vhostExtra string) string {
		return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + vhostExtra +
			proxyTOML("test", "p", "/", b.addr)
	}
	files := map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env("")}
	te := startEdge(t, files)
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			writeFiles(t, te.dir, files)
			te.reload()
			var get func() int
			if proto == "h2" {
				c := te.h2client(nil)
				get = func() int {
					resp, err := c.Get("https://test.acme.com/x")
					require.NoError(t, err)
					resp.Body.Close()
					return resp.StatusCode
				}
			} else {
				get = h1GetOnOneConnection(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
			}
			require.Equal(t, http.StatusOK, get(), "served before client_ca_file")

			writeFiles(t, te.dir, map[string]string{"env.toml": env(
				`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n")})
			te.reload()
			assert.Equal(t, http.StatusMisdirectedRequest, get(), "the connection made without a client certificate is not served any more")
		})
	}
}

// A reload that gives a group's virtual host another client CA holds for
// the connections opened before it too: one whose client certificate only
// the old CA vouched for is answered 421, never forwarded, and its client
// is verified again on a new connection. Removing a CA that signed a
// stolen or leaked client certificate must not leave its kept-alive or
// HTTP/2 connections in.
func TestClientCAReplacedByReloadHoldsForOpenConnections(t *testing.T) {
	dir := testCertDir(t)
	otherCA := t.TempDir()
	require.NoError(t, devcert.Generate(otherCA, map[string][]string{"x.example": {"x.example"}}))
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	b := nameBackend(t, "mtls")
	env := func(caDir string) string {
		return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(caDir, "ca.pem")) + `"` + "\n" +
			proxyTOML("test", "p", "/", b.addr)
	}
	files := map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env(dir)}
	te := startEdge(t, files)
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			writeFiles(t, te.dir, files)
			te.reload()
			tr := &http2.Transport{
				TLSClientConfig: &tls.Config{RootCAs: caPool(t), Certificates: []tls.Certificate{clientCert}, NextProtos: []string{proto}},
				DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
					d := tls.Dialer{Config: cfg}
					return d.DialContext(ctx, network, te.addr)
				},
			}
			var get func() int
			if proto == "h2" {
				t.Cleanup(tr.CloseIdleConnections)
				c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				get = func() int {
					resp, err := c.Get("https://test.acme.com/x")
					require.NoError(t, err)
					resp.Body.Close()
					return resp.StatusCode
				}
			} else {
				cfg := tr.TLSClientConfig.Clone()
				cfg.ServerName = "test.acme.com"
				get = h1GetOnOneConnection(t, te.addr, cfg)
			}
			require.Equal(t, http.StatusOK, get(), "served while its CA is trusted")

			writeFiles(t, te.dir, map[string]string{"env.toml": env(otherCA)})
			te.reload()
			assert.Equal(t, http.StatusMisdirectedRequest, get(), "the connection whose certificate the new CA did not sign is not served any more")
		})
	}
}

// A reload that changes nothing of a group whose virtual host has a
// client_ca_file keeps the group's runtime, as for any other group: two
// loads of the same CA file are equal pools, though not the same object.
func TestMutualTLSGroupKeptByUnrelatedReload(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "mtls")
	for _, ca := range []string{"", `client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n"} {
		files := map[string]string{
			"server.toml": serverTOML(t.TempDir(), ""),
			"a.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + ca +
				proxyTOML("test", "p", "/", b.addr),
			"b.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") +
				proxyTOML("uat", "p", "/", b.addr),
		}
		te := startEdge(t, files)
		before := te.srv.Snapshot().groups["test-group"]
		require.NotNil(t, before)
		writeFiles(t, te.dir, map[string]string{"b.toml": files["b.toml"] + proxyTOML("uat", "q", "/q", b.addr)})
		te.reload()
		assert.Same(t, before, te.srv.Snapshot().groups["test-group"], "the group, untouched by the reload, is kept (%q)", ca)
	}
}

// h1GetOnOneConnection dials addr with cfg and returns a function that
// sends "GET /x" for test.acme.com on that one keep-alive connection and
// returns the answer's status: what a reload does to a connection already
// open. The connection closes with the test.
func h1GetOnOneConnection(t *testing.T, addr string, cfg *tls.Config) func() int {
	conn, err := tls.Dial("tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(conn)
	return func() int {
		_, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
}

// A reload that narrows a virtual host's TLS versions or cipher suites
// holds for the connections opened before it, as one that changes its
// client CA does: a connection whose version or suite the virtual host
// no longer allows is answered 421 (its client connects again, and that
// handshake is made under the new settings), never forwarded. nginx and
// HAProxy close such connections with their old workers, Envoy drains
// the old filter chain's; here a keep-alive connection or a browser's
// HTTP/2 connection outlives reloads, and went on over TLS 1.0, or a
// suite taken off, for as long as it stayed open. A connection the new
// settings still allow is served as before.
func TestTLSSettingsNarrowedByReloadHoldForOpenConnections(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	env := func(vhostKeys string) string {
		return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + vhostKeys + "\n" +
			proxyTOML("test", "p", "/", b.addr)
	}
	const (
		aes128 = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
		aes256 = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
	)
	cases := []struct {
		name          string
		before, after string // the virtual host's keys
		client        *tls.Config
		protos        []string
		want          int // the status on the open connection after the reload
	}{
		{
			name:   "TLS 1.0 opt-in withdrawn",
			before: "min_tls = \"1.0\"\nallow_legacy_tls = true", after: "",
			client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10},
			protos: []string{"http/1.1"}, want: http.StatusMisdirectedRequest,
		},
		{
			name:   "min_tls raised to 1.3",
			before: "", after: `min_tls = "1.3"`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12},
			protos: []string{"http/1.1", "h2"}, want: http.StatusMisdirectedRequest,
		},
		{
			name:   "max_tls lowered to 1.2",
			before: "", after: `max_tls = "1.2"`,
			client: &tls.Config{MinVersion: tls.VersionTLS13},
			protos: []string{"http/1.1", "h2"}, want: http.StatusMisdirectedRequest,
		},
		{
			name:   "the connection's suite taken off cipher_suites",
			before: `cipher_suites = ["` + aes128 + `", "` + aes256 + `"]`, after: `cipher_suites = ["` + aes256 + `"]`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			protos: []string{"http/1.1", "h2"}, want: http.StatusMisdirectedRequest,
		},
		{
			name:   "min_tls raised to 1.3 keeps a TLS 1.3 connection",
			before: "", after: `min_tls = "1.3"`,
			client: &tls.Config{MinVersion: tls.VersionTLS13},
			protos: []string{"http/1.1", "h2"}, want: http.StatusOK,
		},
		{
			name:   "cipher_suites narrowed keeps a connection on a suite still listed",
			before: `cipher_suites = ["` + aes128 + `", "` + aes256 + `"]`, after: `cipher_suites = ["` + aes256 + `"]`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}},
			protos: []string{"http/1.1", "h2"}, want: http.StatusOK,
		},
	}
	for _, c := range cases {
		for _, proto := range c.protos {
			t.Run(c.name+"/"+proto, func(t *testing.T) {
				te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env(c.before)})
				cfg := c.client.Clone()
				cfg.ServerName, cfg.RootCAs, cfg.NextProtos = "test.acme.com", caPool(t), []string{proto}
				var get func() int
				if proto == "h2" {
					var dials atomic64
					tr := &http2.Transport{
						TLSClientConfig: cfg,
						DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
							dials.add()
							d := tls.Dialer{Config: cfg}
							return d.DialContext(ctx, network, te.addr)
						},
					}
					t.Cleanup(tr.CloseIdleConnections)
					hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
					t.Cleanup(func() { assert.EqualValues(t, 1, dials.load(), "every request went on one connection") })
					get = func() int {
						resp, err := hc.Get("https://test.acme.com/x")
						require.NoError(t, err)
						resp.Body.Close()
						return resp.StatusCode
					}
				} else {
					get = h1GetOnOneConnection(t, te.addr, cfg)
				}
				require.Equal(t, http.StatusOK, get(), "served before the reload")

				writeFiles(t, te.dir, map[string]string{"env.toml": env(c.after)})
				te.reload()
				assert.Equal(t, c.want, get(), "the connection opened before the reload")
			})
		}
	}
}

// A connection answered 421 for its own TLS (a version or suite a reload
// took off, a client certificate the virtual host's client_ca_file does
// not vouch for, or none) can serve its group nothing any more, however
// long it stays open: every request on it is answered 421 again. It is
// ended once the answer is out (HTTP/1.1: Connection: close; HTTP/2: a
// GOAWAY that lets the streams in flight finish), so that the client's
// next request makes a new connection, whose handshake is made under
// the settings of now, as nginx and HAProxy close such connections with
// their old workers. A client that does not retry 421 on its own (Go's,
// curl, most libraries) got 421 on every request while the connection
// lived. 421 on a connection made for another group's name (SNI group ≠
// Host group) keeps the connection: other requests on it are served.
func TestMisdirectedForItsTLSEndsTheConnection(t *testing.T) {
	dir := testCertDir(t)
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	b := nameBackend(t, "b")
	env := func(vhostKeys string) string {
		return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + vhostKeys + "\n" +
			proxyTOML("test", "p", "/", b.addr)
	}
	const (
		aes128 = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
		aes256 = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
	)
	cases := []struct {
		name          string
		before, after string // the virtual host's keys
		client        *tls.Config
	}{
		{
			name:   "the connection's suite taken off cipher_suites",
			before: `cipher_suites = ["` + aes128 + `", "` + aes256 + `"]`, after: `cipher_suites = ["` + aes256 + `"]`,
			client: &tls.Config{MaxVersion: tls.VersionTLS12},
		},
		{
			name:   "client_ca_file set, the connection made without a certificate",
			before: "", after: `client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"`,
			client: &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil }},
		},
	}
	for _, c := range cases {
		for _, proto := range []string{"http/1.1", "h2"} {
			t.Run(c.name+"/"+proto, func(t *testing.T) {
				te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env(c.before)})
				cfg := c.client.Clone()
				cfg.ServerName, cfg.RootCAs, cfg.NextProtos = "test.acme.com", caPool(t), []string{proto}
				var dials atomic64
				dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
					dials.add()
					d := tls.Dialer{Config: cfg}
					return d.DialContext(ctx, network, te.addr)
				}
				var rt http.RoundTripper
				if proto == "h2" {
					tr := &http2.Transport{DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
						return dial(ctx, network, addr)
					}}
					t.Cleanup(tr.CloseIdleConnections)
					rt = tr
				} else {
					tr := &http.Transport{DialTLSContext: dial}
					t.Cleanup(tr.CloseIdleConnections)
					rt = tr
				}
				hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
				get := func() int {
					resp, err := hc.Get("https://test.acme.com/x")
					require.NoError(t, err)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					return resp.StatusCode
				}
				require.Equal(t, http.StatusOK, get(), "served before the reload")
				require.EqualValues(t, 1, dials.load())

				writeFiles(t, te.dir, map[string]string{"env.toml": env(c.after)})
				te.reload()
				var got []int
				for range 3 {
					got = append(got, get())
				}
				assert.Equal(t, []int{http.StatusMisdirectedRequest, http.StatusOK, http.StatusOK}, got,
					"the request on the connection made before the reload, then those on a new one")
				assert.EqualValues(t, 2, dials.load(), "the client connected again once")
			})
		}
	}
}

// 421 for another group's Host on a connection made for this group's
// name (SNI group ≠ Host group) keeps the connection: its requests for
// its own group's hosts are served on it as before.
func TestMisdirectedForAnotherGroupKeepsTheConnection(t *testing.T) {
	te, _ := threeGroups(t, "")
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			cfg := &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{proto}}
			var dials atomic64
			dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
				dials.add()
				d := tls.Dialer{Config: cfg}
				return d.DialContext(ctx, network, te.addr)
			}
			var rt http.RoundTripper
			if proto == "h2" {
				tr := &http2.Transport{DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					return dial(ctx, network, addr)
				}}
				t.Cleanup(tr.CloseIdleConnections)
				rt = tr
			} else {
				tr := &http.Transport{DialTLSContext: dial}
				t.Cleanup(tr.CloseIdleConnections)
				rt = tr
			}
			hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
			get := func(host string) int {
				req, err := http.NewRequest(http.MethodGet, "https://test.acme.com/users", nil)
				require.NoError(t, err)
				req.Host = host
				resp, err := hc.Do(req)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			got := []int{get("test.acme.com"), get("uat.acme.com"), get("test.acme.com")}
			assert.Equal(t, []int{http.StatusOK, http.StatusMisdirectedRequest, http.StatusOK}, got)
			assert.EqualValues(t, 1, dials.load(), "one connection served them all")
		})
	}
}

// The 421 of a connection whose client certificate the virtual host's
// client_ca_file no longer vouches for says so: it said "this connection
// was made without one" to a client that had sent one, which sent its
// operator looking for a client that forgot its certificate rather than
// for the CA the reload took off.
func TestClientCAReplacedByReloadSaysWhy(t *testing.T) {
	dir := testCertDir(t)
	otherCA := t.TempDir()
	require.NoError(t, devcert.Generate(otherCA, map[string][]string{"x.example": {"x.example"}}))
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	b := nameBackend(t, "mtls")
	env := func(caDir string) string {
		ca := ""
		if caDir != "" {
			ca = `client_ca_file = "` + filepath.ToSlash(filepath.Join(caDir, "ca.pem")) + `"` + "\n"
		}
		return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + ca +
			proxyTOML("test", "p", "/", b.addr)
	}
	for _, c := range []struct {
		name          string
		before, after string
		cert          []tls.Certificate
		want          string
	}{
		{"a certificate the new CA did not sign", dir, otherCA, []tls.Certificate{clientCert},
			"this connection was made with one that no CA of it signed (before a reload changed it)"},
		{"no certificate", "", dir, nil, "this connection was made without one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": env(c.before)})
			hc := te.client("test.acme.com", func(cfg *tls.Config) { cfg.Certificates = c.cert })
			req, err := http.NewRequest(http.MethodGet, "https://test.acme.com/x", nil)
			require.NoError(t, err)
			resp, _ := do(t, hc, req)
			require.Equal(t, http.StatusOK, resp.StatusCode)

			writeFiles(t, te.dir, map[string]string{"env.toml": env(c.after)})
			te.reload()
			resp, body := do(t, hc, req)
			f := requireFault(t, resp, body, http.StatusMisdirectedRequest, "host.misdirected")
			assert.Equal(t, "host test.acme.com requires a client certificate signed by its client_ca_file; "+c.want, f.Fault.Message)
		})
	}
}

// A client certificate that expires while its connection is open no
// longer lets that connection in. The handshake checked its validity at
// the handshake's time, and a keep-alive or HTTP/2 connection outlives
// that: a client of short-lived certificates (SPIFFE's are valid for an
// hour) that keeps its connection busy was served on it for days after
// its certificate expired, for as long as the connection stayed open,
// where a new connection fails its handshake and crypto/tls refuses to
// resume a session whose certificate has expired. nginx ends such a
// connection after keepalive_time (1 h). Its next request is answered
// 421 and the connection ends, as for a CA a reload took off; the
// client's new connection is refused at its handshake, resumed or not.
func TestClientCertificateExpiredOnAnOpenConnection(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "mtls")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" +
			proxyTOML("test", "p", "/", b.addr),
	})
	// A certificate holds whole seconds.
	notAfter := time.Now().Add(3 * time.Second).Truncate(time.Second)
	cert := issueClientCertFor(t, dir, "short-lived", time.Now().Add(-time.Hour), notAfter)
	cfg := &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), Certificates: []tls.Certificate{cert}}

	h1 := cfg.Clone()
	h1.NextProtos = []string{"http/1.1"}
	getH1 := h1GetOnOneConnection(t, te.addr, h1)
	var dials atomic64
	tr := &http2.Transport{
		TLSClientConfig: cfg.Clone(),
		DialTLSContext: func(ctx context.Context, network, _ string, c *tls.Config) (net.Conn, error) {
			dials.add()
			d := tls.Dialer{Config: c}
			return d.DialContext(ctx, network, te.addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	h2 := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "https://test.acme.com/x", nil)
	require.NoError(t, err)

	// Sessions made while the certificate is valid, one per version, to
	// be offered once it has expired. A request reads TLS 1.3's ticket,
	// which comes after the handshake.
	var sessions []*tls.Config
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := h1.Clone()
		c.MinVersion, c.MaxVersion, c.ClientSessionCache = v, v, tls.NewLRUClientSessionCache(1)
		_, status, err := getOnANewConnection(te.addr, c, "test.acme.com")
		require.NoError(t, err)
		require.Contains(t, status, " 200 ", tls.VersionName(v))
		resumed, status, err := getOnANewConnection(te.addr, c, "test.acme.com")
		require.NoError(t, err)
		require.True(t, resumed, "%s: the session resumes while the certificate is valid", tls.VersionName(v))
		require.Contains(t, status, " 200 ")
		sessions = append(sessions, c)
	}

	require.Equal(t, http.StatusOK, getH1(), "HTTP/1.1: served while the certificate is valid")
	resp, _ := do(t, h2, req)
	require.Equal(t, http.StatusOK, resp.StatusCode, "HTTP/2: served while the certificate is valid")
	require.EqualValues(t, 1, dials.load())

	time.Sleep(time.Until(notAfter.Add(1500 * time.Millisecond)))
	require.True(t, time.Now().After(notAfter))

	assert.Equal(t, http.StatusMisdirectedRequest, getH1(), "HTTP/1.1: the connection whose certificate expired is not served any more")
	resp, body := do(t, h2, req)
	if assert.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode, "HTTP/2: the connection whose certificate expired is not served any more") {
		f := requireFault(t, resp, body, http.StatusMisdirectedRequest, "host.misdirected")
		assert.Equal(t, "host test.acme.com requires a client certificate signed by its client_ca_file; "+
			"this connection was made with one that expired at "+notAfter.UTC().Format(time.RFC3339), f.Fault.Message)
	}
	_, err = h2.Do(req)
	assert.Error(t, err, "a new connection with the expired certificate is refused at its handshake")
	assert.EqualValues(t, 2, dials.load(), "the HTTP/2 client connected again")
	for _, c := range sessions {
		resumed, status, err := getOnANewConnection(te.addr, c, "test.acme.com")
		assert.Error(t, err, "%s: a session made before the certificate expired does not let it in (%q)", tls.VersionName(c.MaxVersion), status)
		assert.False(t, resumed, tls.VersionName(c.MaxVersion))
	}
}

// getOnANewConnection sends "GET /x" for host on a new connection to
// addr made with cfg, and returns whether its session was resumed and
// the answer's status line. A request reads TLS 1.3's session ticket,
// which comes after the handshake, and a client certificate's refusal,
// which TLS 1.3 sends once the client has finished its handshake.
func getOnANewConnection(addr string, cfg *tls.Config, host string) (resumed bool, status string, err error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return false, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return conn.ConnectionState().DidResume, "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return conn.ConnectionState().DidResume, line, err
}

// A resumed session is checked against the virtual host its SNI picks as
// it is now, whatever virtual host made it and whatever reloads came
// since: every virtual host shares the listener's session ticket keys,
// which outlive reloads, so a ticket of one host decrypts under another's
// name and after a reload. A session whose client certificate no CA of
// the host's client_ca_file signed is not resumed (crypto/tls checks the
// session's chains against the config the SNI picked), and the full
// handshake refuses the certificate: the cross-host resumption of
// nginx's CVE-2025-23419 does not let a client in. No defect: a guard,
// with TestSessionOfAnotherHostDoesNotSkipClientCertificate (a host
// without client_ca_file) and TestClientCertificateExpiredOnAnOpenConnection
// (a certificate expired since).
func TestResumedSessionIsCheckedAgainstTheVirtualHostOfNow(t *testing.T) {
	dir := testCertDir(t)
	otherCA := t.TempDir()
	require.NoError(t, devcert.Generate(otherCA, map[string][]string{"x.example": {"x.example"}}))
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	b := nameBackend(t, "any")
	files := func(testCA string) map[string]string {
		return map[string]string{
			"test.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
				`client_ca_file = "` + filepath.ToSlash(filepath.Join(testCA, "ca.pem")) + `"` + "\n" + proxyTOML("test", "p", "/", b.addr),
			"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") +
				`client_ca_file = "` + filepath.ToSlash(filepath.Join(otherCA, "ca.pem")) + `"` + "\n" + proxyTOML("uat", "p", "/", b.addr),
		}
	}
	start := files(dir)
	start["server.toml"] = serverTOML(t.TempDir(), "")
	te := startEdge(t, start)
	var sessions []*tls.Config
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		// A client that checks no certificate offers its ticket to any
		// name, and this one shows its certificate whatever CAs the
		// server names, as an attacker's does.
		cfg := &tls.Config{
			ServerName: "test.acme.com", InsecureSkipVerify: true, ClientSessionCache: &anySessionCache{},
			MinVersion: v, MaxVersion: v, NextProtos: []string{"http/1.1"},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil },
		}
		_, status, err := getOnANewConnection(te.addr, cfg, "test.acme.com")
		require.NoError(t, err)
		require.Contains(t, status, " 200 ", tls.VersionName(v))
		resumed, status, err := getOnANewConnection(te.addr, cfg, "test.acme.com")
		require.NoError(t, err)
		require.True(t, resumed, "%s: the session resumes on its own host", tls.VersionName(v))
		require.Contains(t, status, " 200 ")
		sessions = append(sessions, cfg)

		other := cfg.Clone()
		other.ServerName = "uat.acme.com"
		resumed, status, err = getOnANewConnection(te.addr, other, "uat.acme.com")
		assert.Error(t, err, "%s: another host, whose CA did not sign the certificate, refuses it (%q)", tls.VersionName(v), status)
		assert.False(t, resumed, tls.VersionName(v))
	}

	writeFiles(t, te.dir, files(otherCA))
	te.reload()
	for _, cfg := range sessions {
		resumed, status, err := getOnANewConnection(te.addr, cfg, "test.acme.com")
		assert.Error(t, err, "%s: the session made before a reload replaced the CA does not let the client in (%q)", tls.VersionName(cfg.MaxVersion), status)
		assert.False(t, resumed, tls.VersionName(cfg.MaxVersion))
	}
}

// TestLegacyTLSClientsGetHTTP1 checks RFC 9113 section 9.2 on a virtual
// host that lets TLS 1.0/1.1 in: HTTP/2 over TLS needs TLS 1.2 or higher,
// so a handshake that lands below 1.2 must not select "h2" (ALPN falls
// back to http/1.1, which then serves the request), while a TLS 1.2 or
// 1.3 client of the same virtual host still gets HTTP/2.
func TestLegacyTLSClientsGetHTTP1(t *testing.T) {
	cases := []struct {
		name   string
		vhost  string
		client *tls.Config
		proto  string
	}{
		{"TLS 1.1 client", "min_tls = \"1.0\"\nallow_legacy_tls = true", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, "http/1.1"},
		{"TLS 1.0 client", "min_tls = \"1.0\"\nallow_legacy_tls = true", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, "http/1.1"},
		{"TLS 1.3 client, max_tls 1.1", "min_tls = \"1.0\"\nmax_tls = \"1.1\"\nallow_legacy_tls = true", &tls.Config{MinVersion: tls.VersionTLS10}, "http/1.1"},
		{"TLS 1.2 client", "min_tls = \"1.0\"\nallow_legacy_tls = true", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12}, "h2"},
		{"TLS 1.3 client", "min_tls = \"1.0\"\nallow_legacy_tls = true", &tls.Config{MinVersion: tls.VersionTLS10}, "h2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			te := vhostEdge(t, c.vhost)
			cfg := c.client.Clone()
			cfg.ServerName, cfg.RootCAs, cfg.NextProtos = "test.acme.com", caPool(t), []string{"h2", "http/1.1"}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", te.addr, cfg)
			require.NoError(t, err)
			defer conn.Close()
			st := conn.ConnectionState()
			require.Equal(t, c.proto, st.NegotiatedProtocol, "TLS version %s", tls.VersionName(st.Version))
			if c.proto != "http/1.1" {
				return
			}
			require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
			_, err = io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: test.acme.com\r\nConnection: close\r\n\r\n")
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "b /x", string(body))
		})
	}
}
