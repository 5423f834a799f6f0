package edge

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"edged/internal/deadline"
	"edged/internal/httpsyntax"
	"edged/internal/upstream"
)

// errTooLarge is returned by a request body that passes the limit.
var errTooLarge = errors.New("request body is larger than max_body_bytes")

// errDrainEnded ends the copy of a response whose environment a reload
// replaced, once the environment's drain_timeout has passed.
var errDrainEnded = errors.New("the environment was replaced by a reload and its drain_timeout passed")

// replayMax bounds the request body edged keeps to send again: an
// idempotent request whose body is larger (or turns out larger, when
// it comes chunked) goes to one node only, as one with a streamed body
// must. What is kept is held for the request's life: 64 KiB per
// request in a worker at most. It is what a request reads of its body
// before it takes a worker, too (bodyWaitMax).
const replayMax = 64 << 10

// limitedBody counts a client's request body and fails past the limit.
// It remembers its first error other than io.EOF: that error is the
// client's (a malformed chunk, a body shorter than its Content-Length, an
// HTTP/2 stream reset mid-body, the limit), so a failed exchange can be
// told apart from one the node broke.
//
// It also holds on to what it read, up to replayMax, so that Rewind can
// start it again for another attempt: a rewound body gives what it
// kept, then goes on reading the client's. Its first bytes are read
// before the request takes a worker (fill).
type limitedBody struct {
	rc      io.ReadCloser
	n       int64 // bytes read from the client
	limit   int64 // <= 0: none
	err     error // the first Read error that was not io.EOF
	eof     bool  // the client's body ended
	keeping bool  // every byte read so far is in kept
	kept    []byte
	pos     int // the next byte of kept to give; len(kept): read the client's
	// mover is the client's body while edged times what it spends
	// elsewhere between its reads (fill ends before the rest of the
	// body is read: nil for one read whole); since is when its last read
	// returned, and owed the time since not yet given to its deadline
	// (readDeadlineMover).
	mover readDeadlineMover
	since time.Time
	owed  time.Duration
}

// readDeadlineMover is a client's request body whose read_timeout counts
// only the time edged waits for the client: moveReadDeadline moves its
// deadline d later (now is the time), the time edged spent elsewhere
// between two of its reads (a wait for a worker, for a node's dial, for
// a node to take what was read: the body's reader is the code that
// writes it to the node). A node that reads an upload slowly is then
// not taken for a client that sends it slowly, and the body's first
// 64 KiB read ahead of the worker (fill) leave the client the time it
// had left (a node that stops reading is bounded by its
// response_timeout, each write of the request waiting that long at most).
type readDeadlineMover interface {
	moveReadDeadline(d time.Duration, now time.Time)
}

