package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
)

// A backend's CA bundle (tls_ca_file) renewed on disk, in a directory of
// its own that no config file is in, is taken without a SIGHUP: the
// watcher watches it as it watches virtual hosts' certificates.
func TestUpstreamCABundleRenewalIsWatched(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)

	issue := func() (ca []byte, cert tls.Certificate) {
		dir := t.TempDir()
		require.NoError(t, devcert.Generate(dir, map[string][]string{"backend.internal": {"backend.internal"}}))
		ca, err := os.ReadFile(filepath.Join(dir, devcert.CACertFile))
		require.NoError(t, err)
		cert, err = tls.LoadX509KeyPair(filepath.Join(dir, "backend.internal.pem"), filepath.Join(dir, "backend.internal.key"))
		require.NoError(t, err)
		return ca, cert
	}
	ca1, cert1 := issue()
	var mu sync.Mutex
	current := &cert1
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		SessionTicketsDisabled: true, // each handshake shows the certificate
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return current, nil
		},
	})
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "private backend") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	bundleDir := filepath.Join(ex.root, "backend-ca")
	require.NoError(t, os.MkdirAll(bundleDir, 0o755))
	bundle := filepath.Join(bundleDir, "ca.pem")
	writeAtomic := func(data []byte) {
		tmp := bundle + ".tmp"
		require.NoError(t, os.WriteFile(tmp, data, 0o644))
		require.NoError(t, os.Rename(tmp, bundle))
	}
	writeAtomic(ca1)
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "test", "secure.toml"), []byte(fmt.Sprintf(`
[[upstream]]
name = "secure"
environment = "test"
nodes = [{ url = "https://%s" }]
tls_ca_file = %q
tls_server_name = "backend.internal"
max_idle_per_node = 0
retries = 0

[[proxy]]
name = "secure"
environment = "test"
base_path = "/secure"
upstream = "secure"
`, ln.Addr(), bundle)), 0o644))

	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	code, body := getBody(t, c, "https://test.acme.com/secure/1")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "private backend", body)

	ca2, cert2 := issue()
	mu.Lock()
	current = &cert2
	mu.Unlock()
	code, body = getBody(t, c, "https://test.acme.com/secure/2")
	require.Equal(t, http.StatusBadGateway, code, "a certificate of a CA the bundle does not hold: %s", body)

	gen := p.generation(t)
	writeAtomic(ca2)
	require.Eventually(t, func() bool {
		code, _ := getBody(t, c, "https://test.acme.com/secure/3")
		return code == http.StatusOK
	}, 5*time.Second, 50*time.Millisecond, "no SIGHUP: the renewed bundle is read by a reload the watcher starts")
	require.Greater(t, p.generation(t), gen)
}
