package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"edged/internal/deadline"
	"edged/internal/rawconn"
	"edged/internal/upstream"
)

// h1Server is edged's own HTTP/1.x server for clients' connections, in
// place of net/http's: one goroutine per connection reads request heads
// in place from a pooled buffer, refuses anything whose framing could be
// read two ways (h1parse.go), and hands each request to the same
// http.Handler that serves HTTP/2. TLS connections that negotiate "h2"
// go to the HTTP/2 server through h2 (serveH2 in h2server.go).
//
// What net/http's server gave is kept: read_header_timeout (also bounds
// the TLS handshake and cuts a head that trickles in), read_timeout over
// the whole request, write_timeout from the end of the head, idle_timeout
// between requests, max_header_bytes (431), 100-continue sent only when
// the handler reads the body, keep-alive and pipelining (answered in
// order), HTTP/1.0 (keep-alive only when asked), HEAD, chunked requests
// and responses, flushing, hijacking for upgrades, a request context
// cancelled when the client goes away, http.ErrAbortHandler cutting the
// connection, and a graceful Shutdown.
type h1Server struct {
	handler   http.Handler
	log       *slog.Logger
	tlsConfig *tls.Config // nil: a plain listener
	// refusals counts and logs the requests the parser refuses and the
	// TLS handshakes; nil counts them only.
	refusals *refusalLog
	// h2 serves a TLS connection that negotiated "h2"; it returns when
	// the connection is done.
	h2 func(ctx context.Context, c *tls.Conn)

	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	// watchAfter is h1WatchAfter; a test that must see a watch started
	// by watchNow alone sets it longer, under mu, before any connection.
	watchAfter time.Duration
	// limit is max_connections, shared with the other public listener;
	// nil: none. Each accepted connection holds a slot until its serve
	// returns (a WebSocket tunnel runs inside it, an HTTP/2 connection
	// too).
	limit *connLimit
	// readAhead bounds the request bodies read ahead of their workers in
	// all of the process's connections (Server.readAhead); nil: none.
	readAhead *processBudget

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*h1Conn]struct{}
	shutdown atomic.Bool
	// lameDuck: every answer closes its connection, as every answer does
	// once shutdown is set: the Server's draining (NotReady), its own
	// for a server of its own.
	lameDuck *atomic.Bool
	stopped  chan struct{}  // closed by Shutdown: ends a wait for a slot of limit
	wg       sync.WaitGroup // connections' goroutines

	// waitsCut: the shutdown's cut ended the waits for request bodies and
	// the holds waited out on the connections' reads (cutWaits); a wait
	// or hold that starts later ends at once.
	waitsCut atomic.Bool
}

// Connection states, for Shutdown: an idle connection (waiting between
// requests for the next one's first byte) may be closed at once; an
// active one (a new connection awaiting its first request too) finishes
// its request first.
const (
	h1Active int32 = iota
	h1Idle
	h1Closing
)

func newH1Server(h http.Handler, log *slog.Logger, tc *tls.Config, rht, rt, wt, it time.Duration, maxHeader int) *h1Server {
	if rht <= 0 {
		rht = rt
	}
	if it <= 0 {
		it = rt
	}
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	return &h1Server{handler: h, log: log, tlsConfig: tc, readHeaderTimeout: rht, readTimeout: rt, writeTimeout: wt, idleTimeout: it, maxHeaderBytes: maxHeader, watchAfter: h1WatchAfter, conns: map[*h1Conn]struct{}{}, stopped: make(chan struct{}), lameDuck: new(atomic.Bool)}
}

// Serve accepts connections on ln until Shutdown, which makes it return
// http.ErrServerClosed, or until ln is closed otherwise (net.ErrClosed).
// Any other failure to accept is waited out (acceptFailed).
func (s *h1Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	fails := newAcceptFailures()
	for {
		if s.limit != nil && !s.limit.acquire(s.stopped, s.logLimit) {
			return http.ErrServerClosed
		}
		nc, err := ln.Accept()
		if err != nil {
			if s.limit != nil {
				s.limit.unreserve()
			}
			if s.shutdown.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if !fails.wait(s.log, ln.Addr(), err, s.stopped) {
				return http.ErrServerClosed
			}
			continue
		}
		fails.backoff = 0
		if s.limit != nil {
			s.limit.accepted()
		}
		nc = rawconn.Wrap(nc)
		c := &h1Conn{srv: s, raw: nc, nc: nc}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		if !s.track(c) {
			nc.Close()
			if s.limit != nil {
				s.limit.release()
			}
			continue
		}
		go c.serve()
	}
}

// acceptFailures is an accept loop's wait after a failed accept. Every
// failure but a closed listener is waited out and the loop accepts again,
// as nginx and HAProxy do: it is one connection's (Linux's accept passes
// a new socket's pending network error on, EPROTO, ENETUNREACH and the
// like, and accept(2) says to retry; a firewall's EPERM) or a moment's
// shortage (EMFILE, ENFILE; ENOMEM, ENOBUFS under a memory limit). The
// loop used to return every error Go does not call temporary, and edged
// serve then exited, cutting every request in flight. The wait starts at
// 5 ms and doubles up to 1 s, as net/http's; a warning is logged at once,
// then at most every connLimitLogEvery (lines; newAcceptFailures).
type acceptFailures struct {
	backoff time.Duration
	lines   lineBudget
}