// moveReadMin is the least time limitedBody gives a deadline at once: the
// many short gaps of a body that streams steadily add up before the
// deadline moves (a timer's work), and the deadline is at most this
// early for the client.
const moveReadMin = time.Millisecond

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.pos < len(b.kept) {
		n := copy(p, b.kept[b.pos:])
		b.pos += n
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.mover != nil {
		now := time.Now()
		b.owed += now.Sub(b.since)
		if b.owed >= moveReadMin {
			b.mover.moveReadDeadline(b.owed, now)
			b.owed = 0
		}
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.mover != nil {
		if err != nil {
			b.mover = nil
		} else {
			b.since = time.Now()
		}
	}
	if b.keeping {
		if len(b.kept)+n <= replayMax {
			b.kept = append(b.kept, p[:n]...)
			b.pos = len(b.kept)
		} else {
			b.keeping, b.kept, b.pos = false, nil, 0
		}
	}
	if b.limit > 0 && b.n > b.limit {
		err = errTooLarge
	}
	if err == io.EOF {
		b.eof = true
	} else if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

// Rewind starts the body again from its first byte (upstream.Rewinder):
// true if nothing was read from the client yet, or all of it was kept.
func (b *limitedBody) Rewind() bool {
	if b.n == 0 {
		return true
	}
	if !b.keeping {
		return false
	}
	b.pos = 0
	return true
}

// tooLarge answers 413 to a request whose Content-Length is above the
// environment's max_body_bytes (a chunked body is cut where it passes
// the limit, as it is read: limitedBody).
func (x *exchange) tooLarge() bool {
	if limit := x.px.env.maxBody; limit > 0 && x.r.ContentLength > limit {
		x.fault(http.StatusRequestEntityTooLarge, faultTooLarge, "request body is larger than the limit of this environment")
		return true
	}
	return false
}

// maxAttempts bounds the nodes one request tries: the first and up to 10
// retries (the most config accepts).
const maxAttempts = 11

// forward sends the request to a node of the proxy's upstream, retrying
// where that is safe, and copies the answer back.
func (x *exchange) forward() {
	r, px := x.r, x.px
	out := &x.out
	*out = upstream.Request{Method: r.Method, Header: r.Header, ContentLength: r.ContentLength}
	body := &x.body // zero, and so rewinding, for no body
	if body.rc != nil {
		out.Body = body // filled by Env.serve (awaitBody)
		if out.ContentLength < 0 && body.eof && body.keeping {
			// A body of unknown length (chunked, HTTP/2 without
			// content-length) read whole before the worker goes with
			// its length, as behind nginx: servers that take no chunked
			// requests answer 411 to it.
			out.ContentLength = int64(len(body.kept))
		}
	} else {
		out.ContentLength = 0
	}
	// The outgoing URI and the forwarded headers' text: one string at
	// most (prepareHeader).
	var text [512]byte
	ip, fc := clientOf(x.w, r)
	out.URI, out.Upgrade = prepareHeader(r, ip, fc, x.rid, &x.fwd, appendOutgoingURI(text[:0], r, px, x.path))
	out.Fields = x.fwd.fields[:nForwarded]
	if cc := x.clientCert; cc != nil && cc.cert != "" {
		// Encoded once per connection (clientCertCache): two slots of
		// the exchange's array, no allocation.
		f := x.fwd.fields[:nForwarded+1]
		f[nForwarded] = upstream.Field{Name: "Client-Cert", Value: cc.cert}
		if cc.chain != "" {
			f = append(f, upstream.Field{Name: "Client-Cert-Chain", Value: cc.chain})
		}
		out.Fields = f
	}
	// Decided on the header the node gets: an Idempotency-Key the client
	// named in Connection is gone, and a POST sent again without it is
	// one the nodes cannot deduplicate.
	out.Replayable = replayable(r.Method, r.Header)
	tried := &x.tried // in the pooled exchange: a local array would escape to Pick
	nTried := 0
	var held *http.Response // a 502/503/504 kept in case no other node is left
	var heldNode string     // the node that gave held
	var lastErr error
	budgeted := false // holds a place in the upstream's retry budget
	defer endRetry(px, &budgeted)
	// received: a node got the request, so sending it to another is a
	// retry, which needs a place in the retry budget (taken once per
	// request). The place is asked for once another node is picked: a
	// request with no node left to try (an upstream of one) is no retry,
	// and must neither hold a place while its answer is sent nor be
	// counted as denied.
	received := false
	for attempt := 0; ; attempt++ {
		if r.Context().Err() != nil {
			// The client reset the stream or went away: no node is
			// picked and no connection opened for it (an HTTP/2 client
			// opening and resetting streams at once must cost little).
			if held != nil {
				held.Body.Close()
			}
			x.clientGone()
			return
		}
		var n *upstream.Node
		if attempt <= px.retries && nTried < len(tried) {
			n = px.upstream.Pick(r, out.Fields, tried[:nTried])
		}
		if n != nil && received && !budgeted {
			if budgeted = px.upstream.TryRetry(); !budgeted {
				n = nil // the budget is spent: the answer in hand
			}
		}
		if n == nil {
			switch {
			case held != nil:
				x.node = heldNode
				endRetry(px, &budgeted)
				x.respond(held)
			case lastErr != nil:
				x.upstreamError(lastErr)
			default:
				x.fault(http.StatusServiceUnavailable, faultUnavailable, "no healthy node in upstream "+upstreamLabel(px))
			}
			return
		}
		if nTried > 0 {
			tried[nTried-1].Redispatch()
		}
		tried[nTried] = n
		nTried++
		x.node = n.Addr()
		out.Host = outgoingHost(r, px, n)
		resp, err := n.RoundTrip(r.Context(), out)
		x.bytesIn = body.n
		if hw, ok := x.w.(*h1Response); ok {
			// The node's time to answer (its head, or its failure, up
			// to response_timeout) was edged's wait, not the client's:
			// the answer or fault that follows gets write_timeout afresh.
			hw.writeAfresh(time.Now())
		}
		if err == nil && held != nil {
			held.Body.Close() // a newer answer replaces the kept one
			held = nil
		}
		if err != nil {
			lastErr = err
			if errors.Is(err, upstream.ErrCut) {
				// Its environment's drain ended (Env.drain): not the
				// node's failure, and not to be tried on another node.
				if held != nil {
					held.Body.Close()
				}
				if r.Context().Err() != nil {
					x.clientGone()
					return
				}
				x.cutAnswer()
				return
			}
			if body.err != nil && errors.Is(err, upstream.ErrRequestBody) {
				// The client's body failed, not the node: 413 or 400, not
				// logged as the upstream's failure (upstream counted no
				// passive failure and discarded the half-written
				// connection). net/http cancels the context of an
				// HTTP/1.1 request whose connection read failed (a
				// timeout, a half-close), yet the client may still read
				// the answer; one that reset its stream or left is
				// recorded as 499 all the same.
				if held != nil {
					held.Body.Close()
				}
				x.bodyFailed()
				return
			}
			if r.Context().Err() != nil {
				if held != nil {
					held.Body.Close()
				}
				x.clientGone()
				return
			}
			// edged had no file descriptor left for the connection
			// (OwnShortage): no node is at fault (upstream counted
			// none), and every other would fail alike; not retried.
			shortage := upstream.OwnShortage(err)
			// Nothing was sent after a failed connect: any request may
			// go to another node, outside the retry budget (no backend
			// saw it). A timeout is not retried: another node would make
			// the client wait twice as long. Either way the body must
			// start again (Rewind).
			if !shortage && errors.Is(err, upstream.ErrConnect) && body.Rewind() {
				continue
			}
			if !shortage && out.Replayable && !errors.Is(err, upstream.ErrTimeout) && body.Rewind() {
				received = true
				continue
			}
			switch {
			case held != nil:
				x.node = heldNode
				endRetry(px, &budgeted)
				x.respond(held)
			case shortage:
				x.ownShortage(err)
			default:
				x.upstreamError(err)
			}
			return
		}
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if out.Replayable && body.Rewind() {
				held, heldNode, received = resp, x.node, true
				continue
			}
		}
		endRetry(px, &budgeted)
		x.respond(resp)
		return
	}
}

// endRetry gives back the place in the retry budget a request holds
// (budgeted), once: at its end, or as soon as it has the answer it passes
// on, as Envoy does at the upstream's headers. A request copying its
// answer retries no more, and a long one (a stream, a WebSocket tunnel,
// which lasts hours) would keep the place all that time: three of them,
// the budget's minimum, left every other request's retry denied.
func endRetry(px *proxyRuntime, budgeted *bool) {
	if *budgeted {
		*budgeted = false
		px.upstream.EndRetry()
	}
}

// clientGone ends a request whose client reset the stream or went away
// before any answer: it is recorded as 499 (see gone), and the response
// is aborted (http.ErrAbortHandler) rather than left to the server, which
// would send an empty 200 to an HTTP/1.1 client that only half-closed its
// connection (its failed upload would then look accepted).
func (x *exchange) clientGone() {
	x.gone()
	if !x.wroteHeader {
		panic(http.ErrAbortHandler)
	}
}

// upstreamError answers a failed exchange with the node. A timeout (504)
// is logged like any other failure (502), with its proxy, node and
// request id, so an operator can find either from the client's answer;
// within the environment's budget (upstreamLinesBurst), so a backend
// that is down does not log a line per request.
func (x *exchange) upstreamError(err error) {
	px := x.px
	ok, skipped := px.env.warnLines.take()
	if errors.Is(err, upstream.ErrTimeout) || errors.Is(err, upstream.ErrBodyTimeout) {
		if ok {
			px.env.log.Warn("upstream timed out", "proxy", px.name, "node", x.node, "request_id", x.rid, "error", err.Error(), "suppressed", skipped)
		}
		x.fault(http.StatusGatewayTimeout, faultUpstreamTimeout, "upstream "+upstreamLabel(px)+" did not answer in time")
		return
	}
	if ok {
		px.env.log.Warn("upstream failed", "proxy", px.name, "node", x.node, "request_id", x.rid, "error", err.Error(), "suppressed", skipped)
	}
	x.fault(http.StatusBadGateway, faultUpstreamFailed, "upstream "+upstreamLabel(px)+" failed")
}

// ownShortage answers a request whose connection to the node could not
// be made for want of edged's own file descriptors (EMFILE, ENFILE): 500
// internal.error, as nginx answers it, not the upstream's 502, which
// would send the operator to the backend. Logged as an error, within the
// environment's budget of such lines.
func (x *exchange) ownShortage(err error) {
	px := x.px
	if ok, skipped := px.env.warnLines.take(); ok {
		px.env.log.Error("no file descriptor left for a connection to the node: raise LimitNOFILE, or lower max_connections", "proxy", px.name, "node", x.node, "request_id", x.rid, "error", err.Error(), "suppressed", skipped)
	}
	x.fault(http.StatusInternalServerError, faultInternal, "edged has no file descriptor left to reach upstream "+upstreamLabel(px))
}

func upstreamLabel(px *proxyRuntime) string {
	if strings.HasPrefix(px.upstreamName, "~target:") {
		return "of proxy " + px.name
	}
	return px.upstreamName
}

// respond copies an upstream response to the client. When the node
// stalls or breaks in the middle of the body, the client's response is
// aborted (http.ErrAbortHandler: the HTTP/1.1 connection is closed, the
// HTTP/2 stream reset) so that a cut body never looks complete, and the
// worker is freed; when nothing of the answer had left, the client gets
// a fault instead (abort).
func (x *exchange) respond(resp *http.Response) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		x.tunnel(resp)
		return
	}
	h := x.w.Header()
	x.status, x.wroteHeader = resp.StatusCode, true
	if hw, ok := x.w.(*h1Response); ok {
		// Edged's HTTP/1.1 server writes the node's fields from
		// resp.Header itself, the handler's (the id) in their place.
		// The id's slice is the connection's, not x's: a head without a
		// length (a HEAD's, a short body's) is written after x went back
		// to its pool.
		hw.rid[0] = x.rid
		h["X-Request-Id"] = hw.rid[:]
		hw.writeHeaderFrom(resp.StatusCode, resp.Header)
	} else if hw, ok := x.w.(*h2Response); ok {
		size := copyResponseHeader(h, resp.Header)
		// HTTP/2 sends names in lower case: the id goes in under its
		// wire name, in place of the node's, from the stream's own
		// slice (the head may leave after x went back to its pool).
		delete(h, "X-Request-Id")
		hw.rid[0] = x.rid
		h[h2RequestIDKey] = hw.rid[:]
		if size, limit, over := hw.headOver(resp.StatusCode, size, resp.ContentLength < 0); over {
			x.headTooLarge(size, limit)
			return
		}
		x.w.WriteHeader(resp.StatusCode)
	} else {
		copyResponseHeader(h, resp.Header)
		h["X-Request-Id"] = []string{x.rid}
		x.w.WriteHeader(resp.StatusCode)
	}
	streaming := resp.ContentLength < 0 || isEventStream(resp.Header["Content-Type"])
	if x.r.Method == http.MethodHead || resp.ContentLength == 0 {
		return
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if err := x.copyBody(resp.Body, *bp, streaming); err != nil {
		x.abort(err)
	}
}

