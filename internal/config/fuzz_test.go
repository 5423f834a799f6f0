package config

import (
	"io/fs"
	"testing"
)

// FuzzLoad feeds arbitrary documents through decoding, line scanning,
// defaults and validation, without touching the disk: the file is given in
// memory and certificate files all read as missing. Loading must never
// panic, and every finding must say which file it is about.
func FuzzLoad(f *testing.F) {
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
		cfg, err := loadSources("conf.d", srcs, nil, nil, notFound)
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
