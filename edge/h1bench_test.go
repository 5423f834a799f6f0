package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkH1Server runs keep-alive HTTP/1.1 requests through a real
// listener (TLS, and the plain one with http_mode = "serve"): the
// client-facing server, the handler and the upstream leg to a canned
// backend. The client is a bare loop over one connection that allocates
// nothing per request, so the allocations reported are edged's.
func BenchmarkH1Server(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 100)
	testCertDir(b)
	back := rawBackend(b, body)
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\""),
		"env.toml": envTOML("test", "") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", back.addr),
	})
	req := []byte("GET /users/42?x=1 HTTP/1.1\r\nHost: test.acme.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	run := func(b *testing.B, c net.Conn) {
		defer c.Close()
		br := bufio.NewReaderSize(c, 16<<10)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			if err := readCannedResponse(br, len(body)); err != nil {
				b.Fatal(err)
			}
		}
		// CPU time says more than wall time on a shared machine; the
		// client and the backend run in this process too, the same for
		// any server.
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("tls", func(b *testing.B) {
		c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"http/1.1"}})
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
	b.Run("plain", func(b *testing.B) {
		_, plain, _ := te.srv.Addrs()
		c, err := net.Dial("tcp", plain.String())
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
}

// processCPU is the user and system CPU time this process used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readCannedResponse reads one 200 response with a Content-Length of n.
func readCannedResponse(br *bufio.Reader, n int) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return io.ErrUnexpectedEOF
	}
	cl := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if cl != n {
		return io.ErrShortBuffer
	}
	_, err = br.Discard(cl)
	return err
}
