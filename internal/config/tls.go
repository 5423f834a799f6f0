package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// tlsVersions are the values min_tls and max_tls accept.
var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// TLSVersions returns MinTLS and MaxTLS as crypto/tls constants (0 when a
// value is not one of "1.0".."1.3"; Load rejects those).
func (vh *VirtualHost) TLSVersions() (minVersion, maxVersion uint16) {
	return tlsVersions[vh.MinTLS], tlsVersions[vh.MaxTLS]
}

// CipherSuiteIDs returns the TLS 1.0–1.2 cipher suites of the virtual host.
// Without cipher_suites it is every ECDHE suite with an AEAD cipher (no CBC,
// no RSA key exchange). TLS 1.3 suites are not configurable in crypto/tls.
func (vh *VirtualHost) CipherSuiteIDs() []uint16 {
	if len(vh.CipherSuites) == 0 {
		return defaultCipherSuites()
	}
	ids := make([]uint16, 0, len(vh.CipherSuites))
	for _, name := range vh.CipherSuites {
		for _, cs := range tls.CipherSuites() {
			if cs.Name == name {
				ids = append(ids, cs.ID)
			}
		}
	}
	return ids
}

func defaultCipherSuites() []uint16 {
	var ids []uint16
	for _, cs := range tls.CipherSuites() {
		if strings.HasPrefix(cs.Name, "TLS_ECDHE_") &&
			(strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "CHACHA20")) {
			ids = append(ids, cs.ID)
		}
	}
	return ids
}

// readOnce wraps read so that one load reads each file once: virtual hosts
// that share a certificate (a wildcard for many groups) cost one read, and
// all of them see the same bytes. A file is its identity (fileKeyOf), so
// that the links to one file, under as many names as anyone may make, are
// read once too, and their bytes kept once. nil stays nil.
func readOnce(read func(string) ([]byte, error)) func(string) ([]byte, error) {
	if read == nil {
		return nil
	}
	type result struct {
		data []byte
		err  error
	}
	seen := make(map[fileKey]result)
	return func(path string) ([]byte, error) {
		k := fileKeyOf(path)
		if r, ok := seen[k]; ok {
			return r.data, r.err
		}
		data, err := read(path)
		seen[k] = result{data, err}
		return data, err
	}
}

// fileKey tells the files of one load apart: by device and inode where
// they are known, so that every link to a file is that file, else by
// path.
type fileKey struct {
	dev, ino uint64
	path     string
}

func fileKeyOf(path string) fileKey {
	if dev, ino, ok := fileIdentity(path); ok {
		return fileKey{dev: dev, ino: ino}
	}
	return fileKey{path: path}
}

// fieldProblem is a problem with one field of an object, before it is given
// a position.
type fieldProblem struct {
	field string
	msg   string
}

// checkTLSFilesSet checks that vh names its certificate and key files.
func checkTLSFilesSet(vh *VirtualHost) []fieldProblem {
	var probs []fieldProblem
	if vh.CertFile == "" {
		probs = append(probs, fieldProblem{"cert_file", "required: the PEM file with the certificate, then its chain"})
	}
	if vh.KeyFile == "" {
		probs = append(probs, fieldProblem{"key_file", "required: the PEM file with the private key"})
	}
	return probs
}

// vhostFiles loads the files virtual hosts name, each certificate and
// key pair and each client CA bundle once per load, however many virtual
// hosts name it: a wildcard or SAN certificate, or one CA bundle, serves
// any number of groups, and each virtual host parsed it again, checked
// each of its names again and kept a CA pool of its own (400 virtual
// hosts naming one 565 KB bundle of 1,000 CAs took edged check 1.7 GB,
// and the serving process as much for as long as it ran). The virtual
// hosts naming one file share what it gave. A file is its identity
// (fileKeyOf), not its name: 400 symbolic links to that bundle, which
// whoever may write to a home can make, took 2.1 GB as well.
type vhostFiles struct {
	read  func(string) ([]byte, error) // a readOnce
	pairs *keyPairs
	certs map[[2]fileKey]*vhostCert // by the files of cert_file and key_file
	cas   map[fileKey]*vhostCA      // by the file of client_ca_file
}

// vhostCert is a cert_file and key_file as one load found them.
type vhostCert struct {
	// certFile and keyFile are the names they were loaded by, which
	// err and the warnings of facts say.
	certFile, keyFile string
	cert              tls.Certificate
	field             string // at fault, when err is set
	err               error
	// facts are what certWarnings finds of the certificate alone, once
	// a virtual host's warnings are asked for.
	facts *certFacts
}

// vhostCA is a client_ca_file as one load found it.
type vhostCA struct {
	path  string // the name it was loaded by, which err says
	pool  *x509.CertPool
	certs []*x509.Certificate // the CAs of pool
	// notAfter is the earliest end of certs (CABundle.NotAfter).
	notAfter time.Time
	err      error
}

func newVHostFiles(read func(string) ([]byte, error), pairs *keyPairs) *vhostFiles {
	return &vhostFiles{read: read, pairs: pairs, certs: make(map[[2]fileKey]*vhostCert), cas: make(map[fileKey]*vhostCA)}
}

