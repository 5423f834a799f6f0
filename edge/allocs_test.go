package edge

import (
	"testing"
)

// TestRequestPathAllocs keeps the request path's allocations where the
// HTTP/1.1 server work brought them: a proxied request through the
// handler, and through edged's own HTTP/1.1 server on the plain listener,
// each against a backend that allocates nothing; and over TLS with the
// client's certificate forwarded (forward_client_cert), which a
// connection encodes once, not once a request: no more than TLS alone
// (BenchmarkH1Server/tls, 4). make test runs it without
// the race detector (see the Makefile), whose sync.Pool drops items at
// random.
func TestRequestPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not the code's")
	}
	for _, c := range []struct {
		name  string
		bench func(*testing.B)
		max   int64
	}{
		{"handler", BenchmarkProxyRequest, 3},
		{"h1 server, plain listener", func(b *testing.B) { benchH1Server(b, false, false) }, 3},
		{"h1 server, TLS, forward_client_cert", func(b *testing.B) { benchH1Server(b, true, true) }, 4},
	} {
		r := testing.Benchmark(c.bench)
		if r.N == 0 {
			t.Fatalf("%s: the benchmark did not run", c.name)
		}
		t.Logf("%s: %d allocs/op, %d B/op over %d requests", c.name, r.AllocsPerOp(), r.AllocedBytesPerOp(), r.N)
		if r.AllocsPerOp() > c.max {
			t.Errorf("%s: %d allocations per request, want at most %d", c.name, r.AllocsPerOp(), c.max)
		}
	}
}
