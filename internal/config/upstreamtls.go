package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"
)

// minUpstreamIdle is the shortest idle_timeout: below it a connection is
// closed between the requests of a steady client, which max_idle_per_node
// = 0 says plainly.
const minUpstreamIdle = 100 * time.Millisecond

// CABundle is a tls_ca_file as one load read it.
type CABundle struct {
	Pool   *x509.CertPool
	SHA256 string // of the file's bytes: a reload compares these
}

// checkUpstreamConn checks an upstream's connection settings (idle
// timeout, TLS to its nodes) on their own; the bundle tls_ca_file names is
// read by loadUpstreamCAs, every load.
func (l *loader) checkUpstreamConn(u *Upstream, m *objMeta) {
	if u.IdleTimeout.Duration < minUpstreamIdle {
		l.errAt(m, "idle_timeout", "must be at least %s, not %q (max_idle_per_node = 0 keeps no connection at all)",
			minUpstreamIdle, u.IdleTimeout.Duration.String())
	}
	if u.TLSCAFile != "" {
		u.TLSCAFile = resolvePath(m.baseDir, u.TLSCAFile)
	}
	if u.TLSServerName != "" {
		if name, err := serverName(u.TLSServerName); err != nil {
			l.errAt(m, "tls_server_name", "%v", err)
		} else {
			u.TLSServerName = name
		}
	}
}

// serverName checks a tls_server_name: a hostname (IDNs as punycode,
// lowercased) or an IP address, with no port and no wildcard.
func serverName(v string) (string, error) {
	if ip := net.ParseIP(v); ip != nil {
		return ip.String(), nil
	}
	n, err := NormalizeHostname(v)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(n, "*.") {
		return "", fmt.Errorf("%q: a server name cannot be a wildcard; name the host the nodes' certificate is for", v)
	}
	return n, nil
}

// checkUpstreamTLS reads the tls_ca_file of every upstream, each file
// once, into c.UpstreamCAs, and warns of TLS settings no node uses. It runs
// at every load, unlike the upstreams' own checks (whose findings are kept
// with the object): a bundle rewritten under an unchanged file is read
// again, and the warnings are made again.
func (l *loader) checkUpstreamTLS() {
	read := readOnce(l.readFile)
	for i, u := range l.cfg.Upstreams {
		if u.TLSCAFile == "" && u.TLSServerName == "" {
			continue
		}
		m := l.upstreamMeta[i]
		if !hasHTTPSNode(u) {
			for _, f := range []string{"tls_ca_file", "tls_server_name"} {
				if m.isSet(f) {
					l.warnAt(m, f, "no node of this upstream is https: it is not used")
				}
			}
		}
		if u.TLSCAFile == "" || l.readFile == nil {
			continue
		}
		if _, done := l.cfg.UpstreamCAs[u.TLSCAFile]; done {
			continue
		}
		b, err := loadCABundle(u.TLSCAFile, read)
		if err != nil {
			l.errAt(m, "tls_ca_file", "%v", err)
			continue
		}
		if l.cfg.UpstreamCAs == nil {
			l.cfg.UpstreamCAs = make(map[string]*CABundle)
		}
		l.cfg.UpstreamCAs[u.TLSCAFile] = b
	}
}

func hasHTTPSNode(u *Upstream) bool {
	for _, n := range u.Nodes {
		if strings.HasPrefix(strings.ToLower(n.URL), "https:") {
			return true
		}
	}
	return false
}

// loadCABundle reads a PEM file of CA certificates.
func loadCABundle(path string, read func(string) ([]byte, error)) (*CABundle, error) {
	data, err := read(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	if err := wholePEM(path, data, true); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)", path)
	}
	sum := sha256.Sum256(data)
	return &CABundle{Pool: pool, SHA256: hex.EncodeToString(sum[:])}, nil
}

// upstreamCAsChangedOnDisk reports whether a tls_ca_file of c no longer
// reads as the bundle c holds.
func (c *Config) upstreamCAsChangedOnDisk(read func(string) ([]byte, error)) bool {
	for path, had := range c.UpstreamCAs {
		now, err := loadCABundle(path, read)
		if err != nil || now.SHA256 != had.SHA256 {
			return true
		}
	}
	return false
}
