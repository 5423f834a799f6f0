package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"time"

	"edged/internal/config"
)

// legacyCipherSuites are added to a virtual host's default suites when it
// opts into TLS 1.0 or 1.1 (allow_legacy_tls): those versions know no AEAD
// cipher, so without them no legacy client could agree on a suite. They
// keep ECDHE (forward secrecy); RSA key exchange and 3DES stay off.
var legacyCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// virtualHostTLS builds the tls.Config one virtual host's handshakes use:
// its certificate, versions, ciphers and, for mutual TLS, client CA.
func virtualHostTLS(vh *config.VirtualHost) (*tls.Config, error) {
	if len(vh.Certificate.Certificate) == 0 {
		return nil, fmt.Errorf("virtual host %q: no certificate loaded", vh.Name)
	}
	minV, maxV := vh.TLSVersions()
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	if maxV == 0 {
		maxV = tls.VersionTLS13
	}
	// Without cipher_suites: ECDHE with AEAD only (config's default).
	suites := vh.CipherSuiteIDs()
	switch {
	case len(vh.CipherSuites) > 0 && len(suites) != len(vh.CipherSuites):
		// Validation refuses these; never fall back to Go's defaults.
		return nil, fmt.Errorf("virtual host %q: cipher_suites: unknown or insecure suite in %q", vh.Name, vh.CipherSuites)
	case len(vh.CipherSuites) == 0 && minV < tls.VersionTLS12:
		suites = append(suites, legacyCipherSuites...)
	}
	c := &tls.Config{
		Certificates: []tls.Certificate{vh.Certificate},
		MinVersion:   minV,
		MaxVersion:   maxV,
		CipherSuites: suites,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if vh.ClientCAs != nil {
		c.ClientCAs = vh.ClientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// withoutH2 is c offering ALPN "http/1.1" only, for the handshakes of a
// virtual host that allows TLS 1.0 or 1.1 landing on one of those (nil
// when c allows neither): RFC 9113 section 9.2 wants TLS 1.2 or higher
// for HTTP/2, and crypto/tls selects "h2" whatever the version.
func withoutH2(c *tls.Config) *tls.Config {
	if c.MinVersion >= tls.VersionTLS12 {
		return nil
	}
	l := c.Clone()
	l.NextProtos = []string{"http/1.1"}
	return l
}

// tlsFor is the tls.Config for a ClientHello offering versions: g.tls,
// or g.tlsLegacy when the version crypto/tls will choose (the client's
// first that g.tls allows) is below TLS 1.2.
func (g *groupRuntime) tlsFor(versions []uint16) *tls.Config {
	if g.tlsLegacy == nil {
		return g.tls
	}
	for _, v := range versions {
		if v >= g.tls.MinVersion && v <= g.tls.MaxVersion {
			if v < tls.VersionTLS12 {
				return g.tlsLegacy
			}
			break
		}
	}
	return g.tls
}

// trustsClient reports whether one of a connection's verified client
// certificate chains ends in a CA of the group's client_ca_file as it is
// now, and holds only certificates valid at now (the request's start).
// The handshake verified them against the CAs of its own snapshot, at
// its own time: a connection outlives reloads, and a CA that a reload
// removed must not keep the connections it vouched for (nginx and HAProxy
// close those with the old workers; Envoy drains the old filter chain's);
// nor does a certificate that expired while its connection stayed open
// (a client of short-lived certificates keeping its connection busy)
// keep it in, as crypto/tls refuses to resume its session and nginx ends
// the connection after keepalive_time.
func (g *groupRuntime) trustsClient(chains [][]*x509.Certificate, now time.Time) bool {
	if g.tls == nil || g.tls.ClientCAs == nil {
		return false
	}
	for _, chain := range chains {
		if len(chain) == 0 || !validAt(chain, now) {
			continue
		}
		root := chain[len(chain)-1]
		// By content too: a resumed session's chains come from its
		// ticket, not from the pool.
		if t := g.trustedRoot.Load(); t != nil && (t == root || bytes.Equal(t.Raw, root.Raw)) {
			return true
		}
		// A certificate of the pool is found there by its hash, with no
		// signature checked (crypto/tls checks a resumed session's chains
		// so). The pool is the group's for its whole life: a root found
		// once stays found.
		opts := x509.VerifyOptions{Roots: g.tls.ClientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now}
		if _, err := root.Verify(opts); err == nil {
			g.trustedRoot.Store(root)
			return true
		}
	}
	return false
}

// validAt reports whether every certificate of chain is valid at now.
func validAt(chain []*x509.Certificate, now time.Time) bool {
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return false
		}
	}
	return true
}

// expiredAt is when a connection's verified chains stopped being valid,
// each having a certificate whose validity ended before now (the
// earliest such end); false when one of them has none (the chains were
// refused for their CA).
func expiredAt(chains [][]*x509.Certificate, now time.Time) (time.Time, bool) {
	var end time.Time
	for _, chain := range chains {
		var chainEnd time.Time
		for _, c := range chain {
			if now.After(c.NotAfter) && (chainEnd.IsZero() || c.NotAfter.Before(chainEnd)) {
				chainEnd = c.NotAfter
			}
		}
		if chainEnd.IsZero() {
			return time.Time{}, false
		}
		if end.IsZero() || chainEnd.Before(end) {
			end = chainEnd
		}
	}
	return end, !end.IsZero()
}

// allowsTLS reports whether the group's virtual host, as it is now,
// allows a connection's TLS version and cipher suite. The handshake
// checked them against the settings of its own snapshot: a connection
// outlives reloads, and a version or suite that a reload took off (TLS
// 1.0 allowed for a while, then withdrawn; a suite dropped from
// cipher_suites) must not go on serving the connections it let in, as
// trustsClient does for client_ca_file. TLS 1.3's suites are not
// configurable.
func (g *groupRuntime) allowsTLS(cs *tls.ConnectionState) bool {
	c := g.tls
	if c == nil {
		return true // no virtual host: nothing narrows what the handshake chose
	}
	if cs.Version < c.MinVersion || cs.Version > c.MaxVersion {
		return false
	}
	return cs.Version >= tls.VersionTLS13 || slices.Contains(c.CipherSuites, cs.CipherSuite)
}
