package unidiff

import (
	"fmt"
	"strings"
	"testing"
)

// A conf.d file of 2,000 lines with three blocks edited: what edged diff
// and promote --dry-run do per file.
func BenchmarkUnifiedConfigFile(b *testing.B) {
	var a strings.Builder
	for i := 0; i < 250; i++ {
		fmt.Fprintf(&a, "[[proxy]]\nname = \"p%d\"\nenvironment = \"prod\"\nbase_path = \"/p%d\"\nupstream = \"u\"\ntarget_path = \"/v1\"\n# owner: team %d\n\n", i, i, i%7)
	}
	old := a.String()
	new := strings.Replace(old, "base_path = \"/p10\"", "base_path = \"/p10b\"", 1)
	new = strings.Replace(new, "name = \"p100\"\n", "name = \"p100\"\nretries = 2\n", 1)
	new = strings.Replace(new, "[[proxy]]\nname = \"p200\"", "[[proxy]]\nname = \"p200x\"", 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(old) + len(new)))
	for b.Loop() {
		if Unified("a", "b", old, new) == "" {
			b.Fatal("no diff")
		}
	}
}

// Two unrelated 2,000-line texts: the search stops at maxEdits.
func BenchmarkUnifiedUnrelated(b *testing.B) {
	var x, y strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&x, "x%d\n", i)
		fmt.Fprintf(&y, "y%d\n", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		Unified("a", "b", x.String(), y.String())
	}
}