// headTooLarge answers, 502 upstream.failed, a node's answer whose head,
// of size bytes as HTTP/2 counts them, is larger than the limit its
// HTTP/2 client announced (SETTINGS_MAX_HEADER_LIST_SIZE, at least
// h2PeerHeaderListFloor): the client would refuse it (Go's ends the
// whole connection, the other requests on it with it), while the access
// log said the node's status.
func (x *exchange) headTooLarge(size, limit int64) {
	px := x.px
	if ok, skipped := px.env.warnLines.take(); ok {
		px.env.log.Warn("upstream answer's head larger than the client accepts", "proxy", px.name, "node", x.node, "request_id", x.rid,
			"status", x.status, "head_bytes", size, "client_limit", limit, "suppressed", skipped)
	}
	clear(x.w.Header())
	x.fault(http.StatusBadGateway, faultUpstreamFailed, "the answer of upstream "+upstreamLabel(px)+" has a head of "+
		strconv.FormatInt(size, 10)+" bytes, more than the client accepts (SETTINGS_MAX_HEADER_LIST_SIZE "+strconv.FormatInt(limit, 10)+")")
}

// headTakerBack is a ResponseWriter of edged's servers, whose head may
// not have left when WriteHeader returned.
type headTakerBack interface {
	// takeBackHead undoes WriteHeader, the header cleared, when nothing
	// of the answer was sent or buffered to be sent (no head, no body
	// byte); it reports whether it did.
	takeBackHead() bool
}

