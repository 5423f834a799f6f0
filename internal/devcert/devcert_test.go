package devcert

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var acme = map[string][]string{
	"test.acme.com": {"test.acme.com", "*.test.acme.com"},
	"local":         {"localhost", "127.0.0.1", "::1"},
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, CACertFile))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem), "ca.pem holds no certificate")
	return pool
}

func leafOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := readCerts(path)
	require.NoError(t, err)
	return certs[0]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestGenerateLeafVerifiesForItsSANs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))
	roots := caPool(t, dir)

	tests := []struct {
		file, host string
		ok         bool
	}{
		{"test.acme.com.pem", "test.acme.com", true},
		{"test.acme.com.pem", "api.test.acme.com", true},
		{"test.acme.com.pem", "a.b.test.acme.com", false}, // a wildcard covers one label
		{"test.acme.com.pem", "uat.acme.com", false},
		{"local.pem", "localhost", true},
		{"local.pem", "127.0.0.1", true},
		{"local.pem", "::1", true},
		{"local.pem", "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.host, func(t *testing.T) {
			certs, err := readCerts(filepath.Join(dir, tt.file))
			require.NoError(t, err)
			require.Len(t, certs, 2, "leaf then CA")
			inter := x509.NewCertPool()
			_, err = certs[0].Verify(x509.VerifyOptions{
				DNSName:       tt.host,
				Roots:         roots,
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestGenerateCertificateShape(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))

	ca := leafOf(t, filepath.Join(dir, CACertFile))
	assert.True(t, ca.IsCA)
	assert.True(t, ca.MaxPathLenZero)
	assert.NotZero(t, ca.KeyUsage&x509.KeyUsageCertSign)
	assert.Equal(t, x509.ECDSA, ca.PublicKeyAlgorithm)
	assert.WithinDuration(t, time.Now().Add(caValidity), ca.NotAfter, time.Minute)

	leaf := leafOf(t, filepath.Join(dir, "test.acme.com.pem"))
	assert.False(t, leaf.IsCA)
	assert.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm)
	assert.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
	assert.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
	assert.ElementsMatch(t, []string{"test.acme.com", "*.test.acme.com"}, leaf.DNSNames)
	assert.Empty(t, leaf.IPAddresses)
	assert.WithinDuration(t, time.Now().Add(leafValidity), leaf.NotAfter, time.Minute)
	assert.Equal(t, ca.SubjectKeyId, leaf.AuthorityKeyId)

	local := leafOf(t, filepath.Join(dir, "local.pem"))
	assert.Equal(t, []string{"localhost"}, local.DNSNames)
	assert.Len(t, local.IPAddresses, 2)

	// What edged does with the files: load the pair.
	_, err := tls.LoadX509KeyPair(filepath.Join(dir, "test.acme.com.pem"), filepath.Join(dir, "test.acme.com.key"))
	assert.NoError(t, err)
}

func TestKeyFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))
	require.NoError(t, ClientCert(dir, "demo"))
	for _, name := range []string{CAKeyFile, "test.acme.com.key", "local.key", "demo-client.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
	}
	fi, err := os.Stat(filepath.Join(dir, "test.acme.com.pem"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	// No temporary files left behind.
	tmps, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	assert.Empty(t, tmps)
}

func TestRerunKeepsCAAndLeaves(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))
	caPEM := readFile(t, filepath.Join(dir, CACertFile))
	caKey := readFile(t, filepath.Join(dir, CAKeyFile))
	leafPEM := readFile(t, filepath.Join(dir, "test.acme.com.pem"))

	got := map[string]string{}
	require.NoError(t, GenerateReport(dir, acme, func(path, action string) { got[filepath.Base(path)] = action }))

	assert.Equal(t, caPEM, readFile(t, filepath.Join(dir, CACertFile)))
	assert.Equal(t, caKey, readFile(t, filepath.Join(dir, CAKeyFile)))
	assert.Equal(t, leafPEM, readFile(t, filepath.Join(dir, "test.acme.com.pem")))
	assert.Equal(t, map[string]string{"ca.pem": "kept", "test.acme.com.pem": "kept", "local.pem": "kept"}, got)
}

