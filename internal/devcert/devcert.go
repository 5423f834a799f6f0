package devcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 90 * 24 * time.Hour
	// renewBefore is how close to its expiry a certificate is reissued;
	// edged warns at 14 days, so a re-run well before that stays quiet.
	renewBefore = 30 * 24 * time.Hour
	// backdate tolerates clocks that run a little behind ours.
	backdate = time.Hour
)

// File names of the CA inside the directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// Report, when not nil, is told about every certificate Generate or
// ClientCert looked at: the path of its PEM file, and "created", "kept" or
// "renewed: <why>".
type Report func(path, action string)

// Generate writes dir/ca.pem and dir/ca.key (a CA, kept if already there and
// valid), and for each name in hosts dir/<name>.pem (the server certificate
// for those SANs, then the CA) and dir/<name>.key. A SAN that parses as an
// IP address becomes an IP SAN, every other one a DNS name ("*.x" allowed).
// Every name and SAN is checked before anything is written.
func Generate(dir string, hosts map[string][]string) error {
	return GenerateReport(dir, hosts, nil)
}

// GenerateReport is Generate telling report what it did.
func GenerateReport(dir string, hosts map[string][]string, report Report) error {
	return (&issuer{dir: dir, now: time.Now, report: report}).generate(hosts)
}

// ClientCert writes dir/<name>-client.pem and dir/<name>-client.key: a
// certificate for clientAuth with CN name, signed by the CA of dir (made if
// missing), for mutual TLS against a virtual host whose client_ca_file is
// dir/ca.pem.
func ClientCert(dir, name string) error {
	return ClientCertReport(dir, name, nil)
}

// ClientCertReport is ClientCert telling report what it did.
func ClientCertReport(dir, name string, report Report) error {
	return (&issuer{dir: dir, now: time.Now, report: report}).client(name)
}

// issuer carries what one run needs; now is a field so tests can age
// certificates without sleeping.
type issuer struct {
	dir    string
	now    func() time.Time
	report Report
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// leafSpec is what a leaf certificate must be; a leaf on disk that differs
// from it is reissued.
type leafSpec struct {
	base  string // file name without .pem/.key
	cn    string
	dns   []string
	ips   []net.IP
	usage x509.ExtKeyUsage
}

func (is *issuer) generate(hosts map[string][]string) error {
	names := make([]string, 0, len(hosts))
	for name := range hosts {
		names = append(names, name)
	}
	slices.Sort(names)
	var specs []leafSpec
	var errs []error
	for _, name := range names {
		spec, err := serverSpec(name, hosts[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, spec)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ca, err := is.loadOrCreateCA()
	if err != nil {
		return err
	}
	for _, spec := range specs {
		if err := is.leaf(ca, spec); err != nil {
			return err
		}
	}
	return nil
}

func (is *issuer) client(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	ca, err := is.loadOrCreateCA()
	if err != nil {
		return err
	}
	return is.leaf(ca, leafSpec{base: name + "-client", cn: name, usage: x509.ExtKeyUsageClientAuth})
}

func serverSpec(name string, sans []string) (leafSpec, error) {
	if err := checkName(name); err != nil {
		return leafSpec{}, err
	}
	if len(sans) == 0 {
		return leafSpec{}, fmt.Errorf("devcert: %q: no SANs given (list the host names the certificate must cover)", name)
	}
	spec := leafSpec{base: name, cn: name, usage: x509.ExtKeyUsageServerAuth}
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			spec.ips = append(spec.ips, ip)
			continue
		}
		dns, err := checkDNSName(san)
		if err != nil {
			return leafSpec{}, fmt.Errorf("devcert: %q: SAN %q: %w", name, san, err)
		}
		spec.dns = append(spec.dns, dns)
	}
	return spec, nil
}

// checkName keeps file names inside dir and apart from the CA's files.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("devcert: empty certificate name")
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("devcert: certificate name %q starts with a dot", name)
	case strings.EqualFold(name, "ca"):
		return fmt.Errorf("devcert: certificate name %q is taken by the CA's files", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("devcert: certificate name %q: only letters, digits, '.', '-' and '_' make a safe file name", name)
		}
	}
	return nil
}

// checkDNSName accepts host names and one leading "*." wildcard, lowercased,
// without a trailing dot.
func checkDNSName(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	rest, wild := strings.CutPrefix(s, "*.")
	if rest == "" {
		return "", errors.New("empty host name")
	}
	for label := range strings.SplitSeq(rest, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("empty or over-long label")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c == '*' {
					return "", errors.New(`a wildcard is only allowed as the leading "*." label`)
				}
				return "", fmt.Errorf("character %q not allowed in a host name (write IDNs in punycode)", c)
			}
		}
	}
	if wild && !strings.Contains(rest, ".") {
		return "", errors.New(`wildcard over a top-level domain ("*.com") is not accepted by clients`)
	}
	return s, nil
}

