package config

import (
	"io/fs"
	"runtime"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzLoad feeds arbitrary documents through decoding, line scanning,
// defaults and validation, without touching the disk: the file is given in
// memory and certificate files all read as missing. Loading must never
// panic, every finding must say which file it is about, and what it
// allocates stays within maxAllocPerByte of the input (the bombs, which
// would take gigabytes, are refused before decoding).
func FuzzLoad(f *testing.F) {
	for _, b := range bombs(200) {
		f.Add([]byte(b))
	}
	for _, seed := range []string{
		baseServer + baseObjects,
		baseObjects,
		baseServer,
		"",
		"[server]\nhttps = \"\"\nhttp_mode = \"serve\"\nadmin = \"x\"\n",
		"[[environment]]\nname = \"a\"\nworkers = 0\nlabels = { \"1\" = 2 }\n[environment.rules.access_log]\npath = \"x\"\n",
		"[[upstream]]\nname = \"u\"\nenvironment = \"a\"\nnodes = [{ url = \"http://[::1]\" }, { url = \"ftp://x\", weight = -1 }]\nbalance = \"hash\"\n[upstream.health.active]\n[[upstream.nodes]]\nurl = 1\n",
		"[[proxy]]\nname = \"p\"\nenvironment = \"a\"\nbase_path = \"/a/../b\"\ntarget = \"http://u:p@x:0/?q#f\"\ntarget_path = \"x\"\n",
		"[[env_group]]\nname = \"g\"\nhostnames = [\"*\", \"bücher.example\", \"a:1\", 7]\nenvironments = [\"a\", \"a\"]\n",
		"[[virtual_host]]\nname = \"g\"\ncert_file = \"/dev/zero\"\nmin_tls = \"1.0\"\ncipher_suites = [\"TLS_RSA_WITH_RC4_128_SHA\", \"x\"]\n",
		"[environment]\nname = 1\n[[server]]\n",
		"proxy = [{ name = \"p\" }, 3]\n",
		"x = 1\n[[proxies]]\n",
		"[server\nhttps = ",
		"a = \"\"\"\n[[proxy]]\n\"\"\"\n",
	} {
		f.Add([]byte(seed))
	}
	notFound := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	f.Fuzz(func(t *testing.T, data []byte) {
		srcs := []source{{path: "conf.d/a.toml", data: data}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cfg, err := loadSources("conf.d", srcs, nil, nil, notFound)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAllocPerByte*uint64(len(data))+1<<20 {
			t.Fatalf("loading %d bytes allocated %d", len(data), alloc)
		}
		if cfg == nil {
			t.Fatal("nil config")
		}
		var all []Error
		if err != nil {
			errs, ok := err.(Errors)
			if !ok {
				t.Fatalf("error is %T, not Errors", err)
			}
			if len(errs) == 0 {
				t.Fatal("empty Errors returned as an error")
			}
			all = append(all, errs...)
		}
		all = append(all, cfg.Warnings...)
		for _, e := range all {
			if e.Pos.File == "" {
				t.Fatalf("finding without a file: %v", e)
			}
			if e.Pos.Line < 0 {
				t.Fatalf("negative line: %v", e)
			}
			if e.Msg == "" {
				t.Fatalf("finding without a message: %#v", e)
			}
		}
		// A second load of the same input says the same.
		_, err2 := loadSources("conf.d", srcs, nil, nil, notFound)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("non-deterministic: %v\nvs\n%v", err, err2)
		}
	})
}

// maxAllocPerByte bounds what loading a document may allocate per byte of
// it. BenchmarkDecodeAtLimits measures the worst cases found: about 520
// (a file of nothing but "nodes = [{},{},...]").
const maxAllocPerByte = 1024

// FuzzLimits checks the pre-scan against the decoder: a document the limits
// accept must not give the decoder a key of more than MaxKeyParts parts, nor
// values nested deeper than the limits allow (tables from headers and dotted
// keys, then arrays and inline tables).
func FuzzLimits(f *testing.F) {
	for _, b := range bombs(200) {
		f.Add([]byte(b))
	}
	for _, seed := range []string{
		"a = [[1], [[2]]]\n[t.u]\nv.w = { x.y = [{ z = 1 }] }\n",
		"a = \"[[[\"\nb = '{{{'\nc = \"\"\"\n]]]\"\"\"\"\"\nd = '''x'''''\n# [[[\n",
		"x = 1\r[a.b.c]\rd.e.f = 1\n",
		"[[a.b]]\n[a.b.c]\nd = 1\n[[a.b]]\n",
		"\"a.b\".'c.d'.e = 1\n[ \"x\" . y ]\n",
		"a = \"\"\"x\\\"\"\"\"\"\" \nb = [\n# ]\n1,\n]\n",
		"\xef\xbb\xbf[a.b.c.d.e]\nf.g.h.i = 1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if line, msg := checkLimits(data); msg != "" {
			if line < 1 {
				t.Fatalf("limit without a line: %s", msg)
			}
			return
		}
		var raw map[string]any
		md, err := toml.Decode(string(data), &raw)
		if err != nil {
			return
		}
		for _, k := range md.Keys() {
			if len(k) > MaxKeyParts {
				t.Fatalf("the decoder read key %q of %d parts, which the limits accepted", k.String(), len(k))
			}
		}
		if d := depth(raw); d > MaxKeyParts+MaxNesting {
			t.Fatalf("the decoder built values %d deep, which the limits accepted", d)
		}
	})
}

// depth is how deep tables and arrays nest in v.
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			d = max(d, depth(x))
		}
	case []map[string]any:
		for _, x := range v {
			d = max(d, depth(x))
		}
	case []any:
		for _, x := range v {
			d = max(d, depth(x))
		}
	default:
		return 0
	}
	return d + 1
}