func newAcceptFailures() *acceptFailures {
	return &acceptFailures{lines: lineBudget{perSec: 1 / connLimitLogEvery.Seconds(), burst: 1}}
}

// wait logs err within its budget and waits before the next accept; it
// reports false when stop closes first.
func (f *acceptFailures) wait(log *slog.Logger, addr net.Addr, err error, stop <-chan struct{}) bool {
	f.backoff = min(max(2*f.backoff, 5*time.Millisecond), time.Second)
	if ok, skipped := f.lines.take(); ok {
		log.Warn("accept failed; retrying", "listener", addr.String(), "error", err.Error(), "wait", f.backoff.String(), "suppressed", skipped)
	}
	t := time.NewTimer(f.backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// logLimit reports that the accept loop waits at max_connections.
func (s *h1Server) logLimit(open, max int) {
	s.log.Warn("max_connections reached; new connections wait in the listen queue until some close", "open", open, "max_connections", max)
}

// track adds c to the connections Shutdown waits for; it refuses once
// Shutdown began.
func (s *h1Server) track(c *h1Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *h1Server) untrack(c *h1Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish their request (every connection closes after its
// current answer) until ctx is done; then it closes them all and returns
// ctx's error.
func (s *h1Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutdown.Swap(true) {
		close(s.stopped)
	}
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.closeAll()
			// The connections' goroutines end promptly now (every wait
			// is on the socket or the request's context); bounded all
			// the same, since a handler is not ours.
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// cutWaits ends, the shutdown's drain over (Server.cutWaits), the
// waits of the connections' requests for their bodies and the holds
// waited out on their reads (hold): the read fails or ends at once, and
// the request is answered as edged's cut (bodyFailed, Env.serve) before
// its connection closes.
func (s *h1Server) cutWaits() {
	s.waitsCut.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.waitingBody.Load() || c.holding.Load() {
			c.cutRead()
		}
	}
}

// cutRead puts the read deadline in the past: the body's read fails, or
// a hold's ends (and the connection closes after the answer). The lazy
// deadline is not told (rdl is the connection goroutine's): nothing
// reads after that but the lingering close, which sets its own.
func (c *h1Conn) cutRead() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }

func (s *h1Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(h1Idle, h1Closing) {
			c.raw.Close()
		}
	}
}

func (s *h1Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(h1Closing)
		c.raw.Close()
		if c.cancel != nil {
			c.cancel()
		}
	}
}

// Per-connection buffers.
const (
	h1ReadBufSize  = 4 << 10
	h1WriteBufSize = 4 << 10
	// h1DiscardMax is how much of a request body the handler left unread
	// is read and dropped to keep the connection; past it, the
	// connection closes.
	h1DiscardMax = 256 << 10
	// h1HeaderHint sizes the header maps a connection reuses: at most 8
	// makes a Go map that is one group, with no table to clear.
	h1HeaderHint = 8
)

var (
	h1ReadBufs   = sync.Pool{New: func() any { b := make([]byte, h1ReadBufSize); return &b }}
	h1Writers    = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, h1WriteBufSize) }}
	aLongTimeAgo = time.Unix(1, 0)
)

// h1Conn is one client connection and the state its requests reuse.
type h1Conn struct {
	srv    *h1Server
	raw    net.Conn  // the TCP connection
	nc     net.Conn  // what requests are read from: raw or its TLS layer
	hello  helloConn // raw as the TLS layer reads it, with what its ClientHello chose
	state  atomic.Int32
	ctx    context.Context // the requests' context: cancelled when the client goes away
	cancel context.CancelFunc

	// waitingBody: its request waits for its body before it takes a
	// worker (awaitBody), a wait the shutdown's cut ends (cutWaits).
	waitingBody atomic.Bool
	// holding: its request's hold is waited out on the connection's
	// read (hold), which the shutdown's cut ends (cutWaits).
	holding atomic.Bool

	bufp *[]byte // read buffer: buf[r:w] is read but not yet used
	buf  []byte
	r, w int
	rerr error // a read error met by the background read

	// The background read looks for the client going away while a
	// handler runs (net/http does the same), keeping whatever it reads.
	// It starts only once the handler has run for h1WatchAfter (watch):
	// most answers come sooner, and the connection's goroutine then reads
	// the next request itself. A request about to wait in its
	// environment's pool starts it at once (watchNow).
	bgMu       sync.Mutex
	bgCond     sync.Cond
	bgInRead   bool
	bgAborted  bool
	watchArmed bool        // the handler runs and the body is read: watchTimer may start the background read
	watchTimer *time.Timer // runs watchFire; made at the first watch, reset by every later one
	watchFn    func()      // c.watchFire, made once: a go statement or timer given it allocates nothing more
	// watchKeepRDL: the handler set a read deadline of its own
	// (SetReadDeadline), which the background read keeps. Otherwise it
	// clears the one the head or the body was read under: the request
	// has arrived whole, and read_timeout ends with it.
	watchKeepRDL bool

	// The read and write deadlines as readDeadline and writeDeadline set
	// them (lazily); whatever sets one directly on nc forgets it here.
	rdl, wdl deadline.Lazy
	// handlerWDL: a handler set the write deadline (SetWriteDeadline),
	// which the next request clears when the server sets none.
	handlerWDL bool

	bw       *bufio.Writer // nil while the connection waits for a request; writes to wire
	wire     h1Wire
	reqCtx   *h1Context    // ctx, as the requests see it
	reqBase  *http.Request // carries reqCtx; every request is a copy of it
	req      http.Request
	url      url.URL // the request's URL, for the usual targets
	head     h1Head
	hdr      http.Header
	vals     []string
	body     h1Body
	hup      hangupWatch
	resp     h1Response
	tlsState *tls.ConnectionState
	remote   string
	peer     // the client, as forwarding reads it (peerOf)
	fwdCache forwardedCache

	closeAfter bool // the connection closes after the current answer
	handling   bool // the handler runs: the background read may start
	hijacked   bool

	dateSec int64
	date    []byte
}

