package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"edged/internal/httpsyntax"
)

// The response head is parsed in place from the connection's read buffer
// into the connection's own http.Response and header map, which are the
// caller's until it closes the body. Header values become strings through
// the connection's field cache: a backend sends the same fields with the
// same values on every response (Content-Type, Server, Cache-Control...),
// and a value equal to the previous one of its field on this connection
// reuses that string and its one-element slice. Handed-out slices are
// never written again (a changed value gets a new slice), so a caller may
// keep them past Close.
//
// The parse follows http.ReadResponse's acceptance (FuzzResponseHead
// holds it to that): HTTP/1.0 and 1.1, a three-digit status, CRLF or bare
// LF line ends in the head, obs-fold joined with a space, several
// Content-Length fields only when they agree, Transfer-Encoding chunked
// only (ignored on HTTP/1.0) with CRLF line ends, a body up to the close
// when neither frames it. A Transfer-Encoding beside a Content-Length, or
// in an HTTP/1.0 response, is read as net/http reads it, but its
// connection is never reused (frame). It refuses field names that are not
// tokens and values with control characters, which would reach the
// client; it is stricter than net/http on an HTTP/2.0 status line and on
// trailer fields, and drops a space before a field's colon (RFC 9112 5.1)
// where net/http keeps it in the name.

var (
	errMalformedStatus = errors.New("malformed response status line")
	// errNoStatusLine is errMalformedStatus for the first line read for
	// a request: no answer to it began there. On a reused connection
	// those are bytes the node sent after its previous answer (a body
	// after a HEAD's, a 204's or a 304's head) that came after the
	// reuse peek.
	errNoStatusLine    = fmt.Errorf("%w: the first line of the answer is no status line", errMalformedStatus)
	errMalformedHeader = errors.New("malformed response header field")
	errBadLength       = errors.New("invalid or conflicting Content-Length in response")
	errUnsupportedTE   = errors.New("unsupported Transfer-Encoding in response")
	errBadChunk        = errors.New("malformed chunk in response body")

	chunkedTE = []string{"chunked"}
)

// maxKeptLong is the most of c.long a connection keeps between heads.
const maxKeptLong = 4 * readBufSize

// maxCachedFields bounds a connection's field cache: past it (a backend
// that makes up field names) the cache starts over.
const maxCachedFields = 64

// maxCachedValue is the longest value the field cache keeps: a longer
// one (a large cookie, a request header the node echoes, which a client
// chooses) would stay with the pooled connection for its life, whatever
// its later answers hold.
const maxCachedValue = 1 << 10

// maxKeptFields is how many fields a head may have had for its
// connection to keep its header map for the next head. A Go map never
// shrinks: cleared, a map that a head of many short fields grew (tens of
// thousands fit in the 1 MiB limit) would stay with the pooled
// connection for its life, megabytes each.
const maxKeptFields = 64

// fieldCache maps a field name as the node sends it to its canonical form
// and the last value slice handed out for it (of a value up to
// maxCachedValue bytes).
type fieldCache map[string]*cachedField

type cachedField struct {
	key  string
	vals []string // one element, never written after it is handed out
}

// field returns the canonical key of raw and a one-element slice holding v.
func (fc *fieldCache) field(raw, v []byte) (string, []string) {
	f := (*fc)[string(raw)]
	if f == nil {
		if *fc == nil || len(*fc) >= maxCachedFields {
			// Room for 8 (headerHint): a map of one group, probed
			// without a table's indirection while a node sends that few
			// field names; one that sends more grows it once.
			*fc = make(fieldCache, headerHint)
		}
		f = &cachedField{key: http.CanonicalHeaderKey(string(raw))}
		(*fc)[string(raw)] = f
	}
	if len(v) > maxCachedValue {
		return f.key, []string{string(v)} // not kept for the connection's life
	}
	if len(f.vals) == 0 || f.vals[0] != string(v) {
		f.vals = []string{string(v)}
	}
	return f.key, f.vals
}

