package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
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
	// cas is the number of distinct CA certificates in Pool, and names
	// what their subjects take in a CertificateRequest (each with its
	// 2-byte length), as crypto/tls lists them there.
	cas, names int
	// certs are the CA certificates of Pool, for their expiry warnings.
	certs []*x509.Certificate
	// NotAfter is the earliest NotAfter of the CAs: Go checks the
	// validity of every certificate of a chain, so the first CA to end
	// fails every certificate it issued from then on, whatever the others'.
	NotAfter time.Time
}

// ClientCert is an upstream's tls_cert_file and tls_key_file as one load
// read them.
type ClientCert struct {
	Cert   tls.Certificate
	SHA256 string // the two files' SHA-256, one after the other: a reload compares these
	// NotAfter is when nodes stop verifying the chain (ChainNotAfter),
	// found with its expiry warnings; zero from a loadClientCert alone.
	NotAfter time.Time
}

// ClientCertKey is the key of u's client certificate in
// Config.UpstreamCerts; "" without one.
func ClientCertKey(u *Upstream) string {
	if u.TLSCertFile == "" {
		return ""
	}
	return u.TLSCertFile + "\n" + u.TLSKeyFile
}

// checkUpstreamConn checks an upstream's connection settings (idle
// timeout, TLS to its nodes) on their own; the files its TLS names are
// read by checkUpstreamTLS, every load.
func (l *loader) checkUpstreamConn(u *Upstream, m *objMeta) {
	if u.IdleTimeout.Duration < minUpstreamIdle {
		l.errAt(m, "idle_timeout", "must be at least %s, not %q (max_idle_per_node = 0 keeps no connection at all)",
			minUpstreamIdle, u.IdleTimeout.Duration.String())
	}
	for _, p := range []*string{&u.TLSCAFile, &u.TLSCertFile, &u.TLSKeyFile} {
		if *p != "" {
			*p = resolvePath(m.baseDir, *p)
		}
	}
	switch {
	case u.TLSCertFile != "" && u.TLSKeyFile == "":
		l.errNear(m, "tls_key_file", "tls_cert_file", "required with tls_cert_file: the PEM file with the client certificate's private key")
	case u.TLSKeyFile != "" && u.TLSCertFile == "":
		l.errNear(m, "tls_cert_file", "tls_key_file", "required with tls_key_file: the PEM file with the client certificate, then its chain")
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
// lowercased; '_' allowed, see normalizeBackendHost) or an IP address,
// with no port and no wildcard.
func serverName(v string) (string, error) {
	if ip := net.ParseIP(v); ip != nil {
		return ip.String(), nil
	}
	n, err := normalizeBackendHost(v)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(n, "*.") {
		return "", fmt.Errorf("%q: a server name cannot be a wildcard; name the host the nodes' certificate is for", v)
	}
	return n, nil
}

// upstreamTLSKeys are the keys of an upstream that only https nodes use.
var upstreamTLSKeys = []string{"tls_ca_file", "tls_server_name", "tls_cert_file", "tls_key_file"}

// checkUpstreamTLS reads the CA bundles and client certificates the
// upstreams name, each once, into c.UpstreamCAs and c.UpstreamCerts, and
// warns of TLS settings no node uses. It runs at every load, unlike the
// upstreams' own checks (whose findings are kept with the object): files
// rewritten under an unchanged config file are read again, and the
// warnings are made again.
func (l *loader) checkUpstreamTLS() {
	read := readOnce(l.readFile)
	keysWarned := make(map[string]bool)
	// The bundles by file, so that the names of one file (links) share
	// one pool, as a virtual host's client_ca_file does (vhostFiles).
	type loadedCA struct {
		path string // the name it was loaded by, which err says
		b    *CABundle
		err  error
	}
	cas := make(map[fileKey]loadedCA)
	for i, u := range l.cfg.Upstreams {
		if u.TLSCAFile == "" && u.TLSServerName == "" && u.TLSCertFile == "" && u.TLSKeyFile == "" {
			continue
		}
		m := l.upstreamMeta[i]
		if !HasHTTPSNode(u) {
			for _, f := range upstreamTLSKeys {
				if m.isSet(f) {
					l.warnAt(m, f, "no node of this upstream is https: it is not used")
				}
			}
		}
		if l.readFile == nil {
			continue
		}
		if _, done := l.cfg.UpstreamCAs[u.TLSCAFile]; u.TLSCAFile != "" && !done {
			k := fileKeyOf(u.TLSCAFile)
			c, ok := cas[k]
			if !ok {
				c = loadedCA{path: u.TLSCAFile}
				c.b, c.err = loadCABundle(u.TLSCAFile, read)
				cas[k] = c
				// Go checks the validity of every certificate of a
				// node's chain, the CA's too: an expired CA fails every
				// handshake to the nodes it issued, each request a
				// 502. Said once per file, on the first upstream
				// naming it.
				if c.err == nil {
					for _, msg := range caValidity("CA", u.TLSCAFile, c.b.certs, l.now()) {
						l.warnAt(m, "tls_ca_file", "%s", msg)
					}
				}
			}
			if b, err := c.b, c.err; err != nil {
				l.errAt(m, "tls_ca_file", "%s", renamed(err.Error(), c.path, u.TLSCAFile))
			} else {
				if l.cfg.UpstreamCAs == nil {
					l.cfg.UpstreamCAs = make(map[string]*CABundle)
				}
				l.cfg.UpstreamCAs[u.TLSCAFile] = b
			}
		}
		key := ClientCertKey(u)
		if _, done := l.cfg.UpstreamCerts[key]; key == "" || u.TLSKeyFile == "" || done {
			continue
		}
		c, field, err := loadClientCert(u.TLSCertFile, u.TLSKeyFile, read, &l.pairs)
		if err != nil {
			l.errAt(m, field, "%v", err)
			continue
		}
		if l.cfg.UpstreamCerts == nil {
			l.cfg.UpstreamCerts = make(map[string]*ClientCert)
		}
		l.cfg.UpstreamCerts[key] = c
		// Expired, a node refuses every handshake: each request a 502.
		for _, msg := range validityWarnings(c.Cert.Leaf, l.now()) {
			l.warnAt(m, "tls_cert_file", "%s", msg)
		}
		issuers := chainIssuers(c.Cert.Certificate)
		c.NotAfter = chainEnd(c.Cert.Leaf, issuers)
		for _, msg := range chainValidity(u.TLSCertFile, "nodes", len(c.Cert.Certificate), issuers, c.Cert.Leaf, l.now()) {
			l.warnAt(m, "tls_cert_file", "%s", msg)
		}
		if msg := largeRSAKey(u.TLSCertFile, c.Cert.Leaf); msg != "" {
			l.warnAt(m, "tls_cert_file", "%s", msg)
		}
		if msg := wrongUsage(c.Cert.Leaf, x509.ExtKeyUsageClientAuth); msg != "" {
			l.warnAt(m, "tls_cert_file", "%s", msg)
		}
		if !keysWarned[u.TLSKeyFile] {
			keysWarned[u.TLSKeyFile] = true
			if msg := keyFileMode(u.TLSKeyFile); msg != "" {
				l.warnAt(m, "tls_key_file", "%s", msg)
			}
		}
	}
}

// HasHTTPSNode reports whether a node of u is https: the only nodes its
// tls_ keys are for.
func HasHTTPSNode(u *Upstream) bool {
	for _, n := range u.Nodes {
		if strings.HasPrefix(strings.ToLower(n.URL), "https:") {
			return true
		}
	}
	return false
}

// loadCABundle reads a PEM file of CA certificates: a virtual host's
// client_ca_file or an upstream's tls_ca_file.
func loadCABundle(path string, read func(string) ([]byte, error)) (*CABundle, error) {
	data, err := read(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %v", err)
	}
	if err := wholePEM(path, data, true); err != nil {
		return nil, err
	}
	// As x509.CertPool.AppendCertsFromPEM reads it, counting the names.
	b := &CABundle{Pool: x509.NewCertPool(), SHA256: SHA256Hex(data)}
	seen := make(map[string]bool)
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" || len(blk.Headers) != 0 {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		b.Pool.AddCert(c)
		b.certs = append(b.certs, c)
		if b.NotAfter.IsZero() || c.NotAfter.Before(b.NotAfter) {
			b.NotAfter = c.NotAfter
		}
		b.cas++
		b.names += 2 + len(c.RawSubject)
	}
	if b.cas == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)", path)
	}
	return b, nil
}