// h1Wire is what a connection's writer (bw) writes to: the connection,
// its writes counted, by which an answer's head is known to be in the
// writer still, whole (h1Response.takeBackHead).
type h1Wire struct {
	nc     net.Conn
	writes uint64
}

func (o *h1Wire) Write(p []byte) (int, error) {
	o.writes++
	return o.nc.Write(p)
}

func (c *h1Conn) serve() {
	s := c.srv
	defer func() {
		// A bug of this server must cost one connection, not the
		// process (the handler's panics are caught in runHandler).
		if v := recover(); v != nil {
			s.log.Error("panic in the HTTP/1.1 server", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			c.raw.Close()
		}
	}()
	defer func() {
		if !c.hijacked { // a hijacked connection was untracked then
			s.untrack(c)
		}
		if s.limit != nil {
			// The connection is closed by now on every path (release,
			// a failed handshake, the HTTP/2 server; a tunnel, which
			// runs inside the handler, closes its own; a panic's recover
			// closes it just after).
			s.limit.release()
		}
	}()
	defer c.cancel()
	c.remote = c.raw.RemoteAddr().String()
	c.clientIP = hostOfAddr(c.remote)
	if s.tlsConfig != nil {
		c.hello.Conn = c.raw
		tc := tls.Server(&c.hello, s.tlsConfig)
		if !c.handshake(tc) {
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == "h2" && s.h2 != nil {
			_ = tc.SetDeadline(time.Time{})
			s.h2(c.ctx, tc)
			return
		}
		c.nc = tc
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	c.bufp = h1ReadBufs.Get().(*[]byte)
	c.buf = *c.bufp
	c.bgCond.L = &c.bgMu
	// The header maps start small (one group of 8 fields, h1HeaderHint):
	// a small map is cleared and ranged over per request for a fraction
	// of a larger one's cost; a connection whose requests carry more
	// grows its map once and keeps it.
	c.hdr = make(http.Header, h1HeaderHint)
	c.reqCtx = &h1Context{Context: c.ctx}
	context.AfterFunc(c.ctx, c.reqCtx.end) // once per connection
	c.reqBase = new(http.Request).WithContext(c.reqCtx)
	c.resp = h1Response{c: c, header: make(http.Header, h1HeaderHint)}
	c.body.c = c
	defer c.release()
	first := true
	for c.serveOne(first) {
		first = false
	}
}

// handshake runs the TLS handshake within read_header_timeout. A client
// speaking plain HTTP to the TLS port gets a short 400, as net/http gave.
// The outcome is counted by virtual host, a failure logged within its
// budget (refusalLog), unless the client closed before a ClientHello.
func (c *h1Conn) handshake(tc *tls.Conn) bool {
	s := c.srv
	if d := s.readHeaderTimeout; d > 0 {
		c.hello.deadline = time.Now().Add(d)
		_ = c.raw.SetDeadline(c.hello.deadline)
	}
	err := tc.HandshakeContext(c.ctx)
	// crypto/tls answers a failure with an alert, a write, which ends the
	// handshake's turn; should one end without, the turn still comes back.
	c.hello.handshakeOver()
	if err == nil {
		_ = c.raw.SetWriteDeadline(time.Time{})
		s.refusals.handshake(&c.hello, nil)
		return true
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
		_, _ = rhe.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
	}
	if noHandshake(&c.hello, err) {
		s.log.Debug("connection closed before a TLS ClientHello", "remote", c.remote, "error", err.Error())
	} else {
		s.refusals.handshake(&c.hello, err)
	}
	c.raw.Close()
	return false
}

func looksLikeHTTP(h []byte) bool {
	switch string(h) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		return true
	}
	return false
}

// release closes the connection (unless a handler took it over) and
// gives its buffers back.
func (c *h1Conn) release() {
	c.abortPendingRead()
	if c.watchTimer != nil {
		c.watchTimer.Stop()
	}
	if !c.hijacked {
		if c.bw != nil {
			_ = c.bw.Flush()
		}
		if c.resp.aborted {
			// A cut answer ends without TLS close_notify, as nginx's
			// does: an HTTP/1.0 client reading a body of unknown length
			// to the close tells a cut from the end by it alone (RFC
			// 8446 6.1), and took what it got for the whole.
			c.raw.Close()
		} else {
			c.nc.Close()
		}
	}
	c.putWriter()
	if c.bufp != nil {
		h1ReadBufs.Put(c.bufp)
	}
	c.bufp, c.buf = nil, nil
}

func (c *h1Conn) putWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		h1Writers.Put(c.bw)
		c.bw = nil
	}
}

