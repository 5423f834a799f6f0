package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"edged/internal/httpsyntax"
)

// h1Response is the http.ResponseWriter of a request on an h1Conn. The
// handler sets headers and the status; h1Response frames: Content-Length
// when the handler gave one or the whole body fits in h1SniffMax and the
// handler returns, else chunked (HTTP/1.1) or close-delimited (HTTP/1.0).
// It adds Date, and Connection when the connection closes after the answer
// or an HTTP/1.0 keep-alive goes on. Header fields whose name is not a
// token or whose value holds CR, LF or NUL are dropped, never written.
// The head and a small body leave in one write when the handler ends; a
// proxied body of known length that comes in pieces leaves as it comes
// (sendSoFar).
//
// It implements http.Flusher, http.Hijacker and what
// http.ResponseController calls (FlushError, SetReadDeadline,
// SetWriteDeadline, EnableFullDuplex).
type h1Response struct {
	c       *h1Conn
	req     *http.Request
	header  http.Header
	status  int
	isHEAD  bool
	noBody  bool  // HEAD, 1xx, 204, 304: no body is sent
	cl      int64 // the body's length, -1 unknown
	written int64
	chunked bool
	pending []byte // body held while its length may still be learnt
	// start is when the server had the request's head (or its first
	// bytes, when it took more reads): the handler takes it as the
	// request's start instead of reading the clock again.
	start time.Time
	// pass is a proxied answer's header as the node sent it, written
	// beside header instead of copied into it (writeHeaderFrom); set only
	// while that WriteHeader runs.
	pass http.Header
	// rid backs the X-Request-Id a proxied answer carries: the head may
	// be written after the handler returned, when the handler's own
	// state is another request's.
	rid [1]string

	wroteHeader bool // the final status is set
	headWritten bool // the head is in the connection's writer
	aborted     bool // the handler panicked: no clean end
	swallow     bool // the handler's answer was replaced: its body is dropped
	err         error

	// headAlone: the connection's writer held nothing when the head was
	// written into it, and had made headWrites writes: while it has made
	// no more, the head is all it holds (takeBackHead).
	headAlone  bool
	headWrites uint64
}

// h1SniffMax is how much body is held back, when the handler gives no
// Content-Length, in case the handler ends and its length is then known.
const h1SniffMax = 2048

var (
	errHijacked = http.ErrHijacked
	errTooLong  = http.ErrContentLength
)

func (w *h1Response) reset(r *http.Request, start time.Time) {
	*w = h1Response{c: w.c, req: r, header: w.header, isHEAD: r.Method == http.MethodHead, cl: -1, pending: w.pending[:0], start: start}
}

func (w *h1Response) Header() http.Header { return w.header }

// WaitStarts starts the client-gone watch at once (pool.WaitNotifier): the
// request is about to wait in its environment's pool, queued or held,
// which outlasts h1WatchAfter (bench/'s flooded environment: 200 ms to
// 1.25 s), so the watch needs no timer of its own.
func (w *h1Response) WaitStarts() { w.c.watchNow() }

// WaitEnds gives the answer write_timeout afresh once its request's wait
// in its environment's pool (queued or held: WaitStarts, Hold) is over
// (pool.WaitNotifier). The wait is edged's, as read_timeout ends with the
// request's arrival: counted in write_timeout, a wait longer than it left
// the answer no time (a hold of reject_delay ≥ write_timeout lost its own
// 503).
func (w *h1Response) WaitEnds() { w.writeAfresh(time.Now()) }

// writeAfresh gives the answer write_timeout afresh from now, when a wait
// that is edged's ends (WaitEnds; the node's answer or failure, forward) and
// before each write of a proxied body after its first (exchange.copyBody,
// as nginx's send_timeout bounds each write): counted from the request's
// head for the whole answer, it failed the answer of a node slower than
// it (within its response_timeout) and cut a download of known length
// that took longer, however steadily its client read it, where a stream
// (whose handler sets its own deadline) or HTTP/2 went through. Lazily
// (h1Conn.writeDeadline): a body's many writes move the deadline about
// once per deadline.Slack.
func (w *h1Response) writeAfresh(now time.Time) {
	c := w.c
	if d := c.srv.writeTimeout; d > 0 && !c.hijacked && !c.handlerWDL {
		c.writeDeadline(now, d)
	}
}

// waitingBody marks the connection's request as waiting for its body
// (bodyWaiter); a wait that starts once the shutdown cut them ends at
// once.
func (w *h1Response) waitingBody(on bool) {
	c := w.c
	c.waitingBody.Store(on)
	if on && c.srv.waitsCut.Load() {
		c.cutRead()
	}
}