// pair loads certFile and keyFile (see loadKeyPair), once per pair of
// files.
func (f *vhostFiles) pair(certFile, keyFile string) *vhostCert {
	k := [2]fileKey{fileKeyOf(certFile), fileKeyOf(keyFile)}
	if c := f.certs[k]; c != nil {
		return c
	}
	c := &vhostCert{certFile: certFile, keyFile: keyFile}
	c.cert, c.field, c.err = loadKeyPair(certFile, keyFile, f.read, f.pairs)
	f.certs[k] = c
	return c
}

// clientCAs loads a client_ca_file, once per file.
func (f *vhostFiles) clientCAs(path string) *vhostCA {
	k := fileKeyOf(path)
	if c := f.cas[k]; c != nil {
		return c
	}
	c := &vhostCA{path: path}
	if b, err := loadCABundle(path, f.read); err != nil {
		c.err = err
	} else if err := tooManyCANames(path, b); err != nil {
		c.err = err
	} else {
		c.pool, c.certs, c.notAfter = b.Pool, b.certs, b.NotAfter
	}
	f.cas[k] = c
	return c
}

// renamed is msg, said of a file by one name, as it is said of the same
// file by another: each old name replaced by its new one (oldNew holds
// pairs), the longest first, so that a name that begins another is not
// taken for it.
func renamed(msg string, oldNew ...string) string {
	type pair struct{ old, new string }
	var ps []pair
	for i := 0; i+1 < len(oldNew); i += 2 {
		if oldNew[i] != oldNew[i+1] && oldNew[i] != "" {
			ps = append(ps, pair{oldNew[i], oldNew[i+1]})
		}
	}
	if len(ps) == 0 {
		return msg
	}
	slices.SortFunc(ps, func(a, b pair) int { return len(b.old) - len(a.old) })
	var args []string
	for _, p := range ps {
		args = append(args, p.old, p.new)
	}
	return strings.NewReplacer(args...).Replace(msg)
}

// loadTLS reads the certificate, key and client CA of vh, through files.
// vh is changed only when everything loads, so a failed reload keeps the
// material in use.
func loadTLS(vh *VirtualHost, files *vhostFiles) []fieldProblem {
	probs := checkTLSFilesSet(vh)
	var cert tls.Certificate
	if len(probs) == 0 {
		c := files.pair(vh.CertFile, vh.KeyFile)
		if c.err != nil {
			probs = append(probs, fieldProblem{c.field, renamed(c.err.Error(), c.certFile, vh.CertFile, c.keyFile, vh.KeyFile)})
		}
		cert = c.cert
	}
	var pool *x509.CertPool
	var caEnd time.Time
	if vh.ClientCAFile != "" {
		c := files.clientCAs(vh.ClientCAFile)
		if c.err != nil {
			probs = append(probs, fieldProblem{"client_ca_file", renamed(c.err.Error(), c.path, vh.ClientCAFile)})
		}
		pool, caEnd = c.pool, c.notAfter
	}
	if len(probs) > 0 {
		return probs
	}
	vh.Certificate = cert
	vh.ClientCAs, vh.ClientCANotAfter = pool, caEnd
	return nil
}

// TLSChangedOnDisk reports whether the certificate, key or client CA
// files of c's virtual hosts, or its upstreams' CA bundles and client
// certificates, no longer load, as a load reads them, into the material c holds: a chain renewed, a key that no longer matches it
// (renewed by halves), another CA set, or a file that cannot be read. A
// key that still pairs with the same chain is the same key.
func (c *Config) TLSChangedOnDisk() bool {
	read := readOnce(readTLSFile)
	files := newVHostFiles(read, nil)
	for _, vh := range c.VirtualHosts {
		now := *vh
		if len(loadTLS(&now, files)) > 0 ||
			!slices.EqualFunc(now.Certificate.Certificate, vh.Certificate.Certificate, bytes.Equal) ||
			!now.ClientCAs.Equal(vh.ClientCAs) {
			return true
		}
	}
	return c.upstreamTLSChangedOnDisk(read)
}

// loadKeyPair loads a certificate chain and its key. Its messages name the
// files and what is wrong, never the content of the key; field is the one
// at fault (key_file when the key cannot be read or holds no usable key,
// else cert_file).
// pairs, when not nil, remembers parsed pairs by content.
func loadKeyPair(certFile, keyFile string, read func(string) ([]byte, error), pairs *keyPairs) (cert tls.Certificate, field string, err error) {
	certPEM, err := read(certFile)
	if err != nil {
		return tls.Certificate{}, "cert_file", fmt.Errorf("cannot read the certificate: %v", err)
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return tls.Certificate{}, "key_file", fmt.Errorf("cannot read the key: %v", err)
	}
	cert, err = parseKeyPair(certFile, keyFile, certPEM, keyPEM, pairs)
	var kp *keyFileProblem
	if errors.As(err, &kp) {
		return cert, "key_file", err
	}
	return cert, "cert_file", err
}

// keyFileProblem is a key_file that holds no key crypto/tls can use.
type keyFileProblem struct{ msg string }

func (e *keyFileProblem) Error() string { return e.msg }

