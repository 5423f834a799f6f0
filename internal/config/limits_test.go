package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bombs are documents that, unchecked, make the TOML decoder use gigabytes
// and die of a stack overflow (at n = 100,000, a few hundred KiB for the
// nested ones, a few KiB for the keys), or cost it most per byte. Every one
// breaks a limit from n = 200 on; the fuzz targets start from small ones
// (the fuzzer's minimizer crawls through large inputs).
func bombs(n int) map[string]string {
	return map[string]string{
		"deep arrays":                     "a = " + strings.Repeat("[", 3*n) + strings.Repeat("]", 3*n) + "\n",
		"deep inline tables":              "a = " + strings.Repeat("{b=", n) + "1" + strings.Repeat("}", n) + "\n",
		"long dotted key":                 strings.Repeat("a.", n/50) + "b = 1\n",
		"long table header":               "[" + strings.Repeat("a.", n/50) + "b]\n",
		"long array header":               "[[" + strings.Repeat("a.", n/50) + "b]]\n",
		"long quoted key":                 `"` + strings.Repeat("k", n) + `" = 1` + "\n",
		"many headers":                    strings.Repeat("[a.b.c.d.e.f.g.h.i]\n", n/100),
		"deep in arrays of inline tables": "x = [{a = [{b = [{c = [{d = [{e = [{f = [{g = [{h = [{i = 1}]}]}]}]}]}]}]}]\n",
	}
}

func TestCheckLimitsRefuses(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"arrays one too deep", "# x\na = " + deep(MaxNesting+1), 2, "nested deeper than 32 levels"},
		{"arrays and inline tables", "\n\na = " + strings.Repeat("[", 26) + strings.Repeat("{b=", 6) + "[1]" + strings.Repeat("}", 6) + strings.Repeat("]", 26), 3, "nested deeper than 32 levels"},
		// Each inline table adds its key to the keys in it.
		{"inline tables", "a = " + strings.Repeat("{b=", MaxKeyParts) + "1" + strings.Repeat("}", MaxKeyParts), 1, "key has 9 parts"},
		{"mixed", "a = [{b = [{c = " + deep(MaxNesting-3) + "}]}]", 1, "nested deeper than 32 levels"},
		{"multi-line array", "a = [\n[\n" + deep(MaxNesting-1) + "\n]]", 3, "nested deeper"},
		{"dotted key", "a.b.c.d.e.f.g.h.i = 1", 1, "key has 9 parts, more than 8"},
		{"header plus key", "[a.b.c.d.e]\n\nf.g.h.i = 1", 3, "key has 9 parts"},
		{"array header plus inline", "[[a.b.c]]\nd.e = { f.g = { h.i = 1 } }", 2, "key has 9 parts"},
		{"inline in an array", "[a.b.c]\nd.e = [{ f.g = [{ h.i = 1 }] }]", 2, "key has 9 parts"},
		{"header", "x = 1\n[ a . b . c . d . e . f . g . h . i ]\n", 2, "table has 9 parts"},
		{"array header", "[[a.b.c.d.e.f.g.h.i]]", 1, "table has 9 parts"},
		{"quoted parts", `"a"."b".'c'."d"."e"."f"."g"."h"."i" = 1`, 1, "key has 9 parts"},
		{"long key", strings.Repeat("k", MaxKeyBytes+1) + " = 1", 1, "key is 129 bytes long, more than 128"},
		{"long quoted key", `"` + strings.Repeat("k", MaxKeyBytes) + `" = 1`, 1, "key is 130 bytes long"},
		{"long header then key", "[" + strings.Repeat("t", 100) + "]\n" + strings.Repeat("k", 29) + " = 1", 2, "key is 129 bytes long"},
		{"after a multi-line string", "s = \"\"\"\n[\n\"\"\"\nt = '''\n{'''\n" + "a = " + deep(MaxNesting+1), 6, "nested deeper"},
		{"a carriage return starts a header", "x = 1\r[a.b.c.d.e]\rf.g.h.i = 1", 1, "key has 9 parts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, msg := checkLimits([]byte(tc.doc))
			assert.Equal(t, tc.line, line)
			assert.Contains(t, msg, tc.msg)
		})
	}
}

