package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/devcert"
)

// TestCertificateRenewalsOfEveryKindReachNewHandshakes renews virtual
// hosts' certificates the ways operators' tools do, and each renewal is
// served to new handshakes by the watcher's reload alone (rescan_interval
// is an hour): certbot's live/NAME/fullchain.pem, a relative symlink into
// ../../archive/NAME/fullchainN.pem, each link removed and made again, the
// key's before the chain's (a moment where they do not match); a
// Kubernetes Secret's "..data" link swapped to a new timestamped
// directory; `cp new.pem cert.pem` rewriting the file in place (same
// inode and size, the mtime put back as it was: nothing but the content
// differs),
// the certificate first (again a mismatch while the key is not written);
// `mv` over it (a new inode); and a client_ca_file appended to in place,
// whose new CA's clients are let in.
func TestCertificateRenewalsOfEveryKindReachNewHandshakes(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	ex.setServer(t, "reload_debounce", `"50ms"`+"\nrescan_interval = \"1h\"")

	// issue makes a new certificate and key for name's hostnames, by the
	// example's CA.
	issue := func(name string) (cert, key []byte) {
		dir := t.TempDir()
		for _, f := range []string{devcert.CACertFile, devcert.CAKeyFile} {
			b, err := os.ReadFile(filepath.Join(ex.certDir, f))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
		}
		require.NoError(t, devcert.Generate(dir, map[string][]string{name: {name, "*." + name}}))
		cert, err := os.ReadFile(filepath.Join(dir, name+".pem"))
		require.NoError(t, err)
		key, err = os.ReadFile(filepath.Join(dir, name+".key"))
		require.NoError(t, err)
		return cert, key
	}
	write := func(path string, b []byte) {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, b, 0o600))
	}
	symlink := func(target, link string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
		require.NoError(t, os.Symlink(target, link))
	}

	// test-group: certbot's layout.
	le := filepath.Join(ex.root, "letsencrypt")
	tCert, tKey := issue("test.acme.com")
	write(filepath.Join(le, "archive", "test.acme.com", "fullchain1.pem"), tCert)
	write(filepath.Join(le, "archive", "test.acme.com", "privkey1.pem"), tKey)
	live := filepath.Join(le, "live", "test.acme.com")
	symlink("../../archive/test.acme.com/fullchain1.pem", filepath.Join(live, "fullchain.pem"))
	symlink("../../archive/test.acme.com/privkey1.pem", filepath.Join(live, "privkey.pem"))

	// uat-group: a Kubernetes Secret volume.
	secret := filepath.Join(ex.root, "secret")
	uCert, uKey := issue("uat.acme.com")
	write(filepath.Join(secret, "..2026_12_07_10_00_00.1", "tls.crt"), uCert)
	write(filepath.Join(secret, "..2026_12_07_10_00_00.1", "tls.key"), uKey)
	symlink("..2026_12_07_10_00_00.1", filepath.Join(secret, "..data"))
	symlink("..data/tls.crt", filepath.Join(secret, "tls.crt"))
	symlink("..data/tls.key", filepath.Join(secret, "tls.key"))

	// prod-group: plain files, and a client CA bundle holding the
	// example's CA.
	plain := filepath.Join(ex.root, "plain")
	pCert, pKey := issue("prod.acme.com")
	write(filepath.Join(plain, "prod.pem"), pCert)
	write(filepath.Join(plain, "prod.key"), pKey)
	caA, err := os.ReadFile(filepath.Join(ex.certDir, devcert.CACertFile))
	require.NoError(t, err)
	write(filepath.Join(plain, "clients.pem"), caA)

	groups := filepath.Join(ex.confDir, "groups.toml")
	b, err := os.ReadFile(groups)
	require.NoError(t, err)
	s := string(b)
	for old, new := range map[string]string{
		`cert_file = "../certs/test.acme.com.pem"`: `cert_file = "` + filepath.Join(live, "fullchain.pem") + `"`,
		`key_file = "../certs/test.acme.com.key"`:  `key_file = "` + filepath.Join(live, "privkey.pem") + `"`,
		`cert_file = "../certs/uat.acme.com.pem"`:  `cert_file = "` + filepath.Join(secret, "tls.crt") + `"`,
		`key_file = "../certs/uat.acme.com.key"`:   `key_file = "` + filepath.Join(secret, "tls.key") + `"`,
		`cert_file = "../certs/prod.acme.com.pem"`: `cert_file = "` + filepath.Join(plain, "prod.pem") + `"`,
		`key_file = "../certs/prod.acme.com.key"`:  `key_file = "` + filepath.Join(plain, "prod.key") + `"` + "\n" + `client_ca_file = "` + filepath.Join(plain, "clients.pem") + `"`,
	} {
		require.Contains(t, s, old)
		s = strings.Replace(s, old, new, 1)
	}
	require.NoError(t, os.WriteFile(groups, []byte(s), 0o644))

	// A client whose certificate another CA issued.
	other := t.TempDir()
	require.NoError(t, devcert.ClientCert(other, "alice"))
	alice, err := tls.LoadX509KeyPair(filepath.Join(other, "alice-client.pem"), filepath.Join(other, "alice-client.key"))
	require.NoError(t, err)
	caB, err := os.ReadFile(filepath.Join(other, devcert.CACertFile))
	require.NoError(t, err)

	p := startServe(t, ex.confDir)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caA))
	// served is the serial of the certificate a new handshake for host
	// gets ("" when it fails).
	served := func(host string) string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.https,
			&tls.Config{ServerName: host, RootCAs: roots, Certificates: []tls.Certificate{alice}})
		if err != nil {
			return ""
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	renewed := func(host string, cert []byte) {
		t.Helper()
		want := pemSerial(t, cert)
		assert.Eventually(t, func() bool { return served(host) == want }, 10*time.Second, 20*time.Millisecond,
			"%s: the renewed certificate is served", host)
	}
	require.Equal(t, pemSerial(t, tCert), served("test.acme.com"))
	require.Equal(t, pemSerial(t, uCert), served("uat.acme.com"))

	// certbot renew: new files in the archive, then the links, one at a
	// time (cert, privkey, chain, fullchain: the key before the chain).
	tCert2, tKey2 := issue("test.acme.com")
	write(filepath.Join(le, "archive", "test.acme.com", "fullchain2.pem"), tCert2)
	write(filepath.Join(le, "archive", "test.acme.com", "privkey2.pem"), tKey2)
	for _, f := range []string{"privkey", "fullchain"} {
		link := filepath.Join(live, f+".pem")
		require.NoError(t, os.Remove(link))
		symlink("../../archive/test.acme.com/"+f+"2.pem", link)
		time.Sleep(100 * time.Millisecond) // past the debounce: a reload sees the pair half renewed
	}
	renewed("test.acme.com", tCert2)

	// The Secret updated: kubelet's atomic writer.
	uCert2, uKey2 := issue("uat.acme.com")
	write(filepath.Join(secret, "..2026_12_07_11_00_00.2", "tls.crt"), uCert2)
	write(filepath.Join(secret, "..2026_12_07_11_00_00.2", "tls.key"), uKey2)
	symlink("..2026_12_07_11_00_00.2", filepath.Join(secret, "..data_tmp"))
	require.NoError(t, os.Rename(filepath.Join(secret, "..data_tmp"), filepath.Join(secret, "..data")))
	require.NoError(t, os.RemoveAll(filepath.Join(secret, "..2026_12_07_10_00_00.1")))
	renewed("uat.acme.com", uCert2)

	// prod: the client CA bundle names only the example's CA, so alice
	// is refused; appended to in place, it lets her in.
	require.Equal(t, "", servedAndRead(t, p.https, "prod.acme.com", roots, alice), "alice's CA is not in clients.pem yet")
	bundle := filepath.Join(plain, "clients.pem")
	ino := inode(t, bundle)
	f, err := os.OpenFile(bundle, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(caB)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, ino, inode(t, bundle))
	assert.Eventually(t, func() bool {
		return servedAndRead(t, p.https, "prod.acme.com", roots, alice) == pemSerial(t, pCert)
	}, 10*time.Second, 20*time.Millisecond, "alice, of the CA appended to client_ca_file, is let in")

	// cp over the files: the same inodes and sizes, their mtimes put
	// back.
	var pCert2, pKey2 []byte
	for range 50 {
		if pCert2, pKey2 = issue("prod.acme.com"); len(pCert2) == len(pCert) && len(pKey2) == len(pKey) {
			break
		}
	}
	require.Len(t, pCert2, len(pCert), "a certificate of the same size")
	require.Len(t, pKey2, len(pKey))
	for _, w := range []struct {
		path string
		data []byte
	}{{filepath.Join(plain, "prod.pem"), pCert2}, {filepath.Join(plain, "prod.key"), pKey2}} {
		fi, err := os.Stat(w.path)
		require.NoError(t, err)
		ino := inode(t, w.path)
		require.NoError(t, os.WriteFile(w.path, w.data, 0o600))
		require.NoError(t, os.Chtimes(w.path, fi.ModTime(), fi.ModTime()))
		require.Equal(t, ino, inode(t, w.path), "rewritten in place")
		time.Sleep(100 * time.Millisecond)
	}
	renewed("prod.acme.com", pCert2)

	// mv over them: new inodes.
	pCert3, pKey3 := issue("prod.acme.com")
	for _, w := range []struct {
		path string
		data []byte
	}{{filepath.Join(plain, "prod.key"), pKey3}, {filepath.Join(plain, "prod.pem"), pCert3}} {
		write(w.path+".new", w.data)
		require.NoError(t, os.Rename(w.path+".new", w.path))
	}
	renewed("prod.acme.com", pCert3)
}