func TestLeafReissued(t *testing.T) {
	tests := []struct {
		name   string
		hosts  map[string][]string
		before func(t *testing.T, dir string)
		now    time.Time // of the first run; zero = now
		reason string
	}{
		{
			name:   "SANs differ",
			hosts:  map[string][]string{"test.acme.com": {"test.acme.com", "*.test.acme.com", "extra.acme.com"}},
			reason: "renewed: SANs differ",
		},
		{
			name:   "expires within 30 days",
			hosts:  acme,
			now:    time.Now().Add(-leafValidity + 20*24*time.Hour),
			reason: "renewed: expires",
		},
		{
			name:  "key file removed",
			hosts: acme,
			before: func(t *testing.T, dir string) {
				require.NoError(t, os.Remove(filepath.Join(dir, "test.acme.com.key")))
			},
			reason: "renewed: open",
		},
		{
			name:  "key of another certificate",
			hosts: acme,
			before: func(t *testing.T, dir string) {
				other := readFile(t, filepath.Join(dir, "local.key"))
				require.NoError(t, os.WriteFile(filepath.Join(dir, "test.acme.com.key"), other, 0o600))
			},
			reason: "renewed: test.acme.com.key does not belong to test.acme.com.pem",
		},
		{
			name:  "certificate removed",
			hosts: acme,
			before: func(t *testing.T, dir string) {
				require.NoError(t, os.Remove(filepath.Join(dir, "test.acme.com.pem")))
			},
			reason: "created",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := &issuer{dir: dir, now: time.Now}
			if !tt.now.IsZero() {
				first.now = func() time.Time { return tt.now }
			}
			require.NoError(t, first.generate(acme))
			caPEM := readFile(t, filepath.Join(dir, CACertFile))
			old := readFile(t, filepath.Join(dir, "test.acme.com.pem"))
			if tt.before != nil {
				tt.before(t, dir)
			}

			got := map[string]string{}
			require.NoError(t, GenerateReport(dir, tt.hosts, func(path, action string) { got[filepath.Base(path)] = action }))

			assert.Contains(t, got["test.acme.com.pem"], tt.reason)
			assert.NotEqual(t, old, readFile(t, filepath.Join(dir, "test.acme.com.pem")))
			assert.Equal(t, caPEM, readFile(t, filepath.Join(dir, CACertFile)), "the CA is kept")
			_, err := tls.LoadX509KeyPair(filepath.Join(dir, "test.acme.com.pem"), filepath.Join(dir, "test.acme.com.key"))
			assert.NoError(t, err)
		})
	}
}

func TestBrokenCAIsReplacedAndLeavesReissued(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))
	require.NoError(t, os.WriteFile(filepath.Join(dir, CACertFile), []byte("garbage"), 0o644))

	got := map[string]string{}
	require.NoError(t, GenerateReport(dir, acme, func(path, action string) { got[filepath.Base(path)] = action }))
	assert.Contains(t, got[CACertFile], "renewed: ca.pem: no certificate")
	assert.Equal(t, "renewed: not issued by the current CA", got["test.acme.com.pem"])

	_, err := leafOf(t, filepath.Join(dir, "test.acme.com.pem")).Verify(x509.VerifyOptions{
		DNSName: "test.acme.com", Roots: caPool(t, dir),
	})
	assert.NoError(t, err)
}

func TestExpiringCAIsReplaced(t *testing.T) {
	dir := t.TempDir()
	old := &issuer{dir: dir, now: func() time.Time { return time.Now().Add(-caValidity + 10*24*time.Hour) }}
	require.NoError(t, old.generate(acme))

	got := map[string]string{}
	require.NoError(t, GenerateReport(dir, acme, func(path, action string) { got[filepath.Base(path)] = action }))
	assert.Contains(t, got[CACertFile], "renewed: expires")
	assert.Equal(t, "renewed: not issued by the current CA", got["local.pem"])
}

func TestClientCertMutualTLS(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, Generate(dir, acme))
	require.NoError(t, ClientCert(dir, "demo"))
	roots := caPool(t, dir)

	client := leafOf(t, filepath.Join(dir, "demo-client.pem"))
	assert.Equal(t, "demo", client.Subject.CommonName)
	_, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	assert.NoError(t, err)
	_, err = client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	assert.Error(t, err, "a client certificate must not serve")

	serverCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "test.acme.com.pem"), filepath.Join(dir, "test.acme.com.key"))
	require.NoError(t, err)
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "demo-client.pem"), filepath.Join(dir, "demo-client.key"))
	require.NoError(t, err)

	c, s := net.Pipe()
	srv := tls.Server(s, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientCAs:    roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	cli := tls.Client(c, &tls.Config{
		RootCAs:      roots,
		ServerName:   "api.test.acme.com",
		Certificates: []tls.Certificate{clientCert},
	})
	// Close the pipe, not the TLS conns: their close_notify would block on
	// a synchronous pipe that nobody reads any more.
	defer c.Close()
	defer s.Close()
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	require.NoError(t, cli.Handshake())
	require.NoError(t, <-errc)
	peers := srv.ConnectionState().PeerCertificates
	require.NotEmpty(t, peers)
	assert.Equal(t, "demo", peers[0].Subject.CommonName)

	// Rerun keeps it.
	pem := readFile(t, filepath.Join(dir, "demo-client.pem"))
	require.NoError(t, ClientCert(dir, "demo"))
	assert.Equal(t, pem, readFile(t, filepath.Join(dir, "demo-client.pem")))
}