func TestCheckLimitsAccepts(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, doc := range []string{
		"a = " + deep(MaxNesting),
		"a = " + strings.Repeat("{b=", MaxKeyParts-1) + "1" + strings.Repeat("}", MaxKeyParts-1),
		"a = " + strings.Repeat("[", 25) + strings.Repeat("{b=", 6) + "[1]" + strings.Repeat("}", 6) + strings.Repeat("]", 25),
		"a.b.c.d.e.f.g.h = 1",
		"[a.b.c.d.e.f.g]\nh = 1\n[a.b]\nc.d.e.f.g.h = 1",
		"[[a.b.c.d]]\ne.f = { g.h = 1 }",
		strings.Repeat("k", MaxKeyBytes) + " = 1",
		// Brackets, dots, quotes and '#' inside strings and comments.
		"a = \"" + deep(MaxNesting+1) + "\"\n",
		"a = '" + deep(MaxNesting+1) + "'\n",
		"a = \"\"\"\n" + deep(MaxNesting+1) + "\n\"\"\"\n",
		"a = '''\n" + deep(MaxNesting+1) + "\n'''\n",
		"# " + deep(MaxNesting+1) + "\n",
		"a = 1 # " + deep(MaxNesting+1) + "\n",
		"a = \"x\\\"" + deep(MaxNesting+1) + "\"\n",
		"a = \"\"\"x\\\"\"\"" + deep(MaxNesting+1) + "\"\"\"\n",
		"a = \"\"\"x\"\"\"\"\"\nb = \"" + deep(MaxNesting+1) + "\"\n",
		"a = '''x'''''\nb = '" + deep(MaxNesting+1) + "'\n",
		"a = \"a.b.c.d.e.f.g.h.i.j\"\n",
		"a = [1.5, 2.5, 1979-05-27T07:32:00.999Z]\n",
		// Unknown to the limits, the decoder's to reject.
		"a = \"unterminated " + deep(MaxNesting+1),
	} {
		line, msg := checkLimits([]byte(doc))
		assert.Zero(t, line, doc)
		assert.Empty(t, msg, doc)
	}
}

