package edge

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// BenchmarkOverloadedRequest is a request that its environment rejects at
// once (every worker busy, no queue, reject_delay "0s"): the price of each
// request in an open-loop flood against a neighbour, paid on the CPU the
// other environments share. (A held rejection costs the same plus a pooled
// timer; what the hold saves is the requests a closed loop does not send.)
func BenchmarkOverloadedRequest(b *testing.B) {
	testCertDir(b)
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), ""),
		"env.toml": strings.Replace(strings.Replace(envTOML("test", "[environment.rules.prometheus]\n"), "workers = 16", "workers = 1", 1), "queue = 16", "queue = 0\nreject_delay = \"0s\"", 1) +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", "127.0.0.1:9"),
	})
	env := te.srv.Snapshot().Env("test")
	if err := env.pool.Acquire(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	defer env.pool.Release(nil)
	u, _ := url.Parse("https://test.acme.com/users/42?x=1")
	w := &discardWriter{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := benchRequest(u, "127.0.0.1:40000")
		w.h = http.Header{}
		te.srv.ServeHTTP(w, req)
		if w.status != http.StatusServiceUnavailable {
			b.Fatalf("status %d", w.status)
		}
	}
}
