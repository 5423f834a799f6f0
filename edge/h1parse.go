package edge

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"edged/internal/httpsyntax"
)

// The client-facing HTTP/1.1 parser. It is deliberately stricter than
// net/http's reader (h1parse_test.go lists every difference and why): a
// request whose framing two implementations could read differently is
// refused, never guessed at, because edged forwards it to another parser
// (the backend's) and any disagreement is a smuggling vector.
//
// Everything here works on a complete head: the connection loop first
// finds the head's end (h1HeadEnd), then parseHead validates and splits
// it in one pass. Strings of one head share one allocation.

// h1Error is a refusal: the status to answer and why. The connection is
// closed after it is answered.
type h1Error struct {
	status int
	msg    string
}

func (e *h1Error) Error() string { return e.msg }

func badRequest(msg string) *h1Error { return &h1Error{http.StatusBadRequest, msg} }

// Refusals reused for every connection (they carry no request data).
var (
	errBareLF        = badRequest("a line of the request head ends in LF without CR")
	errHeadTooLarge  = &h1Error{http.StatusRequestHeaderFieldsTooLarge, "request head is larger than max_header_bytes"}
	errBadVersion    = &h1Error{http.StatusHTTPVersionNotSupported, "only HTTP/1.0 and HTTP/1.1 are served"}
	errUnsupportedTE = &h1Error{http.StatusNotImplemented, "a transfer coding other than chunked"}
	errExpectation   = &h1Error{http.StatusExpectationFailed, "the only expectation served is 100-continue"}
)

// h1HeadSlack is what a head may have above max_header_bytes: room for
// the request line, as net/http allowed.
const h1HeadSlack = 4096

// h1HeadEnd looks for the empty line that ends a head in b, starting at
// the line that begins at from. It returns the length of the head
// (including the empty line), or -1 while it is incomplete, and next: where
// the scan should resume once more bytes arrived. A line ending in a bare
// LF is refused at once, so that a client speaking another dialect gets
// its 400 without waiting for a timeout.
func h1HeadEnd(b []byte, from int) (end, next int, err *h1Error) {
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1, from, nil
		}
		lf := from + i
		if lf == 0 || b[lf-1] != '\r' {
			return -1, from, errBareLF
		}
		if lf == from+1 && from > 0 {
			return lf + 1, lf + 1, nil // "\r\n" alone: the empty line
		}
		if lf == 1 {
			// An empty line first, which readHead skips before it
			// calls: let parseHead refuse it.
			return lf + 1, lf + 1, nil
		}
		from = lf + 1
	}
}

// h1Head is a parsed request head.
type h1Head struct {
	method, target, proto string
	minor                 int // HTTP/1.minor
	host                  string
	url                   *url.URL
	contentLength         int64 // -1: chunked; 0 without a body
	chunked               bool
	close                 bool // Connection: close, or HTTP/1.0 without keep-alive
	keepAlive10           bool // HTTP/1.0 with Connection: keep-alive
	expectContinue        bool
	underscores           bool     // the header section holds '_': a field name may (dropUnderscoreHeaders has work)
	trailerKeys           []string // declared by Trailer, canonical
}