// takeReadAhead reserves n bytes of the process's readAheadPerProcess for
// the request's body read ahead of its worker (readAheadBudget); the
// connection's own bound is bodyWaitMax, one request's.
func (w *h1Response) takeReadAhead(n int) bool {
	return w.c.srv.readAhead == nil || w.c.srv.readAhead.take(n)
}

// giveReadAhead returns what takeReadAhead reserved.
func (w *h1Response) giveReadAhead(n int) {
	if w.c.srv.readAhead != nil {
		w.c.srv.readAhead.give(n)
	}
}

// Hold waits out a hold on the connection's own read (pool.Holder, see
// h1Conn.hold).
func (w *h1Response) Hold(d time.Duration) bool { return w.c.hold(d) }

// WriteHeader sets the status. 1xx statuses other than 101 are sent at
// once (to HTTP/1.1 clients) and the final one is still to come.
func (w *h1Response) WriteHeader(code int) {
	if w.c.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("edge: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		if w.req.ProtoMinor == 1 {
			w.writeFields(code, false)
			_, _ = w.c.bw.WriteString("\r\n")
			w.setErr(w.c.bw.Flush())
		}
		return
	}
	w.wroteHeader = true
	if w.c.body.err != nil && w.c.body.err != errBodyWaitCut {
		w.pass = nil
		w.refuseBody()
		return
	}
	w.status = code
	w.noBody = w.isHEAD || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	v, set := w.header["Content-Length"]
	if !set && w.pass != nil {
		v = w.pass["Content-Length"]
	}
	if len(v) > 0 {
		if n, ok := parseContentLength(v[0]); ok && len(v) == 1 {
			w.cl = n
		} else {
			delete(w.header, "Content-Length")
			if w.pass != nil {
				delete(w.pass, "Content-Length")
			}
		}
	}
	if w.cl >= 0 || (w.noBody && !w.isHEAD) {
		w.writeHead()
	}
}

// writeHeaderFrom is WriteHeader for a proxied answer whose header, as
// the node sent it, is src: its end-to-end fields are written from src
// itself rather than copied into Header() first (a map insert per field,
// and a clear after), those the handler set in Header() taking their
// place. When the head cannot be written yet (no length known and a
// body to come), src's fields are copied into Header() after all, as
// the head is then written after the handler's return, when src may be
// the node connection's next answer's.
func (w *h1Response) writeHeaderFrom(code int, src http.Header) {
	if len(src["Connection"]) > 0 {
		removeConnectionTokens(src)
	}
	w.pass = src
	w.WriteHeader(code)
	if w.pass != nil && !w.headWritten {
		for k, vv := range src {
			if _, set := w.header[k]; !set && !isHopHeader(k) {
				w.header[k] = vv
			}
		}
	}
	w.pass = nil
}