// serveOne reads and answers one request; it reports whether the
// connection stays open for another.
func (c *h1Conn) serveOne(first bool) bool {
	s := c.srv
	if c.bgPending() {
		// The previous request's background read goes on as the wait
		// for this one (keepWatching): no read of its own, no abort.
		c.putWriter()
		c.state.Store(h1Idle)
		if s.shutdown.Load() {
			return false
		}
		c.readDeadline(time.Now(), s.idleTimeout)
		c.bgMu.Lock()
		for c.bgInRead {
			c.bgCond.Wait()
		}
		got := c.w > c.r
		c.bgMu.Unlock()
		if !got {
			return false // the client closed, or idle_timeout passed
		}
		if !c.state.CompareAndSwap(h1Idle, h1Active) {
			return false // closed by Shutdown
		}
	} else if c.skipEmptyLines(); c.r == c.w {
		// Nothing pipelined (but empty lines, a client's CRLF after the
		// body it sent): wait for the next request's first bytes with
		// the idle timeout (the header timeout for the first one),
		// closable by Shutdown meanwhile.
		c.r, c.w = 0, 0
		c.shrink()
		c.putWriter() // an idle connection holds no write buffer
		if c.rerr != nil {
			return false
		}
		// The first request is awaited as one under way, not idle:
		// Shutdown neither closes the connection for it nor has it close
		// unanswered (it ends after that answer), as nginx waits for a
		// new connection's first request and net/http does for 5 s. A
		// client sends it on a connection it just made, and retries no
		// request whose new connection closed without an answer: those
		// accepted in the last moments of shutdown_delay lost theirs.
		// read_header_timeout bounds the wait, at shutdown as always.
		wait := s.readHeaderTimeout
		if !first {
			wait = s.idleTimeout
			c.state.Store(h1Idle)
			if s.shutdown.Load() {
				return false
			}
		}
		// From now, not from the end the handler measured: after it the
		// server may still have dropped an unread body (up to
		// read_timeout) or pushed the last write to a slow client.
		c.readDeadline(time.Now(), wait)
		n, _ := c.nc.Read(c.buf)
		if n == 0 {
			return false
		}
		c.w = n
		if !first && !c.state.CompareAndSwap(h1Idle, h1Active) {
			return false // closed by Shutdown
		}
	}
	c.state.Store(h1Active)
	if c.bw == nil {
		c.bw = h1Writers.Get().(*bufio.Writer)
		c.wire.nc = c.nc
		c.bw.Reset(&c.wire)
	}
	start := time.Now()
	// The first request's head counts from the handshake (its deadline
	// is set); a later one's from its first bytes, when it needs more
	// than one read.
	n, waited, herr := c.readHead(!first)
	if herr != nil {
		if herr.status != 0 {
			c.refuse(herr)
		}
		return false
	}
	headStr := string(c.buf[c.r : c.r+n])
	c.r += n
	h := &c.head
	*h = h1Head{trailerKeys: h.trailerKeys[:0], url: &c.url}
	var perr *h1Error
	c.vals, perr = parseHead(headStr, h, c.hdr, c.vals[:0])
	if perr != nil {
		c.refuse(perr)
		return false
	}

	// Deadlines for the rest: the body within read_timeout of the
	// request's start, the answer within write_timeout of the head. A
	// bodiless request has nothing more to read: the wait for its
	// answer is not read_timeout's.
	if h.contentLength != 0 {
		var rdl time.Time
		if d := s.readTimeout; d > 0 {
			rdl = start.Add(d)
		}
		c.hup.rdl = rdl // the hangup watch's too
		_ = c.nc.SetReadDeadline(rdl)
		c.rdl.Forget()
	}
	if d := s.writeTimeout; d > 0 {
		// From the head's end, not its start: a head read slowly must
		// not eat the answer's time. A head that came whole with the
		// read before start ended then: no clock read of its own.
		headEnd := start
		if waited {
			headEnd = time.Now()
		}
		c.writeDeadline(headEnd, d)
	}

	r := &c.req
	*r = *c.reqBase
	r.Method = h.method
	r.URL = h.url
	r.Proto = h.proto
	r.ProtoMajor, r.ProtoMinor = 1, h.minor
	r.Header = c.hdr
	r.Host = h.host
	r.RemoteAddr = c.remote
	r.RequestURI = h.target
	r.TLS = c.tlsState
	r.Close = h.close
	r.ContentLength = h.contentLength
	c.closeAfter = h.close
	c.body.reset(h)
	if h.chunked {
		r.TransferEncoding = chunkedTE
		if len(h.trailerKeys) > 0 {
			r.Trailer = make(http.Header, len(h.trailerKeys))
			for _, k := range h.trailerKeys {
				r.Trailer[k] = nil
			}
		}
	}
	c.resp.reset(r, start)
	c.handling = true
	if h.contentLength == 0 {
		r.Body = http.NoBody
		c.body.done = true
		c.watch()
	} else {
		r.Body = &c.body
	}
	c.runHandler(r)
	c.handling = false
	c.stopHangupWatch()
	c.unwatch()
	if c.hijacked {
		return false
	}
	c.resp.finish()
	if c.handlerWDL {
		// The write deadline the handler set for its answer (a stream's,
		// rolling) goes with that answer: with no write_timeout of the
		// server's to set for the next one (a reload may give streams
		// one the server has not), it would fail the next answer, or a
		// refusal, on this connection.
		_ = c.nc.SetWriteDeadline(time.Time{})
		c.handlerWDL = false
	}
	if c.keepWatching() {
		c.resetHeaders()
		c.req = http.Request{}
		return true
	}
	c.abortPendingRead()
	if !c.body.done && !c.closeAfter {
		c.discardBody()
	}
	c.resetHeaders()
	c.req = http.Request{}
	if c.closeAfter || c.resp.err != nil || c.ctx.Err() != nil || s.shutdown.Load() {
		// The client may still be sending the body no one read (a 413,
		// an early answer), or requests pipelined behind this one that
		// the close leaves unanswered (bytes of them read: nginx lingers
		// then too). Closing now, with its bytes unread, resets the
		// connection: a client still writing reports the reset instead
		// of the answer, and the reset drops the answer's tail still in
		// the send queue.
		if (!c.body.done || c.r < c.w) && c.resp.err == nil && !c.resp.aborted && c.rerr == nil && c.ctx.Err() == nil {
			c.lingeringClose()
		}
		return false
	}
	return true
}