// readResponse reads the final response head (1xx skipped, 101 returned)
// into c.resp.
func (c *conn) readResponse(req *Request) (*http.Response, error) {
	for i := 0; ; i++ {
		err := c.readHead(req.Method)
		if cap(c.long) > maxKeptLong {
			// A node's one long header line does not keep its buffer
			// (up to max_header_bytes) for the pooled connection's life.
			c.long = nil
		}
		if err != nil {
			if i == 0 && err == errMalformedStatus {
				err = errNoStatusLine
			}
			return nil, err
		}
		code := c.resp.StatusCode
		if code >= 200 || code == http.StatusSwitchingProtocols {
			return &c.resp, nil
		}
		if i == max1xx {
			return nil, errTooMany1xx
		}
	}
}

// readLine returns the next line without its line end, valid until the
// next read. A line longer than the read buffer is gathered in c.long.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		c.long = append(c.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(c.long) > maxHeaderBytes {
				return nil, errHeaderTooLarge
			}
			line, err = c.br.ReadSlice('\n')
			c.long = append(c.long, line...)
		}
		line = c.long
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	c.lastCR = false
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
		c.lastCR = true
	}
	return line, nil
}

// readCRLFLine is readLine for the chunked framing, where net/http too
// refuses a bare LF.
func (c *conn) readCRLFLine() ([]byte, error) {
	line, err := c.readLine()
	if err != nil {
		return nil, eofIsUnexpected(err)
	}
	if !c.lastCR {
		return nil, errBadChunk
	}
	return line, nil
}

// readHead reads one response head into c.resp and c.hdr.
func (c *conn) readHead(method string) error {
	if c.hdrFields > maxKeptFields {
		c.hdr = make(http.Header, headerHint)
	} else {
		clear(c.hdr)
	}
	c.hdrFields = 0
	c.longValue = false
	r := &c.resp
	*r = http.Response{Header: c.hdr}
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if err := c.parseStatusLine(line); err != nil {
		return err
	}
	var (
		last    string // the previous field's key, for obs-fold
		fold    []byte // its last value as obs-fold lines continue it
		folding bool
	)
	for {
		line, err := c.readLine()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			// obs-fold: the line continues the previous field's last
			// value (RFC 9112 5.2: replaced by a space). The lines of a
			// run are gathered, and the value made once (endFold): each
			// line must not copy the value so far.
			v := httpsyntax.TrimOWS(line)
			if last == "" || !httpsyntax.IsFieldValue(v) {
				return errMalformedHeader
			}
			if !folding {
				vv := c.hdr[last]
				fold = append(fold[:0], vv[len(vv)-1]...)
				folding = true
			}
			fold = append(fold, ' ')
			fold = append(fold, v...)
			continue
		}
		if folding {
			c.endFold(last, fold)
			folding = false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return errMalformedHeader
		}
		// Spaces before the colon are dropped, as net/http drops them
		// from a response (RFC 9112 5.1: a proxy removes them); a tab
		// there leaves the name invalid, refused as net/http refuses it.
		name := bytes.TrimRight(line[:colon], " ")
		if !httpsyntax.IsToken(name) || name[0] != line[0] {
			return errMalformedHeader
		}
		v := httpsyntax.TrimOWS(line[colon+1:])
		if !httpsyntax.IsFieldValue(v) {
			return errMalformedHeader
		}
		c.longValue = c.longValue || len(v) > maxCachedValue
		key, vals := c.fields.field(name, v)
		if prev, ok := c.hdr[key]; ok {
			vals = appendValue(prev, vals[0])
		}
		c.hdr[key] = vals
		last = key
	}
	c.hdrFields = len(c.hdr)
	return c.frame(method)
}

// appendValue appends v to prev, the values of one field so far. A
// slice of one value may be the field cache's, handed out before and
// never written again: it is copied. A longer one was made by this head,
// and grows in place (a head repeating a field over thousands of lines
// must not copy all its values at each).
func appendValue(prev []string, v string) []string {
	if len(prev) == 1 {
		return append(prev[:1:1], v)
	}
	return append(prev, v)
}

