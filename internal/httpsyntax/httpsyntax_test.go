package httpsyntax

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestTokenByte checks the table against RFC 9110's tchar, spelled out.
func TestTokenByte(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		assert.Equal(t, strings.IndexByte(tchar, byte(c)) >= 0, TokenByte[c], "byte %#x", c)
	}
}

func TestIsToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"GET", true},
		{"X-Request-Id", true},
		{"a_b", true},
		{"", false},
		{"Host:", false},
		{"two words", false},
		{"caf\xc3\xa9", false},
		{"tab\t", false},
	} {
		assert.Equal(t, tc.want, IsToken(tc.in), "string %q", tc.in)
		assert.Equal(t, tc.want, IsToken([]byte(tc.in)), "bytes %q", tc.in)
	}
}

func TestIsFieldValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"text/html; q=0.9", true},
		{"tab\there", true},
		{"obs-text \xe9", true},
		{"cr\rhere", false},
		{"lf\nhere", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"bell\a", false},
	} {
		assert.Equal(t, tc.want, IsFieldValue(tc.in), "string %q", tc.in)
		assert.Equal(t, tc.want, IsFieldValue([]byte(tc.in)), "bytes %q", tc.in)
	}
}

func TestIsVisible(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"/api/x?a=1&b=%20", true},
		{"users.internal:8080", true},
		{"/caf\xc3\xa9", true},
		{"/a b", false},
		{"/a\tb", false},
		{"/a\r\nb", false},
		{"/a\x00", false},
		{"/a\x7f", false},
	} {
		assert.Equal(t, tc.want, IsVisible(tc.in), "%q", tc.in)
	}
}

func TestHasToken(t *testing.T) {
	for _, c := range []struct {
		v, tok string
		want   bool
	}{
		{"close", "close", true},
		{"CLOSE", "close", true},
		{"Keep-Alive, Upgrade", "upgrade", true},
		{" keep-alive ,\tclose ", "close", true},
		{"closed", "close", false},
		{"clo se", "close", false},
		{"clo\u017fe", "close", false}, // strings.EqualFold would take ſ for s
		{"", "close", false},
		{",,", "close", false},
	} {
		assert.Equal(t, c.want, HasToken(c.v, c.tok), "%q in %q", c.tok, c.v)
	}
	assert.True(t, EqualFoldASCII("Chunked", "cHUNKED"))
	assert.False(t, EqualFoldASCII("chunked", "chunke"))
	assert.False(t, EqualFoldASCII("\u212a", "k"), "the Kelvin sign is not a k")
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		" \t ":        "",
		"  a b\t":     "a b",
		"\tclose":     "close",
		"keep-alive ": "keep-alive",
		"\r close \r": "\r close \r", // CR is not whitespace here
	} {
		assert.Equal(t, want, TrimOWS(in), "string %q", in)
		assert.Equal(t, want, string(TrimOWS([]byte(in))), "bytes %q", in)
	}
}

// TestPathSafe checks the promise PathSafe makes to its user: a path of
// those bytes alone parses to itself and needs no RawPath; and that no
// byte net/url would escape or decode is in it.
func TestPathSafe(t *testing.T) {
	for c := 0; c < 256; c++ {
		p := "/a" + string(rune(c)) + "b"
		if c >= 0x80 {
			p = "/a" + string([]byte{byte(c)}) + "b"
		}
		u, err := url.ParseRequestURI(p)
		keeps := err == nil && u.RawQuery == "" && u.Fragment == "" && u.RawPath == "" && u.Path == p && u.EscapedPath() == p
		if PathSafe[c] {
			assert.True(t, keeps, "byte %#x is marked safe, but %q parses to %+v (%v)", c, p, u, err)
		}
	}
	for _, c := range []byte{'?', '#', '%', ' ', '"', '<', '>', '\\', '^', '`', '{', '|', '}', 0x7f, 0x80, 0xff} {
		assert.False(t, PathSafe[c], "byte %#x", c)
	}
}
