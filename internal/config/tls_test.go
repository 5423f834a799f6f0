package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
)

// certDir sets up the base configuration with the given certificate and
// key files in root/certs.
func certDir(t *testing.T, cert, key []byte) string {
	t.Helper()
	dir := setupDir(t, nil)
	writeTree(t, filepath.Join(filepath.Dir(dir), "certs"), map[string]string{
		"test.pem": string(cert),
		"test.key": string(key),
	})
	return dir
}

func TestCertificateWarnings(t *testing.T) {
	year := time.Now().Add(365 * 24 * time.Hour)
	for _, tc := range []struct {
		name     string
		hosts    []string
		notAfter time.Time
		want     []string // substrings, one warning each
	}{
		{name: "covers", hosts: []string{"test.example.com", "*.test.example.com"}, notAfter: year},
		{name: "wildcard-covers-exact-not", hosts: []string{"*.test.example.com"}, notAfter: year,
			want: []string{"does not cover test.example.com of env_group \"test-group\""}},
		{name: "exact-does-not-cover-wildcard", hosts: []string{"test.example.com", "a.test.example.com"}, notAfter: year,
			want: []string{"does not cover *.test.example.com"}},
		{name: "expires-soon", hosts: []string{"test.example.com", "*.test.example.com"}, notAfter: time.Now().Add(3 * 24 * time.Hour),
			want: []string{"renew it"}},
		// The warning starts 14 days before the expiry.
		{name: "expires-in-13-days", hosts: []string{"test.example.com", "*.test.example.com"}, notAfter: time.Now().Add(13 * 24 * time.Hour),
			want: []string{"renew it"}},
		{name: "expires-in-15-days", hosts: []string{"test.example.com", "*.test.example.com"}, notAfter: time.Now().Add(15 * 24 * time.Hour)},
		{name: "expired", hosts: []string{"test.example.com", "*.test.example.com"}, notAfter: time.Now().Add(-time.Hour),
			want: []string{"certificate expired at"}},
		{name: "both", hosts: []string{"other.example.com"}, notAfter: time.Now().Add(24 * time.Hour),
			want: []string{"does not cover test.example.com, *.test.example.com", "certificate expires at"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCert(t, tc.hosts, tc.notAfter)
			dir := certDir(t, c.cert, c.key)
			cfg, err := Load(dir)
			require.NoError(t, err, "certificate findings are warnings, not errors")
			require.Len(t, cfg.Warnings, len(tc.want), "%v", cfg.Warnings)
			for i, want := range tc.want {
				w := cfg.Warnings[i]
				assert.Contains(t, w.Error(), want)
				assert.Equal(t, `virtual_host "test-group"`, w.Object)
				assert.Equal(t, "cert_file", w.Field)
				assert.Equal(t, Pos{filepath.Join(dir, "10-base.toml"), 11}, w.Pos)
			}
		})
	}
}

func TestCertificateErrors(t *testing.T) {
	good := testCert(t)
	other := testCert(t)
	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{name: "mismatched-pair", cert: good.cert, key: other.key, want: "do not load as a pair: tls: private key does not match public key"},
		{name: "swapped", cert: good.key, key: good.cert, want: "do not load as a pair"},
		{name: "garbage-cert", cert: []byte("hello"), key: good.key, want: "do not load as a pair"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := certDir(t, tc.cert, tc.key)
			_, errs := loadErrors(t, dir)
			require.Len(t, errs, 1, "%v", errs)
			e := errs[0]
			assert.Equal(t, Pos{filepath.Join(dir, "10-base.toml"), 11}, e.Pos)
			assert.Equal(t, `virtual_host "test-group"`, e.Object)
			assert.Equal(t, "cert_file", e.Field)
			assert.Contains(t, e.Msg, tc.want)
			assert.Contains(t, e.Msg, "test.pem")
			for _, key := range [][]byte{good.key, other.key} {
				for _, line := range strings.Split(string(key), "\n") {
					if len(line) > 20 && !strings.HasPrefix(line, "-----") {
						assert.NotContains(t, e.Error(), line, "no key material in messages")
					}
				}
			}
		})
	}
}

// A chain with the intermediate first and the leaf second says so, rather
// than that the key does not match.
func TestCertificateChainOutOfOrder(t *testing.T) {
	chain, key := devChainAndKey(t)
	leaf, rest := pem.Decode(chain)
	ca, _ := pem.Decode(rest)
	require.NotNil(t, leaf)
	require.NotNil(t, ca, "devcert writes the leaf, then the CA")

	conf := certDir(t, chain, key)
	_, err := Load(conf)
	require.NoError(t, err, "in order, the chain loads")

	conf = certDir(t, append(pem.EncodeToMemory(ca), pem.EncodeToMemory(leaf)...), key)
	_, errs := loadErrors(t, conf)
	require.Len(t, errs, 1, "%v", errs)
	e := errs[0]
	assert.Equal(t, "cert_file", e.Field)
	assert.Equal(t, Pos{filepath.Join(conf, "10-base.toml"), 11}, e.Pos)
	assert.Contains(t, e.Msg, "certificate chain is out of order: the first certificate must be the leaf that matches key_file")
	assert.Contains(t, e.Msg, "test.pem it is certificate 2 of 2")
	assert.NotContains(t, e.Msg, "does not match")

	// A key that matches no certificate of the chain is still a mismatch.
	other := testCert(t)
	conf = certDir(t, append(pem.EncodeToMemory(ca), pem.EncodeToMemory(leaf)...), other.key)
	_, errs = loadErrors(t, conf)
	require.Len(t, errs, 1, "%v", errs)
	assert.Contains(t, errs[0].Msg, "private key does not match public key")
}

