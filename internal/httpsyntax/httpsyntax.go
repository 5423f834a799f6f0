// Package httpsyntax holds the pieces of RFC 9110's grammar that edged's
// two HTTP/1.1 parsers share, the client-facing server's (edge) and the
// upstream client's (internal/upstream), so that a strictness fix lands
// on both sides at once: byte classes, and the tokens of a comma-separated
// list such as Connection's; and the bytes net/url keeps as they are in a
// path, which edge's parser builds on. It only reads what it is given: it
// never allocates, and it decides nothing about framing.
package httpsyntax

import "strings"

// TokenByte marks the bytes of a token (tchar): methods, field names,
// transfer codings.
var TokenByte = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd marks ASCII letters and digits and the bytes of extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	return t
}

// PathSafe marks the bytes net/url keeps as they are in a path: a path
// made of them alone parses to itself, with no RawPath.
var PathSafe = alnumAnd("-._~/$&+,:;=@")

// PathChar marks the bytes RFC 3986 allows in a path as written into a
// request line: unreserved, sub-delims, ':', '@', '/', and '%' (whose
// escapes a caller checks).
var PathChar = alnumAnd("-._~!$&'()*+,;=:@/%")

// IsToken reports whether s is a token: one or more tchar.
func IsToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !TokenByte[s[i]] {
			return false
		}
	}
	return true
}

// ValueByte reports whether c may stand in a field value (field-content:
// VCHAR, obs-text, SP, HTAB): every control byte but HTAB is refused,
// NUL, CR, LF and DEL included.
func ValueByte(c byte) bool { return c >= 0x20 && c != 0x7f || c == '\t' }

// IsFieldValue reports whether every byte of s may stand in a field value.
func IsFieldValue[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !ValueByte(s[i]) {
			return false
		}
	}
	return true
}

// IsVisible reports whether every byte of s is visible: VCHAR or
// obs-text, with no space, control byte or DEL. A request-target and a
// Host are.
func IsVisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// HasToken reports whether the comma-separated list v (one field value)
// holds token, compared without regard to ASCII case; it allocates
// nothing: browsers send Connection on every request.
func HasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if EqualFoldASCII(TrimOWS(t), token) {
			return true
		}
	}
	return false
}

// EqualFoldASCII reports whether a and b are equal but for ASCII case.
// Unlike strings.EqualFold it folds nothing else: "ſ" (U+017F) is not an
// "s", as a token is ASCII.
func EqualFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (SP and HTAB) at both ends.
func TrimOWS[T string | []byte](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// HopByHop reports the hop-by-hop fields (RFC 9110 7.6.1), by their
// canonical names: a proxy removes them in both directions.
func HopByHop(canonical string) bool {
	switch canonical {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
