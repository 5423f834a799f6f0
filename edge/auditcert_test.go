package edge

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// issueClientCert signs, with the test CA of dir, a client certificate
// whose subject's common name is cn.
func issueClientCert(t *testing.T, dir, cn string) tls.Certificate {
	t.Helper()
	return issueClientCertFor(t, dir, cn, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// issueClientCertFor is issueClientCert valid from notBefore to notAfter.
func issueClientCertFor(t *testing.T, dir, cn string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"ops"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), ca.PrivateKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The audit log records the verified client certificate of each request,
// its subject as the certificate has it: whoever the client CA signed
// for chose the name. Read with tail in a terminal, as the trail of who
// did what is, a bidirectional control in it (U+202E) would have the
// terminal show the line reordered, another name than the one there; it
// is a \u escape, as in every JSON edged writes for people (termsafe).
func TestAuditLineEscapesBidiControlsOfTheClientCertificate(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "b")
	state := t.TempDir()
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, ""),
		"env.toml": envTOML("test", "[environment.rules.audit_log]\n") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" +
			proxyTOML("test", "users", "/users", b.addr),
	})
	cert := issueClientCert(t, dir, "alice\u202etset")
	c := te.client("test.acme.com", func(tc *tls.Config) { tc.Certificates = []tls.Certificate{cert} })
	resp, err := c.Get("https://test.acme.com/users/1")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	raw, err := os.ReadFile(AuditLogPath(state, "test"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "\u202e", "a bidirectional control reached the audit log")
	assert.Contains(t, string(raw), `alice\u202etset`)
	lines := readJSONLines(t, AuditLogPath(state, "test"))
	require.Len(t, lines, 1)
	assert.True(t, strings.HasPrefix(lines[0]["client_cert"].(string), "CN=alice\u202etset"), "%q", lines[0]["client_cert"])
}
