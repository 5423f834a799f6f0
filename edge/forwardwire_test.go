package edge

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireRequest is a request as a node read it off the wire: its head as
// sent, line by line, and its body's framing and bytes.
type wireRequest struct {
	line    string      // the request line
	fields  [][2]string // name, value, in order and spelling as sent
	chunked bool
	body    string
	trailer string // the chunked body's trailer section, as sent
}

// values are the values of the fields named name (any case), in order.
func (r wireRequest) values(name string) []string {
	var vv []string
	for _, f := range r.fields {
		if strings.EqualFold(f[0], name) {
			vv = append(vv, f[1])
		}
	}
	return vv
}

// wireBackend is a node on 127.0.0.1:0 that reads HTTP/1.1 requests
// byte by byte, records them, and answers each with answer's raw bytes.
type wireBackend struct {
	addr   string
	mu     sync.Mutex
	seen   []wireRequest
	answer func(wireRequest) string
}

func startWireBackend(t *testing.T, answer func(wireRequest) string) *wireBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wb := &wireBackend{addr: ln.Addr().String(), answer: answer}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				wb.serve(c)
			}()
		}
	}()
	return wb
}

func (wb *wireBackend) serve(c net.Conn) {
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	for {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		req := wireRequest{line: line}
		cl := int64(0)
		for {
			l, err := tp.ReadLine()
			if err != nil {
				return
			}
			if l == "" {
				break
			}
			k, v, _ := strings.Cut(l, ":")
			v = strings.TrimSpace(v)
			req.fields = append(req.fields, [2]string{k, v})
			switch strings.ToLower(k) {
			case "content-length":
				cl, _ = strconv.ParseInt(v, 10, 64)
			case "transfer-encoding":
				req.chunked = true
			}
		}
		if req.chunked {
			var b strings.Builder
			for {
				l, err := tp.ReadLine()
				if err != nil {
					return
				}
				n, _ := strconv.ParseInt(strings.TrimSpace(strings.SplitN(l, ";", 2)[0]), 16, 64)
				if n == 0 {
					break
				}
				if _, err := io.CopyN(&b, br, n+2); err != nil {
					return
				}
			}
			req.body = strings.ReplaceAll(b.String(), "\r\n", "")
			for {
				l, err := tp.ReadLine()
				if err != nil {
					return
				}
				if l == "" {
					break
				}
				req.trailer += l + "\n"
			}
		} else if cl > 0 {
			b := make([]byte, cl)
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			req.body = string(b)
		}
		wb.mu.Lock()
		wb.seen = append(wb.seen, req)
		wb.mu.Unlock()
		if _, err := io.WriteString(c, wb.answer(req)); err != nil {
			return
		}
	}
}

func (wb *wireBackend) take() []wireRequest {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	s := wb.seen
	wb.seen = nil
	return s
}

// wireEdge is an edge proxying everything on test.acme.com to wb.
func wireEdge(t *testing.T, wb *wireBackend) *testEdge {
	testCertDir(t)
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", wb.addr),
	})
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// An HTTP/2 request whose stream ends with an empty DATA frame (HEADERS
// without END_STREAM, as Go's client sends a request whose body turns
// out empty) has no body: it reaches the node without one, not as an
// empty chunked body. A GET with Transfer-Encoding: chunked is refused by
// servers that take no chunked requests (Apache answers 501 "Chunked
// requests are not supported"); nginx sends no body and Content-Length: 0
// beside a method that wants one. The empty DATA comes 100 ms after the
// head, when the handler is already forwarding. A body that does come
// without a length goes with the length edged read ahead of the worker
// (TestWholeBodyOfUnknownLengthGoesWithItsLength).
func TestH2EmptyDataFrameIsNoBody(t *testing.T) {
	wb := startWireBackend(t, func(wireRequest) string { return okAnswer })
	te := wireEdge(t, wb)
	c := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	for i, m := range []string{"GET", "DELETE", "POST"} {
		id := uint32(2*i + 1)
		c.headers(id, false, ":method", m, ":scheme", "https", ":authority", "test.acme.com", ":path", "/empty")
		time.Sleep(100 * time.Millisecond)
		c.data(id, true, nil)
		s := c.result(id, 5*time.Second)
		require.Equal(t, 200, s.status, "%s: %v", m, s)
		seen := wb.take()
		require.Len(t, seen, 1, m)
		r := seen[0]
		assert.Equal(t, m+" /empty HTTP/1.1", r.line)
		assert.Empty(t, r.values("Transfer-Encoding"), "%s: an empty body is no body: %q", m, r.fields)
		if m == "GET" {
			assert.Empty(t, r.values("Content-Length"), "%s: %q", m, r.fields)
		} else {
			assert.Equal(t, []string{"0"}, r.values("Content-Length"), "%s: %q", m, r.fields)
		}
	}
	c.headers(7, false, ":method", "POST", ":scheme", "https", ":authority", "test.acme.com", ":path", "/some")
	c.data(7, false, []byte("abc"))
	time.Sleep(100 * time.Millisecond)
	c.data(7, true, []byte("def"))
	s := c.result(7, 5*time.Second)
	require.Equal(t, 200, s.status, "%v", s)
	seen := wb.take()
	require.Len(t, seen, 1)
	assert.False(t, seen[0].chunked, "%q", seen[0].fields)
	assert.Equal(t, []string{"6"}, seen[0].values("Content-Length"), "%q", seen[0].fields)
	assert.Equal(t, "abcdef", seen[0].body)
}

// A body of unknown length whose first byte comes later than the
// upstream's response_timeout, under a head larger than the upstream
// client's write buffer, still reaches the node: the head is written
// once the body's first read returns (it tells an empty body from one),
// and the wait for the client is not counted against the node's write.
func TestSlowFirstByteUnderALargeHeadIsNotTheNodesTimeout(t *testing.T) {
	wb := startWireBackend(t, func(wireRequest) string { return okAnswer })
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			strings.Replace(proxyTOML("test", "all", "/", wb.addr), "\n[[proxy]]", "response_timeout = \"300ms\"\n\n[[proxy]]", 1),
	})
	c := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	c.headers(1, false, ":method", "POST", ":scheme", "https", ":authority", "test.acme.com", ":path", "/slow",
		"x-big", strings.Repeat("b", 16<<10))
	time.Sleep(700 * time.Millisecond)
	c.data(1, true, []byte("abc"))
	s := c.result(1, 5*time.Second)
	require.Equal(t, 200, s.status, "%v", s)
	seen := wb.take()
	require.Len(t, seen, 1)
	assert.Equal(t, "abc", seen[0].body)
}
