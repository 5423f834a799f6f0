// Command openloop is the benchmark's open-loop load: requests start at a
// fixed rate whether or not earlier ones were answered (wrk and h2load's
// HTTP/1.1 mode send the next request only after an answer: a closed
// loop, which a held rejection slows down; an open loop does not slow).
// Requests go over HTTPS/1.1 keep-alive connections, at most -conns of
// them; a start that finds every connection busy is counted as missed,
// not queued, so the rate the server sees is the rate asked for until the
// generator itself runs out of connections.
//
//	openloop -url https://a.test.acme.com:27110/api/x -rate 320 -duration 5s -ca ca.pem
//
// It prints one line: BENCH started= ok= s503= other= errors= missed=
// rate= p50_us= p99_us= (latency over every answer). Only loopback
// addresses are dialled; the run is bounded by -duration plus -timeout.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "https URL to GET (its host must resolve to a loopback address)")
	rate := flag.Float64("rate", 100, "requests started per second")
	duration := flag.Duration("duration", 5*time.Second, "how long to start requests")
	conns := flag.Int("conns", 4096, "connections at most (requests in flight at most)")
	timeout := flag.Duration("timeout", 5*time.Second, "per request")
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	flag.Parse()
	if *url == "" || *rate <= 0 || *duration <= 0 || *duration > 10*time.Minute || *conns < 1 || *conns > 65536 {
		fmt.Fprintln(os.Stderr, "openloop: need -url, -rate > 0, 0 < -duration <= 10m, 1 <= -conns <= 65536")
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "openloop: cannot use -ca:", err)
			os.Exit(2)
		}
	}
	dialer := &net.Dialer{Timeout: *timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if ap, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ap.IP.IsLoopback() {
				c.Close()
				return nil, fmt.Errorf("openloop: %s is not a loopback address", c.RemoteAddr())
			}
			return c, nil
		},
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxConnsPerHost:     *conns,
		MaxIdleConnsPerHost: *conns,
		IdleConnTimeout:     time.Minute,
	}
	client := &http.Client{Transport: tr, Timeout: *timeout}

	var (
		inFlight                               atomic.Int64
		started, ok, s503, other, errs, missed int64
		mu                                     sync.Mutex
		lat                                    []time.Duration
		wg                                     sync.WaitGroup
		cOK, c503, cOther, cErr                atomic.Int64
		interval                               = time.Duration(float64(time.Second) / *rate)
		begin                                  = time.Now()
		end                                    = begin.Add(*duration)
	)
	for i := 0; ; i++ {
		at := begin.Add(time.Duration(i) * interval)
		if !at.Before(end) {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if inFlight.Load() >= int64(*conns) {
			missed++
			continue
		}
		inFlight.Add(1)
		started++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			t0 := time.Now()
			resp, err := client.Get(*url)
			if err != nil {
				cErr.Add(1)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			d := time.Since(t0)
			switch {
			case err != nil:
				cErr.Add(1)
				return
			case resp.StatusCode == 200:
				cOK.Add(1)
			case resp.StatusCode == 503:
				c503.Add(1)
			default:
				cOther.Add(1)
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	tr.CloseIdleConnections()
	ok, s503, other, errs = cOK.Load(), c503.Load(), cOther.Load(), cErr.Load()
	slices.Sort(lat)
	pct := func(p float64) int64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()
	}
	fmt.Printf("BENCH started=%d ok=%d s503=%d other=%d errors=%d missed=%d rate=%.1f elapsed_us=%d p50_us=%d p99_us=%d\n",
		started, ok, s503, other, errs, missed, float64(started)/duration.Seconds(), elapsed.Microseconds(), pct(0.50), pct(0.99))
}
