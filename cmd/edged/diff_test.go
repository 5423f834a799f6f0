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