// keyProblem says why keyPEM, which did not load with its chain, holds no
// usable private key; nil when it holds one (then the pair does not
// match, or the chain is at fault). crypto/tls says only "failed to parse
// private key", also of an encrypted key: edged reads no passphrases
// (nor do Envoy and Traefik), and the operator is told so.
func keyProblem(keyFile string, keyPEM []byte) error {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return &keyFileProblem{fmt.Sprintf("%s holds no PEM private key (expected a -----BEGIN PRIVATE KEY----- block)", keyFile)}
		}
		if b.Type != "PRIVATE KEY" && !strings.HasSuffix(b.Type, " PRIVATE KEY") {
			continue // as crypto/tls does
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return &keyFileProblem{fmt.Sprintf("private key %s is encrypted (passphrase-protected), and edged reads no passphrases: "+
				"write it unencrypted, readable by edged only: openssl pkey -in %s -out KEY.new, then chmod 600 KEY.new and move it over %s", keyFile, keyFile, keyFile)}
		}
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return nil
		}
		return &keyFileProblem{fmt.Sprintf("the private key in %s does not parse (PKCS#8, PKCS#1 or SEC 1 expected)", keyFile)}
	}
}

// parseKeyPair is loadKeyPair after the reads.
func parseKeyPair(certFile, keyFile string, certPEM, keyPEM []byte, pairs *keyPairs) (tls.Certificate, error) {
	if err := wholePEM(certFile, certPEM, false); err != nil {
		return tls.Certificate{}, err
	}
	key := pairKey{sha256.Sum256(certPEM), sha256.Sum256(keyPEM)}
	if cert, ok := pairs.get(key); ok {
		return cert, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if bytes.Contains(certPEM, []byte("-----BEGIN CERTIFICATE-----")) {
			// The chain has a certificate: say what is wrong with the key
			// when it is the key. (Without one, crypto/tls' message says
			// whether the two files were switched.)
			if kerr := keyProblem(keyFile, keyPEM); kerr != nil {
				return tls.Certificate{}, kerr
			}
		}
		if i, n := leafPosition(certPEM, keyPEM); i > 0 {
			return tls.Certificate{}, fmt.Errorf("certificate chain is out of order: the first certificate must be the leaf that matches key_file; in %s it is certificate %d of %d (put the leaf first, then the intermediates)", certFile, i+1, n)
		}
		// crypto/tls' messages name PEM block types and what does not
		// match; they do not echo key material.
		return tls.Certificate{}, fmt.Errorf("certificate %s and key %s do not load as a pair: %v", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("certificate %s: %v", certFile, err)
		}
		cert.Leaf = leaf
	}
	if err := signableKey(certFile, keyFile, cert.Leaf); err != nil {
		return tls.Certificate{}, err
	}
	pairs.put(key, cert)
	return cert, nil
}

// signableKey refuses a key that crypto/tls parses and pairs but never
// signs a handshake with: an RSA key under 1024 bits (crypto/rsa's
// minimum) or an ECDSA key on a curve TLS has no signature scheme for
// (P-224). Loaded, every handshake of its virtual host (or to its nodes)
// would fail while edged check passed.
func signableKey(certFile, keyFile string, leaf *x509.Certificate) error {
	const fix = "issue a new certificate and key (RSA of 2048 bits or more, or ECDSA on P-256 or P-384)"
	switch pub := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := pub.N.BitLen(); n < 1024 {
			return fmt.Errorf("certificate %s and key %s: RSA key of %d bits; crypto/tls signs with none under 1024 bits, so every handshake would fail: %s", certFile, keyFile, n, fix)
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("certificate %s and key %s: ECDSA key on curve %s, which TLS has no signature scheme for, so every handshake would fail: %s", certFile, keyFile, pub.Curve.Params().Name, fix)
		}
	}
	return nil
}

// wholePEM checks that every PEM block that begins in data decodes, and
// with certs that every CERTIFICATE block parses. crypto/tls and
// x509.CertPool skip a block they cannot decode or parse and keep the
// others: a file cut short (written in place and read half way) would
// load as a chain without its intermediate, or a CA set without its last
// CAs, where it should fail and leave the last good material serving.
// Text outside blocks (openssl's "subject=" lines) is allowed, as
// OpenSSL allows it.
func wholePEM(path string, data []byte, certs bool) error {
	begins := bytes.Count(data, []byte("\n-----BEGIN "))
	if bytes.HasPrefix(data, []byte("-----BEGIN ")) {
		begins++
	}
	n := 0
	for rest := data; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if certs && b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return fmt.Errorf("%s: PEM block %d is not a certificate that parses: %v", path, n+1, err)
			}
		}
	}
	if n < begins {
		return fmt.Errorf("%s: %d of its %d PEM blocks do not decode (cut short, bad base64, or no -----END line): the file may be half written", path, begins-n, begins)
	}
	return nil
}