// isEventStream reports whether a response's Content-Type (its fields as
// the upstream client stores them, under the canonical name) is SSE's.
func isEventStream(ct []string) bool {
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

// copyBody copies the response body to the client. A stream (SSE, long
// poll, chunked download) is flushed as it comes and may last: the
// server's whole-request deadlines give way to a rolling write deadline.
// Any other body over HTTP/1.1 (a download of known length) keeps the
// server's write deadline, moved on before each of its writes after the
// first (h1Response.writeAfresh): only a client that stops reading is cut,
// never a download that keeps going. What it copied leaves before it
// waits for the node's next bytes (h1Response.sendSoFar): a node slow in
// the middle of its body keeps nothing of the answer in edged's buffer.
// It returns the node's read error, if any, or errDrainEnded when the
// environment's drain ended before the body did (Env.cutStreams); a client
// that went away is not an error here.
func (x *exchange) copyBody(body io.Reader, buf []byte, stream bool) error {
	var rc *http.ResponseController
	var wt time.Duration
	var hw *h1Response
	if stream {
		// The server's whole-request deadlines give way; the rolling
		// write deadline below replaces the write one, unless a reload
		// made the environment's write_timeout "0s" (streams take it).
		rc = http.NewResponseController(x.w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		wt = x.px.env.writeTimeout
		if wt > 0 {
			// What is written once the body ends (HTTP/1.1's last chunk,
			// or the fault that replaces an answer none of which left)
			// gets it afresh too: under the last write's deadline, past
			// after a node quiet for longer before its end, a stream the
			// node ended cleanly reached the client cut.
			defer func() { _ = rc.SetWriteDeadline(time.Now().Add(wt)) }()
		}
	} else {
		hw, _ = x.w.(*h1Response)
	}
	wrote := false
	cut := x.px.env.cut
	for {
		select {
		case <-cut:
			return errDrainEnded
		default:
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			if wt > 0 {
				_ = rc.SetWriteDeadline(time.Now().Add(wt))
			}
			if hw != nil && wrote {
				// The first write has the deadline the head set: a body
				// of one read (most answers) reads no clock for it.
				hw.writeAfresh(time.Now())
			}
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				return nil
			}
			if hw != nil && hw.sendSoFar() != nil {
				return nil
			}
			wrote = true
			x.bytesOut += int64(n)
			if rc != nil && rc.Flush() != nil {
				return nil
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if chanClosed(cut) {
				return errDrainEnded // the drain's end cut the node's connection (Upstream.Cut)
			}
			return rerr
		}
	}
}

// abort ends a response whose body the node did not finish: it is logged
// and recorded, and the handler panics with http.ErrAbortHandler, which
// the HTTP/1.1 server (h1server.go) answers by cutting the connection and
// the HTTP/2 server (h2server.go) by resetting the stream, without logging. A client that went away meanwhile is
// recorded as gone (499), and its answer aborted all the same: its
// context also ends when it only shut its sending side (an HTTP/1.1
// client's half-close, which edged's watch reads as its leaving), and
// such a client still reads, so an answer left to end cleanly would
// end a body the node did not finish as if it were whole (the last
// chunk), or make up a head for one none of which had left. When nothing of the answer has left yet (edged's servers
// hold a head with a body to come until the body's first bytes), the
// client gets the fault a failed exchange gets instead, 502
// upstream.failed (504 upstream.timeout for a stalled body; 503 when the
// drain's end cut it): a cut connection or stream with no head would be
// an empty reply, recorded with the status the node sent.
func (x *exchange) abort(err error) {
	if x.r.Context().Err() != nil {
		x.gone()
		panic(http.ErrAbortHandler)
	}
	if hb, ok := x.w.(headTakerBack); ok && hb.takeBackHead() {
		x.wroteHeader = false
		if err == errDrainEnded {
			x.cutAnswer()
			return
		}
		x.upstreamError(err)
		return
	}
	px := x.px
	ok, skipped := px.env.warnLines.take()
	if err == errDrainEnded {
		// Not the node's doing: no fault of it is recorded.
		if ok {
			px.env.log.Warn("response cut: its environment's drain ended; client response aborted", "proxy", px.name, "node", x.node, "request_id", x.rid, "suppressed", skipped)
		}
		panic(http.ErrAbortHandler)
	}
	x.faultCode = faultUpstreamFailed
	if errors.Is(err, upstream.ErrBodyTimeout) {
		x.faultCode = faultUpstreamTimeout
	}
	if ok {
		px.env.log.Warn("upstream response body cut; client response aborted", "proxy", px.name, "node", x.node, "request_id", x.rid, "error", err.Error(), "suppressed", skipped)
	}
	panic(http.ErrAbortHandler)
}

// tunnel completes a WebSocket upgrade (the only one prepareHeader
// forwards; upstream refuses a 101 to any other request): the client connection
// is taken over and bytes flow both ways. A side that shuts its sending
// side has that relayed to the other, and the tunnel ends once both are
// done. It ends, both connections closed, when either side fails, when
// no byte went either way for the upstream's response_timeout (a peer
// that keeps a quiet tunnel open must send pings) or, once one side is
// done, for tunnelFinTimeout, or when a write to one side waited
// response_timeout (a side that stopped reading). It stops holding a
// worker once established, but belongs to its environment, which closes
// it when it is retired.
func (x *exchange) tunnel(resp *http.Response) {
	back, ok := resp.Body.(io.ReadWriteCloser)
	hj, ok2 := x.w.(http.Hijacker)
	if !ok || !ok2 {
		x.fault(http.StatusBadGateway, faultUpstreamFailed, "protocol upgrade is not possible on this connection")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		x.fault(http.StatusBadGateway, faultUpstreamFailed, "protocol upgrade failed")
		return
	}
	x.status, x.wroteHeader = http.StatusSwitchingProtocols, true
	defer conn.Close()
	// The 101 is the request's answer: it goes within the write deadline
	// the server gave that answer (write_timeout), and the tunnel's own
	// limits start once it is out. Cleared before it, a client that had
	// stopped reading (its socket full of an earlier answer) held the
	// write, its worker and the node's connection with no bound at all.
	_ = conn.SetReadDeadline(time.Time{})
	// The node's hop-by-hop fields stop here, as on any other answer,
	// but for the switch itself: Connection: Upgrade, and the node's
	// Upgrade, which upstream checked names websocket. A length has no
	// place in a 1xx (RFC 9110 8.6; h1Response drops it from one too):
	// taken for a body's, it would eat the tunnel's first bytes.
	up := resp.Header["Upgrade"] // before Connection's tokens, which name it, go
	h := make(http.Header, len(resp.Header)+1)
	copyResponseHeader(h, resp.Header)
	delete(h, "Content-Length")
	h["Connection"] = connectionUpgrade
	h["Upgrade"] = up
	h["X-Request-Id"] = []string{x.rid}
	_, _ = io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = io.WriteString(brw, "\r\n")
	if brw.Flush() != nil {
		// The client is gone, or did not take the switch within
		// write_timeout (the bufio.Writer keeps the first error): the
		// switch never reached it.
		x.wroteHeader = false
		x.gone()
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	env := x.px.env
	if !env.addTunnel(conn) {
		return
	}
	x.tunnelled = true
	defer env.removeTunnel(conn)
	x.releaseWorker()
	// Nor does it keep the copy of its body a retry would send (up to
	// replayMax): that is for a request in a worker, and a tunnel lasts.
	x.body.kept, x.body.keeping, x.body.pos = nil, false, 0
	var once sync.Once
	end := func() {
		once.Do(func() {
			conn.Close()
			back.Close()
		})
	}
	last := new(atomic.Int64)
	last.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	defer close(stop)
	// finned is closed once one side has shut its sending side: the
	// tunnel then ends after tunnelFinTimeout of quiet (watchIdle).
	finned := make(chan struct{})
	var finOnce sync.Once
	fin := func() { finOnce.Do(func() { close(finned) }) }
	go watchIdle(x.px.tunnelIdle, last, finned, stop, end)
	// A tunnel keeps its two copy buffers for as long as it lasts, most
	// of it idle: tunnelBufSize each, not io.Copy's 32 KiB.
	toBack, toClient := tunnelBufs.Get().(*[]byte), tunnelBufs.Get().(*[]byte)
	defer tunnelBufs.Put(toBack)
	defer tunnelBufs.Put(toClient)
	// A side that shuts its sending side (FIN) after its last bytes has
	// that relayed, as HAProxy does in a tunnel: the other side's sending
	// side is shut, and what it still sends goes through until it is done
	// too. A failure either way ends both, but for the lingering close
	// below.
	in := &lingerReader{r: activeReader{readerWithBuffered(brw.Reader, conn), last}, c: conn}
	nodeW := &tunnelWriter{w: writeWithin(back, x.px.tunnelIdle), drop: in.linger}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		_, err := io.CopyBuffer(nodeW, in, *toBack)
		if err == nil && !nodeW.failed {
			shutWrite(back)
			fin()
			return
		}
		end()
	}()
	clientW := &tunnelWriter{w: writeWithin(conn, x.px.tunnelIdle)}
	_, err = io.CopyBuffer(clientW, activeReader{back, last}, *toClient)
	switch {
	case clientW.failed:
		end() // the client is gone, or stopped reading
	case err == nil:
		shutWrite(conn) // the node is done: the client gets FIN after its last byte
		fin()
	default:
		// The node failed. The client gets what came before, then FIN;
		// closed now, with bytes of the client's unread, its socket
		// would answer with a reset that drops what the kernel had not
		// sent yet. What the client still sends is read and dropped
		// meanwhile, as HTTP/1.1's lingering close does.
		back.Close()
		shutWrite(conn)
		in.linger()
	}
	<-upDone
	end()
	x.bytesIn, x.bytesOut = nodeW.n, clientW.n
}

// tunnelFinTimeout ends a tunnel one side of which has shut its sending
// side once nothing went through it for that long (HAProxy's timeout
// client-fin and server-fin): a WebSocket peer that reads the end of the
// other's stream closes its own at once, so one that does not is stuck
// or gone, and need not hold the tunnel for all of response_timeout.
const tunnelFinTimeout = 5 * time.Second

// tunnelWriter is one way of a tunnel: it counts what it wrote and
// notes a failed write. With drop set, a failed write (the node is gone
// and no longer takes the client's bytes) calls it and the rest is
// dropped, so that the reading goes on for a lingering close.
type tunnelWriter struct {
	w      io.Writer
	n      int64
	failed bool
	drop   func()
}

func (t *tunnelWriter) Write(p []byte) (int, error) {
	if t.failed {
		return len(p), nil // dropping
	}
	n, err := t.w.Write(p)
	t.n += int64(n)
	if err != nil {
		t.failed = true
		// A write that timed out is a side that stopped reading: it
		// ends the tunnel (writeWithin), lingering or not.
		if t.drop != nil && !isTimeout(err) {
			t.drop()
			return len(p), nil
		}
	}
	return n, err
}

// lingerReader reads the client's side of a tunnel. Once linger was
// called, each read must come within h1Linger of the last one, up to
// h2LingerMax in all (nginx's lingering_timeout and lingering_time).
type lingerReader struct {
	r     io.Reader
	c     net.Conn
	until atomic.Int64 // unix nanoseconds; 0: not lingering
}

func (l *lingerReader) linger() {
	now := time.Now()
	if l.until.CompareAndSwap(0, now.Add(h2LingerMax).UnixNano()) {
		_ = l.c.SetReadDeadline(now.Add(h1Linger))
	}
}

func (l *lingerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if until := l.until.Load(); until != 0 && n > 0 {
		end := time.Now().Add(h1Linger)
		if last := time.Unix(0, until); end.After(last) {
			end = last
		}
		_ = l.c.SetReadDeadline(end)
	}
	return n, err
}

// shutWrite shuts the sending side of a connection (a tunnel's, or an
// HTTP/2 connection's socket as its close lingers), after the bytes
// written to it: TLS close_notify, then FIN, under the handshake's
// wrapper (helloConn), which has no CloseWrite of its own.
func shutWrite(c io.Writer) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
		c = tc.NetConn()
	}
	if hc, ok := c.(*helloConn); ok {
		c = hc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// tunnelBufSize is a tunnel's copy buffer, each way: a WebSocket's
// messages are small, and an idle tunnel should hold little (nginx's
// proxy_buffer_size is 4 or 8 KiB); a TLS record of up to 16 KiB is read
// in two.
const tunnelBufSize = 8 << 10

var tunnelBufs = sync.Pool{New: func() any { b := make([]byte, tunnelBufSize); return &b }}

// writeWithin gives each write to w the tunnel's idle limit d as its
// deadline, when w takes one (the client's connection and the backend's
// upgraded one do). The idle watch alone cannot end a write that waits
// on a side that stopped reading while bytes keep coming the other way:
// those bytes keep the tunnel from looking idle.
func writeWithin(w io.Writer, d time.Duration) io.Writer {
	if dw, ok := w.(writeDeadliner); ok && d > 0 {
		return &deadlineWriter{w: dw, d: d}
	}
	return w
}

type writeDeadliner interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

// deadlineWriter moves the write deadline d ahead before each write,
// lazily (deadline.Lazy): a busy tunnel re-arms it about once per Slack(d).
type deadlineWriter struct {
	w  writeDeadliner
	d  time.Duration
	dl deadline.Lazy
}

func (dw *deadlineWriter) Write(p []byte) (int, error) {
	if t, ok := dw.dl.After(time.Now(), dw.d); ok {
		if err := dw.w.SetWriteDeadline(t); err != nil {
			return 0, err
		}
	}
	return dw.w.Write(p)
}

// activeReader notes in last (unix nanoseconds) when bytes last came.
type activeReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a activeReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watchIdle calls end once last is idle old, or tunnelFinTimeout old
// if that is shorter once finned closes, unless stop closes first.
func watchIdle(idle time.Duration, last *atomic.Int64, finned, stop <-chan struct{}, end func()) {
	t := time.NewTimer(idle)
	if idle <= 0 {
		t.Stop() // no idle limit until one side is done
	}
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-finned:
			finned = nil
			if idle <= 0 || tunnelFinTimeout < idle {
				idle = tunnelFinTimeout
			}
		case <-t.C:
		}
		if idle <= 0 {
			continue
		}
		quiet := time.Since(time.Unix(0, last.Load()))
		if quiet >= idle {
			end()
			return
		}
		t.Reset(idle - quiet)
	}
}

