package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// The response head parser is checked against http.ReadResponse on the
// same bytes: the same verdict, status, header, length, close and body,
// except where it is deliberately stricter (listed).
func TestResponseParsingMatchesNetHTTP(t *testing.T) {
	long := strings.Repeat("v", 6000) // longer than the read buffer
	tests := []struct {
		name, method, raw string
		// stricter: refused here, accepted by net/http.
		stricter bool
	}{
		// Deliberate differences, checked below the table: a space before
		// the colon is dropped here (RFC 9112 5.1), kept in the name by
		// net/http (which would forward an invalid name).
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", false},
		{"no reason", "GET", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", false},
		{"chunked, extension, trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", false},
		{"chunked wins over length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false},
		{"bad chunk size", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false},
		{"chunk without CRLF", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", false},
		{"unsupported transfer coding", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", false},
		{"HTTP/1.0 up to the close", "GET", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of it", false},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.0 close", "GET", "HTTP/1.0 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.1 close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false},
		{"HTTP/1.1 up to the close", "GET", "HTTP/1.1 200 OK\r\n\r\nuntil EOF", false},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok", false},
		{"obs-fold", "GET", "HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\n\tthree\r\nContent-Length: 0\r\n\r\n", false},
		{"equal lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false},
		{"conflicting lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!", false},
		{"invalid length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok", false},
		{"negative length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", false},
		{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", false},
		{"space before colon", "GET", "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n", false},
		{"tab before colon", "GET", "HTTP/1.1 200 OK\r\nX-A\t: b\r\nContent-Length: 0\r\n\r\n", false},
		{"space and tab before colon", "GET", "HTTP/1.1 200 OK\r\nX-A \t : b\r\nContent-Length: 0\r\n\r\n", false},
		{"empty name", "GET", "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 0\r\n\r\n", false},
		{"no colon", "GET", "HTTP/1.1 200 OK\r\nX-A b\r\nContent-Length: 0\r\n\r\n", false},
		{"fold first", "GET", "HTTP/1.1 200 OK\r\n X-A: b\r\nContent-Length: 0\r\n\r\n", false},
		{"fold of an empty value, and of blank lines", "GET", "HTTP/1.1 200 OK\r\nX-E:\r\n \r\n\t\r\n  x \r\nX-E: a\r\n \r\n b\r\nContent-Length: 0\r\n\r\n", false},
		{"folds of a repeated field", "GET", "HTTP/1.1 200 OK\r\nX-R: a\r\nX-R: b\r\n c\r\nX-R: d\r\n e\r\n f\r\nContent-Length: 0\r\n\r\n", false},
		{"lower-case names, repeated fields", "GET", "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 0\r\n\r\n", false},
		{"long value", "GET", "HTTP/1.1 200 OK\r\nX-Long: " + long + "\r\nContent-Length: 0\r\n\r\n", false},
		{"304 with a length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", false},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", false},
		{"HEAD with a length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"not HTTP", "GET", "SMTP ready\r\n\r\n", false},
		{"four-digit status", "GET", "HTTP/1.1 2000 OK\r\n\r\n", false},
		{"HTTP/2.0 status line", "GET", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", true},
		{"status below 100", "GET", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", false},
		{"control byte in a value", "GET", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", false},
		{"CR in a value", "GET", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantResp, wantBody, wantErr := netHTTPResponse(tc.method, tc.raw)
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				if _, err := readHead(bufio.NewReader(c)); err == nil {
					io.WriteString(c, tc.raw)
				}
			})
			n := newUpstream(t, Config{}, addr).Nodes()[0]
			resp, err := n.RoundTrip(t.Context(), &Request{Method: tc.method, URI: "/"})
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				got := *resp // the connection's after Close (RoundTrip)
				resp.Body.Close()
				resp = &got
			}
			if tc.stricter {
				require.NoError(t, wantErr, "net/http accepts it")
				assert.Error(t, err)
				return
			}
			if wantErr != nil {
				assert.Error(t, err, "net/http: %v", wantErr)
				return
			}
			require.NoError(t, err)
			if vv, ok := wantResp.Header["X-A "]; ok {
				delete(wantResp.Header, "X-A ")
				wantResp.Header["X-A"] = vv
			}
			if resp.Close && wantResp.Header["Connection"] == nil {
				delete(resp.Header, "Connection") // kept here: TestConnectionCloseIsKept
			}
			assert.Equal(t, wantResp.StatusCode, resp.StatusCode)
			assert.Equal(t, wantResp.Status, resp.Status)
			assert.Equal(t, wantResp.Proto, resp.Proto)
			assert.Equal(t, wantResp.Header, resp.Header)
			assert.Equal(t, wantResp.ContentLength, resp.ContentLength)
			assert.Equal(t, wantResp.Close, resp.Close)
			assert.Equal(t, wantResp.TransferEncoding, resp.TransferEncoding)
			assert.Equal(t, wantBody, string(body))
		})
	}
}

// netHTTPResponse reads raw with http.ReadResponse, skipping 1xx
// answers but 101 as RoundTrip does, with its body.
func netHTTPResponse(method, raw string) (*http.Response, string, error) {
	br := bufio.NewReader(strings.NewReader(raw))
	for i := 0; ; i++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return nil, "", err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return resp, string(b), err
		}
		if i == max1xx {
			return nil, "", errTooMany1xx
		}
	}
}

// A value slice handed out is never written again: a caller that kept one
// past Close still sees its response's value when the connection's next
// response brings another.
func TestHeaderValuesSurviveTheNextResponse(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := readHead(br); err != nil {
				return
			}
			v := "same"
			if i == 2 {
				v = "changed"
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-V: "+v+"\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	n := newUpstream(t, Config{}, addr).Nodes()[0]
	var kept [][]string
	for range 4 {
		resp, body := do(t, n, &Request{Method: "GET", URI: "/"})
		require.Equal(t, "ok", body)
		kept = append(kept, resp.Header["X-V"])
	}
	assert.EqualValues(t, 1, n.Stats().Dials, "one connection served all four")
	assert.Equal(t, [][]string{{"same"}, {"same"}, {"changed"}, {"same"}}, kept)
}

// parseOnly runs the response parser and body framing on raw, without a
// network connection.
func parseOnly(method, raw string) (*http.Response, string, error) {
	c := &conn{hdr: http.Header{}}
	c.br = bufio.NewReaderSize(strings.NewReader(raw), readBufSize)
	c.lr.limit = -1
	resp, err := c.readResponse(&Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	c.body.probe = true // no node to hand the connection back to
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(b), err
}

// FuzzResponseHead: whatever the parser accepts, http.ReadResponse
// accepts with the same status, header, framing and body, but for the
// deliberate differences of TestResponseParsingMatchesNetHTTP. Seeds are
// that test's responses.
func FuzzResponseHead(f *testing.F) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
		"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of it",
		"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nok",
		"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
	} {
		f.Add("GET", raw)
		f.Add("HEAD", raw)
	}
	f.Fuzz(func(t *testing.T, method, raw string) {
		if method != "GET" && method != "HEAD" {
			return
		}
		resp, body, err := parseOnly(method, raw)
		if err != nil {
			return
		}
		want, wantBody, werr := netHTTPResponse(method, raw)
		if werr != nil {
			t.Fatalf("accepted here, refused by net/http (%v): %q", werr, raw)
		}
		// Deliberate: a space before a field's colon is dropped here, and
		// the name canonicalized (net/http keeps such a name as sent).
		// net/http's map no longer says in which order such a field and
		// others of its name came: their values are compared sorted
		// (order of arrival is checked by the table test's "lower-case
		// names, repeated fields").
		merged := map[string]bool{}
		for k, vv := range want.Header {
			if trimmed := strings.TrimRight(k, " "); trimmed != k {
				tk := http.CanonicalHeaderKey(trimmed)
				delete(want.Header, k)
				merged[tk] = true
				want.Header[tk] = append(want.Header[tk], vv...)
			}
		}
		for k := range merged {
			want.Header[k] = slices.Sorted(slices.Values(want.Header[k]))
			if _, ok := resp.Header[k]; ok {
				resp.Header[k] = slices.Sorted(slices.Values(resp.Header[k]))
			}
		}
		// Deliberate, the same difference: "Content-Length :" and
		// "Transfer-Encoding :" frame the body here, where net/http reads
		// other names and frames without them (to the end, on these
		// inputs). Such a response is compared on its status line only
		// (TestSpaceBeforeColonFrames checks the framing); bytes left
		// after the body are never read as the next response
		// (client.go reuses no connection with bytes buffered).
		if merged["Content-Length"] || merged["Transfer-Encoding"] {
			if resp.StatusCode != want.StatusCode || resp.Status != want.Status || resp.Proto != want.Proto {
				t.Fatalf("status line differs: %d %q %q, net/http %d %q %q: %q", resp.StatusCode, resp.Status, resp.Proto, want.StatusCode, want.Status, want.Proto, raw)
			}
			return
		}
		// Deliberate, the same difference: "Connection :" is Connection
		// here, and decides whether the connection closes (RFC 9112 5.1:
		// a proxy removes the space), where net/http reads another name
		// (and may have dropped the real Connection, on HTTP/1.1 with
		// close). So Connection and Close are checked against edged's
		// own rule, and net/http's values of the field must be among
		// edged's.
		if merged["Connection"] {
			c := resp.Header["Connection"]
			if close := hasToken(c, "close") || (resp.ProtoMinor == 0 && !hasToken(c, "keep-alive")); resp.Close != close {
				t.Fatalf("Close %v with Connection %q: %q", resp.Close, c, raw)
			}
			for _, v := range want.Header["Connection"] {
				if !slices.Contains(c, v) {
					t.Fatalf("Connection %q lacks net/http's %q: %q", c, v, raw)
				}
			}
			want.Close = resp.Close
			delete(want.Header, "Connection")
			delete(resp.Header, "Connection")
		}
		// Deliberate: a Connection naming close is kept here (net/http
		// drops it on HTTP/1.1), so that the fields its other tokens name
		// can be removed by the proxy. (Looked at once the names with a
		// space before the colon are merged: net/http keeps "Connection "
		// apart, and drops nothing of it.)
		if resp.Close && want.Header["Connection"] == nil {
			delete(resp.Header, "Connection")
		}
		if resp.StatusCode != want.StatusCode || resp.Status != want.Status || resp.Proto != want.Proto ||
			resp.ContentLength != want.ContentLength || resp.Close != want.Close {
			t.Fatalf("head differs: %d %q %q %d %v, net/http %d %q %q %d %v: %q", resp.StatusCode, resp.Status, resp.Proto, resp.ContentLength, resp.Close,
				want.StatusCode, want.Status, want.Proto, want.ContentLength, want.Close, raw)
		}
		if !assert.ObjectsAreEqual(want.Header, resp.Header) {
			t.Fatalf("header differs: %q, net/http %q: %q", resp.Header, want.Header, raw)
		}
		if body != wantBody {
			t.Fatalf("body differs: %q, net/http %q: %q", body, wantBody, raw)
		}
	})
}

// TestLongHeaderLineBufferIsNotKept: a response with one very long header
// line must not leave its buffer on the pooled connection; a line a little
// over the read buffer keeps it (the next such line needs no new one).
func TestLongHeaderLineBufferIsNotKept(t *testing.T) {
	head := func(n int) string {
		return "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", n) + "\r\nContent-Length: 0\r\n\r\n"
	}
	c := &conn{hdr: http.Header{}}
	c.lr.limit = -1
	c.br = bufio.NewReaderSize(strings.NewReader(head(2*readBufSize)+head(100<<10)), readBufSize)
	resp, err := c.readResponse(&Request{Method: "GET"})
	require.NoError(t, err)
	assert.Len(t, resp.Header.Get("X-Long"), 2*readBufSize)
	assert.NotNil(t, c.long, "a line of twice the read buffer keeps its buffer")

	resp, err = c.readResponse(&Request{Method: "GET"})
	require.NoError(t, err)
	assert.Len(t, resp.Header.Get("X-Long"), 100<<10, "the value outlives the buffer it was read into")
	assert.Nil(t, c.long, "a 100 KiB line's buffer is dropped")
}

// TestConnectionCloseIsKept: net/http drops "Connection: close" from an
// HTTP/1.1 response; kept here, the proxy can still remove the fields its
// other tokens name.
func TestConnectionCloseIsKept(t *testing.T) {
	resp, _, err := parseOnly("GET", "HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n")
	require.NoError(t, err)
	assert.True(t, resp.Close)
	assert.Equal(t, []string{"close, X-Internal"}, resp.Header["Connection"])
}

// TestFieldCacheFollowsChangingHeads: the field cache gives each head of
// a connection its own fields, whatever the previous heads held: the same
// fields in another order, a name spelt in another case, repeated fields,
// more names than the cache keeps.
func TestFieldCacheFollowsChangingHeads(t *testing.T) {
	many := ""
	for i := range maxCachedFields + 10 {
		many += "X-F" + strconv.Itoa(i) + ": " + strconv.Itoa(i) + "\r\n"
	}
	heads := []string{
		"A: 1\r\nB: 2\r\nC: 3\r\n",
		"B: 2\r\nA: 1\r\nC: 4\r\n",
		"a: 1\r\nSet-Cookie: x\r\nSet-Cookie: y\r\nC: 4\r\n",
		"A: 1\r\nB: 2\r\n",
		many,
		"C: 3\r\n" + many,
		"A: 1\r\nB: 2\r\nC: 3\r\n",
	}
	var raw string
	for _, h := range heads {
		raw += "HTTP/1.1 200 OK\r\n" + h + "Content-Length: 0\r\n\r\n"
	}
	c := &conn{hdr: http.Header{}}
	c.lr.limit = -1
	c.br = bufio.NewReaderSize(strings.NewReader(raw), readBufSize)
	for i, h := range heads {
		want, _, err := netHTTPResponse("GET", "HTTP/1.1 200 OK\r\n"+h+"Content-Length: 0\r\n\r\n")
		require.NoError(t, err)
		resp, err := c.readResponse(&Request{Method: "GET"})
		require.NoError(t, err, "head %d", i)
		assert.Equal(t, want.Header, resp.Header, "head %d", i)
	}
	assert.LessOrEqual(t, len(c.fields), maxCachedFields)
}

// repeatReader reads b over and over.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// BenchmarkResponseHead parses the bench backend's response head (what
// net/http sends for it: Content-Type, Content-Length, Date): on one
// connection, as its every response is, and on 64 taken in turn, as the
// bench's 64 clients use the idle pool (each connection's field cache and
// header map then leave the CPU cache between its heads): the field
// cache and the header map at work, without the network.
func BenchmarkResponseHead(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nDate: Fri, 04 Dec 2026 15:00:00 GMT\r\n\r\n")
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			conns := make([]*conn, n)
			for i := range conns {
				c := &conn{hdr: make(http.Header, headerHint)}
				c.br = bufio.NewReaderSize(&repeatReader{b: head}, readBufSize)
				c.lr.limit = -1
				conns[i] = c
			}
			req := &Request{Method: "GET"}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				resp, err := conns[i].readResponse(req)
				if err != nil || len(resp.Header) != 3 {
					b.Fatal(err, resp.Header)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}

// TestSpaceBeforeColonFrames: a framing field with a space before its
// colon frames the body, as the field without it would (RFC 9112 5.1: a
// proxy removes the space); what follows the body is not part of it.
func TestSpaceBeforeColonFrames(t *testing.T) {
	resp, body, err := parseOnly("GET", "HTTP/1.1 200 OK\r\nContent-Length :2\r\n\r\nokHTTP/1.1 500 X\r\n\r\n")
	require.NoError(t, err)
	assert.EqualValues(t, 2, resp.ContentLength)
	assert.Equal(t, "ok", body)
	resp, body, err = parseOnly("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding :chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nrest")
	require.NoError(t, err)
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	assert.Equal(t, "ok", body)
}

// heapInUse is the heap in use after a collection.
func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// roundTripsAtOnce sends k GETs to n, each response left open until all
// are in, so that each one dials (or takes from the pool) a connection
// of its own.
func roundTripsAtOnce(t *testing.T, n *Node, k int) []*http.Response {
	t.Helper()
	resps := make([]*http.Response, k)
	for i := range resps {
		resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
		require.NoError(t, err)
		resps[i] = resp
	}
	return resps
}

// TestManyFieldsAreNotKeptByThePooledConnection: a response head of many
// short fields (a node's debug headers, or a hostile node's, within the
// 1 MiB head limit) grows the connection's header map, which a Go map
// never gives back when cleared: the connection would keep it in the idle
// pool for its life, tens of MB for a few connections. A map grown past
// maxKeptFields is dropped for a new one at the next head.
func TestManyFieldsAreNotKeptByThePooledConnection(t *testing.T) {
	const conns, fields = 16, 60_000
	var big strings.Builder
	big.WriteString("HTTP/1.1 200 OK\r\n")
	for i := range fields {
		fmt.Fprintf(&big, "X%d:\r\n", i)
	}
	big.WriteString("Content-Length: 0\r\n\r\n")
	require.Less(t, big.Len(), maxHeaderBytes)
	first := []byte(big.String())
	addr := firstThenSmall(t, first)
	n := newUpstream(t, Config{MaxIdlePerNode: conns}, addr).Nodes()[0]

	before := heapInUse()
	// Every connection's first answer is the large head.
	for _, resp := range roundTripsAtOnce(t, n, conns) {
		require.Equal(t, fields+1, len(resp.Header))
		require.NoError(t, resp.Body.Close())
	}
	// A second round on the pooled connections: small heads.
	for _, resp := range roundTripsAtOnce(t, n, conns) {
		require.Equal(t, 1, len(resp.Header))
		require.NoError(t, resp.Body.Close())
	}
	require.Equal(t, conns, n.Stats().Idle)
	kept := heapInUse() - before
	assert.Less(t, kept, int64(4<<20), "heap kept by %d idle connections after a head of %d fields each", conns, fields)
}

// TestRepeatedFieldsParseInLinearTime: a head may repeat one field, or
// fold one value, over thousands of lines (tens of thousands fit in the 1
// MiB limit). Each line copied all the values, or the whole value, before
// it: a node's one head cost time and memory with the square of its lines
// (40000 lines of "X:" took 14 s of CPU, 262144 would take ten minutes),
// out of reach of response_timeout, since the head has arrived. What
// parsing such a head allocates is counted: linear, it is a few times the
// head's size.
func TestRepeatedFieldsParseInLinearTime(t *testing.T) {
	const lines = 20_000
	heads := map[string]string{
		"repeated field":        strings.Repeat("X:\r\n", lines),
		"folded value":          "X: a\r\n" + strings.Repeat(" a\r\n", lines),
		"repeated folded field": strings.Repeat("X: a\r\n b\r\n", lines/2),
	}
	for name, fields := range heads {
		t.Run(name, func(t *testing.T) {
			head := "HTTP/1.1 200 OK\r\n" + fields + "Content-Length: 0\r\n\r\n"
			want, _, err := netHTTPResponse("GET", head)
			require.NoError(t, err)
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				if _, err := readHead(bufio.NewReader(c)); err == nil {
					io.WriteString(c, head)
				}
			})
			n := newUpstream(t, Config{}, addr).Nodes()[0]
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
			runtime.ReadMemStats(&after)
			require.NoError(t, err)
			assert.Equal(t, want.Header["X"], resp.Header["X"], "the values net/http reads")
			require.NoError(t, resp.Body.Close())
			allocated := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, allocated, uint64(64*len(head)), "bytes allocated to parse a head of %d bytes", len(head))
		})
	}
}

// TestLongChunkLineBufferIsNotKept: a chunk line longer than the read
// buffer (chunk extensions, up to the head limit) is gathered in the
// connection's line buffer, as a long header line is; the pooled
// connection must not keep that buffer until its next head
// (TestLongHeaderLineBufferIsNotKept).
func TestLongChunkLineBufferIsNotKept(t *testing.T) {
	const conns = 16
	answer := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;x=" + strings.Repeat("e", 500<<10) + "\r\nhello\r\n0\r\n\r\n")
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	})
	n := newUpstream(t, Config{MaxIdlePerNode: conns}, addr).Nodes()[0]
	before := heapInUse()
	for _, resp := range roundTripsAtOnce(t, n, conns) {
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "hello", string(b))
		require.NoError(t, resp.Body.Close())
	}
	require.Equal(t, conns, n.Stats().Idle)
	kept := heapInUse() - before
	assert.Less(t, kept, int64(4<<20), "heap kept by %d idle connections after a 500 KiB chunk line each", conns)
}