// leafPosition finds, in a chain that did not load with its key, the
// certificate that the key does match: its index and the number of
// certificates, or -1 when none does (a wrong key, not a wrong order).
// Only called on a failed load: it parses the key once per certificate
// tried, and tries no more than the first maxChainTried (a real chain is
// a leaf and a few intermediates; a file of thousands is not one).
func leafPosition(certPEM, keyPEM []byte) (int, int) {
	var blocks []*pem.Block
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			blocks = append(blocks, b)
		}
	}
	for i, b := range blocks[:min(len(blocks), maxChainTried)] {
		if _, err := tls.X509KeyPair(pem.EncodeToMemory(b), keyPEM); err == nil {
			return i, len(blocks)
		}
	}
	return -1, len(blocks)
}

const maxChainTried = 8

// keyPairs are the certificate/key pairs one load parsed, and those of the
// load before it. Many virtual hosts often share one wildcard certificate,
// and a reload seldom changes one: parsing (the key above all) is what
// costs. A tls.Certificate is only read once loaded, so sharing it is safe.
type keyPairs struct {
	prev, cur map[pairKey]tls.Certificate
}

type pairKey [2][32]byte // SHA-256 of the certificate and of the key PEM

func (p *keyPairs) get(k pairKey) (tls.Certificate, bool) {
	if p == nil {
		return tls.Certificate{}, false
	}
	c, ok := p.cur[k]
	if !ok {
		c, ok = p.prev[k]
		if ok {
			p.put(k, c)
		}
	}
	return c, ok
}

func (p *keyPairs) put(k pairKey, c tls.Certificate) {
	if p == nil {
		return
	}
	if p.cur == nil {
		p.cur = make(map[pairKey]tls.Certificate)
	}
	p.cur[k] = c
}

// keyFileMode warns, as ssh does, about a private key that every user of
// the machine may read; "" when it is private enough or cannot be stat'ed
// (reading it already worked or failed).
func keyFileMode(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return ""
	}
	return fmt.Sprintf("private key %s is readable by every user (mode %04o); run: chmod o-r %s", path, fi.Mode().Perm(), path)
}

// certWarnings lists what is worth knowing about a loaded certificate: a
// hostname of its group it does not cover, an expiry within
// CertExpiryWarning.
func certWarnings(vh *VirtualHost, hostnames []string, now time.Time) []fieldProblem {
	f := newCertFacts(vh, now)
	if f == nil {
		return nil
	}
	return f.warnings(vh.Name, hostnames)
}

// certFacts is what certWarnings finds of a certificate alone, which
// every virtual host naming it shares: its names indexed, and the
// warnings that do not depend on a group's hostnames.
type certFacts struct {
	cov *coverage
	// names are the first names of the certificate as the warning of a
	// hostname it does not cover lists them.
	names string
	warns []fieldProblem
}