func TestCipherSuiteIDs(t *testing.T) {
	vh := &VirtualHost{}
	for _, id := range vh.CipherSuiteIDs() {
		name := tls.CipherSuiteName(id)
		assert.True(t, strings.HasPrefix(name, "TLS_ECDHE_"), name)
		assert.NotContains(t, name, "CBC")
	}
	vh.CipherSuites = []string{"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}
	assert.Equal(t, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, vh.CipherSuiteIDs())
}

func TestReadTLSFileRefusesDevices(t *testing.T) {
	_, err := readTLSFile("/dev/zero")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a regular file")
}

func TestReadOnceReadsEachPathOnce(t *testing.T) {
	calls := map[string]int{}
	read := readOnce(func(p string) ([]byte, error) {
		calls[p]++
		if p == "missing.pem" {
			return nil, os.ErrNotExist
		}
		return []byte(p + " #" + strconv.Itoa(calls[p])), nil
	})
	for range 3 {
		b, err := read("wildcard.pem")
		require.NoError(t, err)
		assert.Equal(t, "wildcard.pem #1", string(b), "every virtual host sees the bytes of the first read")
		_, err = read("missing.pem")
		assert.ErrorIs(t, err, os.ErrNotExist)
	}
	assert.Equal(t, map[string]int{"wildcard.pem": 1, "missing.pem": 1}, calls)
	assert.Nil(t, readOnce(nil), "no reader stays no reader (LoadWithoutTLS)")
}

// A private key every user may read is a warning naming the file, the mode
// and the fix, never an error, and never quoting the key.
func TestKeyFileReadableByOthersWarns(t *testing.T) {
	dir := setupDir(t, nil)
	key := filepath.Join(filepath.Dir(dir), "certs", "test.key")
	cfg, err := Load(dir)
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings, "0600 is private")

	require.NoError(t, os.Chmod(key, 0o640))
	cfg, err = Load(dir)
	require.NoError(t, err)
	assert.Empty(t, cfg.Warnings, "readable by the group (ssl-cert) is how Debian keeps keys")

	require.NoError(t, os.Chmod(key, 0o644))
	cfg, err = Load(dir)
	require.NoError(t, err)
	require.Len(t, cfg.Warnings, 1)
	w := cfg.Warnings[0]
	assert.Equal(t, "key_file", w.Field)
	assert.Equal(t, fmt.Sprintf("private key %s is readable by every user (mode 0644); run: chmod o-r %s", key, key), w.Msg)
	assert.Contains(t, w.Warning(), "10-base.toml:12: warning: virtual_host \"test-group\": key_file: ")
	pemKey, err := os.ReadFile(key)
	require.NoError(t, err)
	for _, line := range strings.Split(string(pemKey), "\n")[1:] {
		if len(line) > 8 {
			assert.NotContains(t, w.Warning(), line, "no key material in messages")
		}
	}
}

// Plain HTTP cannot carry a client certificate: with http_mode = "serve",
// a group that requires one is never served there, which check says.
func TestPlainServeWithClientCAWarns(t *testing.T) {
	withCA := strings.Replace(baseObjects, `key_file = "../certs/test.key"`,
		`key_file = "../certs/test.key"`+"\nclient_ca_file = \"../certs/test.pem\"", 1)
	for _, tc := range []struct {
		server string
		warns  bool
	}{
		{baseServer + "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n", true},
		{baseServer + "http = \"127.0.0.1:0\"\nhttp_mode = \"redirect\"\n", false},
		{baseServer, false},
	} {
		cfg, err := Load(setupDir(t, map[string]string{"00-server.toml": tc.server, "10-base.toml": withCA}))
		require.NoError(t, err)
		if !tc.warns {
			assert.Empty(t, cfg.Warnings, tc.server)
			continue
		}
		require.Len(t, cfg.Warnings, 1)
		w := cfg.Warnings[0]
		assert.Equal(t, "client_ca_file", w.Field)
		assert.Contains(t, w.Msg, `env_group "test-group" requires client certificates`)
		assert.Contains(t, w.Msg, `404 host.unknown`)
		assert.Contains(t, w.Msg, `set http_mode = "redirect"`)
	}
}

