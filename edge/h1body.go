package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"edged/internal/httpsyntax"
)

// h1Body is the body of a request on an h1Conn: Content-Length bytes, or
// chunks up to the last one and its trailer section. Any framing error
// is final and closes the connection after the answer. When the body is
// read to its end, the connection's background read is armed to watch
// for the client going away (h1Conn.watch).
type h1Body struct {
	c         *h1Conn
	chunked   bool
	left      int64 // bytes left: of the body, or of the current chunk
	needCRLF  bool  // chunked: the CRLF after a chunk's data is still to come
	done      bool  // read to its end
	closed    bool
	continued bool // 100 Continue sent, or not needed
	// excess is how many bytes of chunk lines and CRLFs the body has
	// sent beyond what its data allows (chunkOverhead).
	excess int64
	err    error
}

var (
	errBodyAfterClose = http.ErrBodyReadAfterClose
	errBadTrailer     = errors.New("malformed trailer section of a chunked request body")
	errChunkOverhead  = fmt.Errorf("%w: more chunk extensions and framing than its data allows", errBadChunk)
)

// What a chunked body may send besides its data, as net/http allows it
// (CVE-2023-39326): 16 bytes a chunk and twice the chunk's data, and
// chunkExcessMax more. Chunks of one byte stay readable; extensions,
// which edged drops, cannot make it read a thousand times the data
// max_body_bytes bounds.
const (
	chunkAllowance = 16
	chunkExcessMax = 16 << 10
)

func (b *h1Body) reset(h *h1Head) {
	*b = h1Body{c: b.c, chunked: h.chunked, left: h.contentLength, continued: !h.expectContinue}
	if h.chunked {
		b.left = 0
	}
}

// Read reads the body; the first Read of a request that expects 100
// Continue sends it.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyAfterClose
	}
	return b.read(p)
}

// Close stops the handler from reading further; what is left is read
// and dropped (or the connection closed) after the handler returns.
func (b *h1Body) Close() error {
	b.closed = true
	return nil
}

func (b *h1Body) read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	c := b.c
	c.stopHangupWatch()
	if !b.continued {
		b.continued = true
		if !c.resp.headWritten {
			_, _ = c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := c.bw.Flush(); err != nil {
				return 0, b.fail(err)
			}
		}
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
	} else {
		n, err = b.readData(p[:min(int64(len(p)), b.left)])
		b.left -= int64(n)
		if b.left == 0 && err == nil {
			b.end()
			err = io.EOF
		}
	}
	return n, err
}

// moveReadDeadline moves the body's read_timeout deadline d later
// (readDeadlineMover): the hangup watch's, and the connection's unless
// the watch runs (it sets it when it stops). A deadline the handler set
// (ResponseController) is its own, and none (read_timeout "0s") stays
// none.
func (b *h1Body) moveReadDeadline(d time.Duration, _ time.Time) {
	c := b.c
	if b.done || b.err != nil || c.hijacked || c.hup.rdl.IsZero() {
		return
	}
	c.bgMu.Lock()
	own := c.watchKeepRDL
	c.bgMu.Unlock()
	if own {
		return
	}
	c.hup.rdl = c.hup.rdl.Add(d)
	if c.hup.done == nil {
		_ = c.nc.SetReadDeadline(c.hup.rdl)
		c.rdl.Forget()
	}
}

// reusable reports whether the connection can outlive what is left of
// the body: nothing left, or a known rest small enough to read and drop
// after the handler, from a client not waiting for 100 Continue.
func (b *h1Body) reusable() bool {
	if b.done {
		return true
	}
	if b.err != nil || !b.continued || b.chunked {
		return false
	}
	return b.left <= h1DiscardMax
}

func (b *h1Body) end() {
	b.done = true
	if b.c.handling {
		b.c.watch()
	}
}

