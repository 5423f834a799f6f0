package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

// TestDiffShowsControlCharactersInsteadOfSendingThem: pending files are
// anyone's bytes (a writer of any home), and edged diff is what the
// operator reads before a reload. A terminal escape in a line or a file
// name must not reach the terminal, where it could rewrite what the
// operator sees (erase the line above, retitle the window); it is shown
// as an escape. Tabs, newlines and CRLF line ends pass as they are.
func TestDiffShowsControlCharactersInsteadOfSendingThem(t *testing.T) {
	evil := "[[proxy]]\nname = \"x\"\r\n\x1b[1A\x1b[2K# nothing to see\n\u009b31m\tbad \xff byte\x07\n"
	out := diffFiles(map[string]string{}, map[string]string{"prod/\x1b]0;hi\x07x.toml": evil}, "generation 1", "pending")
	for i, r := range out {
		if r == '\n' || r == '\t' || r == '\r' && strings.HasPrefix(out[i+1:], "\n") {
			continue
		}
		assert.False(t, r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f, "control character %U at %d in %q", r, i, out)
	}
	assert.True(t, utf8.ValidString(out), "%q", out)
	assert.Contains(t, out, `+\x1b[1A\x1b[2K# nothing to see`)
	assert.Contains(t, out, `+++ b/prod/\x1b]0;hi\x07x.toml`)
	assert.Contains(t, out, "+name = \"x\"\r\n", "a CRLF line end is kept")
	assert.Contains(t, out, `+\u009b31m`+"\tbad \\xff byte\\x07\n")
}

// TestDiffShowsBidiControlsInsteadOfSendingThem: TOML allows Unicode's
// bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE, U+2066-U+2069
// isolates...) in comments and strings, and a terminal that lays out
// bidirectional text reorders what follows them: a pending line can be
// shown as something other than what it is (the "Trojan Source" trick),
// in the diff an operator reads before a reload. They are shown as
// escapes, like control characters.
func TestDiffShowsBidiControlsInsteadOfSendingThem(t *testing.T) {
	evil := "[[proxy]]\nname = \"orders\"\nupstream = \"prod-pool\" # \u202e\u2066 \"test-pool\" = maertspu\u2069\u2066\n# \u200f\u061c\u2067\u2068\u202a\u202b\u202c\u202d\u200e\n"
	out := diffFiles(map[string]string{}, map[string]string{"prod/\u202eorders.toml": evil}, "generation 1", "pending")
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c} {
		assert.NotContains(t, out, string(r), "%U reached the terminal", r)
	}
	assert.Contains(t, out, `+upstream = "prod-pool" # \u202e\u2066 "test-pool" = maertspu\u2069\u2066`)
	assert.Contains(t, out, `+++ b/prod/\u202eorders.toml`)
	assert.Equal(t, "prod-pool: café ü 日本", visible("prod-pool: café ü 日本"), "other text passes as it is")
}

// TestDiffShowsNewlinesInANameInsteadOfBreakingTheLine: a file's name may
// hold a newline (any byte but / and NUL), and the loader reads such a
// .toml file. Printed as it is in a diff header, the name went on over
// lines of its own, which read as a hunk: a change nobody made, shown
// in the diff an operator checks before a reload. In a name, newline,
// tab and carriage return are shown as escapes too.
func TestDiffShowsNewlinesInANameInsteadOfBreakingTheLine(t *testing.T) {
	name := "prod/zz\n@@ -1 +1 @@\n-upstream = \"prod-pool\"\n+upstream = \"test-pool\"\t\r.toml"
	out := diffFiles(map[string]string{}, map[string]string{name: "# nothing\n"}, "generation 1", "pending")
	assert.Equal(t, "--- /dev/null\tgeneration 1\n"+
		`+++ b/prod/zz\n@@ -1 +1 @@\n-upstream = "prod-pool"\n+upstream = "test-pool"\t\x0d.toml`+"\tpending\n"+
		"@@ -0,0 +1 @@\n+# nothing\n", out)
}