// A certificate chain or client CA file cut short (written in place and
// read half way, or a paste that lost its end) is an error naming the
// file and field, not a shorter chain or CA set that loads: crypto/tls
// and x509.CertPool stop at the first block they cannot decode and keep
// what came before, so a chain lost its intermediate (clients fail to
// verify it) and a CA bundle its last CAs (their clients are refused),
// where the reload should have kept the last good material. Text between
// blocks (openssl's "subject=" lines) still loads.
func TestTruncatedPEMIsAnError(t *testing.T) {
	chain, key := devChainAndKey(t)
	leaf, rest := pem.Decode(chain)
	require.NotNil(t, leaf)
	require.NotNil(t, rest, "devcert writes the leaf, then the CA")
	cut := chain[:len(chain)-len(rest)+len(rest)/2] // the leaf, and half the CA

	withCA := func(conf string) {
		t.Helper()
		p := filepath.Join(conf, "10-base.toml")
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), `key_file = "../certs/test.key"`,
			`key_file = "../certs/test.key"`+"\nclient_ca_file = \"../certs/ca.pem\"", 1)), 0o644))
	}
	for _, tc := range []struct {
		name      string
		cert, ca  []byte
		field     string
		wantInMsg string
	}{
		{"chain cut in its second block", cut, nil, "cert_file", "test.pem"},
		{"CA bundle cut in its second block", chain, cut, "client_ca_file", "ca.pem"},
		{"CA bundle with a block that is no certificate", chain, append(append([]byte{}, rest...),
			pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})...), "client_ca_file", "ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := certDir(t, tc.cert, key)
			if tc.ca != nil {
				require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(conf), "certs", "ca.pem"), tc.ca, 0o644))
				withCA(conf)
			}
			_, errs := loadErrors(t, conf)
			require.Len(t, errs, 1, "%v", errs)
			assert.Equal(t, tc.field, errs[0].Field)
			assert.Contains(t, errs[0].Msg, tc.wantInMsg)
			assert.Equal(t, filepath.Join(conf, "10-base.toml"), errs[0].Pos.File)
		})
	}

	// Whole, with the text openssl writes between blocks, both load.
	annotated := []byte("subject=CN = test.example.com\nissuer=CN = edged dev CA\n" +
		string(pem.EncodeToMemory(leaf)) + "\nsubject=CN = edged dev CA\n" + string(rest))
	conf := certDir(t, annotated, key)
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(conf), "certs", "ca.pem"), annotated, 0o644))
	withCA(conf)
	_, errs := loadErrors(t, conf)
	assert.Empty(t, errs)
}

// A key_file that holds no usable key is reported on key_file, and an
// encrypted (passphrase-protected) key says so and how to decrypt it,
// rather than "failed to parse private key" on cert_file: edged, like
// Envoy and Traefik, reads no passphrases.
func TestUnusableKeyIsReportedOnKeyFile(t *testing.T) {
	good := testCert(t)
	b, _ := pem.Decode(good.key)
	require.NotNil(t, b)
	//lint:ignore SA1019 the legacy encrypted PEM format is what openssl genrsa -aes256 still writes
	legacy, err := x509.EncryptPEMBlock(rand.Reader, b.Type, b.Bytes, []byte("secret"), x509.PEMCipherAES256) //nolint:staticcheck
	require.NoError(t, err)
	// PKCS#8 encrypted: the structure is opaque here; what matters is the type.
	pkcs8 := &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}
	for _, tc := range []struct {
		name string
		key  []byte
		want string
	}{
		{"legacy encrypted", pem.EncodeToMemory(legacy), "is encrypted"},
		{"pkcs8 encrypted", pem.EncodeToMemory(pkcs8), "is encrypted"},
		{"empty", nil, "test.key"},
		{"a certificate", good.cert, "test.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := certDir(t, good.cert, tc.key)
			_, errs := loadErrors(t, dir)
			require.Len(t, errs, 1, "%v", errs)
			assert.Equal(t, "key_file", errs[0].Field)
			assert.Contains(t, errs[0].Msg, tc.want)
			if tc.want == "is encrypted" {
				assert.Contains(t, errs[0].Msg, "openssl pkey -in ")
			}
		})
	}
}

// devChainAndKey makes a development CA and a certificate for
// test.example.com, and returns the certificate's chain (leaf, then CA)
// and its key, as PEM.
func devChainAndKey(t *testing.T) (chain, key []byte) {
	dir := t.TempDir()
	require.NoError(t, devcert.Generate(dir, map[string][]string{"test": {"test.example.com", "*.test.example.com"}}))
	chain, err := os.ReadFile(filepath.Join(dir, "test.pem"))
	require.NoError(t, err)
	key, err = os.ReadFile(filepath.Join(dir, "test.key"))
	require.NoError(t, err)
	return chain, key
}

// TestCertificateCoverageCostIsLinear: whether a certificate covers each
// hostname of its group is checked at every load. Asked of x509's
// VerifyHostname, each hostname went through every name of the
// certificate: a group of 80,000 hostnames and a certificate of 30,000
// names (both within the file limits) kept edged check busy for more than
// 10 minutes. The allocations count the work: they grow with hostnames
// plus names now, not with their product.
func TestCertificateCoverageCostIsLinear(t *testing.T) {
	const n = 2000
	var sans, hosts []string
	for i := range n {
		sans = append(sans, fmt.Sprintf("s%d.b.example.com", i))
		hosts = append(hosts, fmt.Sprintf("u%d.d.example.com", i)) // covered by none
	}
	sans = append(sans, "*.c.example.com")
	hosts = append(hosts, "s7.b.example.com", "x.c.example.com")
	c := newCert(t, sans, time.Now().Add(365*24*time.Hour))
	pair, err := tls.X509KeyPair(c.cert, c.key)
	require.NoError(t, err)
	vh := &VirtualHost{Name: "g", Certificate: pair}
	var probs []fieldProblem
	allocs := testing.AllocsPerRun(1, func() { probs = certWarnings(vh, hosts, time.Now()) })
	require.Len(t, probs, 1)
	uncovered, _, _ := strings.Cut(probs[0].msg, " of env_group")
	assert.Contains(t, uncovered, "does not cover u0.d.example.com, u1.d.example.com")
	assert.NotContains(t, uncovered, "s7.b.example.com")
	assert.NotContains(t, uncovered, "x.c.example.com")
	assert.Less(t, allocs, float64(20*n), "allocations for %d hostnames and %d names", len(hosts), len(sans))
}