func readerWithBuffered(br *bufio.Reader, c net.Conn) io.Reader {
	if br.Buffered() > 0 {
		return io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
	}
	return c
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// isHopHeader reports the hop-by-hop fields, removed in both directions
// (RFC 9110 7.6.1).
func isHopHeader(k string) bool { return httpsyntax.HopByHop(k) }

// removeConnectionTokens drops the headers a Connection header names,
// without allocating for the tokens browsers and servers send.
func removeConnectionTokens(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.TrimSpace(tok); tok != "" {
				delete(h, connectionTokenKey(tok))
			}
		}
	}
}

// connectionTokenKey is http.CanonicalHeaderKey(tok), made up front for
// the usual spellings of the usual tokens: canonicalising "keep-alive"
// allocates.
func connectionTokenKey(tok string) string {
	switch tok {
	case "keep-alive", "Keep-Alive":
		return "Keep-Alive"
	case "close", "Close":
		return "Close"
	case "upgrade", "Upgrade":
		return "Upgrade"
	}
	return http.CanonicalHeaderKey(tok)
}

// forwardedValues holds the header fields edged sets on a request. They
// go upstream as upstream.Request.Fields, beside the client's header
// rather than inserted into it (five map inserts a request); what of their
// text and the outgoing URI is not at hand is one allocation together
// (prepareHeader).
type forwardedValues struct {
	fields [nForwarded + 2]upstream.Field
}

