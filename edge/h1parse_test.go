package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readerConn is a net.Conn that only reads, from r.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// edgedRead parses one request out of data the way a connection does,
// body included; nil means refused. rest is what follows the request: the
// next request of a pipeline.
func edgedRead(data []byte) (r *http.Request, body, rest []byte, err error) {
	s := &h1Server{maxHeaderBytes: 8192}
	src := bytes.NewReader(data)
	c := &h1Conn{srv: s, nc: readerConn{r: src}, buf: make([]byte, 512), hdr: http.Header{}}
	c.bw = bufio.NewWriter(io.Discard)
	c.body.c = c
	n, _, herr := c.readHead(false)
	if herr != nil {
		return nil, nil, nil, herr
	}
	h := &c.head
	h.url = new(url.URL) // the connection's reused URL, as served
	if _, perr := parseHead(string(c.buf[:n]), h, c.hdr, nil); perr != nil {
		return nil, nil, nil, perr
	}
	c.r += n
	c.body.reset(h)
	r = &c.req
	r.Method, r.RequestURI, r.Host, r.Header, r.ContentLength, r.URL = h.method, h.target, h.host, c.hdr, h.contentLength, h.url
	if body, err = io.ReadAll(&c.body); err != nil {
		return nil, nil, nil, err
	}
	rest = append(bytes.Clone(c.buf[c.r:c.w]), data[len(data)-src.Len():]...)
	return r, body, rest, nil
}

// netHTTPRead is net/http's reading of the same bytes. Empty lines
// before the request line go first: its server skips them (after a
// POST), as edged's readHead does, where its reader would refuse them.
func netHTTPRead(data []byte) (r *http.Request, body, rest []byte, err error) {
	for bytes.HasPrefix(data, []byte("\r\n")) {
		data = data[2:]
	}
	src := bytes.NewReader(data)
	br := bufio.NewReader(src)
	if r, err = http.ReadRequest(br); err != nil {
		return nil, nil, nil, err
	}
	if body, err = io.ReadAll(r.Body); err != nil {
		return nil, nil, nil, err
	}
	buffered, _ := br.Peek(br.Buffered())
	rest = append(bytes.Clone(buffered), data[len(data)-src.Len():]...)
	return r, body, rest, nil
}

// FuzzH1Parse: whatever edged's parser accepts, net/http's reader
// accepts too, with the same method, target, host, header fields, body
// and trailers, and both stop at the same byte: what follows, the next
// request of a pipeline, is the same for both (a request smuggled past
// one reader would start elsewhere). (The reverse does not hold:
// TestH1StricterThanNetHTTP lists where edged refuses on purpose.)
func FuzzH1Parse(f *testing.F) {
	for _, s := range h1Seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, ourBody, ourRest, err := edgedRead(data)
		if err != nil {
			return
		}
		theirs, theirBody, theirRest, err := netHTTPRead(data)
		if err != nil {
			t.Fatalf("edged accepts what net/http refuses (%v): %q", err, data)
		}
		if ours.Method != theirs.Method || ours.RequestURI != theirs.RequestURI || ours.Host != theirs.Host {
			t.Fatalf("request line differs: edged %q %q host %q, net/http %q %q host %q; input %q",
				ours.Method, ours.RequestURI, ours.Host, theirs.Method, theirs.RequestURI, theirs.Host, data)
		}
		if *ours.URL != *theirs.URL {
			t.Fatalf("URL differs: %q vs %q; input %q", ours.URL, theirs.URL, data)
		}
		// net/http's server (not its reader) drops Expect: 100-continue,
		// which it answers itself, as edged does.
		if strings.EqualFold(theirs.Header.Get("Expect"), "100-continue") {
			theirs.Header.Del("Expect")
		}
		if !equalHeader(ours.Header, theirs.Header) {
			t.Fatalf("header differs:\nedged    %q\nnet/http %q\ninput %q", ours.Header, theirs.Header, data)
		}
		if ours.ContentLength != theirs.ContentLength || !bytes.Equal(ourBody, theirBody) {
			t.Fatalf("body differs: edged %d %q, net/http %d %q; input %q", ours.ContentLength, ourBody, theirs.ContentLength, theirBody, data)
		}
		if !equalHeader(nonEmpty(ours.Trailer), nonEmpty(theirs.Trailer)) {
			t.Fatalf("trailer differs: edged %q, net/http %q; input %q", ours.Trailer, theirs.Trailer, data)
		}
		if !bytes.Equal(ourRest, theirRest) {
			t.Fatalf("the request ends elsewhere: after it edged reads %q, net/http %q; input %q", ourRest, theirRest, data)
		}
	})
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || len(v) != len(w) {
			return false
		}
		for i := range v {
			if v[i] != w[i] {
				return false
			}
		}
	}
	return true
}