func (is *issuer) say(path, action string) {
	if is.report != nil {
		is.report(path, action)
	}
}

// loadOrCreateCA keeps the CA on disk while it is usable, so clients that
// trust ca.pem keep working; otherwise it makes a new one, and every leaf
// is then reissued because its signature no longer checks.
func (is *issuer) loadOrCreateCA() (*authority, error) {
	if err := os.MkdirAll(is.dir, 0o755); err != nil {
		return nil, fmt.Errorf("devcert: %w", err)
	}
	certPath := filepath.Join(is.dir, CACertFile)
	keyPath := filepath.Join(is.dir, CAKeyFile)
	ca, why := is.loadCA(certPath, keyPath)
	if why == "" {
		is.say(certPath, "kept")
		return ca, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcert: CA key: %w", err)
	}
	host, _ := os.Hostname()
	now := is.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject: pkix.Name{
			CommonName:         "edged development CA",
			Organization:       []string{"edged development CA"},
			OrganizationalUnit: []string{"devcert on " + host},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs leaves only, never another CA
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devcert: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devcert: CA certificate: %w", err)
	}
	// Key first: a cert on disk whose key is missing is worse than the reverse.
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writeAtomic(certPath, encodeCerts(der), 0o644); err != nil {
		return nil, err
	}
	if why == "missing" {
		is.say(certPath, "created")
	} else {
		is.say(certPath, "renewed: "+why)
	}
	return &authority{cert: cert, key: key}, nil
}

// loadCA returns the CA on disk, or why it cannot be used ("" when it can).
func (is *issuer) loadCA(certPath, keyPath string) (*authority, string) {
	certs, err := readCerts(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "missing"
	}
	if err != nil {
		return nil, err.Error()
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err.Error()
	}
	cert := certs[0]
	switch {
	// Without a key usage extension (KeyUsage 0: OpenSSL's default
	// `req -x509` CA) a certificate is good for any use (RFC 5280
	// 4.2.1.3), certificate signing included.
	case !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, CACertFile + " is not a CA certificate"
	case !samePublicKey(cert.PublicKey, key):
		return nil, CAKeyFile + " does not belong to " + CACertFile
	case is.now().Add(renewBefore).After(cert.NotAfter):
		return nil, "expires " + cert.NotAfter.Format(time.DateOnly)
	}
	return &authority{cert: cert, key: key}, ""
}

// leaf keeps the leaf on disk if it still matches spec, else issues a new one.
func (is *issuer) leaf(ca *authority, spec leafSpec) error {
	certPath := filepath.Join(is.dir, spec.base+".pem")
	keyPath := filepath.Join(is.dir, spec.base+".key")
	why := is.checkLeaf(ca, spec, certPath, keyPath)
	if why == "" {
		is.say(certPath, "kept")
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("devcert: %s: key: %w", spec.base, err)
	}
	now := is.now()
	notAfter := now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: spec.cn, Organization: []string{"edged development"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		// ECDSA keys sign; KeyEncipherment is an RSA-only usage.
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{spec.usage},
		DNSNames:    spec.dns,
		IPAddresses: spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("devcert: %s: certificate: %w", spec.base, err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	if err := writeAtomic(certPath, encodeCerts(der, ca.cert.Raw), 0o644); err != nil {
		return err
	}
	if why == "missing" {
		is.say(certPath, "created")
	} else {
		is.say(certPath, "renewed: "+why)
	}
	return nil
}

// checkLeaf says why the leaf on disk must be reissued, or "" to keep it.
func (is *issuer) checkLeaf(ca *authority, spec leafSpec, certPath, keyPath string) string {
	certs, err := readCerts(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		return err.Error()
	}
	key, err := readKey(keyPath)
	if err != nil {
		return err.Error()
	}
	leaf := certs[0]
	switch {
	case !samePublicKey(leaf.PublicKey, key):
		return filepath.Base(keyPath) + " does not belong to " + filepath.Base(certPath)
	case leaf.CheckSignatureFrom(ca.cert) != nil:
		return "not issued by the current CA"
	case len(certs) != 2 || !certs[1].Equal(ca.cert):
		return "chain is not leaf then CA"
	case is.now().Add(renewBefore).After(leaf.NotAfter):
		return "expires " + leaf.NotAfter.Format(time.DateOnly)
	case !slices.Contains(leaf.ExtKeyUsage, spec.usage):
		return "wrong extended key usage"
	case !sameSet(leaf.DNSNames, spec.dns) || !sameSet(ipStrings(leaf.IPAddresses), ipStrings(spec.ips)):
		return "SANs differ"
	}
	return ""
}

func samePublicKey(pub crypto.PublicKey, key crypto.Signer) bool {
	k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func ipStrings(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return s
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
