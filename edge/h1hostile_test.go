package edge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wholeRecorder is a backend that records every request it read completely
// (head and whole body) as "METHOD URI body".
type wholeRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (rec *wholeRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return // an incomplete request is not a request
	}
	rec.mu.Lock()
	rec.seen = append(rec.seen, r.Method+" "+r.RequestURI+" "+string(b))
	rec.mu.Unlock()
	io.WriteString(w, "ok")
}

func (rec *wholeRecorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := rec.seen
	rec.seen = nil
	return s
}

// hostileEdge is an edge in front of a recording backend, with a small
// head limit.
func hostileEdge(t *testing.T) (*testEdge, *wholeRecorder) {
	testCertDir(t)
	rec := &wholeRecorder{}
	back := startBackend(t, rec)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "max_header_bytes = 4096\nread_header_timeout = \"2s\""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", back.addr),
	})
	return te, rec
}

// exchangeTLS sends raw on a fresh HTTP/1.1 TLS connection (closing its
// sending side after when closeWrite), reads the answers, and reports
// their statuses and whether the server closed the connection after them.
func exchangeTLS(t *testing.T, te *testEdge, raw string, closeWrite bool, answers int) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	if closeWrite {
		require.NoError(t, c.CloseWrite())
	}
	br := bufio.NewReader(c)
	for len(statuses) < answers {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			break
		}
		statuses = append(statuses, resp.StatusCode)
		bodies = append(bodies, string(b))
	}
	// Closed: EOF (or a reset) soon; open: the read waits.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = br.ReadByte()
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	closed = err != nil && !timedOut
	return statuses, bodies, closed
}

const hostPrefix = "Host: test.acme.com\r\n"