var chunkedTE = []string{"chunked"}

// h1HeaderKeep is how many fields a connection's header maps and value
// list, and names its Trailer list, may have held and still be kept for
// its next request. A Go map never shrinks: cleared, a map a head of
// thousands of short fields grew would stay the connection's for its life
// (about 1 MB for a 64 KiB head), where an idle connection holds its 4 KiB
// read buffer; so would the Trailer list of one head announcing
// "A,A,A,..." (512 KiB).
const h1HeaderKeep = 64

// resetHeaders empties the request's and the answer's header maps for the
// next request, dropping those a large head grew, and the Trailer list
// (by its capacity: a body that is not chunked leaves it empty, not
// small). The request map's fields were all counted in vals (but Host and
// Transfer-Encoding): its length now may be less, since the handler
// deletes from it.
//
// It also lets go of every string of the request's head that the
// connection would keep until its next request (the parsed head and URL,
// the values and names its lists hold past their length, the answer's
// request id): they all point into the one string the head was copied
// into, and any of them keeps all of it, up to max_header_bytes, alive
// while the connection waits, where its read buffer grown for that head
// is given back. Every entry of vals and trailerKeys past their length is
// empty (each is cleared here whenever it was within it).
func (c *h1Conn) resetHeaders() {
	resetFields(&c.hdr, &c.vals, &c.resp.header)
	keys := c.head.trailerKeys
	if cap(keys) > h1HeaderKeep {
		keys = nil
	} else {
		clear(keys[:cap(keys)]) // a body that is not chunked emptied it, not cleared it
	}
	c.head = h1Head{trailerKeys: keys[:0]}
	c.url = url.URL{}
	c.resp.rid[0] = ""
}

// resetFields empties a request's header map, the value list backing
// it, and its answer's header map, for the next request (HTTP/1.1) or
// stream (HTTP/2) to reuse; those a head of more than h1HeaderKeep fields
// grew are dropped instead, as a Go map never shrinks.
func resetFields(hdr *http.Header, vals *[]string, resp *http.Header) {
	if len(*vals) > h1HeaderKeep {
		*hdr = make(http.Header, h1HeaderHint)
		*vals = nil
	} else {
		clear(*hdr)
		clear(*vals)
	}
	if len(*resp) > h1HeaderKeep {
		*resp = make(http.Header, h1HeaderHint)
	} else {
		clear(*resp)
	}
}

// h1Context is the context of a connection's requests: ctx, plus one
// slot for the upstream client's abort of the request in flight
// (upstream.AbortRegistry), so that a request does not pay for a
// context.AfterFunc of its own. The requests of a connection come one
// after the other; a second abort at once (a kept 502 while another node
// is tried) finds the slot taken and uses context.AfterFunc.
type h1Context struct {
	context.Context
	mu    sync.Mutex
	abort upstream.Aborter
	ended bool
}

func (x *h1Context) SetAbort(a upstream.Aborter) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ended || x.abort != nil {
		return false
	}
	x.abort = a
	return true
}

func (x *h1Context) StopAbort(a upstream.Aborter) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.abort != a {
		return false
	}
	x.abort = nil
	return true
}

// end runs when ctx ends.
func (x *h1Context) end() {
	x.mu.Lock()
	a := x.abort
	x.abort, x.ended = nil, true
	x.mu.Unlock()
	if a != nil {
		a.Abort()
	}
}