// The forwarded fields, in the order prepareHeader sets them
// (fields[:nForwarded]); after them, where the virtual host has
// forward_client_cert, forward adds Client-Cert and Client-Cert-Chain.
const (
	fwdXFF = iota
	fwdProto
	fwdHost
	fwdForwarded
	fwdRequestID
	nForwarded
)

// isForwardedField reports whether k (canonical) is a field edged sets,
// or one of its family a client must not: every X-Forwarded-* (Port,
// Prefix, Ssl... build a backend's redirects and links), X-Real-Ip
// (its client, behind nginx), and RFC 9440's Client-Cert and
// Client-Cert-Chain (the certificate the client showed edged, which a
// backend behind a TLS-terminating proxy trusts: section 3 has the proxy
// remove a client's). Only a proxy may say these, and to edged, at the
// edge, a client's are forged. config.HashHeaderReachesNode says the
// same to hash_on (TestHashHeaderReachesNodeIsPrepareHeaders).
func isForwardedField(k string) bool {
	switch k {
	case "Forwarded", "X-Request-Id", "X-Real-Ip", "Client-Cert", "Client-Cert-Chain":
		return true
	}
	return strings.HasPrefix(k, "X-Forwarded-")
}

// clientIP is the address of r's client without its port. Edged's
// servers split it once per connection; a request from elsewhere (tests)
// has it split here.
func clientIP(w http.ResponseWriter, r *http.Request) string {
	ip, _ := clientOf(w, r)
	return ip
}

// clientOf is clientIP, and the forwardedCache of r's connection when it
// has one (edged's HTTP/1.1 server's).
func clientOf(w http.ResponseWriter, r *http.Request) (string, *forwardedCache) {
	if p, fc := peerOf(w); p != nil {
		return p.clientIP, fc
	}
	return hostOfAddr(r.RemoteAddr), nil
}

// peer is what forwarding reads of a client connection, kept by edged's
// servers (HTTP/1.1 and HTTP/2) once for all its requests.
type peer struct {
	clientIP string // the remote address without its port
	// clientCert: the connection's client certificate as RFC 9440's
	// fields, encoded at its first request that forwards them.
	clientCert clientCertCache
}

// peerOf is the peer of the connection w answers on, and its
// forwardedCache where its requests run one at a time (HTTP/1.1; nil on
// HTTP/2). A request edged's servers did not read (tests) has none: nil.
func peerOf(w http.ResponseWriter) (*peer, *forwardedCache) {
	switch hw := w.(type) {
	case *h1Response:
		return &hw.c.peer, &hw.c.fwdCache
	case *h2Response:
		return &hw.st.c.peer, nil
	}
	return nil, nil
}

// forwardedCache keeps a client connection's last Forwarded value made
// without a client's own Forwarded, and the Host it was made for: the
// requests of a connection share its address and protocol, and mostly
// their Host, so the value is made once, not once a request.
type forwardedCache struct {
	host, fwd string
}

