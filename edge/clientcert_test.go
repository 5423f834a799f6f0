package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// clientCertCA is the virtual host key asking for the tests' client
// certificates (devcert's CA, which signs client-client.pem).
func clientCertCA(dir string) string {
	return `client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n"
}

// certClient is a client of one protocol ("http/1.1" or "h2") that
// dials the edge whatever the URL's host, showing cert when it has one,
// and counts its connections in dials.
func certClient(t *testing.T, te *testEdge, proto string, cert *tls.Certificate, dials *atomic64) *http.Client {
	cfg := &tls.Config{RootCAs: caPool(t), NextProtos: []string{proto}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	dial := func(ctx context.Context, sni string) (net.Conn, error) {
		dials.add()
		c := cfg.Clone()
		c.ServerName = sni
		d := tls.Dialer{Config: c}
		return d.DialContext(ctx, "tcp", te.addr)
	}
	var rt http.RoundTripper
	if proto == "h2" {
		tr := &http2.Transport{DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return dial(ctx, host)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: 4, DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return dial(ctx, host)
		}}
		t.Cleanup(tr.CloseIdleConnections)
		rt = tr
	}
	return &http.Client{Transport: rt, Timeout: 10 * time.Second}
}

// RFC 9440's Client-Cert and Client-Cert-Chain say, to a backend behind a
// TLS-terminating proxy, which certificate the client showed, and such a
// backend trusts them (section 3: the proxy MUST remove or overwrite a
// client's). edged passed a client's own on to the node, over either
// protocol, on any virtual host, with client_ca_file or without: a
// client with no certificate, or with its own, could name any identity
// to a backend that moved its mutual TLS to edged.
func TestClientsClientCertFieldsAreNotPassedOn(t *testing.T) {
	dir := testCertDir(t)
	seen := make(chan http.Header, 4)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml":   envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", b.addr),
		"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") + clientCertCA(dir) +
			proxyTOML("uat", "p", "/", b.addr),
	})
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	for _, host := range []string{"test.acme.com", "uat.acme.com"} {
		for _, proto := range []string{"http/1.1", "h2"} {
			t.Run(host+"/"+proto, func(t *testing.T) {
				var dials atomic64
				c := certClient(t, te, proto, &cert, &dials)
				req := mustReq(t, "GET", "https://"+host+"/x", nil)
				req.Header["Client-Cert"] = []string{":MIIBforged=:"}
				req.Header["Client-Cert-Chain"] = []string{":MIIBforged=:, :MIIBforged=:"}
				req.Header["client-cert"] = []string{":bG93ZXI=:"}
				req.Header["X-Custom"] = []string{"kept"}
				resp, body := do(t, c, req)
				require.Equal(t, http.StatusOK, resp.StatusCode, body)
				require.Equal(t, proto == "h2", resp.ProtoMajor == 2)
				h := <-seen
				assert.Empty(t, h.Values("Client-Cert"), "the client's Client-Cert reached the backend")
				assert.Empty(t, h.Values("Client-Cert-Chain"), "the client's Client-Cert-Chain reached the backend")
				for k := range h {
					assert.False(t, strings.EqualFold(k, "client-cert") || strings.EqualFold(k, "client-cert-chain"), "%s reached the backend", k)
				}
				assert.Equal(t, "kept", h.Get("X-Custom"))
			})
		}
	}
}

// certSeenBackend answers every request with what it got of RFC 9440's
// fields: X-Seen-Client-Cert and X-Seen-Client-Cert-Chain hold their
// lines joined with " | ", X-Seen-Lines how many lines there were.
func certSeenBackend(t *testing.T) *backend {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cc, chain := r.Header.Values("Client-Cert"), r.Header.Values("Client-Cert-Chain")
		w.Header().Set("X-Seen-Client-Cert", strings.Join(cc, " | "))
		w.Header().Set("X-Seen-Client-Cert-Chain", strings.Join(chain, " | "))
		w.Header().Set("X-Seen-Lines", strconv.Itoa(len(cc)+len(chain)))
	}))
}

// byteSequences parses an RFC 8941 list of byte sequences (":b64:, :b64:")
// into certificates, as a backend reading Client-Cert-Chain would.
func byteSequences(t *testing.T, v string) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		require.True(t, len(item) >= 2 && item[0] == ':' && item[len(item)-1] == ':', "%q is a byte sequence", item)
		der, err := base64.StdEncoding.DecodeString(item[1 : len(item)-1])
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	return certs
}

// clientChainCA makes a client CA (root), an intermediate it issued and a
// client certificate "alice" the intermediate issued; it writes the CA
// file client_ca_file names: the root beside devcert's CA (which signed
// client-client.pem directly). cert shows alice with her intermediate.
func clientChainCA(t *testing.T, dir string) (caFile string, root, inter *testCert, cert tls.Certificate) {
	root = issueTestCert(t, "client root", nil, inDays(30), caCert)
	inter = issueTestCert(t, "client intermediate", root, inDays(30), caCert)
	alice := issueTestCert(t, "alice", inter, inDays(30), clientCert)
	devCA, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	require.NoError(t, err)
	caFile = filepath.Join(t.TempDir(), "client-cas.pem")
	require.NoError(t, os.WriteFile(caFile, append(devCA, root.pem...), 0o644))
	cert = tls.Certificate{Certificate: [][]byte{alice.cert.Raw, inter.cert.Raw}, PrivateKey: alice.key, Leaf: alice.cert}
	return caFile, root, inter, cert
}

// forwardClientCertEnv is environment test, its group test-group
// (test.acme.com) asking for client certificates of caFile, with
// vhostKeys, and a proxy of / to node.
func forwardClientCertEnv(caFile, vhostKeys, node string) string {
	return envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
		`client_ca_file = "` + filepath.ToSlash(caFile) + `"` + "\n" + vhostKeys + "\n" +
		proxyTOML("test", "p", "/", node)
}

// forward_client_cert = true sends the node the certificate the client
// showed edged, as RFC 9440 has a TLS-terminating proxy do: Client-Cert
// is the leaf's DER as a byte sequence, Client-Cert-Chain the
// certificates of the verified chain between the leaf and the CA of
// client_ca_file (the CA left out), none for a leaf the CA signed
// directly. A client's own fields are replaced, not added to: one line
// each. Both protocols, over TLS with SNI.
func TestForwardClientCert(t *testing.T) {
	dir := testCertDir(t)
	caFile, root, inter, aliceCert := clientChainCA(t, dir)
	direct, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
	require.NoError(t, err)
	direct.Leaf, err = x509.ParseCertificate(direct.Certificate[0])
	require.NoError(t, err)
	b := certSeenBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    forwardClientCertEnv(caFile, "forward_client_cert = true", b.addr),
	})
	for _, proto := range []string{"http/1.1", "h2"} {
		for _, c := range []struct {
			name  string
			cert  tls.Certificate
			chain []*x509.Certificate // Client-Cert-Chain's, in order
		}{
			{"with an intermediate", aliceCert, []*x509.Certificate{inter.cert}},
			{"signed by the CA", direct, nil},
		} {
			t.Run(proto+"/"+c.name, func(t *testing.T) {
				var dials atomic64
				client := certClient(t, te, proto, &c.cert, &dials)
				for i := range 3 { // the connection's later requests use what its first encoded
					req := mustReq(t, "GET", "https://test.acme.com/x", nil)
					req.Header.Set("Client-Cert", ":Zm9yZ2Vk:")
					req.Header.Set("Client-Cert-Chain", ":Zm9yZ2Vk:")
					resp, body := do(t, client, req)
					require.Equal(t, http.StatusOK, resp.StatusCode, body)
					require.Equal(t, proto == "h2", resp.ProtoMajor == 2)
					assert.Equal(t, ":"+base64.StdEncoding.EncodeToString(c.cert.Leaf.Raw)+":", resp.Header.Get("X-Seen-Client-Cert"), "request %d", i)
					leaf := byteSequences(t, resp.Header.Get("X-Seen-Client-Cert"))
					require.Len(t, leaf, 1)
					assert.True(t, leaf[0].Equal(c.cert.Leaf))
					lines := "1"
					if c.chain == nil {
						assert.Empty(t, resp.Header.Get("X-Seen-Client-Cert-Chain"), "no certificate between the leaf and its CA")
					} else {
						lines = "2"
						chain := byteSequences(t, resp.Header.Get("X-Seen-Client-Cert-Chain"))
						require.Len(t, chain, len(c.chain), "the CA (%s) is left out", root.cert.Subject)
						for j := range chain {
							assert.True(t, chain[j].Equal(c.chain[j]), "chain[%d] is %s", j, chain[j].Subject)
						}
					}
					assert.Equal(t, lines, resp.Header.Get("X-Seen-Lines"), "the client's own fields are replaced")
				}
				assert.Equal(t, int64(1), dials.load())
			})
		}
	}
}

// A reload that turns forward_client_cert on or off holds for the
// connections made before it, from their next request, as client_ca_file
// does: the fields are encoded at a connection's first request that
// sends them, whenever that is.
func TestForwardClientCertFollowsReloads(t *testing.T) {
	dir := testCertDir(t)
	caFile, _, _, aliceCert := clientChainCA(t, dir)
	b := certSeenBackend(t)
	files := map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    forwardClientCertEnv(caFile, "", b.addr),
	}
	te := startEdge(t, files)
	want := ":" + base64.StdEncoding.EncodeToString(aliceCert.Leaf.Raw) + ":"
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			writeFiles(t, te.dir, files)
			te.reload()
			var dials atomic64
			client := certClient(t, te, proto, &aliceCert, &dials)
			get := func() string {
				resp, body := do(t, client, mustReq(t, "GET", "https://test.acme.com/x", nil))
				require.Equal(t, http.StatusOK, resp.StatusCode, body)
				return resp.Header.Get("X-Seen-Client-Cert")
			}
			assert.Empty(t, get(), "off")
			for _, on := range []bool{true, false, true} {
				writeFiles(t, te.dir, map[string]string{"env.toml": forwardClientCertEnv(caFile, "forward_client_cert = "+strconv.FormatBool(on), b.addr)})
				te.reload()
				if on {
					assert.Equal(t, want, get(), "turned on by a reload")
				} else {
					assert.Empty(t, get(), "turned off by a reload")
				}
			}
			assert.Equal(t, int64(1), dials.load(), "one connection, made before the reloads")
		})
	}
}

// A Client-Cert-Chain longer than a field line nodes take by default (8
// KiB: nginx's large_client_header_buffers, Apache's
// LimitRequestFieldSize) is not sent; Client-Cert still is. Over TLS: a
// client certificate under twenty intermediates.
func TestForwardClientCertLongChainIsLeftOut(t *testing.T) {
	testCertDir(t)
	root := issueTestCert(t, "long root", nil, inDays(30), caCert)
	certs := [][]byte{}
	parent := root
	var mids []*testCert
	for i := range 20 {
		parent = issueTestCert(t, "intermediate "+strconv.Itoa(i), parent, inDays(30), caCert)
		mids = append(mids, parent)
	}
	leaf := issueTestCert(t, "bob", parent, inDays(30), clientCert)
	certs = append(certs, leaf.cert.Raw)
	n := 0
	for i := len(mids) - 1; i >= 0; i-- {
		certs = append(certs, mids[i].cert.Raw)
		n += len(base64.StdEncoding.EncodeToString(mids[i].cert.Raw)) + 4
	}
	require.Greater(t, n, clientCertLineMax, "the chain's field is over the bound")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeBundle(t, caFile, root)
	b := certSeenBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    forwardClientCertEnv(caFile, "forward_client_cert = true", b.addr),
	})
	cert := tls.Certificate{Certificate: certs, PrivateKey: leaf.key}
	for _, proto := range []string{"http/1.1", "h2"} {
		var dials atomic64
		resp, body := do(t, certClient(t, te, proto, &cert, &dials), mustReq(t, "GET", "https://test.acme.com/x", nil))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, ":"+base64.StdEncoding.EncodeToString(leaf.cert.Raw)+":", resp.Header.Get("X-Seen-Client-Cert"), proto)
		assert.Empty(t, resp.Header.Get("X-Seen-Client-Cert-Chain"), proto)
		assert.Equal(t, "1", resp.Header.Get("X-Seen-Lines"), proto)
	}
}

// The bound is on the line as the node reads it, "Client-Cert-Chain: ",
// the value and CRLF: a chain whose line is 8191 bytes is sent (base64
// comes in fours: the longest line under 8 KiB), one of 8195 is not.
func TestClientCertChainLineBound(t *testing.T) {
	leaf, root := &x509.Certificate{Raw: []byte("leaf")}, &x509.Certificate{Raw: []byte("root")}
	for _, c := range []struct {
		der  int // the intermediate's DER size
		line int
		sent bool
	}{
		{6126, 8191, true},
		{6129, 8195, false},
	} {
		mid := &x509.Certificate{Raw: make([]byte, c.der)}
		f := newClientCertFields(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, mid, root}}})
		assert.Equal(t, ":"+base64.StdEncoding.EncodeToString(leaf.Raw)+":", f.cert)
		line := len("Client-Cert-Chain: ") + len(":"+base64.StdEncoding.EncodeToString(mid.Raw)+":") + len("\r\n")
		require.Equal(t, c.line, line)
		if c.sent {
			assert.Equal(t, ":"+base64.StdEncoding.EncodeToString(mid.Raw)+":", f.chain, "a line of %d bytes", line)
		} else {
			assert.Empty(t, f.chain, "a line of %d bytes", line)
		}
	}
	f := newClientCertFields(&tls.ConnectionState{})
	assert.Empty(t, f.cert, "no verified chain, no fields")
}