// The files of the example configuration and every fuzz seed that decodes
// are within the limits.
func TestCheckLimitsExample(t *testing.T) {
	paths, err := Files(filepath.Join("..", "..", "conf.d"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		line, msg := checkLimits(data)
		assert.Empty(t, msg, "%s:%d", p, line)
	}
}

func TestBombsRefusedWithLine(t *testing.T) {
	for name, doc := range bombs(100_000) {
		t.Run(name, func(t *testing.T) {
			srcs := []source{{path: "conf.d/x.toml", data: []byte("# a comment\n" + doc)}}
			_, err := loadSources("conf.d", srcs, nil, nil, nil)
			require.Error(t, err)
			errs := err.(Errors)
			require.Len(t, errs, 1)
			assert.Equal(t, "conf.d/x.toml", errs[0].Pos.File)
			assert.Equal(t, 2, errs[0].Pos.Line)
			assert.Regexp(t, `^conf.d/x.toml:2: (nested deeper than 32 levels|key|table) `, errs[0].Error())
		})
	}
}

func TestFileSizeLimit(t *testing.T) {
	big := strings.Repeat("# padding\n", MaxFileSize/10+1)
	srcs := []source{{path: "conf.d/big.toml", data: []byte(big)}}
	_, err := loadSources("conf.d", srcs, nil, nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "conf.d/big.toml: file is larger than the 2097152 bytes (2 MiB) allowed; split it into several files")
}

// atLimits are files of MaxFileSize that stay within the other limits,
// each made of what costs the decoder, or the checks after it, most per
// byte: measured by BenchmarkDecodeAtLimits.
var atLimits = map[string]func(i int) string{
	"nested arrays": func(i int) string {
		return fmt.Sprintf("a%d = %s1%s\n", i, strings.Repeat("[", MaxNesting), strings.Repeat("]", MaxNesting))
	},
	"long table then short keys": func(i int) string {
		if i == 0 {
			return "[" + strings.Repeat("a", MaxKeyBytes-20) + ".b.c.d.e.f.g]\n"
		}
		return fmt.Sprintf("k%d=1\n", i)
	},
	"table headers":      func(i int) string { return fmt.Sprintf("[a.b.c.d.e.f.g.h%d]\n", i) },
	"dotted keys":        func(i int) string { return fmt.Sprintf("a.b.c.d.e.f.g.h%d=1\n", i) },
	"short keys":         func(i int) string { return fmt.Sprintf("k%d=1\n", i) },
	"empty proxies":      func(int) string { return "[[proxy]]\n" },
	"empty array tables": func(int) string { return "[[x]]\n" },
	"empty nodes": func(i int) string {
		if i == 0 {
			return "[[upstream]]\nnodes = [{},"
		}
		return "{},"
	},
}

func atLimit(gen func(int) string) []byte {
	var b strings.Builder
	for i := 0; ; i++ {
		s := gen(i)
		if b.Len()+len(s)+3 > MaxFileSize {
			break
		}
		b.WriteString(s)
	}
	if strings.HasSuffix(b.String(), ",") {
		b.WriteString("{}]")
	}
	return []byte(b.String())
}

// BenchmarkDecodeAtLimits loads one file at the limits (decode, line
// index, checks), and reports the peak of the heap during the load above
// what it was before (peak-heap-MiB, sampled every 100µs) and the bytes
// allocated (B/op).
func BenchmarkDecodeAtLimits(b *testing.B) {
	for name, gen := range atLimits {
		data := atLimit(gen)
		require.LessOrEqual(b, len(data), MaxFileSize)
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			var peak uint64
			for i := 0; i < b.N; i++ {
				p := peakHeap(func() {
					srcs := []source{{path: "conf.d/a.toml", data: data}}
					cfg, _ := loadSources("conf.d", srcs, nil, nil, nil)
					runtime.KeepAlive(cfg)
				})
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// peakHeap runs f and returns how far the heap's live objects grew above
// where they were before it.
func peakHeap(f func()) uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	var peak uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	if peak < base {
		return 0
	}
	return peak - base
}

// fleetFile is an environment's file of n proxies, as bench/reloadcost
// writes them.
func fleetFile(n int) []byte {
	var b strings.Builder
	b.WriteString("[[environment]]\nname = \"e0\"\n[environment.rules.prometheus]\n\n")
	b.WriteString("[[upstream]]\nname = \"backend\"\nenvironment = \"e0\"\nnodes = [{ url = \"http://127.0.0.1:9\" }]\n\n")
	for j := 0; j < n; j++ {
		fmt.Fprintf(&b, "[[proxy]]\nname = \"p%d\"\nenvironment = \"e0\"\nbase_path = \"/e0/p%d\"\nupstream = \"backend\"\n\n", j, j)
	}
	return []byte(b.String())
}

// BenchmarkDecode is the decode of an environment's file of 1,000
// proxies (the cost of a reload that changed it) without and with the
// limits' pre-scan, and the pre-scan alone.
func BenchmarkDecode(b *testing.B) {
	data := fleetFile(1000)
	b.Run("toml", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var raw map[string]any
			if _, err := toml.Decode(string(data), &raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("limits+toml", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var raw map[string]any
			if err := decodeTOML(data, &raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("limits", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, msg := checkLimits(data); msg != "" {
				b.Fatal(msg)
			}
		}
	})
}

// Files each within MaxFileSize but together over MaxTotalSize fail the
// load naming the directory and the file where the sum passed the limit,
// with no file decoded.
func TestTotalSizeLimit(t *testing.T) {
	dir := t.TempDir()
	pad := strings.Repeat("# padding\n", (MaxFileSize-1024)/10)
	n := MaxTotalSize/len(pad) + 1
	for i := 0; i < n; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.toml", i)), []byte(pad), 0o644))
	}
	_, err := Load(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), dir+": configuration files add up to more than the 8388608 bytes (8 MiB) allowed, at "+filepath.Join(dir, fmt.Sprintf("f%02d.toml", n-1)))

	// One file fewer is within the limit: the padding files load.
	require.NoError(t, os.Remove(filepath.Join(dir, fmt.Sprintf("f%02d.toml", n-1))))
	_, err = Load(dir)
	if err != nil {
		assert.NotContains(t, err.Error(), "add up to")
	}
}

// TestBOMHidesNoHeader: the decoder skips a byte order mark before it
// reads, so a table header right after one is a header to it: the limits
// see it as one too (they once read the '[' after the mark as an array's,
// and a header of any length went through to the decoder).
func TestBOMHidesNoHeader(t *testing.T) {
	for name, bom := range map[string]string{"UTF-8": "\xef\xbb\xbf", "UTF-16LE": "\xff\xfe", "UTF-16BE": "\xfe\xff"} {
		for _, doc := range []string{"[a.b.c.d.e.f.g.h.i]\n", "[[a.b.c.d.e.f.g.h.i]]\n", "[a.b.c.d.e]\nf.g.h.i = 1\n"} {
			t.Run(name+" "+doc, func(t *testing.T) {
				srcs := []source{{path: "conf.d/x.toml", data: []byte(bom + doc)}}
				_, err := loadSources("conf.d", srcs, nil, nil, nil)
				require.Error(t, err)
				errs := err.(Errors)
				require.Len(t, errs, 1, "%v", errs)
				assert.Regexp(t, `^conf.d/x.toml:\d: (key|table) has 9 parts`, errs[0].Error())
			})
		}
	}
}

// TestLimitsReadOnPastSixQuotes: the decoder ends a multi-line basic
// string at six quotes when an escaped backslash comes before them
// ("""\\"""""": three quotes of content, then the end; its check for six
// quotes in a row makes that one exception) and reads on. The limits
// took every run of six quotes for the decoder's error and checked
// nothing after it: a nesting bomb on the next line went to the decoder
// whole.
func TestLimitsReadOnPastSixQuotes(t *testing.T) {
	const s = "s = \"\"\"\\\\\"\"\"\"\"\"\n"
	var v map[string]any
	_, err := toml.Decode(s+"t = 1\n", &v)
	require.NoError(t, err, "the decoder reads on past the string")
	assert.Equal(t, `\"""`, v["s"])
	assert.Equal(t, int64(1), v["t"])

	deep := "a = " + strings.Repeat("[", MaxNesting+1) + strings.Repeat("]", MaxNesting+1) + "\n"
	for name, doc := range map[string]string{
		"bomb after it":         s + deep,
		"after two of them":     s + "t" + s[1:] + deep,
		"after a longer escape": "s = \"\"\"x\\\\\\\\\"\"\"\"\"\"\n" + deep,
	} {
		t.Run(name, func(t *testing.T) {
			srcs := []source{{path: "conf.d/x.toml", data: []byte(doc)}}
			_, err := loadSources("conf.d", srcs, nil, nil, nil)
			require.Error(t, err)
			errs := err.(Errors)
			require.Len(t, errs, 1, "%v", errs)
			assert.Regexp(t, `^conf.d/x.toml:\d: nested deeper than 32 levels`, errs[0].Error())
		})
	}
	// Six quotes after anything else, or seven after an escaped
	// backslash, are the decoder's error, as before.
	for _, doc := range []string{"s = \"\"\"x\"\"\"\"\"\"\n", "s = \"\"\"\\\"\"\"\"\"\"\"\n", "s = \"\"\"\\\\\"\"\"\"\"\"\"\n"} {
		_, err := toml.Decode(doc, &v)
		assert.Error(t, err, doc)
	}
}
