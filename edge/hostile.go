package edge

import (
	"net/http"
	"net/netip"
	"strings"

	"edged/internal/config"
	"edged/internal/httpsyntax"
)

// The checks below run in the handler, after whichever server parsed the
// request (HTTP/1.1 or HTTP/2), so that both protocols refuse the same
// things the same way, whatever the parser let through.

// validMethod reports whether m is an RFC 9110 token. HTTP/2's :method is
// any header value to the HPACK decoder ("GET X" included), and edged's
// upstream client would refuse it later as the backend's failure.
func validMethod(m string) bool { return httpsyntax.IsToken(m) }

// validTarget reports whether a request-target (HTTP/1.1's, or HTTP/2's
// :path) may be forwarded: origin-form ("/..."), absolute-form
// ("http://..." / "https://...") or "*" for OPTIONS, and only visible
// ASCII other than '#' (HTTP/2 carries :path as a header value, which
// may hold spaces, a fragment and non-ASCII bytes; the query goes to the
// node as sent, so "/x?a#b" would reach it with a fragment that the
// HTTP/1.1 parser refuses, as HAProxy does in both protocols). An
// HTTP/2 :path (h2) is never absolute-form: it holds the path and query
// only (RFC 9113 8.3.1; Go's and Envoy's servers refuse it too), and
// the host of one would be ignored for :authority, where HTTP/1.1
// routes the same target by it.
func validTarget(method, t string, h2 bool) bool {
	switch {
	case t == "":
		return false
	case t[0] == '/':
	case t == "*":
		if method != http.MethodOptions {
			return false
		}
	case hasPrefixFold(t, "http://"), hasPrefixFold(t, "https://"):
		if h2 {
			return false
		}
	default:
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// hostMatchesAuthority reports whether the Host header fields of an
// HTTP/2 request, if it has any, name the entity its :authority (r.Host)
// does. RFC 9113 8.3.1: a server SHOULD treat a request whose Host
// differs as malformed (Go's server refuses it too); edged routes and
// forwards :authority, so a differing Host would otherwise stay in the
// request's header as a second, unchecked name (hash_on =
// "header:Host" reads it there). They
// are compared after scheme-based normalisation (RFC 3986 6.2.3): host
// case, a trailing dot, the scheme's default port.
func hostMatchesAuthority(r *http.Request) bool {
	hh := r.Header["Host"]
	if len(hh) == 0 {
		return true
	}
	def := "80"
	if r.TLS != nil {
		def = "443"
	}
	for _, h := range hh {
		if !sameEntity(h, r.Host, def) {
			return false
		}
	}
	return true
}

// sameAuthority reports whether host, an HTTP/1.1 Host header, is
// host[:port] (validHost) naming the entity target does, the authority
// of an absolute-form request target of scheme ("http" or "https", as
// net/url lowercases it), compared as hostMatchesAuthority compares (sameEntity).
func sameAuthority(host, target, scheme string) bool {
	def := "80"
	if scheme == "https" {
		def = "443"
	}
	return validHost(host) && sameEntity(host, target, def)
}

// sameEntity reports whether the authorities a and b name the same
// entity after scheme-based normalisation (RFC 3986 6.2.3): host case, a
// trailing dot, the scheme's default port def.
func sameEntity(a, b, def string) bool {
	ah, ap := splitAuthority(a, def)
	bh, bp := splitAuthority(b, def)
	return ah == bh && ap == bp
}

// splitAuthority is a's host as routed (hostOnly) and its port, def when
// it names none.
func splitAuthority(a, def string) (host, port string) {
	port = def
	if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.IndexByte(a[i:], ']') < 0 {
		port = a[i+1:]
	}
	return hostOnly(a), port
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// maxHostLen bounds a Host's name part: a DNS name has at most 253
// characters (one more for a trailing dot).
const maxHostLen = 254

// validHost reports whether a Host header (or HTTP/2 :authority) is
// host[:port] as edged routes it:
//
//   - host is a name of letters, digits, '-', '_' and '.', no empty label
//     except one trailing dot ("test.acme.com."), at most 254 characters;
//     or a bracketed IPv6 literal without zone ("[::1]"). An IPv4 address
//     is a name of digits and dots. RFC 3986's other reg-name characters
//     ('!', '$', '&', '(', '*', '+', ',', ';', '=', '~', percent-escapes)
//     are refused: no configured hostname holds them, so they could only
//     ever reach a wildcard group with a Host the backend may read
//     differently;
//   - port, when there is a ':', is 1 to 65535 in decimal digits;
//   - nothing else: "evil.com:x.test.acme.com:443" has two colons and is
//     refused, rather than routed by its last label to *.test.acme.com.
func validHost(h string) bool {
	if h == "" {
		return false
	}
	name, port := h, ""
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		rest := h[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if !validPort(port) {
				return false
			}
		}
		return true
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if name == "" || len(name) > maxHostLen {
		return false
	}
	label := 0 // length of the label being read
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
		case c == '.':
			if label == 0 {
				return false // leading dot, or ".."
			}
			label = 0
		default:
			return false
		}
	}
	return true
}

// validPort: 1 to 65535, decimal digits only (no sign, no spaces; a
// leading zero is tolerated as RFC 3986's port = *DIGIT allows).
func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}

// dropUnderscoreHeaders removes the header fields whose name holds an
// underscore (nginx's underscores_in_headers off): a backend that maps
// '_' to '-' (CGI, PHP, some frameworks) would read "X_Forwarded_For"
// as the X-Forwarded-For edged sets, or "Content_Length" as a length.
// It allocates nothing when no name has one, the usual case.
func dropUnderscoreHeaders(h http.Header) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
}

// dropUnderscoreAliases removes, where underscores_in_headers keeps the
// fields whose name holds an underscore, those a backend that maps '_'
// to '-' would read as a field edged sets, removes or frames the request
// by (config.UnderscoreAlias): X_Forwarded_For beside edged's
// X-Forwarded-For, Client_Cert beside (or for want of) the certificate
// edged vouches for, Transfer_Encoding, Content_Length, Proxy (httpoxy).
// Keeping underscores is for a client's own fields (X_Api_Key), not for
// speaking for edged.
func dropUnderscoreAliases(h http.Header) {
	for k := range h {
		if config.UnderscoreAlias(k) {
			delete(h, k)
		}
	}
}

// allowAll is the Allow header of the 405 answer to TRACE: the methods
// edged forwards (any other token is forwarded too; RFC 9110 asks for the
// header, and these are the ones a client may rely on).
var allowAll = []string{"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}
