package config

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScanLines(t *testing.T) {
	doc := `# comment [not.a.table]
[server]
https = "0.0.0.0:443" # trailing [comment]
"state_dir" = 'x'

[[environment]]
name = "a"
labels = { stage = "test", "team" = 'x' }
[environment.rules.access_log]
path = """
multi
line = 1
"""
rules.audit_log.enabled = true

[[environment]]
  name = "b"   
[ environment . rules . prometheus ]

[[upstream]]
name = "u"
nodes = [
  { url = "http://a:1", weight = 2 }, # first
  # comment line
  { url = "http://b:1" },
]
[upstream.health.active]
path = "/h"
[[upstream.nodes]]
url = "x"
[[upstream]]
name = "v"
[[upstream.nodes]]
url = "y"
names = ["a", 'b]', "c\"]"]
after = 1
`
	ix := scanLines([]byte(doc))
	for path, want := range map[string]int{
		"server":                               2,
		"server.https":                         3,
		"server.state_dir":                     4,
		"environment":                          6,
		"environment[0]":                       6,
		"environment[0].name":                  7,
		"environment[0].labels":                8,
		"environment[0].labels.stage":          8,
		"environment[0].labels.team":           8,
		"environment[0].rules.access_log":      9,
		"environment[0].rules.access_log.path": 10,
		"environment[0].rules.access_log.rules.audit_log.enabled": 14,
		"environment[1]":                          16,
		"environment[1].name":                     17,
		"environment[1].rules.prometheus":         18,
		"upstream[0].nodes":                       22,
		"upstream[0].nodes[0]":                    23,
		"upstream[0].nodes[0].weight":             23,
		"upstream[0].nodes[1].url":                25,
		"upstream[0].health.active.path":          28,
		"upstream[1].name":                        32,
		"upstream[1].nodes[0].url":                34,
		"upstream[1].nodes[0].names[2]":           35,
		"upstream[1].nodes[0].after":              36,
		"environment[0].rules.access_log.path[0]": 10, // nearest written ancestor
		"environment[0].nope":                     6,
		"proxy[3].name":                           0,
	} {
		assert.Equal(t, want, ix.lookup(path), path)
	}
	_, ok := ix.lines["environment[0].rules.access_log.line"]
	assert.False(t, ok, "keys inside a multi-line string are not keys")
}

func TestScanLinesGarbage(t *testing.T) {
	for _, doc := range []string{
		"", "[", "[[", "]", "=", "a =", "a = [", "a = {", `a = "`, `a = """`, "a = '''", `"`, "[a.\"b", "a = [{b = [", "a = \\",
		"[a]\n[[a.b]]\n[a.b.c]\nx = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	} {
		assert.NotPanics(t, func() { scanLines([]byte(doc)) }, "%q", doc)
	}
}

// TestLinesAfterBOM: a file that starts with a byte order mark (Windows
// editors write one) has its errors on the lines of its objects: the
// header on the first line counts, so the second [[proxy]] is proxy[1].
func TestLinesAfterBOM(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-bom.toml": "\xef\xbb\xbf[[proxy]]\n" +
		"name = \"a\"\nenvironment = \"test\"\nbase_path = \"/a\"\nupstream = \"none\"\nbogus = 1\n" +
		"\n[[proxy]]\nname = \"b\"\nenvironment = \"test\"\nbase_path = \"/b\"\nupstream = \"pool\"\n"})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 2, "%v", errs)
	file := filepath.Join(dir, "20-bom.toml")
	assert.Equal(t, Pos{file, 5}, errs[0].Pos, "%v", errs[0])
	assert.Equal(t, "upstream", errs[0].Field)
	assert.Equal(t, Pos{file, 6}, errs[1].Pos, "%v", errs[1])
	assert.Equal(t, "bogus", errs[1].Field)
	assert.Equal(t, 1, scanLines([]byte("\xef\xbb\xbf[[proxy]]\n")).lookup("proxy[0]"))
}
