package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// certPair is a PEM certificate and key made for a test.
type certPair struct {
	cert, key []byte
}

// newCert makes a self-signed ECDSA certificate for hosts, valid until
// notAfter.
func newCert(t testing.TB, hosts []string, notAfter time.Time) certPair {
	t.Helper()
	return newCertValid(t, hosts, time.Now().Add(-time.Hour), notAfter)
}

// newCertValid is newCert valid from notBefore.
func newCertValid(t testing.TB, hosts []string, notBefore, notAfter time.Time) certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return selfSigned(t, key, hosts, notBefore, notAfter, nil)
}

// selfSigned makes key's self-signed certificate for hosts, for
// serverAuth, valid from notBefore to notAfter, with its key in PKCS#8;
// edit (nil: none) changes the template first.
func selfSigned(t testing.TB, key crypto.Signer, hosts []string, notBefore, notAfter time.Time, edit func(*x509.Certificate)) certPair {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "edged test"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     hosts,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return certPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

// writeTree writes files (relative path → content) under dir.
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600 // as keys are kept; readable by all is a warning
		}
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
	}
}

// baseServer and baseObjects form a valid configuration; test cases add to
// them or replace one of them.
const baseServer = `[server]
https = "127.0.0.1:0"
admin = "127.0.0.1:0"
`

const baseObjects = `[[environment]]
name = "test"

[[env_group]]
name = "test-group"
hostnames = ["test.example.com", "*.test.example.com"]
environments = ["test"]

[[virtual_host]]
name = "test-group"
cert_file = "../certs/test.pem"
key_file = "../certs/test.key"

[[upstream]]
name = "pool"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9001" }]

[[proxy]]
name = "users"
environment = "test"
base_path = "/users"
upstream = "pool"
`

// testCert covers the hostnames of baseObjects for a year.
func testCert(t testing.TB) certPair {
	return newCert(t, []string{"test.example.com", "*.test.example.com"}, time.Now().Add(365*24*time.Hour))
}

// setupDir makes root/conf.d with the base files, overridden and extended
// by files, and root/certs with the test certificate. It returns the
// conf.d path.
func setupDir(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	c := testCert(t)
	writeTree(t, root, map[string]string{
		"certs/test.pem": string(c.cert),
		"certs/test.key": string(c.key),
	})
	all := map[string]string{
		"00-server.toml": baseServer,
		"10-base.toml":   baseObjects,
	}
	for k, v := range files {
		all[k] = v
	}
	for k, v := range all {
		if v == "" {
			delete(all, k)
		}
	}
	dir := filepath.Join(root, "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	writeTree(t, dir, all)
	return dir
}

// loadErrors loads dir and returns its errors (nil when it loads).
func loadErrors(t testing.TB, dir string) (*Config, Errors) {
	t.Helper()
	cfg, err := Load(dir)
	if err == nil {
		return cfg, nil
	}
	var errs Errors
	require.True(t, errors.As(err, &errs), "error is not config.Errors: %T %v", err, err)
	require.NotEmpty(t, errs)
	return cfg, errs
}

// findError returns the first error whose text holds every want.
func findError(es []Error, want ...string) (Error, bool) {
	for _, e := range es {
		s := e.Error()
		ok := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				ok = false
				break
			}
		}
		if ok {
			return e, true
		}
	}
	return Error{}, false
}

// findErrorOf returns the first error of exactly object and field whose
// message holds every msg.
func findErrorOf(es []Error, object, field string, msg ...string) (Error, bool) {
	for _, e := range es {
		if e.Object != object || e.Field != field {
			continue
		}
		ok := true
		for _, m := range msg {
			if !strings.Contains(e.Msg, m) {
				ok = false
				break
			}
		}
		if ok {
			return e, true
		}
	}
	return Error{}, false
}

// describeErrors lists es one per line with object and field apart, for
// failure messages.
func describeErrors(es []Error) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s: object %q, field %q: %s\n", e.Pos, e.Object, e.Field, e.Msg)
	}
	return b.String()
}
