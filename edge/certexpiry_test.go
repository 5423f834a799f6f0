package edge

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
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
	// The root, sent along, expires first of all: it is not counted.
	root := issueTestCert(t, "root", nil, inDays(5), caCert)
	inter := issueTestCert(t, "intermediate", root, inDays(20), caCert)
	leaf := issueTestCert(t, "leaf", inter, inDays(90), serverCert)
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