// parseHead parses the head s (request line, header lines, empty line,
// each ending in CRLF) into h and hdr, which must be empty. h.url, when
// not nil, is filled in for the usual targets instead of a new URL. Header values
// are appended to vals, whose backing array the caller may reuse across
// requests (each value gets a full slice of one element), and returned.
func parseHead(s string, h *h1Head, hdr http.Header, vals []string) ([]string, *h1Error) {
	line, rest, _ := strings.Cut(s, "\r\n")
	if err := h.parseRequestLine(line); err != nil {
		return vals, err
	}
	// One scan of the header section, names and values, rather than a
	// test per name: a '_' in a value only costs the handler its pass.
	h.underscores = strings.IndexByte(rest, '_') >= 0
	var (
		nHost, nCL, nTE int
		clValue, te     string
		conn            []string
		// Every Expect field counts, as over HTTP/2: an expectation
		// other than 100-continue in any of them is not met (417),
		// whichever field comes last; an empty one is none.
		expect100, expectOther bool
		pragmaNoCache          bool
	)
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return vals, badRequest("obsolete line folding in the request head")
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return vals, badRequest("a header line without a name and a colon")
		}
		name := line[:colon]
		if !httpsyntax.IsToken(name) {
			return vals, badRequest("a header name that is not a token (whitespace before the colon, or a control byte)")
		}
		raw := line[colon+1:]
		if !httpsyntax.IsFieldValue(raw) {
			return vals, badRequest("a control byte in a header value")
		}
		value := httpsyntax.TrimOWS(raw)
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Host":
			nHost++
			h.host = value
			continue // net/http keeps it out of the header too: r.Host has it
		case "Content-Length":
			nCL++
			clValue = value
		case "Transfer-Encoding":
			nTE++
			te = value
			continue
		case "Connection":
			conn = append(conn, value)
		case "Expect":
			switch {
			case value == "":
			case httpsyntax.EqualFoldASCII(value, "100-continue"):
				expect100 = true
			default:
				expectOther = true
			}
		case "Pragma":
			pragmaNoCache = pragmaNoCache || value == "no-cache"
		case "Trailer":
			if err := h.declareTrailers(value); err != nil {
				return vals, err
			}
		}
		vals = append(vals, value)
		v := vals[len(vals)-1 : len(vals) : len(vals)]
		if old, ok := hdr[key]; ok {
			hdr[key] = append(old, value)
		} else {
			hdr[key] = v
		}
	}
	if nHost > 1 {
		return vals, badRequest("more than one Host header")
	}
	if nHost == 0 && h.minor == 1 {
		return vals, badRequest("HTTP/1.1 request without a Host header")
	}
	if h.url.Host != "" {
		// absolute-form: the target names the host (RFC 9112 3.2.2),
		// and a client must send the same in Host (3.2). One that names
		// another is refused, as HAProxy does: dropped, it was a second
		// host that a front end or filter reading Host took for the one
		// edged serves.
		if nHost == 1 && !sameAuthority(h.host, h.url.Host, h.url.Scheme) {
			return vals, badRequest("a Host header that is not the authority of the absolute request target")
		}
		h.host = h.url.Host
	}
	if nTE > 1 {
		return vals, badRequest("more than one Transfer-Encoding header")
	}
	if nCL > 1 {
		return vals, badRequest("more than one Content-Length header")
	}
	if nTE == 1 {
		if nCL > 0 {
			return vals, badRequest("both Content-Length and Transfer-Encoding")
		}
		if h.minor == 0 {
			return vals, badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if err := checkTransferEncoding(te); err != nil {
			return vals, err
		}
		h.chunked = true
		h.contentLength = -1
	} else if nCL == 1 {
		n, ok := parseContentLength(clValue)
		if !ok {
			return vals, badRequest("a Content-Length that is not a decimal number of at most 18 digits")
		}
		h.contentLength = n
	}
	if !h.chunked {
		h.trailerKeys = h.trailerKeys[:0] // net/http ignores Trailer without chunks
	} else {
		delete(hdr, "Trailer") // moved to the request's Trailer, as net/http does
	}
	for _, c := range conn {
		if httpsyntax.HasToken(c, "close") {
			h.close = true
		}
		if httpsyntax.HasToken(c, "keep-alive") {
			h.keepAlive10 = h.minor == 0
		}
	}
	if h.minor == 0 && !h.keepAlive10 {
		h.close = true
	}
	if expectOther {
		return vals, errExpectation
	}
	if expect100 {
		// Answered here (or ignored from an HTTP/1.0 client, RFC 9110
		// 10.1.1): never forwarded, as net/http did.
		delete(hdr, "Expect")
		h.expectContinue = h.minor == 1 && h.contentLength != 0
	}
	if pragmaNoCache && len(hdr["Cache-Control"]) == 0 {
		// As net/http does (RFC 7234 5.4).
		hdr["Cache-Control"] = pragmaNoCacheValue
	}
	return vals, nil
}

var pragmaNoCacheValue = []string{"no-cache"}

// parseRequestLine parses "method SP request-target SP HTTP-version".
func (h *h1Head) parseRequestLine(line string) *h1Error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return badRequest("a request line that is not method, target and version separated by single spaces")
	}
	if !httpsyntax.IsToken(method) {
		return badRequest("a method that is not a token")
	}
	switch proto {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && isDigit(proto[5]) && proto[6] == '.' && isDigit(proto[7]) {
			return errBadVersion
		}
		return badRequest("a request line whose version is not HTTP/1.0 or HTTP/1.1")
	}
	if target == "" {
		return badRequest("an empty request target")
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return badRequest("a request target with a space, control byte, fragment or non-ASCII byte")
		}
	}
	h.method, h.target, h.proto = method, target, proto
	switch {
	case target[0] == '/':
	case target == "*":
		if method != http.MethodOptions {
			return badRequest("the asterisk target is for OPTIONS only")
		}
	case method == http.MethodConnect:
		return badRequest("CONNECT is not served")
	default:
		// absolute-form, as proxies send: http(s)://authority[/path]
		scheme, _, ok := strings.Cut(target, "://")
		if !ok || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
			return badRequest("a request target that is neither a path nor an http(s) URL")
		}
	}
	if method == http.MethodConnect {
		return badRequest("CONNECT is not served")
	}
	if h.url != nil && originFormFast(target, h.url) {
		return nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return badRequest("a request target that does not parse as a URL")
	}
	if target[0] != '/' && target != "*" && (u.Host == "" || u.User != nil) {
		return badRequest("an absolute request target without a host, or with user information")
	}
	h.url = u
	return nil
}

