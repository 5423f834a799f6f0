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
	"math"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCertificateExpiryIsTheChainsEarliest: edged_certificate_not_after_seconds
// and /status gave the leaf's NotAfter, while clients verify every
// certificate cert_file sends after it: an intermediate that expires
// before the leaf ends every handshake that day, and an alert on the
// gauge (the dashboard's "days left") saw the leaf's months instead. They
// are now the earliest end of the leaf and of the certificates after it
// that are not self-issued (a root sent along is not what clients end
// the chain at), as blackbox_exporter's probe_ssl_earliest_cert_expiry
// takes the chain's earliest.
func TestCertificateExpiryIsTheChainsEarliest(t *testing.T) {
	dir := t.TempDir()
	type node struct {
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
		pem  []byte
	}
	issue := func(cn string, parent *node, notAfter time.Time) *node {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(time.Now().UnixNano()),
			Subject:               pkix.Name{CommonName: cn},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              notAfter.Truncate(time.Second),
			BasicConstraintsValid: true,
			IsCA:                  true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		if cn == "leaf" {
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
		return &node{c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	}
	days := func(n int) time.Time { return time.Now().Add(time.Duration(n) * 24 * time.Hour) }
	// The root, sent along, expires first of all: it is not counted.
	root := issue("root", nil, days(5))
	inter := issue("intermediate", root, days(20))
	leaf := issue("leaf", inter, days(90))
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.key)
	require.NoError(t, err)
	chain := append(append(append([]byte{}, leaf.pem...), inter.pem...), root.pem...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.pem"), chain, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))

	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("ce", "") + proxyTOML("ce", "api", "/api", b.addr) + fmt.Sprintf(`
[[env_group]]
name = "ce"
hostnames = ["test.acme.com"]
environments = ["ce"]

[[virtual_host]]
name = "ce"
cert_file = %q
key_file = %q
`, filepath.Join(dir, "chain.pem"), filepath.Join(dir, "chain.key")),
	})

	got := scrape(t, te).samples[canonical(t, `edged_certificate_not_after_seconds{virtual_host="ce"}`)]
	assert.Equal(t, float64(inter.cert.NotAfter.Unix()), got, "the intermediate's end (%s), not the leaf's (%s)", inter.cert.NotAfter, leaf.cert.NotAfter)

	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	var st struct {
		Certificates       map[string]time.Time `json:"certificates"`
		CertificateDetails []CertificateStatus  `json:"certificate_details"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.True(t, inter.cert.NotAfter.Equal(st.Certificates["ce"]), "certificates: %v", st.Certificates["ce"])
	require.Len(t, st.CertificateDetails, 1)
	assert.True(t, inter.cert.NotAfter.Equal(st.CertificateDetails[0].NotAfter), "certificate_details: %v", st.CertificateDetails[0].NotAfter)
	assert.Equal(t, int(math.Floor(time.Until(inter.cert.NotAfter).Hours()/24)), st.CertificateDetails[0].DaysLeft)
}