// runHandler calls the handler; a panic ends the connection, silently
// for http.ErrAbortHandler (the handler cut a response on purpose).
func (c *h1Conn) runHandler(r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.log.Error("panic serving an HTTP/1.1 request", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			c.closeAfter = true
			c.resp.aborted = true
		}
	}()
	c.srv.handler.ServeHTTP(&c.resp, r)
}

// discardBody reads what the handler left of the request body, up to
// h1DiscardMax, within the request's read_timeout, so that the connection
// can serve the next request; a client still waiting for its 100
// Continue sends nothing more: close.
func (c *h1Conn) discardBody() {
	b := &c.body
	if c.head.expectContinue && !b.continued {
		c.closeAfter = true
		return
	}
	// The request's read deadline again: a streamed answer (a node's
	// early answer to the upload, of unknown length) gave it up while it
	// lasted (copyBody), and a client that then sent no more of its body
	// held the connection here with no bound at all.
	_ = c.nc.SetReadDeadline(c.hup.rdl)
	c.rdl.Forget()
	var scratch [512]byte
	total := 0
	for !b.done {
		n, err := b.read(scratch[:])
		total += n
		if err != nil && !b.done || total > h1DiscardMax {
			c.closeAfter = true
			return
		}
	}
}

// readDeadline sets the read deadline d after now (none for d = 0),
// lazily (deadline.Lazy): it may come up to deadline.Slack(d) late.
func (c *h1Conn) readDeadline(now time.Time, d time.Duration) {
	if d <= 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
		c.rdl.Forget()
		return
	}
	if t, ok := c.rdl.After(now, d); ok {
		_ = c.nc.SetReadDeadline(t)
	}
}

// writeDeadline is readDeadline's twin for the write deadline (d > 0).
func (c *h1Conn) writeDeadline(now time.Time, d time.Duration) {
	if t, ok := c.wdl.After(now, d); ok {
		_ = c.nc.SetWriteDeadline(t)
	}
}

// readHead reads until buf[r:] holds a complete head and returns its
// length, and whether it had to read for it (waited). Empty lines before
// the request line are skipped (RFC 9112 2.2: a client may end a POST's
// body with an extra CRLF), counted in the head's limit. An error with
// status 0 ends the connection without an answer (the client went away
// or was too slow).
func (c *h1Conn) readHead(setDeadline bool) (n int, waited bool, herr *h1Error) {
	limit := c.srv.maxHeaderBytes + h1HeadSlack
	scan, skipped := 0, 0
	for {
		if scan == 0 {
			skipped += c.skipEmptyLines()
		}
		end, next, err := h1HeadEnd(c.buf[c.r:c.w], scan)
		if err != nil {
			return 0, waited, err
		}
		if end >= 0 {
			if skipped+end > limit {
				return 0, waited, errHeadTooLarge
			}
			return end, waited, nil
		}
		scan = next
		if skipped+c.w-c.r > limit {
			return 0, waited, errHeadTooLarge
		}
		if c.rerr != nil {
			return 0, waited, &h1Error{}
		}
		if setDeadline {
			c.readDeadline(time.Now(), c.srv.readHeaderTimeout)
			setDeadline = false
		}
		waited = true
		if err := c.fill(limit + 1); err != nil {
			return 0, waited, &h1Error{}
		}
	}
}

// skipEmptyLines drops the empty lines (CRLF) at the start of what is
// buffered and returns how many bytes it dropped: RFC 9112 2.2's
// robustness before a request line, for a client that ends a body with
// an extra CRLF.
func (c *h1Conn) skipEmptyLines() int {
	n := 0
	for c.w-c.r >= 2 && c.buf[c.r] == '\r' && c.buf[c.r+1] == '\n' {
		c.r += 2
		n += 2
	}
	return n
}

// fill reads once more into the buffer, making room first: the unread
// part moves to the front, and the buffer grows while it holds less than
// need bytes.
func (c *h1Conn) fill(need int) error {
	if c.w == len(c.buf) {
		if c.r > 0 {
			copy(c.buf, c.buf[c.r:c.w])
			c.w -= c.r
			c.r = 0
		} else {
			if len(c.buf) >= need {
				return errHeadTooLarge
			}
			nb := make([]byte, min(2*len(c.buf), need))
			copy(nb, c.buf[:c.w])
			c.buf = nb
		}
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = errors.New("empty read")
	}
	return err
}

// shrink gives back a buffer grown for a large head once it is empty.
func (c *h1Conn) shrink() {
	if len(c.buf) > h1ReadBufSize && c.r == c.w && c.bufp != nil {
		c.buf = *c.bufp
		c.r, c.w = 0, 0
	}
}

// refuse answers a request that is not read further with a fault and
// closes the connection; what the client sent after it is never served.
// The fault's code is the refusal's reason: request.invalid for a 400,
// the code of its status for the others (as HTTP/2 answers them).
func (c *h1Conn) refuse(e *h1Error) {
	rid := newRequestID()
	why := h1Refusal(e.status)
	b := appendFault(make([]byte, 0, 256), refusalNames[why], e.msg, rid)
	bw := c.bw
	_, _ = bw.Write(h1StatusLine(e.status))
	_, _ = bw.WriteString("Content-Type: application/json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nX-Request-Id: ")
	_, _ = bw.WriteString(rid)
	_, _ = bw.WriteString("\r\nDate: ")
	_, _ = bw.Write(c.now())
	_, _ = bw.WriteString("\r\nContent-Length: ")
	_, _ = bw.WriteString(strconv.Itoa(len(b)))
	_, _ = bw.WriteString("\r\n\r\n")
	_, _ = bw.Write(b)
	c.srv.refusals.request(c.hello.vhost, why, e.status, c.remote, "", e.msg)
	c.lingeringClose()
}