// endFold makes the last value of key's field the value obs-fold lines
// continued, joined as net/http joins them: one space a line, the whole
// then left-trimmed.
func (c *conn) endFold(key string, joined []byte) {
	v := string(bytes.TrimLeft(joined, " \t"))
	c.longValue = c.longValue || len(v) > maxCachedValue
	if vv := c.hdr[key]; len(vv) > 1 {
		vv[len(vv)-1] = v // made by this head (appendValue)
		return
	}
	c.hdr[key] = []string{v} // not the field cache's, which is never written
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func (c *conn) parseStatusLine(line []byte) error {
	r := &c.resp
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return errMalformedStatus
	}
	switch line[7] {
	case '0':
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	case '1':
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	default:
		return errMalformedStatus
	}
	code := 0
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return errMalformedStatus
		}
		code = code*10 + int(d-'0')
	}
	if code < 100 {
		return errMalformedStatus
	}
	r.StatusCode = code
	if status := line[9:]; string(status) != c.status {
		c.status = string(status)
	}
	r.Status = c.status
	return nil
}

// frame works out the body's framing from the head, as http.ReadResponse
// does, and readies c.body for it.
func (c *conn) frame(method string) error {
	r, h := &c.resp, c.hdr
	chunked := false
	// faulty: a Transfer-Encoding beside a Content-Length, or in an
	// HTTP/1.0 response. Which of the two framings the node meant is
	// anyone's guess (RFC 9112 6.1, 6.3: handle it as an error, close the
	// connection after the message): should it have meant the other,
	// the rest of this body would be read as the next request's response,
	// which may be another client's. The body is read as net/http reads
	// it (r.Close too), and the connection is not reused.
	faulty := false
	if te, ok := h["Transfer-Encoding"]; ok {
		faulty = r.ProtoMinor == 0 || len(h["Content-Length"]) > 0
		if r.ProtoMinor == 0 {
			delete(h, "Transfer-Encoding") // HTTP/1.0 has none
		} else {
			if len(te) != 1 || !httpsyntax.EqualFoldASCII(httpsyntax.TrimOWS(te[0]), "chunked") {
				return errUnsupportedTE
			}
			chunked = true
			r.TransferEncoding = chunkedTE
			delete(h, "Transfer-Encoding") // as net/http: the field is r.TransferEncoding
			delete(h, "Content-Length")
		}
	}
	cl := int64(-1)
	if cls := h["Content-Length"]; len(cls) > 0 {
		for i, s := range cls {
			if i > 0 && s != cls[0] {
				return errBadLength
			}
		}
		n, err := strconv.ParseUint(cls[0], 10, 63)
		if err != nil {
			return errBadLength
		}
		cl = int64(n)
		if len(cls) > 1 {
			h["Content-Length"] = cls[:1:1]
		}
	}
	// "Connection: close", or HTTP/1.0 without keep-alive. The field
	// stays (net/http drops it on HTTP/1.1): the proxy removes what its
	// other tokens name ("close, X-Internal") with it.
	if hasToken(h["Connection"], "close") {
		r.Close = true
	} else {
		r.Close = r.ProtoMinor == 0 && !hasToken(h["Connection"], "keep-alive")
	}
	b := &c.body
	*b = body{c: c}
	r.Body = b
	switch code := r.StatusCode; {
	case method == http.MethodHead:
		r.ContentLength = cl
		if chunked {
			r.ContentLength = -1
		}
		b.eof = true
	case code < 200 || code == http.StatusNoContent || code == http.StatusNotModified:
		r.ContentLength = 0
		b.eof = true
	case chunked:
		r.ContentLength = -1
		b.mode = bodyChunked
	case cl >= 0:
		r.ContentLength = cl
		b.mode = bodyLength
		b.n = cl
		b.eof = cl == 0
	default:
		// Up to the close: never reusable.
		r.ContentLength = -1
		r.Close = true
		b.mode = bodyToEOF
	}
	b.reuse = !r.Close && !faulty
	return nil
}

// hasToken reports whether any of the field's values vv holds token.
func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		if httpsyntax.HasToken(v, token) {
			return true
		}
	}
	return false
}

// Body framings.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyToEOF
)