// TestCertificateCoverageIsVerifyHostnames: the coverage check says what
// x509's VerifyHostname says, name by name.
func TestCertificateCoverageIsVerifyHostnames(t *testing.T) {
	c := newCert(t, []string{"a.example.com", "*.w.example.com", "B.Example.com", "*.example.org", "x_y.example.net", "127.0.0.1.example"}, time.Now().Add(365*24*time.Hour))
	pair, err := tls.X509KeyPair(c.cert, c.key)
	require.NoError(t, err)
	leaf := pair.Leaf
	cov := newCoverage(leaf)
	for _, h := range []string{"a.example.com", "b.example.com", "x.w.example.com", "w.example.com", "y.x.w.example.com",
		"*.w.example.com", "*.example.org", "z.example.org", "example.org", "x_y.example.net", "c.example.com", "127.0.0.1", "*.a.example.com"} {
		assert.Equal(t, leaf.VerifyHostname(h) == nil, cov.covers(h), "%s", h)
	}
}

// TestCertificateCoverageWarningIsBounded: the warning names the first
// hostnames not covered and the first names of the certificate, and says
// how many more: listing all of them made one line of 2.4 MB (83,794
// hostnames, 30,002 names), logged at every start and reload, which
// journald cuts into pieces at 48 KiB.
func TestCertificateCoverageWarningIsBounded(t *testing.T) {
	const n = 2000
	var sans, hosts []string
	for i := range n {
		sans = append(sans, fmt.Sprintf("s%d.b.example.com", i))
		hosts = append(hosts, fmt.Sprintf("u%d.d.example.com", i))
	}
	c := newCert(t, sans, time.Now().Add(365*24*time.Hour))
	pair, err := tls.X509KeyPair(c.cert, c.key)
	require.NoError(t, err)
	probs := certWarnings(&VirtualHost{Name: "g", Certificate: pair}, hosts, time.Now())
	require.Len(t, probs, 1)
	msg := probs[0].msg
	assert.Less(t, len(msg), 2000, "%.300s...", msg)
	assert.Contains(t, msg, "does not cover u0.d.example.com, u1.d.example.com, ")
	assert.Contains(t, msg, fmt.Sprintf("and %d more of env_group \"g\"", n-10))
	assert.Contains(t, msg, "(it covers: s0.b.example.com, ")
	assert.Contains(t, msg, fmt.Sprintf("and %d more)", n-10))
}

// The warning names at most 10 names of the certificate, and no name
// longer than a DNS name may be: a certificate's name is not held to 253
// bytes (x509 takes any IA5 string), and one name as long as the file
// allows made the warning a line of that length, logged at every load.
func TestCertificateCoverageWarningNamesAreBounded(t *testing.T) {
	long := strings.Repeat("a", 60000) + ".example.com"
	c := newCert(t, []string{long}, time.Now().Add(365*24*time.Hour))
	pair, err := tls.X509KeyPair(c.cert, c.key)
	require.NoError(t, err)
	probs := certWarnings(&VirtualHost{Name: "g", Certificate: pair}, []string{"u.example.com"}, time.Now())
	require.Len(t, probs, 1)
	msg := probs[0].msg
	assert.Less(t, len(msg), 1000, "%.300s...", msg)
	assert.Contains(t, msg, "does not cover u.example.com of env_group \"g\" (it covers: aaaa")
	assert.Contains(t, msg, "(60012 bytes)")
}

// certForKey makes a self-signed certificate for the base group's
// hostnames with key.
func certForKey(t *testing.T, key crypto.Signer) certPair {
	t.Helper()
	return selfSigned(t, key, []string{"test.example.com", "*.test.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour), nil)
}

// TestKeyNoHandshakeCanUseIsAnError: crypto/tls parses an RSA key under
// 1024 bits and an ECDSA key on P-224, and loaded both as a pair, without
// an error or a warning; then every handshake failed ("tls: unsupported
// certificate curve (P-224)", "certificate RSA key size too small"), so
// edged check passed a virtual host no client could reach. Such a key is
// an error now; the keys crypto/tls signs with load and shake hands.
func TestKeyNoHandshakeCanUseIsAnError(t *testing.T) {
	// crypto/rsa makes no key under 1024 bits without this.
	t.Setenv("GODEBUG", "rsa1024min=0")
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		require.NoError(t, err)
		return k
	}
	ecKey := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		require.NoError(t, err)
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		want string // "" when it loads
	}{
		{"rsa-512", rsaKey(512), "RSA key of 512 bits"},
		{"rsa-1023", rsaKey(1023), "RSA key of 1023 bits"},
		{"ecdsa-p224", ecKey(elliptic.P224()), "ECDSA key on curve P-224"},
		{"rsa-1024", rsaKey(1024), ""},
		{"ecdsa-p256", ecKey(elliptic.P256()), ""},
		{"ecdsa-p384", ecKey(elliptic.P384()), ""},
		{"ecdsa-p521", ecKey(elliptic.P521()), ""},
		{"ed25519", edKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := certForKey(t, tc.key)
			dir := certDir(t, c.cert, c.key)
			cfg, errs := loadErrors(t, dir)
			if tc.want != "" {
				require.Len(t, errs, 1, "%v", errs)
				assert.Equal(t, "cert_file", errs[0].Field)
				assert.Equal(t, `virtual_host "test-group"`, errs[0].Object)
				assert.Contains(t, errs[0].Msg, tc.want)
				assert.Contains(t, errs[0].Msg, "test.pem")
				assert.Contains(t, errs[0].Msg, "test.key")
				return
			}
			require.Empty(t, errs)
			// What loads is what crypto/tls can serve: a real handshake
			// over loopback.
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cfg.VirtualHosts[0].Certificate}})
			require.NoError(t, err)
			defer ln.Close()
			served := make(chan error, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
				served <- nc.(*tls.Conn).Handshake()
			}()
			pool := x509.NewCertPool()
			pool.AddCert(cfg.VirtualHosts[0].Certificate.Leaf)
			cc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{ServerName: "test.example.com", RootCAs: pool})
			require.NoError(t, err)
			cc.Close()
			assert.NoError(t, <-served)
		})
	}
}

