package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"

	"edged/internal/loopback"
)

// discardWriter is a ResponseWriter that keeps nothing: the benchmark
// measures edged's handler and upstream leg, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkProxyRequest runs one full request through the in-process
// handler: routing, admission, header rewriting, the upstream round trip
// over loopback to a keep-alive backend, and the response copy. The
// request and the response header are reused from one request to the
// next, as edged's HTTP/1.1 server does (the handler rewrites the
// request's header in place), so that the allocations reported are the
// handler's and the upstream leg's.
func BenchmarkProxyRequest(b *testing.B) {
	body := make([]byte, 100)
	for i := range body {
		body[i] = 'x'
	}
	testCertDir(b)
	back := rawBackend(b, body)
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), ""),
		"env.toml": envTOML("test", "[environment.rules.prometheus]\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", back.addr),
	})
	u, _ := url.Parse("https://test.acme.com/users/42?x=1")
	base := benchRequest(u, "127.0.0.1:40000")
	ua, accept := base.Header["User-Agent"], base.Header["Accept"]
	req := new(http.Request)
	hdr := http.Header{}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		*req = *base
		clear(hdr)
		hdr["User-Agent"], hdr["Accept"] = ua, accept
		req.Header = hdr
		clear(w.h)
		te.srv.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchRequest is a GET for u as net/http's server would hand it over.
func benchRequest(u *url.URL, remote string) *http.Request {
	return &http.Request{
		Method: "GET", URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Host:       u.Host,
		RemoteAddr: remote,
		RequestURI: u.RequestURI(),
		Header:     http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}},
		Body:       http.NoBody,
	}
}

// rawBackend answers every HTTP/1.1 request on a keep-alive connection
// with the same canned response, allocating next to nothing, so that a
// benchmark's allocations are edged's own.
func rawBackend(b *testing.B, body []byte) *backend {
	resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	addr, _ := loopback.Backend(b, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 16<<10)
		for {
			// Requests in the benchmark have no body: the head ends at
			// the first empty line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
	return &backend{addr: addr}
}