// hostOfAddr is addr's host, or addr itself when it has no port.
func hostOfAddr(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// prepareHeader turns the client's header into the upstream's, in place
// (neither the HTTP/1.1 nor the HTTP/2 server reads a request's header
// after the handler starts): hop-by-hop headers out, Expect and Proxy
// too, and the client's own X-Forwarded-*, X-Real-Ip, Forwarded and
// X-Request-Id (those edged sets replaced by its own in v.fields; the
// upstream client writes them after the header). It
// reports whether the client asked for a WebSocket upgrade, whose
// Connection and Upgrade headers are then kept. Any other upgrade ("h2c",
// unknown tokens) is dropped with the hop-by-hop headers: the request is
// forwarded as a plain one. clientIP is the client's address without its
// port, fc its connection's cache (clientOf; nil: none). uri holds the
// outgoing URI: it is returned as a string, r.RequestURI when it is the
// same text, else made together with the fields' text.
func prepareHeader(r *http.Request, clientIP string, fc *forwardedCache, rid string, v *forwardedValues, uri []byte) (uriStr string, upgrade bool) {
	h := r.Header
	websocket := false
	if len(h["Connection"]) > 0 {
		for _, c := range h["Connection"] {
			if httpsyntax.HasToken(c, "upgrade") {
				for _, u := range h["Upgrade"] {
					if httpsyntax.HasToken(u, "websocket") {
						websocket = true
					}
				}
			}
		}
		// Before the fields below are read: a client may name
		// X-Forwarded-For as hop-by-hop, and it is then not forwarded.
		removeConnectionTokens(h)
	}
	// One pass over the client's fields rather than a delete per name:
	// sixteen names, of which a request carries few. Hop-by-hop fields
	// go, Expect too (the server answers a 100-continue to the client
	// itself), Proxy (httpoxy: a backend that maps fields to CGI
	// variables, PHP-FPM behind its nginx, reads it as HTTP_PROXY, the
	// proxy of its own outbound requests; no standard defines it), and
	// the fields edged sets (v.fields), the client's X-Forwarded-For and
	// Forwarded kept to lead edged's values (the Forwarded only when it
	// parses, validForwarded).
	var priorXFF, priorFwd []string
	for k, vv := range h {
		switch {
		case k == "X-Forwarded-For":
			priorXFF = vv
		case k == "Forwarded":
			priorFwd = vv
		case k != "Expect" && k != "Proxy" && !isHopHeader(k) && !isForwardedField(k):
			continue
		}
		delete(h, k)
	}
	if len(priorFwd) > 0 && !validForwarded(priorFwd) {
		// Kept, it would take edged's element into it as the node
		// reads the field (`for=6.6.6.6;x="`: a quoted string never
		// closed, to the end): replaced, as nginx's documented
		// $proxy_add_forwarded does.
		priorFwd = nil
	}
	// HTTP/1.1 only: a server ignores an HTTP/1.0 request's Upgrade (RFC
	// 9110 7.8), and a WebSocket needs 1.1 (RFC 6455 4.1).
	if websocket && r.ProtoMajor == 1 && r.ProtoMinor >= 1 {
		h["Connection"] = connectionUpgrade
		h["Upgrade"] = upgradeWebSocket
		upgrade = true
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	// What is not at hand already is built after the URI in one buffer,
	// made one string and sliced: the URI when it is not the client's
	// target as sent, X-Forwarded-For when the client sent one, and
	// Forwarded unless fc has it for this Host.
	xff, fwd := clientIP, ""
	if len(priorFwd) == 0 && fc != nil && fc.host == r.Host && fc.fwd != "" {
		fwd = fc.fwd
	}
	b := uri
	if string(uri) == r.RequestURI {
		uriStr, b = r.RequestURI, uri[:0]
	}
	uriEnd := len(b)
	if len(priorXFF) > 0 {
		for _, p := range priorXFF {
			b = append(b, p...)
			b = append(b, ", "...)
		}
		b = append(b, clientIP...)
	}
	xffEnd := len(b)
	if fwd == "" {
		for _, p := range priorFwd {
			b = append(b, p...)
			b = append(b, ", "...)
		}
		b = append(b, "for="...)
		if strings.IndexByte(clientIP, ':') >= 0 {
			b = append(b, `"[`...)
			b = append(b, clientIP...)
			b = append(b, `]"`...)
		} else {
			b = append(b, clientIP...)
		}
		b = append(b, ";host="...)
		b = appendForwardedValue(b, r.Host)
		b = append(b, ";proto="...)
		b = append(b, proto...)
	}
	if len(b) > 0 {
		all := string(b)
		if uriEnd > 0 {
			uriStr = all[:uriEnd]
		}
		if len(priorXFF) > 0 {
			xff = all[uriEnd:xffEnd]
		}
		if fwd == "" {
			fwd = all[xffEnd:]
			if len(priorFwd) == 0 && fc != nil {
				// Copies: r.Host points into the request's head, and
				// fwd into the outgoing URI's text, which the cache
				// would keep alive (up to max_header_bytes each) for as
				// long as the connection's requests name this Host.
				fc.host, fc.fwd = strings.Clone(r.Host), strings.Clone(fwd)
			}
		}
	}
	v.fields[fwdXFF] = upstream.Field{Name: "X-Forwarded-For", Value: xff}
	v.fields[fwdProto] = upstream.Field{Name: "X-Forwarded-Proto", Value: proto}
	v.fields[fwdHost] = upstream.Field{Name: "X-Forwarded-Host", Value: r.Host}
	v.fields[fwdForwarded] = upstream.Field{Name: "Forwarded", Value: fwd}
	v.fields[fwdRequestID] = upstream.Field{Name: "X-Request-Id", Value: rid}
	return uriStr, upgrade
}

var (
	connectionUpgrade = []string{"Upgrade"}
	upgradeWebSocket  = []string{"websocket"}
)

// validForwarded reports whether every line of a client's Forwarded
// parses as RFC 7239 4's list of forwarded-elements (pairs token=token
// or token="quoted string", separated by ";", elements by "," with
// optional whitespace around it), so that the element edged appends
// after a ", " is an element of its own to the node's parser.
func validForwarded(lines []string) bool {
	for _, v := range lines {
		if !validForwardedLine(v) {
			return false
		}
	}
	return true
}

func validForwardedLine(v string) bool {
	i := 0
	for {
		// A forwarded-element: [pair] *(";" [pair]).
		for {
			if i < len(v) && httpsyntax.TokenByte[v[i]] {
				i = skipToken(v, i)
				if i == len(v) || v[i] != '=' {
					return false
				}
				i++
				if i < len(v) && v[i] == '"' {
					if i = skipQuoted(v, i+1); i < 0 {
						return false
					}
				} else if j := skipToken(v, i); j > i {
					i = j
				} else {
					return false
				}
			}
			if i == len(v) || v[i] != ';' {
				break
			}
			i++
		}
		i = skipOWS(v, i)
		if i == len(v) {
			return true
		}
		if v[i] != ',' {
			return false
		}
		i = skipOWS(v, i+1)
	}
}

// skipToken is the index in v past the token starting at i.
func skipToken(v string, i int) int {
	for i < len(v) && httpsyntax.TokenByte[v[i]] {
		i++
	}
	return i
}

// skipOWS is the index in v past the spaces and tabs starting at i.
func skipOWS(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// skipQuoted is the index in v past the closing quote of the quoted
// string whose first byte after its opening quote is at i, or -1 when it
// is not closed or holds a byte it may not (RFC 9110 5.6.4).
func skipQuoted(v string, i int) int {
	for i < len(v) {
		switch c := v[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			// quoted-pair: HTAB, SP, VCHAR or obs-text.
			if i+1 == len(v) || !httpsyntax.ValueByte(v[i+1]) {
				return -1
			}
			i += 2
		case httpsyntax.ValueByte(c):
			i++ // qdtext: field-content but the quote and backslash, taken above
		default:
			return -1
		}
	}
	return -1
}

// appendForwardedValue appends a Forwarded parameter value, quoted unless
// it is a token.
func appendForwardedValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b = append(b, '"')
			for j := 0; j < len(v); j++ {
				if v[j] == '"' || v[j] == '\\' {
					b = append(b, '\\')
				}
				b = append(b, v[j])
			}
			return append(b, '"')
		}
	}
	return append(b, v...)
}