// servedAndRead makes a handshake for host with client certificate c and
// one request, and returns the serial of the certificate served, or ""
// when the handshake or the request failed (under TLS 1.3 a refused
// client certificate shows at the first read).
// pemSerial is the serial number of the first certificate in certPEM.
func pemSerial(t *testing.T, certPEM []byte) string {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c.SerialNumber.String()
}

func servedAndRead(t *testing.T, addr, host string, roots *x509.CertPool, c tls.Certificate) string {
	t.Helper()
	var serial string
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{ServerName: host, RootCAs: roots, Certificates: []tls.Certificate{c},
			VerifyConnection: func(cs tls.ConnectionState) error {
				serial = cs.PeerCertificates[0].SerialNumber.String()
				return nil
			}},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + host + "/")
	if err != nil {
		return ""
	}
	resp.Body.Close()
	return serial
}

// TestUpstreamTLSFilesRewrittenInPlaceReachNewHandshakes: an upstream's
// tls_ca_file appended to in place (`cat ca.pem >> bundle.pem`: the
// same inode) and its tls_cert_file and tls_key_file rewritten in place
// (`cp`, the mtimes put back) are read by the reload the watcher starts,
// and the next handshake to the node trusts the new CA and shows the new
// client certificate.
func TestUpstreamTLSFilesRewrittenInPlaceReachNewHandshakes(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	ex.setServer(t, "reload_debounce", `"50ms"`+"\nrescan_interval = \"1h\"")

	nodeDir := t.TempDir()
	require.NoError(t, devcert.Generate(nodeDir, map[string][]string{"backend.internal": {"backend.internal"}}))
	nodeCert, err := tls.LoadX509KeyPair(filepath.Join(nodeDir, "backend.internal.pem"), filepath.Join(nodeDir, "backend.internal.key"))
	require.NoError(t, err)
	nodeCA, err := os.ReadFile(filepath.Join(nodeDir, devcert.CACertFile))
	require.NoError(t, err)
	seen := make(chan string, 100) // the client certificates' serials, a handshake each
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates:           []tls.Certificate{nodeCert},
		SessionTicketsDisabled: true, // each request's handshake shows the certificates
		ClientAuth:             tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			select {
			case seen <- cs.PeerCertificates[0].SerialNumber.String():
			default:
			}
			return nil
		},
	})
	require.NoError(t, err)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("private backend")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// clientCert issues a client certificate for edged.
	clientCert := func() (cert, key []byte) {
		dir := t.TempDir()
		require.NoError(t, devcert.ClientCert(dir, "edge"))
		cert, err := os.ReadFile(filepath.Join(dir, "edge-client.pem"))
		require.NoError(t, err)
		key, err = os.ReadFile(filepath.Join(dir, "edge-client.key"))
		require.NoError(t, err)
		return cert, key
	}
	tlsDir := filepath.Join(ex.root, "backend-tls")
	require.NoError(t, os.MkdirAll(tlsDir, 0o755))
	bundle, certFile, keyFile := filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "edge.pem"), filepath.Join(tlsDir, "edge.key")
	// The bundle holds another CA at first.
	otherDir := t.TempDir()
	require.NoError(t, devcert.Generate(otherDir, nil))
	otherCA, err := os.ReadFile(filepath.Join(otherDir, devcert.CACertFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bundle, otherCA, 0o644))
	c1, k1 := clientCert()
	require.NoError(t, os.WriteFile(certFile, c1, 0o644))
	require.NoError(t, os.WriteFile(keyFile, k1, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "test", "secure.toml"), []byte(fmt.Sprintf(`
[[upstream]]
name = "secure"
environment = "test"
nodes = [{ url = "https://%s" }]
tls_ca_file = %q
tls_cert_file = %q
tls_key_file = %q
tls_server_name = "backend.internal"
max_idle_per_node = 0
retries = 0

[[proxy]]
name = "secure"
environment = "test"
base_path = "/secure"
upstream = "secure"
`, ln.Addr(), bundle, certFile, keyFile)), 0o644))

	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, devcert.CACertFile))
	code, _ := getBody(t, c, "https://test.acme.com/secure/1")
	require.Equal(t, http.StatusBadGateway, code, "the node's CA is not in the bundle yet")

	ino := inode(t, bundle)
	f, err := os.OpenFile(bundle, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write(nodeCA)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, ino, inode(t, bundle))
	require.Eventually(t, func() bool {
		code, _ := getBody(t, c, "https://test.acme.com/secure/2")
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the CA appended to tls_ca_file is trusted")

	c2, k2 := clientCert()
	for _, w := range []struct {
		path string
		data []byte
	}{{certFile, c2}, {keyFile, k2}} {
		fi, err := os.Stat(w.path)
		require.NoError(t, err)
		ino := inode(t, w.path)
		require.NoError(t, os.WriteFile(w.path, w.data, 0o600))
		require.NoError(t, os.Chtimes(w.path, fi.ModTime(), fi.ModTime()))
		require.Equal(t, ino, inode(t, w.path), "rewritten in place")
	}
	want := pemSerial(t, c2)
	assert.Eventually(t, func() bool {
		for len(seen) > 0 {
			<-seen
		}
		if code, _ := getBody(t, c, "https://test.acme.com/secure/3"); code != http.StatusOK {
			return false
		}
		select {
		case s := <-seen:
			return s == want
		case <-time.After(time.Second):
			return false
		}
	}, 10*time.Second, 20*time.Millisecond, "the node is shown the client certificate written in place")
	assert.NotEqual(t, pemSerial(t, c1), want)
}
