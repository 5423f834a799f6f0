package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestUnknownSNIFailsWithoutDefault(t *testing.T) {
	te, _ := threeGroups(t, "")
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "nobody.example.com", InsecureSkipVerify: true})
	require.Error(t, err)
	_, err = handshake(t, te.addr, &tls.Config{InsecureSkipVerify: true}) // no SNI at all
	require.Error(t, err)
}

func TestUnknownSNIUsesDefaultVirtualHost(t *testing.T) {
	te, _ := threeGroups(t, `default_virtual_host = "prod-group"`)
	st, err := handshake(t, te.addr, &tls.Config{ServerName: "nobody.example.com", InsecureSkipVerify: true})
	require.NoError(t, err)
	assert.NoError(t, st.PeerCertificates[0].VerifyHostname("prod.acme.com"))
}

func TestTLS11RefusedByDefault(t *testing.T) {
	te, _ := threeGroups(t, "")
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	require.Error(t, err)
	st, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MaxVersion: tls.VersionTLS12})
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS12), st.Version)
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
