package edge

import (
	"crypto/tls"
	"fmt"

	"edged/internal/config"
)

// tlsVersions maps config strings to crypto/tls versions.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// defaultCipherSuites are the TLS 1.2 suites used when a virtual host names
// none: ECDHE key exchange with AEAD ciphers only, no CBC. (TLS 1.3 suites
// are not configurable in Go and are all AEAD.)
var defaultCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// virtualHostTLS builds the tls.Config one virtual host's handshakes use:
// its certificate, versions, ciphers and, for mutual TLS, client CA.
func virtualHostTLS(vh *config.VirtualHost) (*tls.Config, error) {
	if len(vh.Certificate.Certificate) == 0 {
		return nil, fmt.Errorf("virtual host %q: no certificate loaded", vh.Name)
	}
	c := &tls.Config{
		Certificates: []tls.Certificate{vh.Certificate},
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS13,
		CipherSuites: defaultCipherSuites,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if v, ok := tlsVersions[vh.MinTLS]; ok {
		c.MinVersion = v
	}
	if v, ok := tlsVersions[vh.MaxTLS]; ok {
		c.MaxVersion = v
	}
	if len(vh.CipherSuites) > 0 {
		byName := map[string]uint16{}
		for _, s := range tls.CipherSuites() {
			byName[s.Name] = s.ID
		}
		c.CipherSuites = nil
		for _, name := range vh.CipherSuites {
			id, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("virtual host %q: cipher_suites: unknown or insecure suite %q", vh.Name, name)
			}
			c.CipherSuites = append(c.CipherSuites, id)
		}
	}
	if vh.ClientCAs != nil {
		c.ClientCAs = vh.ClientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}
