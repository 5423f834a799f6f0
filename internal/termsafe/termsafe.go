package termsafe

import (
	"bytes"
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
	return escape(b, true, func(_ []byte, _ int, r rune, _ int) bool {
		return r >= 0x7f && r <= 0x9f || Bidi(r)
	})
}

// Visible returns b with its control characters (C0 but tab, newline and
// a carriage return ending a line; DEL; C1; the bidirectional controls)
// and its bytes that are not UTF-8 as Go escapes (\x1b, \u009b, \u202e,
// \xff); b itself when it has none. It is for text shown as it is, on a
// terminal or in a page: a terminal would act on an escape sequence (move
// the cursor, erase the line above) or reorder what follows a
// bidirectional control, and show something other than the text.
func Visible(b []byte) []byte {
	return escape(b, false, func(b []byte, i int, r rune, n int) bool {
		switch {
		case r == '\t' || r == '\n':
			return false
		case r == '\r':
			return !bytes.HasPrefix(b[i+1:], []byte{'\n'})
		case r == utf8.RuneError:
			return n == 1
		}
		return r < 0x20 || r >= 0x7f && r <= 0x9f || Bidi(r)
	})
}

// Plain reports whether s is printable ASCII only (0x20 to 0x7e): text
// that Visible, and any escaping of a line's tabs and newlines, leaves as
// it is, and whose width on a terminal is its length. A caller showing
// many short names (a table) tests it before escaping to copy nothing.
func Plain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// escape returns b with the runes unsafe reports (given b, the rune's
// index, the rune and its length) as escapes: \uNNNN, or, unless json,
// \xNN for a single byte (an ASCII control, or a byte that is not UTF-8);
// b itself when there is none.
func escape(b []byte, json bool, unsafe func(b []byte, i int, r rune, n int) bool) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if unsafe(b, i, r, n) {
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
		switch {
		case !unsafe(b, i, r, n):
			out = append(out, b[i:i+n]...)
		case n == 1 && !json:
			out = fmt.Appendf(out, `\x%02x`, b[i])
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}

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
