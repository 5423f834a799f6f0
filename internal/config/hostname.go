package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// hostProfile turns IDNs into punycode for lookup (UTS #46 non-transitional
// mapping, STD3 characters, hyphen, joiner and bidi rules) and checks the DNS
// length limits.
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.VerifyDNSLength(true),
)

// NormalizeHostname returns h the way edged compares hostnames: lowercase,
// without a trailing dot, internationalised labels in punycode
// ("bücher.example" → "xn--bcher-kva.example"). One leading "*." wildcard is
// kept as it is, unless it covers a public suffix ("*.com"). A port, a bare "*", a "*" anywhere else, an empty name,
// characters a DNS name cannot hold and a last label that is a number
// (unless the whole is an IP address) are errors.
func NormalizeHostname(h string) (string, error) {
	if h == "" {
		return "", errors.New("hostname is empty")
	}
	if strings.Contains(h, "://") || strings.Contains(h, "/") {
		return "", fmt.Errorf("%q is not a hostname (write the name alone, without scheme or path)", h)
	}
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") > 1 {
		return "", fmt.Errorf("%q: IPv6 addresses are not hostnames", h)
	}
	if strings.Contains(h, ":") {
		return "", fmt.Errorf("%q must not include a port (the listener decides the port)", h)
	}
	wildcard := false
	rest := h
	if strings.HasPrefix(rest, "*.") {
		wildcard = true
		rest = rest[2:]
	}
	if strings.Contains(rest, "*") {
		return "", fmt.Errorf("%q: a wildcard is allowed only as one leading \"*.\" (\"*.example.com\")", h)
	}
	if strings.HasSuffix(rest, ".") {
		rest = rest[:len(rest)-1]
	}
	if rest == "" {
		return "", fmt.Errorf("%q: a hostname needs at least one label", h)
	}
	if strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return "", fmt.Errorf("%q is not a valid hostname: empty label", h)
	}
	for _, r := range rest {
		if r <= ' ' || r == 0x7f {
			return "", fmt.Errorf("%q contains a space or control character", h)
		}
	}
	ascii, err := hostProfile.ToASCII(strings.ToLower(rest))
	if err != nil {
		return "", fmt.Errorf("%q is not a valid hostname: %v", h, err)
	}
	// The mapping turns the ideographic and fullwidth full stops ("。",
	// "．", "｡") into ".", so a trailing dot or an empty label can show up
	// only now: "a.com。" is "a.com", "a.com.。" is not a name.
	ascii = strings.TrimSuffix(ascii, ".")
	if ascii == "" {
		return "", fmt.Errorf("%q: a hostname needs at least one label", h)
	}
	if strings.HasPrefix(ascii, ".") || strings.HasSuffix(ascii, ".") || strings.Contains(ascii, "..") {
		return "", fmt.Errorf("%q is not a valid hostname: empty label", h)
	}
	// The profile also accepts what its mapping turns into ASCII; make sure
	// what comes out is a plain DNS name.
	for i := 0; i < len(ascii); i++ {
		c := ascii[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", fmt.Errorf("%q is not a valid hostname: invalid character %q", h, c)
		}
	}
	if wildcard {
		if net.ParseIP(ascii) != nil {
			return "", fmt.Errorf("%q: a wildcard cannot cover an IP address", h)
		}
		if publicSuffix(ascii) {
			return "", fmt.Errorf("%q covers every name under the public suffix %q, names of anyone who registers one: "+
				"list your own domain's names (\"*.example.com\"), or set default_virtual_host to serve clients with an unknown SNI", h, ascii)
		}
	}
	if net.ParseIP(ascii) == nil && numericLabel(ascii[strings.LastIndexByte(ascii, '.')+1:]) {
		// "127.1", "1.2.3", "010.0.0.1", "256.1.1.1", "0x7f.1": no DNS
		// name ends in a number (RFC 3696 2), so none of these is a name;
		// curl and browsers read some of them as IPv4 addresses
		// ("127.1" is 127.0.0.1), Go's resolver looks them up as names,
		// and a browser never sends them as a Host.
		return "", fmt.Errorf("%q is neither a hostname (its last label is a number) nor an IPv4 address in dotted-decimal form; write an address as four numbers from 0 to 255 without leading zeros, e.g. \"127.0.0.1\"", h)
	}
	if wildcard {
		return "*." + ascii, nil
	}
	return ascii, nil
}

// publicSuffix reports whether name is a suffix under which anyone may
// register names: one of the ICANN part of the Public Suffix List ("com",
// "co.uk"). A wildcard over it is a catch-all, as browsers and certificate
// authorities hold too. The list's private part ("github.io",
// "herokuapp.com") is not: each of its suffixes is one company's domain,
// under which it hosts its users, and a wildcard over it is that
// company's own virtual host (GitHub serves *.github.io with one
// certificate; CAs issue it to the domain's owner, browsers accept it). A
// platform adds its domain to the list once it hosts users there, so a
// later list must not make its configuration stop loading. A top-level
// label the list does not have ("localhost", "corp") is no registry's:
// the operator's own.
func publicSuffix(name string) bool {
	ps, icann := publicsuffix.PublicSuffix(name)
	return ps == name && icann
}

// numericLabel reports whether a label is a number as the WHATWG URL
// standard reads an IPv4 part: decimal digits, or 0x and hex digits.
func numericLabel(label string) bool {
	digits := label
	hex := false
	if len(label) >= 2 && label[0] == '0' && label[1] == 'x' {
		digits, hex = label[2:], true
	}
	if digits == "" {
		return hex
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if !(c >= '0' && c <= '9' || hex && c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// normalizeBackendHost is NormalizeHostname for a name edged connects to
// or sends to a backend (a node's or target's host, tls_server_name,
// upstream_host), which may also hold '_': internal names do (a Docker
// Compose service "user_service", an Active Directory host, "_svc._tcp"
// names), Go's resolver looks them up, crypto/tls sends one as SNI and
// verifies a certificate for it, and nginx and HAProxy take them. The
// public hostnames of env groups stay DNS names: browsers send no other.
// A name with '_' is ASCII only; it is checked as the same name with a
// letter for each '_', which changes nothing else the check sees.
func normalizeBackendHost(h string) (string, error) {
	if !strings.Contains(h, "_") {
		return NormalizeHostname(h)
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			return "", fmt.Errorf("%q is not a valid hostname: a name with '_' must be ASCII (write IDNs in punycode)", h)
		}
	}
	stand := strings.ReplaceAll(h, "_", "a")
	n, err := NormalizeHostname(stand)
	if err != nil {
		return "", errors.New(strings.ReplaceAll(err.Error(), strconv.Quote(stand), strconv.Quote(h)))
	}
	// For an ASCII name the check only lowercases and drops a trailing
	// dot: n is h so, with a letter where h has '_'.
	out := []byte(n)
	lower := strings.ToLower(h)
	for i := range out {
		if lower[i] == '_' {
			out[i] = '_'
		}
	}
	return string(out), nil
}
