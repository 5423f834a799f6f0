// Command backend is the benchmark's upstream: it answers every request with
// the same ~100-byte body over HTTP/1.1 keep-alive, optionally after a delay
// (the slow environment of the isolation scenario).
//
//	go build -o /tmp/bench/backend ./bench/backend
//	backend -addr 127.0.0.1:9000 [-delay 200ms [-spread 100ms]]
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// body is 100 bytes, newline included.
var body = []byte("edged-bench: a fixed response body of exactly one hundred bytes, padded to length with dots .......\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address (keep it on loopback)")
	delay := flag.Duration("delay", 0, "wait this long before answering (slow mode)")
	spread := flag.Duration("spread", 0, "with -delay: draw each request's delay uniformly from delay ± spread (a backend whose latency varies)")
	lean := flag.Bool("lean", false, "answer over a read loop of its own instead of net/http's server (no delay)")
	flag.Parse()
	if *spread < 0 || *spread > *delay {
		fmt.Fprintln(os.Stderr, "backend: -spread must be within 0..delay")
		os.Exit(2)
	}
	if len(body) != 100 {
		fmt.Fprintln(os.Stderr, "backend: body is", len(body), "bytes")
		os.Exit(2)
	}
	clen := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if *delay > 0 {
			t := time.NewTimer(drawDelay(*delay, *spread))
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{clen}
		w.Write(body)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *lean {
		if *delay > 0 {
			log.Fatal("backend: -lean answers at once: no -delay")
		}
		log.Fatal(serveLean(ln))
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(os.Stderr, "backend: ", 0),
	}
	log.Fatal(srv.Serve(ln))
}

// drawDelay is one request's wait: delay ± spread, uniformly, whole
// nanoseconds.
func drawDelay(delay, spread time.Duration) time.Duration {
	if spread <= 0 {
		return delay
	}
	return delay - spread + time.Duration(rand.Int64N(2*int64(spread)+1))
}
