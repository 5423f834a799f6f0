package edge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
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
