package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// BenchmarkH1Server runs keep-alive HTTP/1.1 requests through a real
// listener (TLS, and the plain one with http_mode = "serve"): the
// client-facing server, the handler and the upstream leg to a canned
// backend. The client is a bare loop over one connection that allocates
// nothing per request, so the allocations reported are edged's.
// tls-client-cert is tls with the virtual host asking for the client's
// certificate and forwarding it to the node (forward_client_cert).
func BenchmarkH1Server(b *testing.B) {
	b.Run("tls", func(b *testing.B) { benchH1Server(b, true, false) })
	b.Run("tls-client-cert", func(b *testing.B) { benchH1Server(b, true, true) })
	b.Run("plain", func(b *testing.B) { benchH1Server(b, false, false) })
}

// benchH1Server sends b.N keep-alive GETs on one connection (TLS or to the
// plain listener) and reads each answer before the next.
func benchH1Server(b *testing.B, overTLS, clientCert bool) {
	body := bytes.Repeat([]byte{'x'}, 100)
	dir := testCertDir(b)
	back := rawBackend(b, body)
	vhost := ""
	cfg := &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"http/1.1"}}
	if clientCert {
		vhost = clientCertCA(dir) + "forward_client_cert = true\n"
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-client.pem"), filepath.Join(dir, "client-client.key"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\""),
		"env.toml": envTOML("test", "") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + vhost + proxyTOML("test", "users", "/users", back.addr),
	})
	req := []byte("GET /users/42?x=1 HTTP/1.1\r\nHost: test.acme.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	var c net.Conn
	var err error
	if overTLS {
		c, err = tls.Dial("tcp", te.addr, cfg)
	} else {
		_, plain, _ := te.srv.Addrs()
		c, err = net.Dial("tcp", plain.String())
	}
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readAnswer(br, "200", len(body)); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time says more than wall time on a shared machine; the client
	// and the backend run in this process too, the same for any server.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time this process used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// readAnswer reads one HTTP/1.1 answer with the given status and its
// body, which must have a Content-Length, of n bytes (n < 0: any length).
func readAnswer(br *bufio.Reader, status string, n int) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 "+status+" ")) {
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
	if cl < 0 || (n >= 0 && cl != n) {
		return io.ErrShortBuffer
	}
	_, err = br.Discard(cl)
	return err
}

// BenchmarkH2Server is BenchmarkH1Server's request over HTTP/2 (TLS,
// ALPN h2) on one connection: one stream after the other (streams=1), and
// 16 streams in flight at once (streams=16, h2load -m16's load on one of
// its connections: a new request goes out as soon as one ends). The client
// is a bare framer loop: the request's header block is encoded once, the
// response's is not decoded (its frames are only counted through), so
// that the allocations reported are edged's and x/net/http2's server's.
func BenchmarkH2Server(b *testing.B) {
	b.Run("streams=1", func(b *testing.B) { benchH2Server(b, 1) })
	b.Run("streams=16", func(b *testing.B) { benchH2Server(b, 16) })
}

func benchH2Server(b *testing.B, inFlight int) {
	body := bytes.Repeat([]byte{'x'}, 100)
	testCertDir(b)
	back := rawBackend(b, body)
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), ""),
		"env.toml": envTOML("test", "") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", back.addr),
	})
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		b.Fatal("h2 not negotiated")
	}
	bw := bufio.NewWriterSize(c, 16<<10)
	br := bufio.NewReaderSize(c, 16<<10)
	fr := http2.NewFramer(bw, br)
	fr.SetReuseFrames()
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		b.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		b.Fatal(err)
	}
	// A connection window no benchmark run exhausts.
	if err := fr.WriteWindowUpdate(0, 1<<30); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	// Fields without indexing keep the block valid on every stream.
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", "/users/42?x=1"}, {"user-agent", "bench"}, {"accept", "*/*"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true}); err != nil {
			b.Fatal(err)
		}
	}
	hb := block.Bytes()
	next := uint32(1)
	got := map[uint32]int{} // body bytes of each stream in flight
	send := func() error {
		got[next] = 0
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: next, BlockFragment: hb, EndStream: true, EndHeaders: true})
		next += 2
		return err
	}
	// run sends n requests, at most inFlight at once, and reads frames
	// until all have ended, answering what the server asks of the
	// connection on the way. Writes are flushed when no frame is left to
	// read, as a load generator's event loop would.
	run := func(n int) error {
		sent, done := 0, 0
		for ; sent < min(n, inFlight); sent++ {
			if err := send(); err != nil {
				return err
			}
		}
		for done < n {
			if br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil {
						return err
					}
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					if err := fr.WritePing(true, f.Data); err != nil {
						return err
					}
				}
			case *http2.GoAwayFrame:
				return fmt.Errorf("GOAWAY %v", f.ErrCode)
			case *http2.RSTStreamFrame:
				return fmt.Errorf("RST_STREAM %v", f.ErrCode)
			case *http2.DataFrame:
				n0, ok := got[f.StreamID]
				if !ok {
					return fmt.Errorf("DATA on stream %d, not in flight", f.StreamID)
				}
				got[f.StreamID] = n0 + len(f.Data())
				if f.StreamEnded() {
					if got[f.StreamID] != len(body) {
						return fmt.Errorf("body of %d bytes", got[f.StreamID])
					}
					delete(got, f.StreamID)
					done++
					if sent < n {
						sent++
						if err := send(); err != nil {
							return err
						}
					}
				}
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					return fmt.Errorf("a response without a body")
				}
			}
		}
		return nil
	}
	if err := run(inFlight); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	if err := run(b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