// TestRSAKeyOver8192BitsWarns: a 16384-bit RSA key loaded with no word,
// yet Go's TLS clients refuse a peer's RSA key over 8192 bits ("tls:
// server sent certificate containing RSA key larger than 8192 bits"), and
// each handshake's signature took this machine 1.8 s of CPU (a 2048-bit
// key's takes about 1 ms). Browsers take it, so it is a warning, on the
// virtual host's cert_file and on an upstream's tls_cert_file.
func TestRSAKeyOver8192BitsWarns(t *testing.T) {
	keyPEM, err := os.ReadFile(filepath.Join("testdata", "rsa16384.key"))
	require.NoError(t, err)
	b, _ := pem.Decode(keyPEM)
	require.NotNil(t, b)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	huge := k.(*rsa.PrivateKey)
	require.Equal(t, 16384, huge.N.BitLen())
	// Signed by a small key: making the certificate costs no 16384-bit
	// signature.
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "edged test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		DNSNames:     []string{"test.example.com", "*.test.example.com"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &huge.PublicKey, ca)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	dir := certDir(t, certPEM, keyPEM)
	writeTree(t, dir, map[string]string{
		"20-secure.toml": upstreamWith("https://10.0.0.5", "tls_cert_file = \"../certs/test.pem\"\ntls_key_file = \"../certs/test.key\""),
	})
	cfg, err := Load(dir)
	require.NoError(t, err, "browsers take such a key: a warning, not an error")
	var fields []string
	for _, w := range cfg.Warnings {
		if strings.Contains(w.Msg, "RSA key of 16384 bits") {
			fields = append(fields, w.Object+" "+w.Field)
			assert.Contains(t, w.Msg, "test.pem")
			assert.Contains(t, w.Msg, "larger than 8192 bits")
		}
	}
	assert.ElementsMatch(t, []string{`virtual_host "test-group" cert_file`, `upstream "secure" tls_cert_file`}, fields, "%v", cfg.Warnings)
}

// TestChainOverOpenSSLsLimitWarns: a cert_file holding the leaf and then
// a whole CA bundle (cat cert.pem /etc/ssl/certs/ca-certificates.crt, 145
// certificates, 153 KiB) loaded without a word, and Go clients connected,
// while OpenSSL's (curl, openssl s_client, Python) refused every
// handshake: "excessive message size", their limit on a certificate
// message being 100 KiB. It is a warning now; a chain of a leaf and its
// intermediates is far below it.
func TestChainOverOpenSSLsLimitWarns(t *testing.T) {
	chain, key := devChainAndKey(t)
	leaf, rest := pem.Decode(chain)
	ca, _ := pem.Decode(rest)
	require.NotNil(t, ca)
	cfg, err := Load(certDir(t, chain, key))
	require.NoError(t, err)
	for _, w := range cfg.Warnings {
		assert.NotContains(t, w.Msg, "certificate message", "a leaf and its CA: %v", w)
	}

	big := pem.EncodeToMemory(leaf)
	n := 1
	for len(big) < 150<<10 {
		big = append(big, pem.EncodeToMemory(ca)...)
		n++
	}
	cfg, err = Load(certDir(t, big, key))
	require.NoError(t, err, "Go clients take it: a warning")
	var found []string
	for _, w := range cfg.Warnings {
		if strings.Contains(w.Msg, "certificate message") {
			found = append(found, w.Field+": "+w.Msg)
		}
	}
	require.Len(t, found, 1, "%v", cfg.Warnings)
	assert.Contains(t, found[0], "cert_file: ")
	assert.Contains(t, found[0], fmt.Sprintf("%d certificates", n))
	assert.Contains(t, found[0], "OpenSSL")
	assert.Contains(t, found[0], "102400")
}