// maxCANames is what the CA names of a CertificateRequest may take: the
// list has a 2-byte length (RFC 8446 4.2.4, RFC 5246 7.4.4).
const maxCANames = 1<<16 - 1

// tooManyCANames refuses a client_ca_file whose CA names overflow a
// CertificateRequest: crypto/tls lists them all there, fails to write
// it, and every handshake of the virtual host fails.
func tooManyCANames(path string, b *CABundle) error {
	if b.names <= maxCANames {
		return nil
	}
	return fmt.Errorf("%s holds %d CAs whose names take %d bytes, more than the %d a CertificateRequest can carry: every handshake would fail; keep only the CAs that issue your clients' certificates",
		path, b.cas, b.names, maxCANames)
}

// loadClientCert loads a client certificate and its key as a virtual
// host's pair is loaded (the same checks and messages, which never show
// the key); field is the one at fault, as the upstream's key names it.
func loadClientCert(certFile, keyFile string, read func(string) ([]byte, error), pairs *keyPairs) (*ClientCert, string, error) {
	cert, field, err := loadKeyPair(certFile, keyFile, read, pairs)
	if err != nil {
		return nil, "tls_" + field, err
	}
	// As loadKeyPair just read them (read is a readOnce).
	certPEM, _ := read(certFile)
	keyPEM, _ := read(keyFile)
	return &ClientCert{Cert: cert, SHA256: SHA256Hex(certPEM) + SHA256Hex(keyPEM)}, "", nil
}

// SHA256Hex is the hex SHA-256 of b, as File.SHA256 and the history hold
// a file's content.
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// upstreamTLSChangedOnDisk reports whether a tls_ca_file, tls_cert_file or
// tls_key_file of c no longer reads as what c holds.
func (c *Config) upstreamTLSChangedOnDisk(read func(string) ([]byte, error)) bool {
	for path, had := range c.UpstreamCAs {
		now, err := loadCABundle(path, read)
		if err != nil || now.SHA256 != had.SHA256 {
			return true
		}
	}
	for key, had := range c.UpstreamCerts {
		certFile, keyFile, _ := strings.Cut(key, "\n")
		now, _, err := loadClientCert(certFile, keyFile, read, nil)
		if err != nil || now.SHA256 != had.SHA256 {
			return true
		}
	}
	return false
}
