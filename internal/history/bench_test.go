package history

import (
	"fmt"
	"testing"

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