// takeBackHead undoes WriteHeader while no body byte was written and none
// of the head left (headTakerBack): a head whose length is not known
// waits for the body's first bytes unwritten; one of known length waits
// for them in the connection's writer (sendSoFar, finish), whence it is
// dropped here, the writer having made no write since and held nothing
// before it. A head larger than the writer (4 KiB) has left in part, and
// is not taken back. A head that stayed in the writer used to reach the
// client with the cut, 200 and a body cut short, where HTTP/2, which
// sends a head with its body's first bytes, answered 502 or 504.
func (w *h1Response) takeBackHead() bool {
	c := w.c
	if c.hijacked || !w.wroteHeader || w.swallow || w.written > 0 || w.err != nil {
		return false
	}
	if w.headWritten {
		if w.chunked || !w.headAlone || c.wire.writes != w.headWrites {
			return false
		}
		// Whatever writeHead decided of the connection (closeAfter) holds
		// for the answer that replaces this one: the server's shutdown,
		// a request body not read to its end. The node's Connection
		// field is not the handler's header.
		c.bw.Reset(&c.wire)
		w.headWritten, w.headAlone = false, false
	}
	clear(w.header)
	w.wroteHeader, w.status, w.noBody, w.cl = false, 0, false, -1
	return true
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, errHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.swallow {
		return len(p), nil
	}
	if w.noBody {
		if w.isHEAD {
			w.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, errTooLong
	}
	w.written += int64(len(p))
	if !w.headWritten {
		if len(w.pending)+len(p) <= h1SniffMax {
			w.pending = append(w.pending, p...)
			return len(p), nil
		}
		w.startUnknownLength()
	}
	return len(p), w.writeBody(p)
}

// refuseBody replaces the handler's answer when the request body could
// not be read to its end (malformed chunks or trailers, a client that
// closed early or was too slow): that is the client's error, answered
// 400 request.invalid, and the connection closes. A body wait the
// shutdown cut (errBodyWaitCut) is edged's doing: its answer (503) goes.
func (w *h1Response) refuseBody() {
	c := w.c
	c.closeAfter = true
	w.swallow = true
	rid := newRequestID()
	if v := w.header["X-Request-Id"]; len(v) == 1 {
		rid = v[0]
	}
	clear(w.header)
	b := appendFault(nil, faultInvalid, bodyErrorMessage(c.body.err), rid)
	w.header["Content-Type"] = contentTypeJSON
	w.header["Cache-Control"] = cacheNoStore
	w.header["X-Content-Type-Options"] = nosniff
	w.header["X-Request-Id"] = []string{rid}
	w.status = http.StatusBadRequest
	w.cl = int64(len(b))
	w.header["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.writeHead()
	w.setErr(w.writeBody(b))
	w.written = w.cl
}

// bodyErrorMessage says what was wrong with a request body without
// echoing socket details.
func bodyErrorMessage(err error) string {
	switch {
	case errors.Is(err, errBadChunk), errors.Is(err, errBadTrailer):
		return err.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body ended before its declared end"
	case isTimeout(err):
		return "the request body did not arrive within read_timeout"
	}
	return "the request body could not be read"
}

// startUnknownLength writes the head of a body whose length is not
// known, then what was held back.
func (w *h1Response) startUnknownLength() {
	if w.req.ProtoMinor == 1 {
		w.chunked = true
	} else {
		w.c.closeAfter = true
	}
	w.writeHead()
	if len(w.pending) > 0 {
		w.setErr(w.writeBody(w.pending))
		w.pending = w.pending[:0]
	}
}

func (w *h1Response) writeBody(p []byte) error {
	if w.err != nil {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return nil
		}
		var b [16]byte
		_, _ = bw.Write(strconv.AppendInt(b[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		_, _ = bw.Write(p)
		_, err := bw.WriteString("\r\n")
		return w.setErr(err)
	}
	_, err := bw.Write(p)
	return w.setErr(err)
}

// sendSoFar sends what of a body of known length, and of its head, waits
// in the connection's writer while more of the body is to come: exchange
// copyBody calls it after each piece it wrote, before it waits for the
// node's next bytes, which may be long in coming (a node slow in the
// middle of its body, response_timeout). Held there until 4 KiB of body
// or the answer's end, the head and the body's first bytes reached the
// client at the node's cut only, with it. A body that came whole with
// its head (most answers) is not sent here but at the handler's end, in
// one write with its head (finish). A body read in pieces of 4 KiB or
// more costs a write a piece, as before (each fills the buffer, or goes
// past it); smaller pieces (a node that trickles) each cost one where
// they were gathered up to 4 KiB: sent as they come, as nginx and Envoy
// send what they read.
func (w *h1Response) sendSoFar() error {
	if w.headWritten && w.written < w.cl && w.err == nil && w.c.bw.Buffered() > 0 {
		return w.setErr(w.c.bw.Flush())
	}
	return nil
}

func (w *h1Response) setErr(err error) error {
	if err != nil && w.err == nil {
		w.err = err
		w.c.closeAfter = true
	}
	return err
}

// Flush sends the head (choosing chunked framing when the length is not
// known) and whatever body is buffered.
func (w *h1Response) Flush() { _ = w.FlushError() }

func (w *h1Response) FlushError() error {
	if w.c.hijacked {
		return errHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		if w.noBody {
			w.writeHead()
		} else {
			w.startUnknownLength()
		}
	}
	if w.err != nil {
		return w.err
	}
	return w.setErr(w.c.bw.Flush())
}

// finish ends the answer after the handler returned.
func (w *h1Response) finish() {
	c := w.c
	if w.aborted {
		// A cut response must not look complete: no last chunk, no
		// head made up now. What was written goes out, then the
		// connection closes, without TLS close_notify (release).
		if w.headWritten {
			_ = c.bw.Flush()
		}
		c.closeAfter = true
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		if !w.noBody || (w.isHEAD && w.written > 0) {
			w.cl = int64(len(w.pending))
			if w.isHEAD {
				w.cl = w.written
			}
			w.header["Content-Length"] = []string{strconv.FormatInt(w.cl, 10)}
		}
		w.writeHead()
		if len(w.pending) > 0 {
			w.setErr(w.writeBody(w.pending))
		}
	}
	if w.chunked {
		_, err := c.bw.WriteString("0\r\n\r\n")
		w.setErr(err)
	}
	if w.cl >= 0 && !w.noBody && w.written < w.cl {
		c.closeAfter = true // the client waits for bytes that never come
	}
	w.setErr(c.bw.Flush())
	if cap(w.pending) > 4*h1SniffMax {
		w.pending = nil
	}
}

// writeHead writes the final head into the connection's writer.
func (w *h1Response) writeHead() {
	c := w.c
	w.headWritten = true
	w.headAlone, w.headWrites = c.bw.Buffered() == 0, c.wire.writes
	if c.srv.shutdown.Load() || c.srv.lameDuck.Load() || headerHasCloseToken(w.header) || !c.body.reusable() {
		c.closeAfter = true
	}
	w.writeFields(w.status, true)
	bw := c.bw
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if c.closeAfter {
		_, _ = bw.WriteString("Connection: close\r\n")
	} else if w.req.ProtoMinor == 0 {
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	}
	_, err := bw.WriteString("\r\n")
	w.setErr(err)
}

// writeFields writes the status line and the handler's header fields.
func (w *h1Response) writeFields(code int, final bool) {
	bw := w.c.bw
	_, _ = bw.Write(h1StatusLine(code))
	hasDate := w.writeHeaderFields(w.header, nil, code)
	if w.pass != nil && w.writeHeaderFields(w.pass, w.header, code) {
		hasDate = true
	}
	if final && !hasDate {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(w.c.now())
		_, _ = bw.WriteString("\r\n")
	}
}

// writeHeaderFields writes h's fields but those edged frames itself and
// those whose value is unsafe; with over (h is a node's header, pass),
// also but its hop-by-hop fields and those over has. It reports whether
// it wrote a Date.
func (w *h1Response) writeHeaderFields(h, over http.Header, code int) (hasDate bool) {
	bw := w.c.bw
	for k, vv := range h {
		if !httpsyntax.IsToken(k) {
			continue
		}
		if over != nil {
			if _, set := over[k]; set || isHopHeader(k) {
				continue
			}
		}
		switch k {
		case "Transfer-Encoding", "Connection", "Trailer":
			continue // edged frames the response itself
		case "Date":
			hasDate = true
		case "Content-Length":
			if code < 200 || code == http.StatusNoContent {
				continue // no body, and no length, for these (RFC 9110 8.6)
			}
		}
		for _, v := range vv {
			if !safeFieldValue(v) {
				continue
			}
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(v)
			_, _ = bw.WriteString("\r\n")
		}
	}
	return hasDate
}

// safeFieldValue refuses values that would end the line or the head.
func safeFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func headerHasCloseToken(h http.Header) bool {
	for _, v := range h["Connection"] {
		if httpsyntax.HasToken(v, "close") {
			return true
		}
	}
	return false
}

// h1StatusLines holds the status lines of the codes net/http names,
// indexed by code: an array index, not a map lookup, per response.
var h1StatusLines = func() (t [600][]byte) {
	for code := 100; code < len(t); code++ {
		if text := http.StatusText(code); text != "" {
			t[code] = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
		}
	}
	return t
}()

func h1StatusLine(code int) []byte {
	if code >= 0 && code < len(h1StatusLines) && h1StatusLines[code] != nil {
		return h1StatusLines[code]
	}
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n")
}

// Hijack hands the connection to the handler (a protocol upgrade): the
// background read stops, anything the client already sent comes with the
// returned reader, and the server forgets the connection.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, errHijacked
	}
	c.abortPendingRead()
	_ = c.nc.SetReadDeadline(time.Time{})
	c.rdl.Forget()
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	// As with net/http, Shutdown no longer waits for it: its new owner
	// (an environment's tunnel) closes it.
	c.state.Store(h1Closing)
	c.srv.untrack(c)
	var br *bufio.Reader
	if left := c.buf[c.r:c.w]; len(left) > 0 {
		kept := bytes.Clone(left)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(kept), c.nc), max(len(kept), 4096))
		_, _ = br.Peek(len(kept)) // the kept bytes only: the reader never reads c.nc by itself afterwards
	} else {
		br = bufio.NewReader(c.nc)
	}
	c.r, c.w = 0, 0
	return c.nc, bufio.NewReadWriter(br, bufio.NewWriter(c.nc)), nil
}

// SetReadDeadline is the handler's: a background read that starts later
// keeps it rather than clear the request's.
func (w *h1Response) SetReadDeadline(t time.Time) error {
	c := w.c
	if c.hijacked {
		return errHijacked
	}
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	c.watchKeepRDL = true
	c.rdl.Forget()
	return c.nc.SetReadDeadline(t)
}

func (w *h1Response) SetWriteDeadline(t time.Time) error {
	if w.c.hijacked {
		return errHijacked
	}
	w.c.wdl.Forget()
	w.c.handlerWDL = true
	return w.c.nc.SetWriteDeadline(t)
}

// EnableFullDuplex: the request body stays readable while the answer is
// written anyway.
func (w *h1Response) EnableFullDuplex() error { return nil }

var _ interface {
	http.ResponseWriter
	http.Flusher
	http.Hijacker
} = (*h1Response)(nil)