// TestH1HostileRequests sends request smuggling and malformed-framing
// vectors over real TLS: each refused one is answered (400 unless said),
// the connection is closed, and the backend receives nothing — not even
// what was pipelined behind it. The accepted ones reach the backend with
// exactly their body.
func TestH1HostileRequests(t *testing.T) {
	te, rec := hostileEdge(t)
	type tc struct {
		name       string
		raw        string
		closeWrite bool
		statuses   []int    // answers in order
		closed     bool     // the server closes after them
		backend    []string // what the backend read completely
	}
	const post = "POST /p HTTP/1.1\r\n" + hostPrefix
	refused := func(name, raw string, status int) tc {
		return tc{name: name, raw: raw, statuses: []int{status}, closed: true}
	}
	cases := []tc{
		// Accepted: the baseline the refusals are measured against.
		{name: "plain GET stays open", raw: "GET /a HTTP/1.1\r\n" + hostPrefix + "\r\n", statuses: []int{200}, backend: []string{"GET /a "}},
		{name: "Content-Length body", raw: post + "Content-Length: 5\r\n\r\nhello", statuses: []int{200}, backend: []string{"POST /p hello"}},
		{name: "chunked body", raw: post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", statuses: []int{200}, backend: []string{"POST /p hello world"}},
		{name: "chunked, any case, OWS", raw: post + "Transfer-Encoding: \tChunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n", statuses: []int{200}, backend: []string{"POST /p abc"}},
		{name: "chunk extensions and a trailer", raw: post + "Transfer-Encoding: chunked\r\n\r\n3;a=b;c=\"d e\"\r\nabc\r\n0;z\r\nX-Sum: 1\r\n\r\n", statuses: []int{200}, backend: []string{"POST /p abc"}},
		{name: "pipelined requests answered in order", raw: "GET /1 HTTP/1.1\r\n" + hostPrefix + "\r\n" + post + "Content-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n" + hostPrefix + "\r\n", statuses: []int{200, 200, 200}, backend: []string{"GET /1 ", "POST /p hi", "GET /3 "}},
		{name: "HTTP/1.0 closes without keep-alive", raw: "GET /old HTTP/1.0\r\n" + hostPrefix + "\r\n", statuses: []int{200}, closed: true, backend: []string{"GET /old "}},
		{name: "Connection: close", raw: "GET /c HTTP/1.1\r\n" + hostPrefix + "Connection: close\r\n\r\nGET /never HTTP/1.1\r\n" + hostPrefix + "\r\n", statuses: []int{200}, closed: true, backend: []string{"GET /c "}},

		// Request smuggling: two framings, or one in disguise.
		refused("CL.TE", post+"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
		refused("TE.CL", post+"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400),
		refused("TE.TE: a second TE header", post+"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
		refused("TE.TE: chunked twice in one header", post+"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE: xchunked", post+"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE: identity", post+"Transfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n", 400),
		refused("TE: chunked with a parameter", post+"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400),
		refused("TE: vertical tab before chunked", post+"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE: NUL after chunked", post+"Transfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n", 400),
		refused("TE: space before the colon", post+"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE: folded onto a second line", post+"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE: chunked spelt with the Kelvin sign", post+"Transfer-Encoding: chun\u212aed\r\n\r\n0\r\n\r\n", 400),
		refused("TE: chunked with the Kelvin sign in a list", post+"Transfer-Encoding: gzip, chun\u212aed\r\n\r\n0\r\n\r\n", 400),
		refused("TE: gzip, chunked is not served", post+"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
		refused("TE on HTTP/1.0", "POST /p HTTP/1.0\r\n"+hostPrefix+"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
		refused("TE and CL on HTTP/1.0", "POST /p HTTP/1.0\r\n"+hostPrefix+"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 400),

		// Content-Length abuse.
		refused("duplicate CL, equal", post+"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
		refused("duplicate CL, different", post+"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
		refused("CL list in one header", post+"Content-Length: 5, 5\r\n\r\nhello", 400),
		refused("CL with a sign", post+"Content-Length: +5\r\n\r\nhello", 400),
		refused("CL negative", post+"Content-Length: -1\r\n\r\n", 400),
		refused("CL with a space inside", post+"Content-Length: 1 0\r\n\r\n0123456789", 400),
		refused("CL in hex", post+"Content-Length: 0x5\r\n\r\nhello", 400),
		refused("CL overflowing", post+"Content-Length: 99999999999999999999\r\n\r\n", 400),

		// Line endings, control bytes, header syntax.
		refused("bare LF line endings", "GET /lf HTTP/1.1\n"+"Host: test.acme.com\n\n", 400),
		refused("one bare LF header line", "GET /lf HTTP/1.1\r\nX-A: 1\n"+hostPrefix+"\r\n", 400),
		refused("CR alone in a value", "GET /cr HTTP/1.1\r\n"+hostPrefix+"X-A: 1\rX-B: 2\r\n\r\n", 400),
		refused("NUL in a value", "GET /nul HTTP/1.1\r\n"+hostPrefix+"X-A: a\x00b\r\n\r\n", 400),
		refused("DEL in a value", "GET /del HTTP/1.1\r\n"+hostPrefix+"X-A: a\x7fb\r\n\r\n", 400),
		refused("obs-fold", "GET /fold HTTP/1.1\r\n"+hostPrefix+"X-A: 1\r\n\t2\r\n\r\n", 400),
		refused("space between name and colon", "GET /sp HTTP/1.1\r\n"+hostPrefix+"X-A : 1\r\n\r\n", 400),
		refused("header name not a token", "GET /tok HTTP/1.1\r\n"+hostPrefix+"X(A): 1\r\n\r\n", 400),
		refused("header line without colon", "GET /nc HTTP/1.1\r\n"+hostPrefix+"X-A\r\n\r\n", 400),
		refused("empty header name", "GET /en HTTP/1.1\r\n"+hostPrefix+": 1\r\n\r\n", 400),
		refused("missing Host on HTTP/1.1", "GET /nohost HTTP/1.1\r\n\r\n", 400),
		refused("two Host headers", "GET /2host HTTP/1.1\r\n"+hostPrefix+"Host: other.acme.com\r\n\r\n", 400),
		refused("bare LF before the request", "\nGET /x HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("head over max_header_bytes", "GET /big HTTP/1.1\r\n"+hostPrefix+"X-Big: "+strings.Repeat("b", 9000)+"\r\n\r\n", 431),
		refused("expectation other than 100-continue", post+"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n", 417),
		refused("expectation other than 100-continue before a 100-continue", post+"Expect: 200-ok\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 417),
		refused("expectation other than 100-continue before an empty Expect", post+"Expect: 200-ok\r\nExpect:\r\nContent-Length: 2\r\n\r\nhi", 417),

		// The request line.
		refused("space inside the target", "GET /a b HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("fragment in the target", "GET /a#frag HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("control byte in the target", "GET /a\x01b HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("non-ASCII in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("method not a token", "G(T /x HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("two spaces after the method", "GET  /x HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("lower-case version", "GET /x http/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("HTTP/1.2", "GET /x HTTP/1.2\r\n"+hostPrefix+"\r\n", 505),
		refused("HTTP/2.0 in an HTTP/1 request line", "GET /x HTTP/2.0\r\n"+hostPrefix+"\r\n", 505),
		refused("asterisk target for GET", "GET * HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("CONNECT", "CONNECT test.acme.com:443 HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("absolute target with user information", "GET http://u@test.acme.com/ HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("absolute target of another scheme", "GET ftp://test.acme.com/ HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),

		// Chunked bodies: the handler is running; the body fails.
		refused("chunk size with a sign", post+"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", 400),
		refused("chunk size in 0x form", post+"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
		refused("chunk size after a space", post+"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", 400),
		refused("chunk size overflowing", post+"Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n", 400),
		refused("chunk without CRLF after its data", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", 400),
		refused("chunk line ending in a bare LF", post+"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
		refused("chunk extension with a control byte", post+"Transfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n", 400),
		refused("chunk extension too long", post+"Transfer-Encoding: chunked\r\n\r\n5;a="+strings.Repeat("x", 5000)+"\r\nhello\r\n0\r\n\r\n", 400),
		refused("Content-Length in the trailer", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n", 400),
		refused("folded trailer", post+"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\n 2\r\n\r\n", 400),
		{name: "body shorter than its Content-Length", raw: post + "Content-Length: 10\r\n\r\nhello", closeWrite: true, statuses: []int{400}, closed: true},
		{name: "chunked body cut before its last chunk", raw: post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", closeWrite: true, statuses: []int{400}, closed: true},

		// What is pipelined behind a refused request is never served.
		refused("pipelined after CL.TE", post+"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("pipelined after a bad chunk", post+"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\nGET /smuggled HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		refused("pipelined after obs-fold", "GET /a HTTP/1.1\r\n"+hostPrefix+"X: 1\r\n 2\r\n\r\nGET /smuggled HTTP/1.1\r\n"+hostPrefix+"\r\n", 400),
		{name: "a good request, then a refused one, then a smuggled one", raw: "GET /good HTTP/1.1\r\n" + hostPrefix + "\r\n" + post + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nxGET /smuggled HTTP/1.1\r\n" + hostPrefix + "\r\n", statuses: []int{200, 400}, closed: true, backend: []string{"GET /good "}},
	}
	require.GreaterOrEqual(t, len(cases), 40)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec.take()
			statuses, bodies, closed := exchangeTLS(t, te, c.raw, c.closeWrite, len(c.statuses))
			assert.Equal(t, c.statuses, statuses, "answers %q", bodies)
			if len(statuses) > 0 && statuses[len(statuses)-1] >= 400 {
				status := statuses[len(statuses)-1]
				assert.Contains(t, bodies[len(bodies)-1], `"code":"`+refusalNames[h1Refusal(status)]+`"`, "the code of %d", status)
			}
			assert.Equal(t, c.closed, closed, "connection closed")
			assert.Equal(t, c.backend, rec.take(), "what the backend read")
		})
	}
}

// TestH1EmptyLinesBeforeARequestAreSkipped: RFC 9112 2.2 asks a server to
// ignore at least one empty line before a request line, which nginx,
// HAProxy and net/http do: clients that end a POST's body with an extra
// CRLF (RFC 9112 2.2's "old HTTP/1.0 client implementations") send one
// before their next request on the connection. That request is served;
// it was answered 400 and its connection closed. Empty lines still count
// toward the head's limit, and a bare LF is still refused.
func TestH1EmptyLinesBeforeARequestAreSkipped(t *testing.T) {
	te, rec := hostileEdge(t)
	post := "POST /p HTTP/1.1\r\n" + hostPrefix + "Content-Length: 2\r\n\r\nhi"
	get := "GET /next HTTP/1.1\r\n" + hostPrefix + "\r\n"

	statuses, bodies, closed := exchangeTLS(t, te, post+"\r\n"+get, false, 2)
	assert.Equal(t, []int{200, 200}, statuses, "answers %q", bodies)
	assert.False(t, closed, "connection closed")
	assert.Equal(t, []string{"POST /p hi", "GET /next "}, rec.take())

	// The CRLF after a body is no head begun: the connection waits for
	// the next request with idle_timeout, not read_header_timeout (2s).
	c, br := dialH1(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := io.WriteString(c, post+"\r\n")
	require.NoError(t, err)
	resp, _ := readResp(t, br, "POST")
	assert.Equal(t, 200, resp.StatusCode)
	time.Sleep(3 * time.Second)
	_, err = io.WriteString(c, get)
	require.NoError(t, err)
	resp, _ = readResp(t, br, "GET")
	assert.Equal(t, 200, resp.StatusCode, "the next request, past read_header_timeout")
	c.Close()
	assert.Equal(t, []string{"POST /p hi", "GET /next "}, rec.take())

	statuses, bodies, closed = exchangeTLS(t, te, "\r\n\r\n"+get, false, 1)
	assert.Equal(t, []int{200}, statuses, "answers %q", bodies)
	assert.False(t, closed, "connection closed")
	assert.Equal(t, []string{"GET /next "}, rec.take())

	statuses, _, closed = exchangeTLS(t, te, "\n"+get, false, 1)
	assert.Equal(t, []int{400}, statuses, "a bare LF")
	assert.True(t, closed)
	statuses, _, closed = exchangeTLS(t, te, strings.Repeat("\r\n", 5000)+get, false, 1)
	assert.Equal(t, []int{431}, statuses, "empty lines past max_header_bytes")
	assert.True(t, closed)
	assert.Empty(t, rec.take())
}