func nonEmpty(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range h {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// h1Seeds start the fuzzer from requests of every shape, good and bad.
var h1Seeds = []string{
	// pipelines: where the first request ends decides the next one's start
	"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
	"GET /old HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: a.example:8443\r\nAccept: */*\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n",
	"GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
	"GET http://a.example/x?y HTTP/1.1\r\nHost: b\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /old HTTP/1.0\r\n\r\n",
	"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\nhello",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3;a=b;c=\"d\"\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nx-lower: v\r\nX-Obs: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun\u212aed\r\n\r\n0\r\n\r\n",
	"POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n",
	"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
	"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
}

// TestH1StricterThanNetHTTP is the reviewed list of what net/http's
// reader accepts and edged refuses, each with its reason. It also shows
// that each refusal is edged's own choice, not an accident: net/http
// must accept every input here.
func TestH1StricterThanNetHTTP(t *testing.T) {
	const host = "Host: a\r\n"
	cases := []struct{ input, why string }{
		{"POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"CL with TE: net/http drops the CL and keeps the connection; a front end that honoured the CL would see another request (CL.TE smuggling). RFC 9112 6.1 lets a server refuse; HAProxy does."},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
			"TE on HTTP/1.0: net/http ignores TE and uses the CL; an HTTP/1.1 hop behind might not (RFC 9112 6.1: treat as faulty framing)."},
		{"POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
			"duplicate Content-Length with equal values: RFC 9112 allows merging, but one hop merging and another taking the first or last is how CL.CL desync starts; refused as HAProxy's strict mode does."},
		{"GET / HTTP/1.1\nHost: a\n\n",
			"bare LF line endings: RFC 9112 2.2 allows recognising them, but a hop that does not splits the head elsewhere."},
		{"GET / HTTP/1.1\r\n" + host + "X: 1\r\n 2\r\n\r\n",
			"obs-fold: RFC 9112 5.2 lets a server reject it; joining folds differently from another hop changes header values."},
		{"GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n",
			"non-ASCII bytes in the request target are not a valid request-target (RFC 3986); escaped forms are served."},
		{"GET / HTTP/1.2\r\n" + host + "\r\n",
			"HTTP/1.2 and other minor versions: net/http reads them as HTTP/1.x; edged answers 505 for anything but 1.0 and 1.1."},
		{"CONNECT a:443 HTTP/1.1\r\n" + host + "\r\n",
			"CONNECT: edged is no forward proxy."},
		{"GET ftp://a/ HTTP/1.1\r\n" + host + "\r\n",
			"absolute-form targets of schemes other than http and https."},
		{"GET http://u@a/ HTTP/1.1\r\n" + host + "\r\n",
			"user information in an absolute-form target (RFC 9110 4.2.4: must not be sent)."},
		{"GET http://b/ HTTP/1.1\r\n" + host + "\r\n",
			"a Host that is not the authority of an absolute-form target (RFC 9112 3.2: a client must send the same): net/http routes the target and drops Host, which a front end reading Host took for the host asked for; refused as HAProxy does."},
		{"GET * HTTP/1.1\r\n" + host + "\r\n",
			"the asterisk target with a method other than OPTIONS (RFC 9112 3.2.4)."},
		{"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n",
			"chunk extensions that are not name[=token|quoted-string]: net/http ignores what follows ';'; a hop that parses it may end the line elsewhere."},
		{"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n",
			"framing and routing fields in a trailer (RFC 9110 6.5.1): a hop that merges trailers into the header would see them."},
		{"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: 1\r\n 2\r\n\r\n",
			"obs-fold in a trailer, as in the head."},
		{"GET / HTTP/1.1\r\n" + host + "Expect: 200-ok\r\n\r\n",
			"an expectation other than 100-continue: 417, as net/http's server (not its reader) answers."},
	}
	for _, c := range cases {
		_, _, _, err := netHTTPRead([]byte(c.input))
		require.NoError(t, err, "net/http accepts %q", c.input)
		_, _, _, err = edgedRead([]byte(c.input))
		assert.Error(t, err, "edged refuses %q: %s", c.input, c.why)
	}
}

// TestH1ParseAccepts checks the parsed result of well-formed requests.
func TestH1ParseAccepts(t *testing.T) {
	r, body, _, err := edgedRead([]byte("POST http://b.example:8/x%2Fy?q=1 HTTP/1.1\r\nHost: B.Example:8\r\nTransfer-Encoding: chunked\r\nX-A: \t v \t\r\n\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"))
	require.NoError(t, err)
	assert.Equal(t, "POST", r.Method)
	assert.Equal(t, "b.example:8", r.Host, "absolute-form: the target names the host")
	assert.Equal(t, "/x/y", r.URL.Path)
	assert.Equal(t, "/x%2Fy", r.URL.EscapedPath())
	assert.Equal(t, "q=1", r.URL.RawQuery)
	assert.Equal(t, []string{"v"}, r.Header["X-A"])
	assert.Equal(t, int64(-1), r.ContentLength)
	assert.Equal(t, "hi", string(body))
	assert.Equal(t, []string{"1"}, r.Trailer["X-T"])
	assert.NotContains(t, r.Header, "Transfer-Encoding")
	assert.NotContains(t, r.Header, "Host")
}

// TestH1ParseUnderscoreFlag: the parser's flag, which lets the handler
// skip dropUnderscoreHeaders, is set whenever a field name of the parsed
// header holds '_' (and, conservatively, when only a value does; the
// target's does not count).
func TestH1ParseUnderscoreFlag(t *testing.T) {
	for _, c := range []struct {
		head string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n", false},
		{"GET /a_b?c_d=1 HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: a_b\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nX_A: 1\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-B: 2\r\n_: 1\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nX-B: 2\r\n\r\n", true},
	} {
		h := &h1Head{url: new(url.URL)}
		hdr := http.Header{}
		_, perr := parseHead(c.head, h, hdr, nil)
		require.Nil(t, perr, "%q", c.head)
		assert.Equal(t, c.want, h.underscores, "%q", c.head)
		for k := range hdr {
			if strings.IndexByte(k, '_') >= 0 {
				assert.True(t, h.underscores, "%q: %s holds '_' but the flag is off", c.head, k)
			}
		}
	}
}

// benchHeads are the request heads of the parse benchmarks: bench/'s
// (wrk's request) and a browser's.
var benchHeads = []struct{ name, head string }{
	{"bench", "GET /api/x HTTP/1.1\r\nHost: test.acme.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"},
	{"browser", "GET /users/42?x=1 HTTP/1.1\r\nHost: test.acme.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nCookie: a=b; c=d\r\nReferer: https://test.acme.com/\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n" +
		"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\nPriority: u=0, i\r\n\r\n"},
}

// BenchmarkH1ParseHead parses a head into a reused header, as a
// connection does.
func BenchmarkH1ParseHead(b *testing.B) {
	for _, c := range benchHeads {
		b.Run(c.name, func(b *testing.B) {
			h, u, hdr := &h1Head{}, new(url.URL), http.Header{}
			var vals []string
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				*h = h1Head{url: u}
				clear(hdr)
				var perr *h1Error
				if vals, perr = parseHead(c.head, h, hdr, vals[:0]); perr != nil {
					b.Fatal(perr)
				}
			}
		})
	}
}

// BenchmarkDropUnderscoreHeaders is the handler's pass over a parsed
// header without an underscore, which the parser's flag lets it skip.
func BenchmarkDropUnderscoreHeaders(b *testing.B) {
	for _, c := range benchHeads {
		b.Run(c.name, func(b *testing.B) {
			hdr := http.Header{}
			if _, perr := parseHead(c.head, &h1Head{url: new(url.URL)}, hdr, nil); perr != nil {
				b.Fatal(perr)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				dropUnderscoreHeaders(hdr)
			}
		})
	}
}