func TestInvalidInputWritesNothing(t *testing.T) {
	tests := []struct {
		name  string
		hosts map[string][]string
		err   string
	}{
		{"empty name", map[string][]string{"": {"a.com"}}, "empty certificate name"},
		{"path in name", map[string][]string{"a/x": {"a.com"}}, "safe file name"},
		{"dotfile", map[string][]string{".x": {"a.com"}}, "starts with a dot"},
		{"ca", map[string][]string{"CA": {"a.com"}}, "taken by the CA"},
		{"no SANs", map[string][]string{"a": nil}, "no SANs"},
		{"bare wildcard", map[string][]string{"a": {"*"}}, "SAN \"*\""},
		{"inner wildcard", map[string][]string{"a": {"a.*.com"}}, "leading"},
		{"tld wildcard", map[string][]string{"a": {"*.com"}}, "top-level"},
		{"unicode", map[string][]string{"a": {"bücher.de"}}, "punycode"},
		{"one bad among good", map[string][]string{"good": {"good.com"}, "bad": {"bad..com"}}, "empty or over-long label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			err := Generate(dir, tt.hosts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
			_, err = os.Stat(dir)
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing is written when any input is wrong")
		})
	}
	assert.Error(t, ClientCert(t.TempDir(), "a/b"))
}

// TestDroppedInRSACAIsKept: a CA made by another tool whose key is RSA in
// PKCS#1 ("BEGIN RSA PRIVATE KEY", as openssl genrsa and many tools
// write it) was taken for a broken one ("ca.key: no private key in it"):
// its key and certificate were overwritten by a new CA, and every client
// told to trust the old one stopped trusting the leaves.
func TestDroppedInRSACAIsKept(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der := teamCA(t, key, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	caKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	assertDroppedInCAKept(t, dir, caPEM, caKey)
}

// TestDroppedInCAWithoutKeyUsageIsKept: a CA made the way most recipes
// make one, `openssl req -x509 -newkey rsa:2048 -nodes` with OpenSSL's
// default configuration, has basicConstraints CA:TRUE and no key usage
// extension at all, which RFC 5280 reads as any use (clients, Go's and
// OpenSSL's, verify leaves it signed). It was taken for broken ("ca.pem
// is not a CA certificate") and the operator's certificate and key
// overwritten by a new CA. It is kept; one whose key usage leaves out
// certificate signing is still not used.
func TestDroppedInCAWithoutKeyUsageIsKept(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der := teamCA(t, key, 0)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.Zero(t, ca.KeyUsage, "no key usage extension")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	caKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	assertDroppedInCAKept(t, dir, caPEM, caKey)

	// A key usage extension without certificate signing: not a CA's.
	der = teamCA(t, key, x509.KeyUsageDigitalSignature)
	require.NoError(t, os.WriteFile(filepath.Join(dir, CACertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	got := map[string]string{}
	require.NoError(t, GenerateReport(dir, acme, func(path, action string) { got[filepath.Base(path)] = action }))
	assert.Equal(t, "renewed: "+CACertFile+" is not a CA certificate", got[CACertFile])
}

// teamCA is a self-signed CA certificate (DER) for key, as another tool
// makes one, with usage as its key usage (0: no key usage extension).
func teamCA(t *testing.T, key *rsa.PrivateKey, usage x509.KeyUsage) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "team CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return der
}

// assertDroppedInCAKept drops caPEM and caKey in dir as an operator's CA
// and checks that generating keeps them and signs the leaves with them.
func assertDroppedInCAKept(t *testing.T, dir string, caPEM, caKey []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, CACertFile), caPEM, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, CAKeyFile), caKey, 0o600))

	got := map[string]string{}
	require.NoError(t, GenerateReport(dir, acme, func(path, action string) { got[filepath.Base(path)] = action }))
	assert.Equal(t, "kept", got[CACertFile])
	assert.True(t, bytes.Equal(caPEM, readFile(t, filepath.Join(dir, CACertFile))), "ca.pem is the dropped-in one")
	assert.True(t, bytes.Equal(caKey, readFile(t, filepath.Join(dir, CAKeyFile))), "ca.key is the dropped-in one")
	_, err := leafOf(t, filepath.Join(dir, "test.acme.com.pem")).Verify(x509.VerifyOptions{
		DNSName: "test.acme.com", Roots: caPool(t, dir),
	})
	assert.NoError(t, err, "the leaf is signed by the dropped-in CA")
}

// A ca.pem that is not a regular file (here a FIFO no one writes, which
// os.ReadFile would wait on for ever; a link to /dev/zero would be read
// without end) is taken for broken and replaced, as an unreadable CA is:
// make certs finishes.
func TestCAThatIsNoRegularFileIsReplaced(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, CACertFile), 0o644))
	done := make(chan error, 1)
	go func() { done <- Generate(dir, acme) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Generate still reading ca.pem after 10 s")
	}
	fi, err := os.Lstat(filepath.Join(dir, CACertFile))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "ca.pem is %v", fi.Mode())
	caPool(t, dir)
}
