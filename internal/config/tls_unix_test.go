//go:build unix

package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVirtualHostsNamingOneFileByLinksLoadItOnce: the virtual hosts that
// name one file share one load of it (TestVirtualHostsSharingFilesLoadThemOnce),
// and a file is the same file under every name a link gives it. Told
// apart by name, 400 symbolic links to one 565 KB client_ca_file of 1,000
// CAs, which whoever may write to a home can make and name from its
// virtual hosts, took edged check 13 s and 2.1 GB. The messages about
// such a file still name it as each virtual host does.
func TestVirtualHostsNamingOneFileByLinksLoadItOnce(t *testing.T) {
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
	// Each group names its own symbolic links to the bundle and the
	// certificate, and its own hard link to the key.
	setup := func(groups int, ca string) string {
		conf := certDir(t, c.cert, c.key)
		certs := filepath.Join(filepath.Dir(conf), "certs")
		require.NoError(t, os.WriteFile(filepath.Join(certs, "ca.pem"), []byte(ca), 0o644))
		var b strings.Builder
		for i := range groups {
			require.NoError(t, os.Symlink("ca.pem", filepath.Join(certs, fmt.Sprintf("ca-%d.pem", i))))
			require.NoError(t, os.Symlink("test.pem", filepath.Join(certs, fmt.Sprintf("c-%d.pem", i))))
			require.NoError(t, os.Link(filepath.Join(certs, "test.key"), filepath.Join(certs, fmt.Sprintf("k-%d.key", i))))
			fmt.Fprintf(&b, "[[env_group]]\nname = \"g%d\"\nhostnames = [\"g%d.test.example.com\"]\nenvironments = [\"test\"]\n", i, i)
			fmt.Fprintf(&b, "[[virtual_host]]\nname = \"g%d\"\ncert_file = \"../certs/c-%d.pem\"\nkey_file = \"../certs/k-%d.key\"\nclient_ca_file = \"../certs/ca-%d.pem\"\n", i, i, i, i)
		}
		writeTree(t, conf, map[string]string{"20-groups.toml": b.String()})
		return conf
	}
	load := func(groups int) (*Config, uint64) {
		conf := setup(groups, string(bundle))
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
	assert.Len(t, pools, 1, "CA pools of %d virtual hosts naming one client_ca_file by %d links", groups, groups)
	perVHost := (max(many, one) - one) / (groups - 1)
	t.Logf("one load: %d bytes; each virtual host more: %d bytes", one, perVHost)
	assert.Less(t, perVHost, uint64(64<<10), "bytes allocated per virtual host more (one load: %d bytes)", one)

	// A file that fails fails for each virtual host by the name it gives.
	conf := setup(2, "not PEM\n")
	_, errs := loadErrors(t, conf)
	require.Len(t, errs, 2, describeErrors(errs))
	for i, e := range errs {
		assert.Equal(t, fmt.Sprintf("virtual_host %q", fmt.Sprintf("g%d", i)), e.Object)
		assert.Equal(t, "client_ca_file", e.Field)
		assert.Contains(t, e.Msg, filepath.Join(filepath.Dir(conf), "certs", fmt.Sprintf("ca-%d.pem", i))+" holds no PEM certificate")
	}
}

// TestUpstreamsNamingOneCAFileByLinksShareIt: the upstreams naming one
// tls_ca_file shared its pool only under one name: each symbolic link to
// it was parsed into a pool of its own, kept by the upstreams' transports
// while the configuration served. The names of one file share one pool,
// and an error about it names it as each upstream does.
func TestUpstreamsNamingOneCAFileByLinksShareIt(t *testing.T) {
	c := testCert(t)
	setup := func(ca string) string {
		conf := certDir(t, c.cert, c.key)
		certs := filepath.Join(filepath.Dir(conf), "certs")
		require.NoError(t, os.WriteFile(filepath.Join(certs, "ca.pem"), []byte(ca), 0o644))
		var b strings.Builder
		for i := range 3 {
			require.NoError(t, os.Symlink("ca.pem", filepath.Join(certs, fmt.Sprintf("ca-%d.pem", i))))
			fmt.Fprintf(&b, "[[upstream]]\nname = \"u%d\"\nenvironment = \"test\"\nnodes = [{ url = \"https://10.0.0.%d\" }]\ntls_ca_file = \"../certs/ca-%d.pem\"\n", i, i+1, i)
		}
		writeTree(t, conf, map[string]string{"20-u.toml": b.String()})
		return conf
	}
	cfg, errs := loadErrors(t, setup(string(c.cert)))
	require.Empty(t, errs, describeErrors(errs))
	require.Len(t, cfg.UpstreamCAs, 3)
	pools := make(map[*x509.CertPool]bool)
	for _, b := range cfg.UpstreamCAs {
		pools[b.Pool] = true
	}
	assert.Len(t, pools, 1, "CA pools of 3 upstreams naming one tls_ca_file by 3 links")

	conf := setup("not PEM\n")
	_, errs = loadErrors(t, conf)
	require.Len(t, errs, 3, describeErrors(errs))
	for i, e := range errs {
		assert.Equal(t, fmt.Sprintf("upstream %q", fmt.Sprintf("u%d", i)), e.Object)
		assert.Equal(t, "tls_ca_file", e.Field)
		assert.Contains(t, e.Msg, filepath.Join(filepath.Dir(conf), "certs", fmt.Sprintf("ca-%d.pem", i))+" holds no PEM certificate")
	}
}