// newCertFacts finds the facts of vh's certificate at now; nil when it
// has none loaded.
func newCertFacts(vh *VirtualHost, now time.Time) *certFacts {
	leaf := vh.Certificate.Leaf
	if leaf == nil {
		return nil
	}
	f := &certFacts{cov: newCoverage(leaf)}
	var names []string
	for _, n := range leaf.DNSNames[:min(len(leaf.DNSNames), listMost)] {
		names = append(names, shortName(n))
	}
	f.names = listShown(names, len(leaf.DNSNames))
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		f.names = shortName(leaf.Subject.CommonName) + " (common name only; clients ignore it)"
	}
	for _, msg := range validityWarnings(leaf, now) {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	for _, msg := range chainValidity(vh.CertFile, "clients", len(vh.Certificate.Certificate), chainIssuers(vh.Certificate.Certificate), leaf, now) {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	if msg := largeRSAKey(vh.CertFile, leaf); msg != "" {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	if msg := chainTooLarge(vh.Certificate.Certificate); msg != "" {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	if msg := wrongUsage(leaf, x509.ExtKeyUsageServerAuth); msg != "" {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	if msg := strayIntermediate(vh.CertFile, vh.Certificate.Certificate, leaf); msg != "" {
		f.warns = append(f.warns, fieldProblem{"cert_file", msg})
	}
	return f
}

// warnings are the warnings of the certificate for the env group named
// group, of these hostnames.
func (f *certFacts) warnings(group string, hostnames []string) []fieldProblem {
	var probs []fieldProblem
	var uncovered []string
	for _, h := range hostnames {
		if !f.cov.covers(h) {
			uncovered = append(uncovered, h)
		}
	}
	if len(uncovered) > 0 {
		probs = append(probs, fieldProblem{"cert_file", fmt.Sprintf(
			"certificate does not cover %s of env_group %q (it covers: %s); clients will reject the handshake",
			listSome(uncovered), group, f.names)})
	}
	return append(probs, f.warns...)
}

// certWarnings is the package's certWarnings for a virtual host whose
// certificate loaded through files: the facts of the certificate are
// found once, for all the virtual hosts naming it.
func (files *vhostFiles) certWarnings(vh *VirtualHost, hostnames []string, now time.Time) []fieldProblem {
	c := files.certs[[2]fileKey{fileKeyOf(vh.CertFile), fileKeyOf(vh.KeyFile)}]
	if c == nil {
		return certWarnings(vh, hostnames, now)
	}
	if c.facts == nil {
		if c.facts = newCertFacts(vh, now); c.facts == nil {
			return nil
		}
	}
	probs := c.facts.warnings(vh.Name, hostnames)
	if c.certFile != vh.CertFile {
		// facts were found for the same file by another name.
		for i := range probs {
			probs[i].msg = renamed(probs[i].msg, c.certFile, vh.CertFile)
		}
	}
	return probs
}

// strayIntermediate finds, among the first maxChainTried certificates of
// a chain, one after the leaf that does not parse (crypto/tls parses the
// leaf only), or that issued neither the leaf nor a certificate on its
// way to a root: the old intermediate kept after a renewal under a new
// one. Clients that do not fetch a missing intermediate themselves (curl,
// Go, Java) cannot verify such a leaf; browsers often can, which hides
// it. Issuers are told by name, as clients build the path: the order of
// the certificates after the leaf does not matter to them. "" when each
// is on the leaf's path.
func strayIntermediate(certFile string, chain [][]byte, leaf *x509.Certificate) string {
	n := len(chain)
	certs := []*x509.Certificate{leaf}
	for i, der := range chain[1:min(n, maxChainTried)] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Sprintf("certificate %d of %d of the chain in %s does not parse (%v): clients refuse the chain", i+2, n, certFile, err)
		}
		certs = append(certs, c)
	}
	used := make([]bool, len(certs))
	used[0] = true
	// Every certificate of an issuer's name is on a path (a cross-signed
	// intermediate beside its other issue), and the walk goes on from
	// each of them.
	for path := []*x509.Certificate{leaf}; len(path) > 0; {
		cur := path[len(path)-1]
		path = path[:len(path)-1]
		for j, c := range certs {
			if !used[j] && bytes.Equal(cur.RawIssuer, c.RawSubject) {
				used[j] = true
				path = append(path, c)
			}
		}
	}
	for j, c := range certs {
		if !used[j] {
			return fmt.Sprintf("certificate %d of %d of the chain in %s (%q) issued neither the leaf nor a certificate on its way to a root: "+
				"an old intermediate? Clients that do not fetch intermediates themselves (curl, Go, Java) cannot verify the leaf without its issuer; "+
				"cert_file holds the leaf, then the intermediates that issued it", j+1, n, certFile, shortName(c.Subject.CommonName))
		}
	}
	return ""
}

// wrongUsage warns of a certificate whose extended key usage leaves out
// want (serverAuth for a virtual host, clientAuth for a client
// certificate): whoever verifies it refuses the handshake ("x509:
// certificate specifies an incompatible key usage"). Without the
// extension, or with anyExtendedKeyUsage, it is good for any use.
func wrongUsage(leaf *x509.Certificate, want x509.ExtKeyUsage) string {
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return ""
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == want || u == x509.ExtKeyUsageAny {
			return ""
		}
	}
	if want == x509.ExtKeyUsageServerAuth {
		return "certificate's extended key usage has no serverAuth (TLS Web Server Authentication), so clients that verify it refuse the handshake; is it a client certificate? Issue one for servers"
	}
	return "certificate's extended key usage has no clientAuth (TLS Web Client Authentication), so nodes that verify client certificates refuse the handshake; issue one for clients"
}

// openSSLMaxCertList is OpenSSL's default limit on a peer's certificate
// message (SSL_MAX_CERT_LIST_DEFAULT): its clients refuse a larger one.
const openSSLMaxCertList = 100 << 10

// chainTooLarge warns of a chain whose certificate message OpenSSL's
// clients refuse ("excessive message size"): a cert_file with a CA bundle
// appended to the leaf, which Go clients and edged check took. The size
// is TLS 1.3's: each certificate with its 3-byte length and 2 bytes of
// empty extensions. "" when it fits.
func chainTooLarge(chain [][]byte) string {
	size := 4
	for _, der := range chain {
		size += 3 + len(der) + 2
	}
	if size <= openSSLMaxCertList {
		return ""
	}
	return fmt.Sprintf("a chain of %d certificates makes a certificate message of %d bytes, over the %d that OpenSSL's clients (curl, openssl s_client, Python) take: "+
		"they refuse every handshake (\"excessive message size\"); cert_file holds the leaf and its intermediates, not a CA bundle", len(chain), size, openSSLMaxCertList)
}

// largeRSAKey warns of an RSA key over 8192 bits: Go's crypto/tls (its
// clients and the tools built on them, its servers asking for client
// certificates) refuses a peer's key that large, and the signature of
// every handshake costs the cube of the key's size (1.8 s of CPU for
// 16384 bits, where 2048 take about 1 ms). Browsers take it. "" for any
// other key.
func largeRSAKey(certFile string, leaf *x509.Certificate) string {
	pub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() <= 8192 {
		return ""
	}
	n := pub.N.BitLen()
	return fmt.Sprintf("certificate %s has an RSA key of %d bits: Go's crypto/tls refuses a peer's RSA key larger than 8192 bits "+
		"(as a client, and as a server asking for client certificates), and every handshake's signature costs about %d times "+
		"a 2048-bit key's CPU; use 2048 or 3072 bits, or ECDSA P-256", certFile, n, (n/2048)*(n/2048)*(n/2048))
}

// validityWarnings says when leaf has expired, expires within
// CertExpiryWarning, or is not valid yet at now: a virtual host's
// certificate or an upstream's client certificate.
func validityWarnings(leaf *x509.Certificate, now time.Time) []string {
	var msgs []string
	switch left := leaf.NotAfter.Sub(now); {
	case left <= 0:
		msgs = append(msgs, fmt.Sprintf("certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	case left < CertExpiryWarning:
		msgs = append(msgs, fmt.Sprintf("certificate expires at %s, in %d days; renew it",
			leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24)))
	}
	if now.Before(leaf.NotBefore) {
		msgs = append(msgs, fmt.Sprintf("certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	return msgs
}

// chainValidity says of the certificates after the leaf in chain, read
// from file and verified by verifier ("clients", "nodes"),
// what validityWarnings says of the leaf, when one expires
// before it: clients verify the whole chain, and an intermediate that
// runs out first (one kept from an earlier issue, or a CA's whose end
// comes before its certificates') fails every handshake from then on,
// the leaf's months to go notwithstanding. One that expires with or
// after the leaf is left to the leaf's own warning. A self-issued
// certificate (a root sent along) is not looked at: clients end the
// chain at their own copy. Only the first maxChainTried certificates
// are, as strayIntermediate reads them (and says when one does not
// parse).
// issuers are chainIssuers of the chain, which holds n certificates.
func chainValidity(file, verifier string, n int, issuers []*x509.Certificate, leaf *x509.Certificate, now time.Time) []string {
	var msgs []string
	for i, c := range issuers {
		if c == nil {
			continue
		}
		var ws []string
		switch left := c.NotAfter.Sub(now); {
		case !c.NotAfter.Before(leaf.NotAfter):
		case left <= 0:
			ws = append(ws, fmt.Sprintf("expired at %s", c.NotAfter.UTC().Format(time.RFC3339)))
		case left < CertExpiryWarning:
			ws = append(ws, fmt.Sprintf("expires at %s, in %d days, before the leaf (%s)",
				c.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
		if now.Before(c.NotBefore) {
			ws = append(ws, fmt.Sprintf("is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339)))
		}
		name := c.Subject.CommonName
		if name == "" {
			name = c.Subject.String()
		}
		for _, w := range ws {
			msgs = append(msgs, fmt.Sprintf("certificate %d of %d of the chain in %s (%q) %s: %s verify the leaf through it and refuse the handshake while it is not valid; "+
				"put the intermediate your CA issues now after the leaf", i+2, n, file, shortName(name), w, verifier))
		}
	}
	return msgs
}

// chainIssuers parses the certificates after the leaf in chain that
// clients verify the leaf through, the first maxChainTried: index i is
// chain[i+1], nil for one that does not parse or is self-issued (a root
// sent along: clients end the chain at their own copy of it).
func chainIssuers(chain [][]byte) []*x509.Certificate {
	if len(chain) < 2 {
		return nil
	}
	var out []*x509.Certificate
	for _, der := range chain[1:min(len(chain), maxChainTried)] {
		c, err := x509.ParseCertificate(der)
		if err != nil || bytes.Equal(c.RawSubject, c.RawIssuer) {
			c = nil
		}
		out = append(out, c)
	}
	return out
}

// ChainNotAfter is when cert, a loaded chain, stops verifying for its
// clients: the earliest NotAfter of its leaf and of the certificates
// after it that chainValidity looks at. An intermediate that runs out
// before the leaf ends every handshake then. Zero without a leaf.
func ChainNotAfter(cert tls.Certificate) time.Time {
	if cert.Leaf == nil {
		return time.Time{}
	}
	return chainEnd(cert.Leaf, chainIssuers(cert.Certificate))
}

// chainEnd is ChainNotAfter of a chain whose leaf and chainIssuers are
// already parsed.
func chainEnd(leaf *x509.Certificate, issuers []*x509.Certificate) time.Time {
	end := leaf.NotAfter
	for _, c := range issuers {
		if c != nil && c.NotAfter.Before(end) {
			end = c.NotAfter
		}
	}
	return end
}

// caWarnings says of each CA of a virtual host's client_ca_file, named
// file, what validityWarnings says of a certificate: an expired CA fails
// the handshake of every client certificate it issued (and cuts their
// open connections at their next request), as an expired server
// certificate fails every client.
func (files *vhostFiles) caWarnings(file string, now time.Time) []string {
	c := files.cas[fileKeyOf(file)]
	if c == nil {
		return nil
	}
	return caValidity("client CA", file, c.certs, now)
}

// caValidity says of each of certs, the CAs of file, what
// validityWarnings says of a certificate, naming it as kind ("client
// CA"). The first listMost CAs with something to say are named, the
// others counted.
func caValidity(kind, file string, certs []*x509.Certificate, now time.Time) []string {
	var msgs []string
	more := 0
	for _, ca := range certs {
		ws := validityWarnings(ca, now)
		if len(ws) == 0 {
			continue
		}
		if len(msgs) >= listMost {
			more++
			continue
		}
		name := ca.Subject.CommonName
		if name == "" {
			name = ca.Subject.String()
		}
		for _, w := range ws {
			msgs = append(msgs, fmt.Sprintf("%s %q in %s: %s", kind, shortName(name), file, w))
		}
	}
	if more > 0 {
		msgs = append(msgs, fmt.Sprintf("%d more %ss in %s have expired, expire within %d days or are not valid yet", more, kind, file, int(CertExpiryWarning.Hours()/24)))
	}
	return msgs
}

// listSome joins the first 10 of names, and says how many more there
// are: a message lists what it is about, and a list as long as a file
// allows made one line of megabytes, logged at every load.
func listSome(names []string) string {
	return listShown(names[:min(len(names), listMost)], len(names))
}

// listShown is listSome of a list of total names whose first are shown,
// for a caller that makes only those it shows.
func listShown(shown []string, total int) string {
	if total <= len(shown) {
		return strings.Join(shown, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(shown, ", "), total-len(shown))
}

// listMost is how many names listSome shows.
const listMost = 10

// shortName is a certificate's name as a message shows it: x509 holds a
// name to no length (any IA5 string), and one as long as the file allows
// would make a line of that length, logged at every load. One longer than
// a DNS name may be (253 bytes) is cut, its length said.
func shortName(n string) string {
	const most, shown = 253, 64
	if len(n) <= most {
		return n
	}
	return fmt.Sprintf("%s... (%d bytes)", n[:shown], len(n))
}

// coverage answers x509.Certificate.VerifyHostname for many hostnames
// of one certificate. VerifyHostname compares the hostname with each name
// of the certificate in turn: asked for every hostname of a group, that
// is hostnames times names, and both lists are as long as a file allows
// (80,000 hostnames and a certificate of 30,000 names kept a load busy
// for more than 10 minutes). The names are put in sets once, so each
// hostname is one or two lookups.
type coverage struct {
	leaf *x509.Certificate
	// exact holds every DNS name lowercased: a hostname equal to one is
	// covered (VerifyHostname's exact match, which a wildcard hostname
	// can only have).
	exact map[string]bool
	// under holds, for each "*.rest" name, rest: a hostname of at least
	// two labels whose labels after the first are rest is covered.
	under map[string]bool
}

func newCoverage(leaf *x509.Certificate) *coverage {
	c := &coverage{leaf: leaf, exact: make(map[string]bool, len(leaf.DNSNames)), under: make(map[string]bool)}
	for _, n := range leaf.DNSNames {
		n = strings.ToLower(n)
		c.exact[n] = true
		if rest, ok := strings.CutPrefix(n, "*."); ok && rest != "" {
			c.under[rest] = true
		}
	}
	return c
}

// covers reports whether the certificate is valid for hostname h, a
// normalised hostname (lowercase, no trailing dot) or an IP address, as
// VerifyHostname would.
func (c *coverage) covers(h string) bool {
	if net.ParseIP(h) != nil {
		return c.leaf.VerifyHostname(h) == nil // its IP addresses only
	}
	h = strings.ToLower(h)
	if c.exact[h] {
		return true
	}
	// A wildcard name matches a hostname without '*' of the same number
	// of labels, every label but the first equal.
	if strings.Contains(h, "*") {
		return false
	}
	_, rest, ok := strings.Cut(h, ".")
	return ok && rest != "" && c.under[rest]
}

// checkTLSSettings checks versions and cipher suites of vh.
func checkTLSSettings(vh *VirtualHost) []fieldProblem {
	var probs []fieldProblem
	minV, okMin := tlsVersions[vh.MinTLS]
	maxV, okMax := tlsVersions[vh.MaxTLS]
	legacy := func(field, v string) {
		if (v == "1.0" || v == "1.1") && !vh.AllowLegacyTLS {
			probs = append(probs, fieldProblem{field, fmt.Sprintf(
				"TLS %s is obsolete (RFC 8996); set allow_legacy_tls = true if old clients really need it", v)})
		}
	}
	if !okMin {
		probs = append(probs, fieldProblem{"min_tls", fmt.Sprintf("%q is not a TLS version (use \"1.2\" or \"1.3\")", vh.MinTLS)})
	} else {
		legacy("min_tls", vh.MinTLS)
	}
	if !okMax {
		probs = append(probs, fieldProblem{"max_tls", fmt.Sprintf("%q is not a TLS version (use \"1.2\" or \"1.3\")", vh.MaxTLS)})
	} else {
		legacy("max_tls", vh.MaxTLS)
	}
	if okMin && okMax && minV > maxV {
		probs = append(probs, fieldProblem{"min_tls", fmt.Sprintf("min_tls %s is above max_tls %s", vh.MinTLS, vh.MaxTLS)})
	}
	if vh.ForwardClientCert && vh.ClientCAFile == "" {
		probs = append(probs, fieldProblem{"forward_client_cert",
			"forward_client_cert needs client_ca_file: without it no client certificate is asked for, so there is none to forward; set client_ca_file or remove forward_client_cert"})
	}
	if len(vh.CipherSuites) > 0 && okMin && minV >= tls.VersionTLS13 {
		probs = append(probs, fieldProblem{"cipher_suites",
			"cipher suites apply to TLS 1.2 and below only, and min_tls is 1.3; remove cipher_suites"})
		return probs
	}
	seen := make(map[string]bool)
	for i, name := range vh.CipherSuites {
		field := indexPath("cipher_suites", i)
		if seen[name] {
			probs = append(probs, fieldProblem{field, fmt.Sprintf("%q is listed twice", name)})
			continue
		}
		seen[name] = true
		if msg := checkCipherSuite(name, minV, maxV); msg != "" {
			probs = append(probs, fieldProblem{field, msg})
		}
	}
	return probs
}

func checkCipherSuite(name string, minV, maxV uint16) string {
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == name {
			return fmt.Sprintf("%q is insecure; use an ECDHE suite with AES-GCM or ChaCha20-Poly1305", name)
		}
	}
	for _, cs := range tls.CipherSuites() {
		if cs.Name != name {
			continue
		}
		usable := false
		for _, v := range cs.SupportedVersions {
			if v <= tls.VersionTLS12 && v >= minV && v <= maxV {
				usable = true
			}
		}
		if !usable {
			if len(cs.SupportedVersions) == 1 && cs.SupportedVersions[0] == tls.VersionTLS13 {
				return fmt.Sprintf("%q is a TLS 1.3 suite; TLS 1.3 suites are always on and not configurable", name)
			}
			return fmt.Sprintf("%q is not usable with TLS %s to %s", name, versionName(minV), versionName(maxV))
		}
		return ""
	}
	return fmt.Sprintf("unknown cipher suite %q (use the standard name, e.g. %q)", name,
		tls.CipherSuiteName(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
}

func versionName(v uint16) string {
	for name, x := range tlsVersions {
		if x == v {
			return name
		}
	}
	return "?"
}

// suiteMarkForKey is what the names of the TLS 1.2 suites a certificate's
// key can sign for hold ("_ECDSA_" for an ECDSA or Ed25519 key, "_RSA_"
// for an RSA one), and the key's name; "" for another key.
func suiteMarkForKey(leaf *x509.Certificate) (mark, keyName string) {
	switch leaf.PublicKeyAlgorithm {
	case x509.ECDSA, x509.Ed25519:
		return "_ECDSA_", leaf.PublicKeyAlgorithm.String()
	case x509.RSA:
		return "_RSA_", "RSA"
	}
	return "", ""
}

// suitesWithoutHTTP2 finds cipher_suites that leave HTTP/2 over TLS 1.2
// no suite to run on: RFC 9113 (9.2.2, Appendix A) forbids CBC suites
// under it, and browsers refuse such a connection, while edged offers h2
// to every client. Only the suites the certificate's key can sign for
// count. Go's net/http refuses to start with such a list; so does edged.
// "" when the list is empty (the defaults are all AEAD), TLS 1.2 is not
// allowed, or one usable suite is AEAD (GCM or ChaCha20-Poly1305).
func suitesWithoutHTTP2(vh *VirtualHost) string {
	minV, maxV := vh.TLSVersions()
	if len(vh.CipherSuites) == 0 || minV > tls.VersionTLS12 || maxV != 0 && maxV < tls.VersionTLS12 {
		return ""
	}
	want := "" // any suite, when the key is not known
	if leaf := vh.Certificate.Leaf; leaf != nil {
		want, _ = suiteMarkForKey(leaf)
	}
	for _, s := range vh.CipherSuites {
		if strings.Contains(s, want) && (strings.Contains(s, "_GCM_") || strings.Contains(s, "_CHACHA20_")) {
			return ""
		}
	}
	return "no suite here may carry HTTP/2 over TLS 1.2 (RFC 9113 9.2.2 forbids CBC ones; browsers then refuse the connection); add an ECDHE suite with AES-GCM or ChaCha20-Poly1305 for the certificate's key, or remove cipher_suites for the defaults"
}

// suitesForKey finds cipher_suites none of which the certificate's key
// can sign for (ECDHE_ECDSA suites need an ECDSA or Ed25519 key,
// ECDHE_RSA ones an RSA key): no handshake below TLS 1.3 can succeed.
// Without TLS 1.3 that is every handshake (fatal); with it, TLS 1.2
// clients only. "" when the list is empty (Go's defaults fit any key) or
// one suite fits.
func suitesForKey(vh *VirtualHost) (msg string, fatal bool) {
	leaf := vh.Certificate.Leaf
	if leaf == nil || len(vh.CipherSuites) == 0 {
		return "", false
	}
	want, keyName := suiteMarkForKey(leaf)
	if want == "" {
		return "", false
	}
	for _, s := range vh.CipherSuites {
		if strings.Contains(s, want) {
			return "", false
		}
	}
	if vh.MaxTLS != "1.3" {
		return fmt.Sprintf("none of them can be used with the certificate's %s key, so every handshake fails; add suites with %q in their name, or remove cipher_suites for the defaults", keyName, want), true
	}
	return fmt.Sprintf("none of them can be used with the certificate's %s key: TLS 1.2 clients cannot connect (TLS 1.3 ones can); add suites with %q in their name, or remove cipher_suites for the defaults", keyName, want), false
}