// originFormFast fills u from an origin-form target whose path needs no
// unescaping, the usual case, without url.ParseRequestURI's allocation;
// it reports false for anything else. FuzzH1Parse checks that both
// agree.
func originFormFast(target string, u *url.URL) bool {
	if target[0] != '/' {
		return false
	}
	path, query, hasQuery := strings.Cut(target, "?")
	for i := 0; i < len(path); i++ {
		if !httpsyntax.PathSafe[path[i]] {
			return false
		}
	}
	if hasQuery && query == "" || strings.IndexByte(query, '?') >= 0 {
		return false // ForceQuery and "??" are left to net/url
	}
	*u = url.URL{Path: path, RawQuery: query}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// declareTrailers records the names a Trailer header announces; framing
// and routing headers may not come after the body.
func (h *h1Head) declareTrailers(v string) *h1Error {
	for _, name := range strings.Split(v, ",") {
		name = httpsyntax.TrimOWS(name)
		if name == "" {
			continue
		}
		if !httpsyntax.IsToken(name) {
			return badRequest("a Trailer header naming a field that is not a token")
		}
		key := http.CanonicalHeaderKey(name)
		if forbiddenTrailer(key) {
			return badRequest("a Trailer header announcing " + key)
		}
		h.trailerKeys = append(h.trailerKeys, key)
	}
	return nil
}

// forbiddenTrailer names the fields a trailer may not carry: framing,
// routing and the trailer list itself.
func forbiddenTrailer(key string) bool {
	switch key {
	case "Content-Length", "Transfer-Encoding", "Trailer", "Host", "Content-Type", "Content-Encoding", "Content-Range", "Te", "Connection", "Expect":
		return true
	}
	return false
}

// checkTransferEncoding accepts exactly "chunked" (any ASCII case). A
// list of registered codings is well formed but not served: 501. Anything
// else, such as "xchunked", "chunked, chunked" or stray bytes, is refused
// as malformed: 400. Case is folded for ASCII letters only: Unicode
// folding (strings.EqualFold, strings.ToLower) reads "chun\u212aed", with
// the Kelvin sign, as "chunked", where net/http and any other hop see an
// unknown coding and may frame the body otherwise.
func checkTransferEncoding(v string) *h1Error {
	if httpsyntax.EqualFoldASCII(v, "chunked") {
		return nil
	}
	seenChunked := false
	for _, c := range strings.Split(v, ",") {
		c = httpsyntax.TrimOWS(c)
		switch {
		case httpsyntax.EqualFoldASCII(c, "chunked"):
			if seenChunked {
				return badRequest("Transfer-Encoding names chunked twice")
			}
			seenChunked = true
		case isRegisteredCoding(c):
		default:
			return badRequest("Transfer-Encoding is not chunked")
		}
	}
	return errUnsupportedTE
}

// isRegisteredCoding reports, in any ASCII case, the transfer codings
// other than chunked that are well formed but not served.
func isRegisteredCoding(c string) bool {
	for _, name := range [...]string{"gzip", "deflate", "compress", "x-gzip", "x-compress"} {
		if httpsyntax.EqualFoldASCII(c, name) {
			return true
		}
	}
	return false
}

// parseContentLength accepts 1 to 18 decimal digits, nothing else.
func parseContentLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// Chunked bodies: limits on what is not data.
const (
	maxChunkLine   = 4096 // a chunk-size line with its extensions, as net/http
	maxChunkDigits = 15   // below 2^60: no overflow anywhere
)

var errBadChunk = errors.New("malformed chunked request body")

// parseChunkLine parses a chunk-size line without its CRLF: 1*HEXDIG,
// then chunk extensions (";" name ["=" token / quoted-string]) with no
// whitespace anywhere (net/http refuses whitespace before ";").
func parseChunkLine(line []byte) (int64, error) {
	i := 0
	var n int64
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i == maxChunkDigits {
			return 0, errBadChunk
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, errBadChunk
	}
	for i < len(line) {
		if line[i] != ';' {
			return 0, errBadChunk
		}
		i++
		j := tokenEnd(line, i)
		if j == i {
			return 0, errBadChunk
		}
		i = j
		if i < len(line) && line[i] == '=' {
			i++
			if i < len(line) && line[i] == '"' {
				i++
				for {
					if i >= len(line) {
						return 0, errBadChunk
					}
					c := line[i]
					if c == '"' {
						i++
						break
					}
					if c == '\\' {
						i++
						if i >= len(line) || !httpsyntax.ValueByte(line[i]) {
							return 0, errBadChunk
						}
					} else if !httpsyntax.ValueByte(c) {
						return 0, errBadChunk
					}
					i++
				}
			} else {
				j := tokenEnd(line, i)
				if j == i {
					return 0, errBadChunk
				}
				i = j
			}
		}
	}
	return n, nil
}

// tokenEnd returns the end of the run of token bytes that starts at b[i].
func tokenEnd(b []byte, i int) int {
	for i < len(b) && httpsyntax.TokenByte[b[i]] {
		i++
	}
	return i
}