// body is a response body, framed on the connection's reader. It is part
// of the connection: Close hands the connection back (to the idle pool
// when the body was read to its end and reuse holds, else closed), and
// from then on the response belongs to the connection's next request.
// A read error hands the connection back at once (closed).
type body struct {
	c      *conn
	mode   int
	n      int64 // bytes left of the body (bodyLength) or of the chunk (bodyChunked)
	crlf   bool  // a chunk's data ended: its CRLF comes next
	eof    bool  // read to the end
	reuse  bool
	err    error // what Read returns once handed back
	handed bool  // the connection was handed back
	probe  bool  // a health check's: the checker closes the connection
	// watch: the node's passive verdict on the request waits for the
	// body's end (Node.RoundTrip): a head is no success while its body
	// may still break.
	watch bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.handed {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var err error
	switch b.mode {
	case bodyLength:
		n, err = b.c.br.Read(p[:min(int64(len(p)), b.n)])
		b.n -= int64(n)
		if b.n == 0 {
			b.eof, err = true, nil
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case bodyChunked:
		n, err = b.readChunked(p)
	case bodyToEOF:
		n, err = b.c.br.Read(p)
		if err == io.EOF {
			b.eof, err = true, nil
		}
	default:
		b.eof = true
	}
	if err != nil {
		b.handBack(err, false)
		return n, err
	}
	if b.eof {
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	return n, nil
}

// readChunked reads chunk data, crossing chunk boundaries as needed; the
// last chunk's trailer section is read and dropped.
func (b *body) readChunked(p []byte) (int, error) {
	c := b.c
	for b.n == 0 {
		if b.crlf {
			line, err := c.readCRLFLine()
			if err != nil {
				return 0, err
			}
			if len(line) != 0 {
				return 0, errBadChunk
			}
			b.crlf = false
		}
		line, err := c.readCRLFLine()
		if err != nil {
			return 0, err
		}
		// As net/http: trailing whitespace goes, extensions are ignored,
		// and the size is hex digits alone.
		line = bytes.TrimRight(line, " \t")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		if len(line) == 0 || len(line) > 15 {
			return 0, errBadChunk
		}
		var size int64
		for _, d := range line {
			switch {
			case '0' <= d && d <= '9':
				d -= '0'
			case 'a' <= d && d <= 'f':
				d -= 'a' - 10
			case 'A' <= d && d <= 'F':
				d -= 'A' - 10
			default:
				return 0, errBadChunk
			}
			size = size<<4 | int64(d)
		}
		if size == 0 {
			// The trailer section, up to its empty line, counted in the
			// head limit (a probe's stays its whole answer's); its fields
			// are checked, then dropped (edged forwards no response
			// trailers).
			if !b.probe {
				c.lr.n, c.lr.limit = 0, maxHeaderBytes
			}
			for {
				line, err := c.readCRLFLine()
				if err != nil {
					return 0, err
				}
				if len(line) == 0 {
					break
				}
				colon := bytes.IndexByte(line, ':')
				if colon <= 0 || !httpsyntax.IsToken(line[:colon]) || !httpsyntax.IsFieldValue(httpsyntax.TrimOWS(line[colon+1:])) {
					return 0, errMalformedHeader
				}
			}
			if !b.probe {
				c.lr.limit = -1
			}
			b.eof = true
			return 0, nil
		}
		b.n = size
		b.crlf = true
	}
	n, err := c.br.Read(p[:min(int64(len(p)), b.n)])
	b.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// handBack gives the connection back once; Read then returns err.
func (b *body) handBack(err error, reuse bool) {
	if b.handed {
		return
	}
	b.handed, b.err = true, err
	if b.watch {
		// Before finish: the connection may serve another request then.
		b.watch = false
		b.c.bodyVerdict(err)
	}
	if !b.probe {
		b.c.finish(reuse)
	}
}

// bodyVerdict gives the passive check its verdict on a request whose
// head was no failure, once its body is handed back with err: a success
// when the caller closed it (read to its end, or not: the caller's
// choice), a failure when the node broke it (closed or reset the
// connection before its end, sent nothing for ResponseTimeout, framed
// it wrong), unless the request's end broke it (its context, Cut).
func (c *conn) bodyVerdict(err error) {
	n := c.node
	switch {
	case err == http.ErrBodyReadAfterClose:
		n.recordSuccess()
	case c.aborted.Load() || n.up.cut.Load():
	default:
		n.recordFailure(fmt.Errorf("response body: %w", err))
	}
}

func (b *body) Close() error {
	b.handBack(http.ErrBodyReadAfterClose, b.eof && b.reuse)
	return nil
}
