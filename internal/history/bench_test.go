package history

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"edged/internal/config"
)

// BenchmarkTracker lists the changes of a reload in a config of 10,000
// proxies over 1,000 environments: against a config of fresh objects, and
// after a reload that replaced one environment's proxies while the others
// are shared (what a running process sees).
func BenchmarkTracker(b *testing.B) {
	cfg := &config.Config{}
	for e := 0; e < 1000; e++ {
		env := fmt.Sprintf("e%d", e)
		cfg.Environments = append(cfg.Environments, &config.Environment{Name: env, Workers: 64})
		cfg.Upstreams = append(cfg.Upstreams, &config.Upstream{Name: "backend", Environment: env, Nodes: []config.Node{{URL: "http://127.0.0.1:9", Weight: 1}}})
		for p := 0; p < 10; p++ {
			cfg.Proxies = append(cfg.Proxies, &config.Proxy{Name: fmt.Sprintf("p%d", p), Environment: env, BasePath: fmt.Sprintf("/%s/p%d", env, p), Upstream: "backend"})
		}
	}
	renew := func(c *config.Config, n int) {
		for p := 0; p < n; p++ {
			cp := *c.Proxies[p]
			c.Proxies[p] = &cp
		}
		for u := 0; u < n/10; u++ {
			cp := *c.Upstreams[u]
			c.Upstreams[u] = &cp
		}
	}
	b.Run("all_new", func(b *testing.B) {
		var tr Tracker
		tr.Changes(cfg)
		b.ReportAllocs()
		for b.Loop() {
			renew(cfg, len(cfg.Proxies))
			tr.Changes(cfg)
		}
	})
	b.Run("one_env_new", func(b *testing.B) {
		var tr Tracker
		tr.Changes(cfg)
		b.ReportAllocs()
		for b.Loop() {
			renew(cfg, 10)
			tr.Changes(cfg)
		}
	})
}

// BenchmarkSave records a generation of 1,000 files in which one file
// changed, with the history full (history_keep = 50): what every reload
// of a large conf.d pays once it has run a while.
func BenchmarkSave(b *testing.B) {
	st, err := Open(b.TempDir(), 50)
	if err != nil {
		b.Fatal(err)
	}
	files := make([]File, 1000)
	set := func(i, round int) {
		content := fmt.Sprintf("[[proxy]]\nname = \"p%d\"\nenvironment = \"e%d\"\nbase_path = \"/p%d/%d\"\nupstream = \"backend\"\n", i, i, i, round)
		h := sha256.Sum256([]byte(content))
		files[i] = File{Path: fmt.Sprintf("env%04d.toml", i), SHA256: hex.EncodeToString(h[:]), Content: content}
	}
	for i := range files {
		set(i, 0)
	}
	gen := uint64(0)
	save := func() {
		gen++
		set(int(gen)%len(files), int(gen))
		if err := st.Save(Record{Generation: gen, Time: time.Now(), Trigger: "bench", Files: files}); err != nil {
			b.Fatal(err)
		}
	}
	for range 60 {
		save()
	}
	b.ReportAllocs()
	for b.Loop() {
		save()
	}
}
