package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"edged/internal/pool"
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

// BenchmarkOverloadAnswer is an answer of bench/'s flooded environment A
// over real keep-alive HTTPS/1.1 connections: conns clients in a closed
// loop (each sends its next request when its last one is answered, as
// wrk does) against an environment whose one worker the benchmark holds.
//
//   - held: no queue; each request is held for reject_delay and answered
//     503 env.overloaded (bench/'s 180 held answers a second).
//   - queued: a queue with room for every client; each request waits its
//     queue_timeout and is answered 503 env.overloaded (the time-outs).
//
// The wait watches the client as bench/'s 1 s holds and waits do: the
// held request by reading its own connection (h1Response.Hold), the
// queued one with the client-gone watch (h1Response.WaitStarts). cpu-ns/op is the process's CPU per
// answer, the clients' included (bare loops that
// allocate nothing per request; allocs/op counts theirs too): compare
// builds with it, not proxies.
func BenchmarkOverloadAnswer(b *testing.B) {
	b.Run("held", func(b *testing.B) { benchOverloadAnswer(b, "queue = 0\nreject_delay = \"30ms\"") })
	b.Run("queued", func(b *testing.B) { benchOverloadAnswer(b, "queue = 64\nqueue_timeout = \"30ms\"") })
}

func benchOverloadAnswer(b *testing.B, queue string) {
	const conns = 64
	te, _ := fullEdge(b, "[environment.rules.prometheus]\n", queue)
	req := []byte("GET /users/42?x=1 HTTP/1.1\r\nHost: test.acme.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	cs := make([]*tls.Conn, conns)
	brs := make([]*bufio.Reader, conns)
	for i := range cs {
		c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"http/1.1"}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i], brs[i] = c, bufio.NewReaderSize(c, 4<<10)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range cs {
		wg.Add(1)
		go func(c *tls.Conn, br *bufio.Reader) {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
				if err := readAnswer(br, "503", -1); err != nil {
					errs <- err
					return
				}
			}
		}(cs[i], brs[i])
	}
	wg.Wait()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkHeldConnections is what a held HTTP/1.1 request keeps alive in
// edged while it waits out its hold: 512 keep-alive HTTPS connections,
// each with one request held (reject_delay one minute), against an
// environment whose one worker the benchmark holds. It reports the
// goroutines and the goroutine stack memory each held request adds (the
// connection's own included; the clients' bare connections run none),
// and the heap it adds in use. ns/op is meaningless.
func BenchmarkHeldConnections(b *testing.B) {
	const conns = 512
	te, envPool := fullEdge(b, "", "queue = 0\nreject_delay = \"1m\"")
	req := []byte("GET /users/42 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	cfg := &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"http/1.1"}}
	var gs, stack, heap float64
	for range b.N {
		cs := make([]*tls.Conn, conns)
		for i := range cs {
			c, err := tls.Dial("tcp", te.addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			cs[i] = c
		}
		// Every connection open and idle first: what is measured is the
		// hold, not the connection.
		time.Sleep(200 * time.Millisecond)
		g0, s0, h0 := memNow()
		for _, c := range cs {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for envPool.Stats().Held < conns {
			if time.Now().After(deadline) {
				b.Fatalf("held %d of %d", envPool.Stats().Held, conns)
			}
			time.Sleep(10 * time.Millisecond)
		}
		g1, s1, h1 := memNow()
		gs += float64(g1-g0) / conns
		stack += float64(s1-s0) / conns
		heap += float64(h1-h0) / conns
		for _, c := range cs {
			c.Close()
		}
		for envPool.Stats().Held > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.ReportMetric(gs/float64(b.N), "goroutines/held")
	b.ReportMetric(stack/float64(b.N), "stack-B/held")
	b.ReportMetric(heap/float64(b.N), "heap-B/held")
}

// memNow is the process's goroutines, goroutine stack bytes and heap
// bytes in use, after a collection.
func memNow() (goroutines int, stack, heap uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.StackInuse, ms.HeapAlloc
}

// fullEdge starts an edge whose environment test (with rules) has one
// worker, taken by the benchmark until its end, and queue, the
// environment's lines that replace its queue (a queue_timeout there
// replaces the default one).
func fullEdge(b *testing.B, rules, queue string) (*testEdge, *pool.Pool) {
	testCertDir(b)
	env := envTOML("test", rules)
	env = strings.Replace(env, "workers = 16", "workers = 1", 1)
	env = strings.Replace(env, "queue = 16", queue, 1)
	env = strings.Replace(env, "queue_timeout = \"1s\"\n", "", strings.Count(queue, "queue_timeout"))
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), ""),
		"env.toml":    env + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", "127.0.0.1:9"),
	})
	p := te.srv.Snapshot().Env("test").pool
	if err := p.Acquire(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Release(nil) })
	return te, p
}
