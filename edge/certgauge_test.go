package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testCert is a certificate made by issueTestCert, with its key.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var testSerial atomic.Int64

// certRole is what issueTestCert makes.
type certRole int

const (
	caCert     certRole = iota
	clientCert          // a client certificate
	serverCert          // a server certificate for test.acme.com
)

// issueTestCert makes the certificate cn of role, ending at notAfter (to
// the second), signed by parent (self-signed when nil).
func issueTestCert(t *testing.T, cn string, parent *testCert, notAfter time.Time, role certRole) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano() + testSerial.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter.Truncate(time.Second),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	switch role {
	case clientCert:
		tmpl.IsCA, tmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case serverCert:
		tmpl.IsCA, tmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
		tmpl.DNSNames = []string{"test.acme.com"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	pt, pk := tmpl, key
	if parent != nil {
		pt, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pt, &key.PublicKey, pk)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &testCert{c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func inDays(n int) time.Time { return time.Now().Add(time.Duration(n) * 24 * time.Hour) }

// writeBundle writes the certificates' PEM, one after the other, to path.
func writeBundle(t *testing.T, path string, certs ...*testCert) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, c.pem...)
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// TestDependedOnCertificatesHaveExpiryGauges: only a virtual host's
// cert_file had a gauge of its end; an upstream's tls_cert_file (the
// client certificate its https nodes verify), its tls_ca_file (the CAs
// the nodes are verified against) and a virtual host's client_ca_file
// were told of by a warning at a load alone, so an edged running for
// months without a reload warned nobody until every request to the
// nodes failed, or every client certificate. Each now has a series, of
// the value its warnings look at: the chain's end for tls_cert_file
// (not a root sent along), the earliest end of the CAs of a bundle;
// /status shows them; a reload that changes a file changes the series,
// one that unsets it removes them, and a refused one leaves them.
func TestDependedOnCertificatesHaveExpiryGauges(t *testing.T) {
	testCertDir(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "nodes-ca.pem")
	certFile := filepath.Join(dir, "client.pem")
	keyFile := filepath.Join(dir, "client.key")
	clientCAFile := filepath.Join(dir, "clients-ca.pem")

	// Ten CAs for the nodes: the fourth ends first.
	var cas []*testCert
	for i := range 10 {
		end := inDays(200 + 10*i)
		if i == 3 {
			end = inDays(33)
		}
		cas = append(cas, issueTestCert(t, fmt.Sprintf("nodes CA %d", i), nil, end, caCert))
	}
	writeBundle(t, caFile, cas...)
	// The client chain: the intermediate ends before the leaf; the root
	// sent along ends first of all and is not counted.
	root := issueTestCert(t, "client root", nil, inDays(5), caCert)
	inter := issueTestCert(t, "client intermediate", root, inDays(45), caCert)
	leaf := issueTestCert(t, "edged", inter, inDays(90), clientCert)
	writeBundle(t, certFile, leaf, inter, root)
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	clientCAs := []*testCert{issueTestCert(t, "clients CA a", nil, inDays(300), caCert), issueTestCert(t, "clients CA b", nil, inDays(60), caCert)}
	writeBundle(t, clientCAFile, clientCAs...)

	upstream := func(env, name, scheme, keys string) string {
		return fmt.Sprintf(`
[[upstream]]
name = %q
environment = %q
nodes = [{ url = "%s://127.0.0.1:9" }]
%s

[[proxy]]
name = %q
environment = %q
base_path = "/%s"
upstream = %q
`, name, env, scheme, keys, name, env, name, name)
	}
	both := fmt.Sprintf("tls_ca_file = %q\ntls_cert_file = %q\ntls_key_file = %q", caFile, certFile, keyFile)
	caOnly := fmt.Sprintf("tls_ca_file = %q", caFile)
	envFile := func(twoKeys string) string {
		// An environment label named file, as the new label is, is left
		// out of the series, as env's is: a label twice is no exposition.
		return envTOML("ga", `labels = { file = "mine", team = "a" }`) + upstream("ga", "one", "https", both) +
			upstream("ga", "two", "https", twoKeys) +
			// Without an https node, the files are used by none.
			upstream("ga", "plain", "http", caOnly) +
			envTOML("gb", "") + upstream("gb", "three", "https", caOnly)
	}
	groups := func(clientCA string) string {
		return groupTOML("ga", "test.acme.com", "test.acme.com", "test.acme.com") + clientCA +
			groupTOML("gb", "uat.acme.com", "uat.acme.com", "uat.acme.com")
	}
	withClientCA := fmt.Sprintf("client_ca_file = %q\n", clientCAFile)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groups(withClientCA),
		"envs.toml":   envFile(caOnly),
	})

	cert := func(env, up string) string {
		return canonical(t, fmt.Sprintf(`edged_upstream_client_certificate_not_after_seconds{env=%q,team="a",upstream=%q,file=%q}`, env, up, certFile))
	}
	ca := func(env, up, labels string) string {
		return canonical(t, fmt.Sprintf(`edged_upstream_ca_not_after_seconds{env=%q%s,upstream=%q,file=%q}`, env, labels, up, caFile))
	}
	clientCA := canonical(t, fmt.Sprintf(`edged_client_ca_not_after_seconds{virtual_host="test.acme.com",file=%q}`, clientCAFile))
	family := func(ex exposition, name string) []string {
		var out []string
		for s := range ex.samples {
			if len(s) > len(name) && s[:len(name)+1] == name+"{" {
				out = append(out, s)
			}
		}
		return out
	}
	unix := func(c *testCert) float64 { return float64(c.cert.NotAfter.Unix()) }

	ex := scrape(t, te)
	assert.Equal(t, unix(inter), ex.samples[cert("ga", "one")], "tls_cert_file: the intermediate's end, not the leaf's nor the root's")
	for _, s := range []string{ca("ga", "one", `,team="a"`), ca("ga", "two", `,team="a"`), ca("gb", "three", "")} {
		assert.Equal(t, unix(cas[3]), ex.samples[s], "%s: the earliest of the ten CAs", s)
	}
	assert.Equal(t, unix(clientCAs[1]), ex.samples[clientCA], "client_ca_file: the earliest of its CAs")
	assert.Len(t, family(ex, "edged_upstream_ca_not_after_seconds"), 3, "one series per upstream with an https node naming it")
	assert.Len(t, family(ex, "edged_upstream_client_certificate_not_after_seconds"), 1)
	assert.Len(t, family(ex, "edged_client_ca_not_after_seconds"), 1)

	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	var one *UpstreamStatus
	for i, u := range st.Environments["ga"].Upstreams {
		if u.Name == "one" {
			one = &st.Environments["ga"].Upstreams[i]
		}
		if u.Name == "plain" {
			assert.Nil(t, u.TLSCAFile, "an upstream without https nodes uses no CA file")
		}
	}
	require.NotNil(t, one)
	if assert.NotNil(t, one.TLSCertFile) && assert.NotNil(t, one.TLSCAFile) {
		assert.Equal(t, certFile, one.TLSCertFile.Path)
		assert.True(t, inter.cert.NotAfter.Equal(one.TLSCertFile.NotAfter), "tls_cert_file: %v", one.TLSCertFile.NotAfter)
		assert.Equal(t, 44, one.TLSCertFile.DaysLeft)
		assert.Equal(t, caFile, one.TLSCAFile.Path)
		assert.True(t, cas[3].cert.NotAfter.Equal(one.TLSCAFile.NotAfter), "tls_ca_file: %v", one.TLSCAFile.NotAfter)
		assert.Equal(t, 32, one.TLSCAFile.DaysLeft)
	}
	var vh *CertificateStatus
	for i := range st.CertificateDetails {
		if st.CertificateDetails[i].VirtualHost == "test.acme.com" {
			vh = &st.CertificateDetails[i]
		}
	}
	require.NotNil(t, vh)
	if assert.NotNil(t, vh.ClientCAFile) {
		assert.Equal(t, clientCAFile, vh.ClientCAFile.Path)
		assert.True(t, clientCAs[1].cert.NotAfter.Equal(vh.ClientCAFile.NotAfter))
		assert.Equal(t, 59, vh.ClientCAFile.DaysLeft)
	}

	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)
	for _, row := range []string{
		fmt.Sprintf(`<td class="name">upstream one (ga)</td><td><code>tls_cert_file</code></td><td><code>%s</code></td>`, certFile),
		fmt.Sprintf(`<td class="name">upstream three (gb)</td><td><code>tls_ca_file</code></td><td><code>%s</code></td>`, caFile),
		fmt.Sprintf(`<td class="name">virtual host test.acme.com</td><td><code>client_ca_file</code></td><td><code>%s</code></td>`, clientCAFile),
	} {
		assert.Contains(t, page, row, "the status page shows it")
	}

	// The files renewed under unchanged config files: the series follow.
	newCA := issueTestCert(t, "nodes CA renewed", nil, inDays(700), caCert)
	writeBundle(t, caFile, append(append([]*testCert{}, cas[:3]...), append([]*testCert{newCA}, cas[4:]...)...)...)
	newInter := issueTestCert(t, "client intermediate renewed", root, inDays(400), caCert)
	newLeaf := issueTestCert(t, "edged", newInter, inDays(120), clientCert)
	writeBundle(t, certFile, newLeaf, newInter)
	kder, err = x509.MarshalPKCS8PrivateKey(newLeaf.key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	writeBundle(t, clientCAFile, clientCAs[0])
	te.reload()
	ex = scrape(t, te)
	assert.Equal(t, unix(newLeaf), ex.samples[cert("ga", "one")], "renewed: the leaf ends first now")
	assert.Equal(t, unix(cas[0]), ex.samples[ca("gb", "three", "")], "the expiring CA replaced: the next earliest")
	assert.Equal(t, unix(clientCAs[0]), ex.samples[clientCA])

	// A file that is gone refuses the reload: the serving config's series
	// stay.
	require.NoError(t, os.Remove(caFile))
	_, err = te.loader.Load()
	require.Error(t, err)
	ex = scrape(t, te)
	assert.Equal(t, unix(cas[0]), ex.samples[ca("gb", "three", "")], "the reload was refused: the old config serves")
	writeBundle(t, caFile, cas[0])

	// Unset: their series go.
	writeFiles(t, te.dir, map[string]string{"groups.toml": groups(""), "envs.toml": envFile("")})
	te.reload()
	ex = scrape(t, te)
	assert.Len(t, family(ex, "edged_upstream_ca_not_after_seconds"), 2, "two goes: %v", family(ex, "edged_upstream_ca_not_after_seconds"))
	assert.NotContains(t, ex.samples, ca("ga", "two", `,team="a"`))
	assert.Equal(t, unix(cas[0]), ex.samples[ca("ga", "one", `,team="a"`)])
	assert.Empty(t, family(ex, "edged_client_ca_not_after_seconds"))
	assert.Contains(t, ex.samples, canonical(t, `edged_certificate_not_after_seconds{virtual_host="test.acme.com"}`))
}