func (b *h1Body) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the client closed before the end of its body
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && b.c.waitingBody.Load() && b.c.srv.waitsCut.Load() {
		err = errBodyWaitCut // the shutdown's cut (h1Server.cutWaits), not the client's delay
	}
	b.err = err
	b.c.closeAfter = true
	return err
}

// readData reads body bytes from the buffer, or straight from the
// connection when the buffer is empty (no copy for large bodies).
func (b *h1Body) readData(p []byte) (int, error) {
	c := b.c
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.rerr != nil {
		return 0, b.fail(c.rerr)
	}
	n, err := c.nc.Read(p)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		return 0, nil
	}
	return 0, b.fail(err)
}

func (b *h1Body) readChunked(p []byte) (int, error) {
	c := b.c
	for b.left == 0 {
		if b.needCRLF {
			if err := b.crlf(); err != nil {
				return 0, err
			}
		}
		line, err := b.line(maxChunkLine)
		if err != nil {
			return 0, err
		}
		size, perr := parseChunkLine(line)
		if perr != nil {
			return 0, b.fail(perr)
		}
		if size == 0 {
			if err := b.readTrailers(); err != nil {
				return 0, err
			}
			b.end()
			return 0, io.EOF
		}
		// The line, its CRLF and the CRLF after the data.
		b.excess = max(b.excess+int64(len(line))+4-chunkAllowance-2*size, 0)
		if b.excess > chunkExcessMax {
			return 0, b.fail(errChunkOverhead)
		}
		b.left = size
	}
	n, err := b.readData(p[:min(int64(len(p)), b.left)])
	b.left -= int64(n)
	if err != nil {
		return n, err
	}
	if b.left == 0 {
		// The CRLF after the data is required: read now when it is
		// already here, else before the next chunk's size.
		b.needCRLF = true
		if c.w-c.r >= 2 {
			if err := b.crlf(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (b *h1Body) crlf() error {
	line, err := b.line(2)
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return b.fail(errBadChunk)
	}
	b.needCRLF = false
	return nil
}

// line returns the next CRLF-terminated line (without its CRLF) from the
// buffer, reading as needed; a line longer than max or ending in a bare
// LF fails the body.
func (b *h1Body) line(max int) ([]byte, error) {
	c := b.c
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.w], '\n'); i >= 0 {
			if i == 0 || c.buf[c.r+i-1] != '\r' || i-1 > max {
				return nil, b.fail(errBadChunk)
			}
			line := c.buf[c.r : c.r+i-1]
			c.r += i + 1
			return line, nil
		}
		if c.w-c.r > max+1 {
			return nil, b.fail(errBadChunk)
		}
		if c.rerr != nil {
			return nil, b.fail(c.rerr)
		}
		if err := c.fill(max + 2); err != nil {
			return nil, b.fail(err)
		}
	}
}

// readTrailers reads the trailer section after the last chunk: header
// lines as strict as the head's, within max_header_bytes, none of them
// framing or routing fields. They land in the request's Trailer.
func (b *h1Body) readTrailers() error {
	c := b.c
	budget := c.srv.maxHeaderBytes
	for {
		line, err := b.line(budget)
		if err != nil {
			return err
		}
		budget -= len(line) + 2
		if len(line) == 0 {
			return nil
		}
		if budget < 0 {
			return b.fail(errBadTrailer)
		}
		s := string(line)
		if s[0] == ' ' || s[0] == '\t' {
			return b.fail(errBadTrailer)
		}
		name, raw, ok := strings.Cut(s, ":")
		if !ok || !httpsyntax.IsToken(name) || !httpsyntax.IsFieldValue(raw) {
			return b.fail(errBadTrailer)
		}
		key := http.CanonicalHeaderKey(name)
		if forbiddenTrailer(key) {
			return b.fail(errBadTrailer)
		}
		r := &c.req
		if r.Trailer == nil {
			r.Trailer = make(http.Header)
		}
		r.Trailer[key] = append(r.Trailer[key], httpsyntax.TrimOWS(raw))
	}
}