// TestCertificateForTheWrongUseWarns: a certificate whose extended key
// usage leaves out what it is shown for, a client certificate
// (clientAuth only) as a virtual host's, or a server certificate as an
// upstream's tls_cert_file, loaded with no warning, and every client (or
// node) that verifies it refuses the handshake ("x509: certificate
// specifies an incompatible key usage"). Without the extension a
// certificate is good for any use.
func TestCertificateForTheWrongUseWarns(t *testing.T) {
	mk := func(usage []x509.ExtKeyUsage) certPair {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return selfSigned(t, key, []string{"test.example.com", "*.test.example.com"}, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour),
			func(c *x509.Certificate) { c.ExtKeyUsage = usage })
	}
	for _, tc := range []struct {
		name  string
		usage []x509.ExtKeyUsage
		want  []string // object and field warned, each
	}{
		{"server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{`upstream "secure" tls_cert_file`}},
		{"client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []string{`virtual_host "test-group" cert_file`}},
		{"both", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil},
		{"any", []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, nil},
		{"none", nil, nil},
		{"code-signing", []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, []string{`virtual_host "test-group" cert_file`, `upstream "secure" tls_cert_file`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mk(tc.usage)
			dir := certDir(t, c.cert, c.key)
			writeTree(t, dir, map[string]string{
				"20-secure.toml": upstreamWith("https://10.0.0.5", "tls_cert_file = \"../certs/test.pem\"\ntls_key_file = \"../certs/test.key\""),
			})
			cfg, err := Load(dir)
			require.NoError(t, err, "a warning, not an error")
			var got []string
			for _, w := range cfg.Warnings {
				if strings.Contains(w.Msg, "extended key usage") {
					got = append(got, w.Object+" "+w.Field)
				}
			}
			assert.ElementsMatch(t, tc.want, got, "%v", cfg.Warnings)
		})
	}
}

// TestChainWhoseIssuersDoNotFollowWarns: a cert_file holding an
// intermediate that issued neither the leaf nor another certificate on
// its way to a root (the old intermediate kept after a renewal under a
// new one) loaded with no warning; clients that do not fetch
// intermediates themselves (curl, Go, Java) then failed to verify the
// leaf ("certificate signed by unknown authority"), while browsers often
// still connect, which hides it. A certificate after the leaf that does
// not parse (crypto/tls parses the leaf only) is warned of too.
func TestChainWhoseIssuersDoNotFollowWarns(t *testing.T) {
	hourAgo, year := time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour)
	issue := func(cn string, parent *chainCert, ca bool) *chainCert {
		return issueChainCert(t, cn, parent, ca, hourAgo, year)
	}
	root := issue("root", nil, true)
	inter := issue("intermediate", root, true)
	oldInter := issue("old intermediate", root, true)
	// The intermediate's name again, issued by another root: a cross-sign.
	crossRoot := issue("other root", nil, true)
	cross := issue("intermediate", crossRoot, true)
	leaf := issue("leaf", inter, false)
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.key)
	require.NoError(t, err)
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	cat := func(ns ...*chainCert) []byte {
		var b []byte
		for _, n := range ns {
			b = append(b, n.pem...)
		}
		return b
	}
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})
	for _, tc := range []struct {
		name  string
		chain []byte
		want  string // "" for no warning
	}{
		{"leaf alone", cat(leaf), ""},
		{"leaf, intermediate", cat(leaf, inter), ""},
		{"leaf, intermediate, root", cat(leaf, inter, root), ""},
		// Clients take the certificates after the leaf as a set.
		{"root before intermediate", cat(leaf, root, inter), ""},
		{"a cross-signed intermediate beside the other", cat(leaf, cross, inter, root), ""},
		{"the old intermediate", cat(leaf, oldInter), `certificate 2 of 2 of the chain in`},
		{"the old intermediate beside the new", cat(leaf, inter, oldInter, root), `certificate 3 of 4 of the chain in`},
		{"an intermediate that does not parse", append(cat(leaf), garbage...), "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(certDir(t, tc.chain, key))
			require.NoError(t, err, "a warning: browsers may still build the chain")
			var got []string
			for _, w := range cfg.Warnings {
				if strings.Contains(w.Msg, "of the chain in") {
					got = append(got, w.Field+": "+w.Msg)
				}
			}
			if tc.want == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "%v", cfg.Warnings)
			assert.Contains(t, got[0], "cert_file: ")
			assert.Contains(t, got[0], tc.want)
			assert.Contains(t, got[0], "test.pem")
			if strings.Contains(tc.name, "old intermediate") {
				assert.Contains(t, got[0], `("old intermediate") issued neither the leaf nor a certificate on its way to a root`)
			}
		})
	}
}

// TestClientCANamesOverACertificateRequestIsAnError: crypto/tls names
// every CA of client_ca_file in each CertificateRequest, a list with a
// 2-byte length. 700 CAs of long names (80,500 bytes of names, 560 KiB of
// PEM: within the file limit) loaded without a word, and every handshake
// of the virtual host then failed on edged's side ("cryptobyte: pending
// child length 80500 exceeds 2-byte length prefix"). It is an error on
// client_ca_file now; a bundle just under it loads.
func TestClientCANamesOverACertificateRequestIsAnError(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	bundle := func(n int) []byte {
		var b []byte
		for i := range n {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(int64(i + 1)),
				Subject: pkix.Name{CommonName: fmt.Sprintf("Example Corporation Internal Issuing Certificate Authority number %04d", i),
					Organization: []string{"Example Corporation"}},
				NotBefore:             time.Now().Add(-time.Hour),
				NotAfter:              time.Now().Add(365 * 24 * time.Hour),
				IsCA:                  true,
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageCertSign,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			require.NoError(t, err)
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		return b
	}
	c := testCert(t)
	for _, tc := range []struct {
		n    int
		want string // "" when it loads
	}{
		{500, ""},
		{700, "700 CAs whose names take 80500 bytes"},
	} {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			conf := certDir(t, c.cert, c.key)
			require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(conf), "certs", "ca.pem"), bundle(tc.n), 0o644))
			p := filepath.Join(conf, "10-base.toml")
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), `key_file = "../certs/test.key"`,
				`key_file = "../certs/test.key"`+"\nclient_ca_file = \"../certs/ca.pem\"", 1)), 0o644))
			cfg, errs := loadErrors(t, conf)
			if tc.want == "" {
				require.Empty(t, errs)
				require.NotNil(t, cfg.VirtualHosts[0].ClientCAs)
				return
			}
			require.Len(t, errs, 1, "%v", errs)
			assert.Equal(t, "client_ca_file", errs[0].Field)
			assert.Contains(t, errs[0].Msg, "ca.pem")
			assert.Contains(t, errs[0].Msg, tc.want)
			assert.Contains(t, errs[0].Msg, "65535")
		})
	}
}