// copyResponseHeader moves the upstream's response header to the client's,
// sharing the value slices (nobody writes to them afterwards). It returns
// the header list size of the fields copied, as HTTP/2 counts it (RFC
// 9113 §6.5.2: each one's name and value, and h2FieldOverhead), counted
// in the loop that copies them, for an HTTP/2 client's
// SETTINGS_MAX_HEADER_LIST_SIZE (h2Response.headOver).
func copyResponseHeader(dst, src http.Header) (size int64) {
	if len(src["Connection"]) > 0 {
		removeConnectionTokens(src)
	}
	for k, vv := range src {
		if isHopHeader(k) {
			continue
		}
		dst[k] = vv
		size += int64(len(vv) * (len(k) + h2FieldOverhead))
		for _, v := range vv {
			size += int64(len(v))
		}
	}
	return size
}

// replayable is edged's one retry decision (README, Forwarding): may a
// request that possibly reached a node be sent again, on another node
// (forward) or on a fresh connection to the same one (upstream's
// RoundTrip, through Request.Replayable)? For an idempotent method or a
// request the client marked with an idempotency key; one with a body
// only while the body rewinds (limitedBody keeps up to replayMax). h is
// the header as the node gets it (prepareHeader): a key is worth a
// resend only if the node sees it.
func replayable(method string, h http.Header) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return hasValue(h["Idempotency-Key"]) || hasValue(h["X-Idempotency-Key"])
}

// hasValue reports whether a field has a value that is not empty: an
// idempotency key with none names no operation for a server to
// deduplicate by, and does not make a request safe to send twice.
func hasValue(vv []string) bool {
	for _, v := range vv {
		if httpsyntax.TrimOWS(v) != "" {
			return true
		}
	}
	return false
}

// appendOutgoingURI appends the target path plus what follows the base
// path, with the query kept: base "/users", target "/v1", request
// "/users/7?x=1" → "/v1/7?x=1". p is the request's path with its dot
// segments resolved.
func appendOutgoingURI(b []byte, r *http.Request, px *proxyRuntime, p requestPath) []byte {
	esc := p.escaped
	if esc == "" {
		esc = clientEscaped(r.URL)
	}
	rest := esc
	slash := false // the boundary after the base path was written "%2F"
	if px.basePath != "/" {
		// The base path matched the decoded path; the rest is cut from
		// the escaped one, so it keeps the client's escaping even when
		// the client escaped a character of the base path ("/%70ublic").
		rest = esc[escapedLen(esc, p.baseEnd(px.basePath)):]
		if n := separatorLen(rest); n > 0 && rest[0] != '/' {
			// The decoded path has "/" or "\" there, which the base
			// path matched on: it goes on as "/", so that a server
			// keeping "%2F" or "\" apart from "/" reads the rest
			// under the target path, not "/v1%2Fx" beside it (nginx
			// sends "/v1/x" too).
			rest, slash = rest[n:], true
		}
	}
	// targetPath never ends in "/"; rest is "" or starts with "/", or
	// with the parameters of the base path's last segment (";x",
	// "%3Bx"), which follow a "/" without a target path.
	b = append(b, px.targetPath...)
	if slash || px.targetPath == "" && (rest == "" || rest[0] != '/') {
		b = append(b, '/')
	}
	b = append(b, rest...)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		b = append(b, '?')
		b = append(b, r.URL.RawQuery...)
	}
	return b
}

// separatorLen is the length of the separator esc, an escaped path,
// starts with ("/", "%2F", "\", "%5C"), or 0.
func separatorLen(esc string) int {
	switch {
	case esc == "":
		return 0
	case esc[0] == '/', esc[0] == '\\':
		return 1
	case len(esc) >= 3 && esc[0] == '%' && (esc[1] == '2' && (esc[2] == 'F' || esc[2] == 'f') || esc[1] == '5' && (esc[2] == 'C' || esc[2] == 'c')):
		return 3
	}
	return 0
}

// escapedLen is the length of the start of esc, an escaped path, that
// decodes to its first n bytes: a "%XX" is one byte.
func escapedLen(esc string, n int) int {
	i := 0
	for ; n > 0 && i < len(esc); n-- {
		if esc[i] == '%' {
			i += len("%XX")
		} else {
			i++
		}
	}
	return min(i, len(esc))
}

// outgoingHost is the Host header the upstream gets (pass_host).
func outgoingHost(r *http.Request, px *proxyRuntime, n *upstream.Node) string {
	switch px.passHost {
	case "node":
		return n.Authority()
	case "rewrite":
		return px.upstreamHost
	}
	return r.Host
}
