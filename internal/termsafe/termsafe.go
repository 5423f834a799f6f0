package termsafe

import (
	"fmt"
	"unicode/utf8"
)

// JSON returns b, JSON text, with DEL, the C1 controls and Unicode's
// bidirectional controls as \u escapes; b itself when it has none.
// encoding/json escapes the C0 controls only, and a terminal may act on
// a C1 control (U+009B is CSI) or reorder the line after a bidirectional
// one. Those runes occur in JSON text only inside its strings, where the
// escapes decode to the same string.
func JSON(b []byte) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if jsonUnsafe(r) {
			break
		}
		i += n
	}
	if i == len(b) {
		return b
	}
	out := append(make([]byte, 0, len(b)+32), b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if jsonUnsafe(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

func jsonUnsafe(r rune) bool { return r >= 0x7f && r <= 0x9f || Bidi(r) }

// Bidi reports whether r is one of Unicode's bidirectional controls
// (UAX #9: the marks, embeddings, overrides and isolates). TOML allows
// them in comments and strings, and a terminal that lays out
// bidirectional text would reorder what follows one: a line shown other
// than it is ("Trojan Source", CVE-2021-42574).
func Bidi(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