// TestVirtualHostsSharingFilesLoadThemOnce: any number of virtual hosts
// may name one certificate (a wildcard's, a SAN certificate's) and one
// client_ca_file. Each loaded them again: its own CA pool, kept while its
// configuration served, its own parse of the chain and index of the
// certificate's names (400 virtual hosts naming one 565 KB bundle of
// 1,000 CAs took edged check 1.7 GB, where the files of configuration
// were 60 KB). They now share one load of each: one pool, and what a
// virtual host more costs does not grow with the files it names.
func TestVirtualHostsSharingFilesLoadThemOnce(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	var bundle []byte
	for i := range 200 {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(int64(i + 1)),
			Subject:               pkix.Name{CommonName: fmt.Sprintf("CA %d", i)},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		require.NoError(t, err)
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	sans := []string{"test.example.com", "*.test.example.com"}
	for i := range 2000 {
		sans = append(sans, fmt.Sprintf("n%d.example.org", i))
	}
	c := newCert(t, sans, time.Now().Add(365*24*time.Hour))
	load := func(groups int) (*Config, uint64) {
		conf := certDir(t, c.cert, c.key)
		require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(conf), "certs", "ca.pem"), bundle, 0o644))
		var b strings.Builder
		for i := range groups {
			fmt.Fprintf(&b, "[[env_group]]\nname = \"g%d\"\nhostnames = [\"g%d.test.example.com\"]\nenvironments = [\"test\"]\n", i, i)
			fmt.Fprintf(&b, "[[virtual_host]]\nname = \"g%d\"\ncert_file = \"../certs/test.pem\"\nkey_file = \"../certs/test.key\"\nclient_ca_file = \"../certs/ca.pem\"\n", i)
		}
		writeTree(t, conf, map[string]string{"20-groups.toml": b.String()})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg, errs := loadErrors(t, conf)
		runtime.ReadMemStats(&after)
		require.Empty(t, errs, describeErrors(errs))
		require.Empty(t, cfg.Warnings, describeErrors(cfg.Warnings))
		return cfg, after.TotalAlloc - before.TotalAlloc
	}
	const groups = 41
	_, one := load(1)
	cfg, many := load(groups)
	pools := make(map[*x509.CertPool]bool)
	for _, vh := range cfg.VirtualHosts {
		if vh.ClientCAs != nil {
			pools[vh.ClientCAs] = true
		}
	}
	assert.Len(t, pools, 1, "CA pools of %d virtual hosts naming one client_ca_file", groups)
	perVHost := (max(many, one) - one) / (groups - 1)
	t.Logf("one load: %d bytes; each virtual host more: %d bytes", one, perVHost)
	assert.Less(t, perVHost, uint64(64<<10), "bytes allocated per virtual host more (one load: %d bytes)", one)
}

// A CA of client_ca_file that has expired, or expires within
// CertExpiryWarning, fails every handshake of the client certificates it
// issued: a warning on client_ca_file, as for cert_file and
// tls_cert_file. The other CAs of the bundle are not named.
func TestClientCAExpiryWarns(t *testing.T) {
	year := time.Now().Add(365 * 24 * time.Hour)
	server := newCert(t, []string{"test.example.com", "*.test.example.com"}, year)
	ca := func(cn string, notAfter time.Time) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return selfSigned(t, key, nil, time.Now().Add(-time.Hour), notAfter, func(c *x509.Certificate) {
			c.Subject.CommonName, c.IsCA, c.BasicConstraintsValid, c.KeyUsage = cn, true, true, x509.KeyUsageCertSign
		}).cert
	}
	for _, tc := range []struct {
		name string
		cas  []byte
		want []string // substrings, one warning each
	}{
		{name: "valid", cas: ca("Good CA", year)},
		{name: "expires-in-15-days", cas: ca("Good CA", time.Now().Add(15*24*time.Hour))},
		{name: "expires-in-13-days", cas: append(ca("Good CA", year), ca("Soon CA", time.Now().Add(13*24*time.Hour))...),
			want: []string{`client CA "Soon CA" in ` + "\x00" + `: certificate expires at`}},
		{name: "expired", cas: append(ca("Old CA", time.Now().Add(-time.Hour)), ca("Good CA", year)...),
			want: []string{`client CA "Old CA" in ` + "\x00" + `: certificate expired at`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setupDir(t, map[string]string{"10-base.toml": strings.Replace(baseObjects, `key_file = "../certs/test.key"`,
				`key_file = "../certs/test.key"`+"\nclient_ca_file = \"../certs/ca.pem\"", 1)})
			writeTree(t, filepath.Join(filepath.Dir(dir), "certs"), map[string]string{
				"test.pem": string(server.cert), "test.key": string(server.key), "ca.pem": string(tc.cas),
			})
			cfg, err := Load(dir)
			require.NoError(t, err, "a CA's expiry is a warning, not an error")
			require.Len(t, cfg.Warnings, len(tc.want), "%v", cfg.Warnings)
			for i, want := range tc.want {
				w := cfg.Warnings[i]
				// The file by its path as loaded (absolute).
				assert.Contains(t, w.Msg, strings.Replace(want, "\x00", filepath.Join(filepath.Dir(dir), "certs", "ca.pem"), 1))
				assert.Equal(t, `virtual_host "test-group"`, w.Object)
				assert.Equal(t, "client_ca_file", w.Field)
			}
		})
	}
}