// lingeringClose flushes, stops sending, and reads (and drops) what the
// client still sends for a moment before closing: closing a socket with
// unread bytes resets it, and the reset can destroy the answer before
// the client reads it, or fail the client's write before it looks for
// the answer. Past h1LingerBytes it stops reading but still waits out
// the moment, as net/http does (its client's writes then wait on full
// buffers instead of failing); the client closing its side ends it.
func (c *h1Conn) lingeringClose() {
	if c.srv.writeTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout))
	}
	if c.bw.Flush() != nil {
		return
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	if tcp, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = tcp.CloseWrite()
	}
	end := time.Now().Add(h1Linger)
	_ = c.raw.SetReadDeadline(end)
	var scratch [1024]byte
	for total := 0; ; {
		n, err := c.raw.Read(scratch[:])
		total += n
		if err != nil {
			return
		}
		if total >= h1LingerBytes {
			time.Sleep(time.Until(end))
			return
		}
	}
}

// The lingering close's bounds: how long, and how much it reads.
const (
	h1Linger      = 500 * time.Millisecond
	h1LingerBytes = 64 << 10
)

// now returns the Date header's value, formatted once a second.
func (c *h1Conn) now() []byte {
	t := time.Now()
	if sec := t.Unix(); sec != c.dateSec || c.date == nil {
		c.dateSec = sec
		c.date = t.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}

// h1WatchAfter is how long a handler runs before the background read
// starts watching for the client going away. Starting it for every
// request cost a goroutine and an extra hand-off per request (the
// background read woke by the poller, then waking the connection's
// goroutine); an answer that comes within this time has nothing to
// abort worth the cost, and a slower one is still aborted when the
// client leaves.
const h1WatchAfter = 20 * time.Millisecond

// watch arms the background read, to start if the handler still runs
// after h1WatchAfter (or sooner, watchNow). It is called once the request
// has no body left to read: from then on the connection's reads are the
// background read's.
func (c *h1Conn) watch() {
	if c.rerr != nil {
		return
	}
	c.bgMu.Lock()
	c.watchArmed, c.watchKeepRDL = true, false
	c.bgMu.Unlock()
	// A timer of an earlier request that is still pending is moved, not
	// stopped (unwatch): one that fires finds nothing armed and ends.
	if c.watchTimer == nil {
		c.watchFn = c.watchFire
		c.watchTimer = time.AfterFunc(c.srv.watchAfter, c.watchFn)
	} else {
		c.watchTimer.Reset(c.srv.watchAfter)
	}
}

// watchNow starts an armed watch at once rather than after h1WatchAfter,
// for a handler known to run longer (a request about to wait in its
// environment's pool): one timer expiry fewer per such request, which on
// an otherwise idle CPU is a wake-up of the process of its own. With a
// body still to read it starts the hangup watch instead (watchHangup);
// with the watch already started it does nothing.
func (c *h1Conn) watchNow() {
	c.bgMu.Lock()
	started := c.bgInRead
	armed := c.watchArmed && !started
	c.bgMu.Unlock()
	// Stopped, the timer will not run watchFire; if it fired already,
	// its watchFire starts the read (or found it started) instead.
	if armed && c.watchTimer.Stop() {
		go c.watchFn()
	}
	// Not while the background read runs (a request routed again after
	// a hold, rewatch, that waits again): it watches the client, and
	// writes the read error watchHangup would read.
	if !armed && !started && c.handling {
		c.watchHangup() // the body is still to read
	}
}

// unwatch disarms the watch when the handler returns; a background read
// that started stays (keepWatching, abortPendingRead).
func (c *h1Conn) unwatch() {
	c.bgMu.Lock()
	c.watchArmed = false
	c.bgMu.Unlock()
}

// watchFire runs in the timer's goroutine: while the handler still runs
// (armed), it becomes the background read. Its set-up touches the read
// buffer under bgMu: the handler does not read it (the body is read), and
// the connection's goroutine disarms under bgMu before it reads it again.
func (c *h1Conn) watchFire() {
	c.bgMu.Lock()
	if !c.watchArmed || c.bgInRead {
		c.bgMu.Unlock()
		return
	}
	c.watchArmed = false
	ok := c.startBackgroundRead()
	if ok && !c.watchKeepRDL {
		_ = c.nc.SetReadDeadline(time.Time{})
		c.rdl.Forget()
	}
	c.bgMu.Unlock()
	if ok {
		c.backgroundRead()
	}
}

// startBackgroundRead prepares the background read, with bgMu held: bytes
// that arrive (a pipelined request) are kept in the buffer; an error (the
// client closed or reset the connection) cancels the request's context.
// It reports false when there is nothing to read into.
func (c *h1Conn) startBackgroundRead() bool {
	if c.rerr != nil || !c.readRoom() {
		return false
	}
	c.bgInRead = true
	return true
}

// readRoom makes room at the end of the read buffer for a read that
// watches the client while a handler runs: it reports false when the
// buffer is full of pipelined requests.
func (c *h1Conn) readRoom() bool {
	if c.r == c.w {
		// Nothing pipelined: the read lands at the start (it may be the
		// next request's, keepWatching).
		c.r, c.w = 0, 0
		c.shrink()
	}
	if c.w == len(c.buf) {
		if c.r == 0 {
			return false // the buffer is full of pipelined requests: nothing to watch with
		}
		copy(c.buf, c.buf[c.r:c.w])
		c.w -= c.r
		c.r = 0
	}
	return true
}

// hold waits d for a request that its environment's pool holds before
// its 503 (pool.Holder), reading the connection itself with the hold's
// end as the read deadline: a client that goes away ends the hold at once
// (the requests' context is cancelled, as the background read does),
// bytes that come meanwhile (a pipelined request) are kept for the next
// request, and no goroutine or timer takes part but the poller's. The
// background read would cost a goroutine of its own, a timer for the hold
// and a hand-off back to the connection's goroutine for every held
// request: a flood's whole cost, paid from the CPU its neighbours share.
// It reports false, having waited for nothing, when the watch is not
// armed (a body still to read) or its read has started: the pool then
// waits on its timer, and the watch looks after the client.
func (c *h1Conn) hold(d time.Duration) bool {
	c.bgMu.Lock()
	if !c.watchArmed || c.bgInRead || c.rerr != nil || !c.readRoom() {
		c.bgMu.Unlock()
		return false
	}
	// Disarmed, the watch's timer finds nothing to start: the buffer is
	// this goroutine's until the hold ends (rearm).
	c.watchArmed = false
	c.bgMu.Unlock()
	end := time.Now().Add(d)
	c.holding.Store(true)
	defer c.holding.Store(false)
	_ = c.nc.SetReadDeadline(end)
	if c.srv.waitsCut.Load() {
		// The shutdown's cut came first (cutWaits): it either saw
		// holding and set its deadline after this one, or is seen here.
		c.cutRead()
	}
	c.rdl.Forget()
	for {
		if !c.readRoom() {
			// Full of pipelined requests: nothing left to read into.
			// The kernel still tells whether the client hangs up, and
			// the read deadline (the hold's end, or the shutdown's cut)
			// still ends the wait: it used to sleep to the hold's end.
			if c.awaitHangup(end) {
				c.rerr = errClientHungUp
				c.cancel()
				return true
			}
			c.rearm()
			return true
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if n > 0 || err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.rearm()
			return true
		}
		c.rerr = err
		c.cancel()
		return true
	}
}

// rearm arms the watch again after a hold that ended with the client
// still there: the request is answered 503 at once, unless a reload
// retired the pool that held it, and it goes on to be routed again
// (rewatch). The read deadline the hold left in the past is cleared when
// the watch starts, as after any request that has arrived whole.
func (c *h1Conn) rearm() {
	c.bgMu.Lock()
	c.watchArmed, c.watchKeepRDL = true, false
	c.bgMu.Unlock()
}

// rewatch starts the watch, armed again after a hold (rearm), of a
// request that leaves a retired environment's pool to be routed again
// (Env.serve): the watch's timer found nothing armed during the hold,
// and the request may now be forwarded.
func (c *h1Conn) rewatch() {
	c.bgMu.Lock()
	armed := c.watchArmed && !c.bgInRead
	c.bgMu.Unlock()
	if armed {
		go c.watchFn()
	}
}

func (c *h1Conn) backgroundRead() {
	n, err := c.nc.Read(c.buf[c.w:])
	c.bgMu.Lock()
	c.w += n
	if n == 0 && err != nil && !c.bgAborted {
		// (When aborted, the error is the abort's timeout; anything
		// else the next read meets again.)
		c.rerr = err
		c.cancel()
	}
	c.bgInRead = false
	c.bgCond.Broadcast()
	c.bgMu.Unlock()
}

// bgPending reports whether a background read is in flight.
func (c *h1Conn) bgPending() bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	return c.bgInRead
}

// keepWatching reports whether the background read still in flight after
// an answer may stay as the wait for the next request: the connection
// goes on, nothing of the request is left to read, and nothing pipelined
// is buffered. Stopping it instead costs a deadline in the past, a failed
// read (and its error's allocation), and a read of the next request's own.
func (c *h1Conn) keepWatching() bool {
	if c.closeAfter || c.resp.err != nil || !c.body.done || c.srv.shutdown.Load() {
		return false
	}
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	return c.bgInRead && c.r == c.w && c.rerr == nil
}

// abortPendingRead disarms the watch, stops the background read and waits
// for it. The read
// deadline is left in the past: whatever reads next sets its own.
func (c *h1Conn) abortPendingRead() {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	c.watchArmed = false
	if !c.bgInRead {
		return
	}
	c.bgAborted = true
	_ = c.nc.SetReadDeadline(aLongTimeAgo)
	c.rdl.Forget()
	for c.bgInRead {
		c.bgCond.Wait()
	}
	c.bgAborted = false
}