// firstThenSmall is a node that answers each connection's first request
// with first, and every later one with a small head, no body.
func firstThenSmall(t *testing.T, first []byte) string {
	t.Helper()
	small := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if _, err := readHead(br); err != nil {
				return
			}
			answer := small
			if i == 0 {
				answer = first
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	})
	return addr
}

// TestLongValueIsNotKeptByThePooledConnection: a field's value (a node's
// large cookie, or a request header it echoes, which a client chooses)
// stayed with the connection in the idle pool, in its header map until
// its next answer and in its field cache for its life, whatever the
// answers after it held.
func TestLongValueIsNotKeptByThePooledConnection(t *testing.T) {
	const conns, size = 16, 200 << 10
	first := []byte("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", size) + "\r\nContent-Length: 0\r\n\r\n")
	addr := firstThenSmall(t, first)
	n := newUpstream(t, Config{MaxIdlePerNode: conns}, addr).Nodes()[0]

	before := heapInUse()
	for _, resp := range roundTripsAtOnce(t, n, conns) {
		require.Len(t, resp.Header["X-Big"], 1)
		require.NoError(t, resp.Body.Close())
	}
	require.Equal(t, conns, n.Stats().Idle)
	kept := heapInUse() - before
	assert.Less(t, kept, int64(1<<20), "heap kept by %d idle connections after a value of %d bytes each", conns, size)
	// A second round on the pooled connections: no such field.
	for _, resp := range roundTripsAtOnce(t, n, conns) {
		require.Empty(t, resp.Header["X-Big"])
		require.NoError(t, resp.Body.Close())
	}
	require.Equal(t, conns, n.Stats().Idle)
	kept = heapInUse() - before
	assert.Less(t, kept, int64(1<<20), "heap kept by %d idle connections after later answers without it", conns)
}