// TestChainCertificateExpiryWarns: the expiry warnings looked at the leaf
// alone, but clients verify the whole chain cert_file sends, and an
// intermediate that expires before the leaf ends every handshake then,
// while the leaf has months to go (an intermediate kept from an old
// issue, or a CA's that runs out first): edged check and every reload
// said nothing. A certificate after the leaf that expired, expires
// within 14 days before the leaf does, or is not valid yet is a warning,
// on cert_file as on an upstream's tls_cert_file; a self-signed root in
// the file is not one (clients use their own).
func TestChainCertificateExpiryWarns(t *testing.T) {
	issue := func(cn string, parent *chainCert, notBefore, notAfter time.Time) *chainCert {
		return issueChainCert(t, cn, parent, cn != "leaf", notBefore, notAfter)
	}
	ago := time.Now().Add(-time.Hour)
	days := func(n int) time.Time { return time.Now().Add(time.Duration(n) * 24 * time.Hour) }
	for _, tc := range []struct {
		name            string
		root, inter, lf [2]time.Time // NotBefore, NotAfter
		want            []string     // substrings of the one warning of the chain; none: no warning
	}{
		{name: "all valid", root: [2]time.Time{ago, days(3650)}, inter: [2]time.Time{ago, days(900)}, lf: [2]time.Time{ago, days(90)}},
		{name: "intermediate expires in 5 days, leaf in 90", root: [2]time.Time{ago, days(3650)}, inter: [2]time.Time{ago, days(5)}, lf: [2]time.Time{ago, days(90)},
			want: []string{`certificate 2 of 3 of the chain in`, `("intermediate") expires at`, "before the leaf"}},
		{name: "intermediate expired, leaf in 90 days", root: [2]time.Time{ago, days(3650)}, inter: [2]time.Time{days(-400), days(-1)}, lf: [2]time.Time{ago, days(90)},
			want: []string{`certificate 2 of 3 of the chain in`, `("intermediate") expired at`}},
		{name: "intermediate not valid yet", root: [2]time.Time{ago, days(3650)}, inter: [2]time.Time{time.Now().Add(time.Hour), days(900)}, lf: [2]time.Time{ago, days(90)},
			want: []string{`certificate 2 of 3 of the chain in`, `("intermediate") is not valid before`}},
		// The leaf's own warning says it: the chain adds nothing.
		{name: "intermediate in 5 days, leaf in 3", root: [2]time.Time{ago, days(3650)}, inter: [2]time.Time{ago, days(5)}, lf: [2]time.Time{ago, days(3)}},
		// Clients end the chain at their own copy of the root.
		{name: "root in the file expired", root: [2]time.Time{days(-4000), days(-1)}, inter: [2]time.Time{ago, days(900)}, lf: [2]time.Time{ago, days(90)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := issue("root", nil, tc.root[0], tc.root[1])
			inter := issue("intermediate", root, tc.inter[0], tc.inter[1])
			leaf := issue("leaf", inter, tc.lf[0], tc.lf[1])
			kder, err := x509.MarshalPKCS8PrivateKey(leaf.key)
			require.NoError(t, err)
			key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
			chain := append(append(append([]byte{}, leaf.pem...), inter.pem...), root.pem...)
			dir := certDir(t, chain, key)
			// The same chain as an upstream's client certificate.
			writeTree(t, dir, map[string]string{"20-secure.toml": upstreamWith("https://10.0.0.5",
				"tls_cert_file = \"../certs/test.pem\"\ntls_key_file = \"../certs/test.key\"")})
			cfg, err := Load(dir)
			require.NoError(t, err, "a warning, not an error")
			for _, field := range []string{"cert_file", "tls_cert_file"} {
				var got []string
				for _, w := range cfg.Warnings {
					if w.Field == field && strings.Contains(w.Msg, "of the chain in") {
						got = append(got, w.Msg)
					}
				}
				require.Len(t, got, min(len(tc.want), 1), "%s: %v", field, cfg.Warnings)
				for _, w := range got {
					for _, want := range tc.want {
						assert.Contains(t, w, want, field)
					}
					assert.Contains(t, w, "test.pem")
					assert.Contains(t, w, map[string]string{"cert_file": "clients verify", "tls_cert_file": "nodes verify"}[field])
				}
			}
		})
	}
}

// chainCert is a certificate of a chain a test makes: a root, an
// intermediate or a leaf.
type chainCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// issueChainCert makes the certificate cn, valid from notBefore to
// notAfter, signed by parent (self-signed without one): a CA, or a leaf
// for test.example.com, *.test.example.com and edge that serves as a
// server's and a client's certificate.
func issueChainCert(t *testing.T, cn string, parent *chainCert, ca bool, notBefore, notAfter time.Time) *chainCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  ca,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if !ca {
		tmpl.DNSNames = []string{"test.example.com", "*.test.example.com", "edge"}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	pt, pk := tmpl, key
	if parent != nil {
		pt, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pt, &key.PublicKey, pk)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &chainCert{c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}
