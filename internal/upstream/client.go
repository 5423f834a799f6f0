package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"edged/internal/deadline"
	"edged/internal/httpsyntax"
	"edged/internal/rawconn"
)

// Errors returned by RoundTrip, for errors.Is. Any other error is a bad
// response or a broken connection: the caller answers 502 and retries on
// another node only a request it marked Replayable.
var (
	// ErrConnect: the dial or the TLS handshake failed. Nothing was sent,
	// so the request is always safe to retry on another node.
	ErrConnect = errors.New("upstream: connect failed")
	// ErrTimeout: no response head within ResponseTimeout (504).
	ErrTimeout = errors.New("upstream: response timeout")
	// ErrBodyTimeout is what a response body's Read returns when the node
	// sent nothing for ResponseTimeout in the middle of the body (it wraps
	// os.ErrDeadlineExceeded too). The connection is discarded.
	ErrBodyTimeout = errors.New("upstream: response body stalled")
	// ErrRequestBody: reading the request body failed (the client went
	// away, or a limit such as http.MaxBytesReader hit; the original error
	// is wrapped too). Not the node's fault: no passive failure is counted.
	ErrRequestBody = errors.New("upstream: reading request body")
	// ErrCut: Cut ended the request (its environment's drain ended). Not
	// the node's fault: no passive failure is counted.
	ErrCut = errors.New("upstream: cut: the upstream was cut")
)

// Request is a fully rewritten outgoing request head plus body.
type Request struct {
	// Method, URI and Host form the request line and the Host header.
	// URI is path?query as sent ("" means "/"); Host "" means the node's
	// Authority (host:port, without a default port).
	Method, URI, Host string
	// Header is written as-is: not sorted, not cloned. The caller has
	// removed hop-by-hop headers. Host, Content-Length, Transfer-Encoding
	// and Trailer entries are ignored: RoundTrip writes those itself.
	Header http.Header
	// Fields are written after Header, in order, and checked as its
	// fields are: those a caller adds to every request (edged's
	// forwarded headers), kept out of Header so that adding them costs
	// no map insert. Header must not hold their names.
	Fields []Field
	// Body is nil for no body.
	Body io.Reader
	// ContentLength is the body's length; -1 = unknown, sent chunked.
	ContentLength int64
	// Upgrade marks a Connection: Upgrade request (WebSocket); the
	// caller wrote the Connection and Upgrade headers.
	Upgrade bool
	// Replayable is the caller's decision that the request may be sent
	// again after it possibly reached a node. RoundTrip then resends it
	// once on a fresh connection when a reused one fails before any
	// response byte or before a status line; the caller uses the same decision for retrying on
	// another node. RoundTrip resends a request whose body it began to
	// read only when it is Replayable and the Body is a Rewinder that
	// rewinds. A request whose write to a reused connection failed
	// before any of its body was read (the node had closed it, so it
	// cannot have acted on it) is resent regardless, like a failed
	// connect.
	Replayable bool
}

// Rewinder is a request Body that can start again from its first byte:
// the caller keeps what it gave (edged keeps small bodies of idempotent
// requests). Rewind reports whether it did; after false the body must
// not be sent again.
type Rewinder interface {
	Rewind() bool
}

// rewound reports whether a request body that was read from is back at
// its start.
func rewound(body io.Reader) bool {
	r, ok := body.(Rewinder)
	return ok && r.Rewind()
}

// Field is one header field of Request.Fields.
type Field struct{ Name, Value string }

const (
	// headerHint sizes a connection's response header map: room for 8
	// makes a map of one group, which is cleared per response and probed
	// without a table's indirection; a node that sends more fields grows
	// it once.
	headerHint     = 8
	readBufSize    = 4 << 10
	writeBufSize   = 8 << 10 // head and bodies up to ~7 KiB go in one write
	chunkBufSize   = 16 << 10
	maxHeaderBytes = 1 << 20 // response head limit, like net/http's 1 MiB default for requests
	max1xx         = 5       // informational responses skipped before the final one
)

var (
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
	chunkPool  = sync.Pool{New: func() any { return new([chunkBufSize]byte) }}

	// aLongTimeAgo is a deadline in the past: it aborts blocked I/O.
	aLongTimeAgo = time.Unix(1, 0)

	errHeaderTooLarge = errors.New("response head larger than 1 MiB")
	errTooMany1xx     = errors.New("too many 1xx responses")
	errUnexpected101  = errors.New("101 Switching Protocols to a request that did not ask for an upgrade")
	errWrongUpgrade   = errors.New("101 Switching Protocols whose Upgrade does not name a protocol the request asked for")
	errBadStatus      = errors.New("502/503/504 response")
	errAborted        = errors.New("request canceled")
)

// RoundTrip sends req to n on a pooled or new connection and returns the
// response head.
//
// The caller must Close resp.Body. Closed after it was read to EOF (a
// bodiless response is at EOF at once), a reusable connection goes back
// to n's idle pool; an earlier Close discards it. resp and its Header are
// the connection's, reused by its next request: the caller must not use
// them after Close (header value slices stay valid: they are never
// written again). The body is not safe for concurrent use; cancel ctx
// to abort a blocked Read. A Read that waits longer than ResponseTimeout
// for the node's next bytes fails with ErrBodyTimeout (an idle limit, like
// nginx's proxy_read_timeout: a slow body that keeps coming is never cut).
// resp.Request is nil.
//
// A 101 Switching Protocols answer to an Upgrade request returns
// resp.Body as an io.ReadWriteCloser on the raw connection (with
// SetWriteDeadline and CloseWrite methods), never pooled. A 101 whose
// Upgrade field does not name a protocol of the request's is an error.
// Any other answer to an Upgrade request is read as usual, and its
// connection is not pooled either.
//
// Canceling ctx aborts the dial, the write, the wait for the head and the
// body reads; the error then wraps ctx.Err(), unless reading the request
// body failed first (then it wraps ErrRequestBody). A new connection is
// dialed only after the goroutines ready to run have had their turn and
// ctx is still live: a client's reset that is already on its way costs
// the node no connection. A reused connection that
// fails before any response byte arrives, or whose first line is no
// status line (what the node sent after its previous answer, which the
// peek before reuse missed), is retried once on a fresh
// connection when the request is Replayable, or when writing it failed
// before any of its body was read; a request whose body was read is
// retried only if it is Replayable and its body rewinds (Rewinder).
// A node that answers before it has read the whole body (a 413 to an
// upload) and closes makes the rest of the body fail to write: its answer
// is returned then, on a connection never reused (kept-alive or not: the
// request is not sent again, as it would be had no answer come). Passive health is recorded
// here: connect failures (but a dial that found no file descriptor left
// in the process: OwnShortage), timeouts, bad responses and 502/503/504
// count as failures, anything else resets the count; for a response whose body
// is still to come, once the caller closes it, and a body the node
// breaks (closed or reset before its end, stalled past ResponseTimeout,
// framed wrong) is a failure when its Read fails.
func (n *Node) RoundTrip(ctx context.Context, req *Request) (*http.Response, error) {
	if err := checkRequest(req); err != nil {
		return nil, fmt.Errorf("upstream: %s: %w", n.url, err)
	}
	n.counts.requests.Add(1)
	n.inFlight.Add(1)
	var c *conn // the connection roundTrip is using
	done := false
	defer func() {
		if !done {
			// A panic under roundTrip (the caller's body's Read) ends the
			// request for the node all the same: least_request must not
			// count it for ever, and the connection is in no known state.
			// Not recovered: the caller contains it.
			n.inFlight.Add(-1)
			if c != nil {
				c.discard()
			}
		}
	}()
	resp, err := n.roundTrip(ctx, req, &c)
	done = true
	if err != nil {
		n.inFlight.Add(-1)
		if n.up.cut.Load() && ctx.Err() == nil && !errors.Is(err, ErrRequestBody) {
			// Whatever failed once Cut aborted the connections did so
			// because of it.
			return nil, fmt.Errorf("%w: %s: %w", ErrCut, n.url, err)
		}
		if ctx.Err() == nil && !errors.Is(err, ErrRequestBody) && !OwnShortage(err) {
			n.recordFailure(err)
		}
		return nil, err
	}
	b, _ := resp.Body.(*body)
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if b != nil {
			b.watch = false
		}
		n.recordFailure(errBadStatus)
	default:
		if b == nil || !b.watch {
			n.recordSuccess()
		}
	}
	return resp, nil
}

// roundTrip keeps in *cur the connection it is using, for RoundTrip to
// discard should something under it panic.
func (n *Node) roundTrip(ctx context.Context, req *Request, cur **conn) (*http.Response, error) {
	fresh := false
	for {
		if n.up.cut.Load() {
			return nil, fmt.Errorf("%w: %s", ErrCut, n.url)
		}
		var c *conn
		if !fresh {
			c = n.getIdle()
		}
		if c != nil {
			c.reused = true
			n.counts.reused.Add(1)
		} else {
			if ctx.Done() != nil {
				// A new connection costs the node a handshake and a
				// TIME_WAIT: let the goroutines that are ready run first
				// (an HTTP/2 server loop holding the client's reset of
				// this very stream), and dial only for a request that is
				// still wanted.
				runtime.Gosched()
				if ctx.Err() != nil {
					return nil, ctxError(ctx, n, ctx.Err())
				}
			}
			var err error
			if c, err = n.dial(ctx, true); err != nil {
				return nil, err
			}
		}
		*cur = c
		resp, retry, err := c.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		*cur = nil
		c.discard()
		if retry && !fresh {
			fresh = true
			n.counts.retried.Add(1)
			continue
		}
		return nil, err
	}
}

// OwnShortage reports whether a dial failed for want of edged's own
// file descriptors (socket() said EMFILE or ENFILE): nothing left for
// the node, and the failure says nothing of it. nginx answers such a
// request 500 and marks no peer failed; counted against the nodes, a
// moment's shortage ejected every node its requests tried and took down
// every node probed meanwhile, refusing them all traffic until probes
// passed after it.
func OwnShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// dial opens a new connection to n (TLS for https nodes).
func (n *Node) dial(ctx context.Context, count bool) (*conn, error) {
	if count {
		n.counts.dials.Add(1)
	}
	nc, err := n.dialer.DialContext(ctx, "tcp", n.host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, n, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrConnect, n.url, err)
	}
	c := &conn{node: n}
	nc = rawconn.Wrap(nc)
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.ww.write = writeFunc(nc)
	if n.tls != nil {
		c.under = &tlsUnder{Conn: nc}
		tc := tls.Client(c.under, n.tls)
		hctx := ctx
		if n.connectTimeout > 0 {
			var cancel context.CancelFunc
			hctx, cancel = context.WithTimeout(ctx, n.connectTimeout)
			defer cancel()
		}
		if err := tc.HandshakeContext(hctx); err != nil {
			nc.Close()
			if ctx.Err() != nil {
				return nil, ctxError(ctx, n, err)
			}
			return nil, fmt.Errorf("%w: %s: TLS handshake: %w", ErrConnect, n.url, err)
		}
		nc = tc
		c.expires = chainExpiry(tc.ConnectionState().VerifiedChains)
	}
	c.nc = nc
	n.track(c)
	c.ww.c = c
	if canWriteWait && n.tls == nil && c.raw != nil {
		c.ww.stepFn = c.ww.step
	}
	c.lr.c = c
	c.lr.limit = -1
	c.br = bufio.NewReaderSize(&c.lr, readBufSize)
	c.abortFn = c.abort
	c.peekFn = c.peek
	c.hdr = make(http.Header, headerHint)
	return c, nil
}

// chainExpiry is the nanotime when the last of chains stops being
// valid: a chain until the earliest NotAfter of its certificates. The
// handshake checked them at its own time only; a kept-alive connection
// outlived its node's certificate for as long as it was kept busy, where
// a new handshake, or a resumption (crypto/tls checks a session's chains
// again), is refused. 0 without a verified chain.
func chainExpiry(chains [][]*x509.Certificate) int64 {
	var last time.Time
	for _, chain := range chains {
		var end time.Time
		for i, c := range chain {
			if i == 0 || c.NotAfter.Before(end) {
				end = c.NotAfter
			}
		}
		if end.After(last) {
			last = end
		}
	}
	if last.IsZero() {
		return 0
	}
	// Kept on the monotonic clock that idleAt uses: getIdle compares it
	// with the nanotime it reads anyway. time.Until stops at the 292
	// years a Duration holds (a certificate "valid until 9999", RFC 5280
	// 4.1.2.5), and the sum must not overflow into the past.
	now, left := nanotime(), int64(time.Until(last))
	if left > math.MaxInt64-now {
		return math.MaxInt64
	}
	return max(now+left, 1)
}

// conn is one connection to a node. It is owned by one request at a time
// (or by the idle pool): no locks.
type conn struct {
	node *Node
	nc   net.Conn
	br   *bufio.Reader
	lr   countingReader // between br and nc
	ww   waitWriter     // between the request's writer and nc

	abortFn func()           // c.abort, allocated once
	stop    func() bool      // stops the context.AfterFunc of the current request
	areg    AbortRegistry    // or holds its abort instead
	aborted atomic.Bool      // the current request's abort ran
	raw     syscall.RawConn  // for the idle peek; nil when unsupported
	peekFn  func(fd uintptr) // c.peek, allocated once
	peekOK  bool
	peekBuf [1]byte
	under   *tlsUnder // under crypto/tls, for an https node (tlsDrained)

	idleAt int64         // nanotime when put into the idle pool
	rdl    deadline.Lazy // the read deadline as readDeadline set it
	wdl    deadline.Lazy // the write deadline as writeDeadline set it
	reused bool          // checked out of the idle pool for the current request
	// expires is the nanotime when the node's certificate the handshake
	// verified expires (the earliest NotAfter of its chain, the latest
	// of several chains); 0 for http nodes. getIdle and reap close the
	// connection from then on.
	expires int64

	// The current response (response.go): the caller's until it closes
	// the body.
	resp   http.Response
	hdr    http.Header
	body   body
	fields fieldCache
	status string // the last status line's text, reused while it repeats
	long   []byte // a line longer than br's buffer
	lastCR bool   // the last line read ended in CRLF

	// hdrFields is how many fields the last head read into hdr had
	// (those the caller deleted since included): past maxKeptFields, the
	// next head gets a new map.
	hdrFields int
	// longValue: the last head had a value longer than maxCachedValue,
	// which the connection does not keep in the idle pool (finish).
	longValue bool
}

// countingReader counts the bytes read from the connection for the
// current request, bounds the response head and, while a body is read,
// gives every read from the network the idle deadline.
type countingReader struct {
	c     *conn
	n     int64         // bytes read since the request started
	limit int64         // < 0: no limit
	idle  time.Duration // > 0: a fresh read deadline this far ahead before every read
}

func (l *countingReader) Read(p []byte) (int, error) {
	if l.limit >= 0 {
		if l.n >= l.limit {
			return 0, errHeaderTooLarge
		}
		if rest := l.limit - l.n; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	c := l.c
	if l.idle > 0 {
		// Only reads that reach the socket get here (bufio serves the
		// rest), so a body already buffered with its head costs nothing.
		c.readDeadline(l.idle)
		// That may have replaced the past deadline of an abort; abort
		// marks itself before setting it, so look.
		if c.aborted.Load() {
			return 0, errAborted
		}
	}
	n, err := c.nc.Read(p)
	l.n += int64(n)
	if err != nil && l.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborted.Load() {
		err = fmt.Errorf("%w: %s: nothing received for %s: %w", ErrBodyTimeout, c.node.url, l.idle, err)
	}
	return n, err
}

// waitWriter is what a request is written to: nc, except for a bodiless
// request's write on a plain TCP connection (stepFn set), which writes
// and waits for the answer in one go (writeWait).
type waitWriter struct {
	c      *conn
	wait   bool // the next Write is the whole request: writeWait
	stepFn func(fd uintptr) bool
	write  func(fd int, p []byte) (int, error) // syscall.Write, or rawconn.WriteFD
	// writeWait's state, for step
	p       []byte
	n       int
	tried   bool
	written bool
}

func (w *waitWriter) Write(p []byte) (int, error) {
	if w.wait {
		w.wait = false
		return w.c.writeWait(p)
	}
	return w.c.nc.Write(p)
}

// readDeadline sets the read deadline d from now, lazily (deadline.Lazy:
// it may come up to deadline.Slack(d) late). An abort's past deadline is
// not recorded: a skipped set leaves it in place (the read fails at
// once), the callers look at the abort after a set that replaced it, and
// an aborted connection is never reused.
func (c *conn) readDeadline(d time.Duration) {
	if t, ok := c.rdl.After(time.Now(), d); ok {
		c.nc.SetReadDeadline(t)
	}
}

// writeDeadline is readDeadline's twin for the request's writes. An
// abort's past deadline that it replaced is put back: abort marks itself
// before it sets it, so a set that came after the mark looks at it.
func (c *conn) writeDeadline(d time.Duration) {
	if t, ok := c.wdl.After(time.Now(), d); ok {
		c.nc.SetWriteDeadline(t)
		if c.aborted.Load() {
			c.nc.SetWriteDeadline(aLongTimeAgo)
		}
	}
}

// abort runs through context.AfterFunc or an AbortRegistry when the
// request's context ends: a past deadline unblocks any read or write on
// the connection.
func (c *conn) abort() {
	c.aborted.Store(true)
	c.nc.SetDeadline(aLongTimeAgo)
}

// Abort is abort, for an AbortRegistry.
func (c *conn) Abort() { c.abort() }

// stopAbort ends the current request's abort registration; it reports
// false when the abort ran or may be running.
func (c *conn) stopAbort() bool {
	ok := true
	switch {
	case c.areg != nil:
		ok = c.areg.StopAbort(c)
		c.areg = nil
	case c.stop != nil:
		ok = c.stop()
		c.stop = nil
	}
	return ok
}

// An Aborter unblocks the I/O of one request when its context ends.
type Aborter interface{ Abort() }

// An AbortRegistry is a request context that holds the Aborter of one
// request and runs it once when the context ends, in place of
// context.AfterFunc (two allocations per request). edged's HTTP/1.1
// server gives one to the requests of a connection, which come one after
// the other.
type AbortRegistry interface {
	// SetAbort registers a; it reports false, registering nothing, when
	// the context has ended or holds another Aborter (then RoundTrip
	// uses context.AfterFunc).
	SetAbort(a Aborter) bool
	// StopAbort unregisters a; it reports false when a was not
	// registered any more: its Abort ran or is running.
	StopAbort(a Aborter) bool
}

func (c *conn) close() {
	c.node.untrack(c)
	c.nc.Close()
}

// expired reports whether the node's certificate c was made with has
// expired at now (nanotime).
func (c *conn) expired(now int64) bool { return c.expires != 0 && now >= c.expires }

// alive reports whether an idle connection still looks usable: nothing
// to read and no EOF, found with one non-blocking peek.
func (c *conn) alive() bool {
	if c.raw == nil {
		return true
	}
	c.peekOK = false
	if err := c.raw.Control(c.peekFn); err != nil {
		return false
	}
	return c.peekOK
}

// discard ends the current request's use of c and closes it, on an error
// path before a response was handed out (inFlight is the caller's).
func (c *conn) discard() {
	c.stopAbort()
	c.close()
}

// finish ends the current request: the connection goes back to the pool
// when reuse holds and nothing is left unread, else it is closed.
func (c *conn) finish(reuse bool) {
	n := c.node
	if !c.stopAbort() {
		reuse = false // the abort ran or is running: the deadline is spoiled
	}
	n.inFlight.Add(-1)
	if reuse && n.maxIdle > 0 && c.br.Buffered() == 0 && c.tlsDrained() {
		if cap(c.long) > maxKeptLong {
			// A long chunk line's buffer (readResponse drops a long
			// header line's): not kept in the idle pool.
			c.long = nil
		}
		if c.longValue {
			// Nor the header holding a long value (up to the head's
			// 1 MiB), until the next answer: the caller's no more
			// after Close.
			c.hdr = make(http.Header, headerHint)
			c.resp = http.Response{}
			c.longValue = false
		}
		n.putIdle(c)
		return
	}
	c.close()
}

// tlsDrained reports whether crypto/tls holds nothing the node sent past
// its answer. What it read from the socket with the answer's last record
// (another record, the first bytes of one, or the rest of the last one's
// plaintext: a second answer, a body after a HEAD's head) is in neither
// the read buffer nor the socket, where the peek before reuse looks, and
// would be read as the next request's answer. One Read returns what it
// holds, decrypting a record it has whole; when it has no whole record
// left, the connection under it fails the read at once (tlsUnder), with
// an error crypto/tls does not keep as the connection's, and tells
// whether a record's first bytes are left (inRecord). A plain connection
// holds nothing.
func (c *conn) tlsDrained() bool {
	if c.under == nil {
		return true
	}
	c.under.probe = true
	k, err := c.nc.Read(c.peekBuf[:])
	c.under.probe = false
	return k == 0 && err == errTLSProbe && !c.under.inRecord()
}

// tlsUnder is the connection under an https node's crypto/tls. While
// probe is set its Read reads nothing and fails with errTLSProbe, a
// temporary error (crypto/tls keeps only the others as the connection's
// error): tlsDrained's Read then asks nothing of the network.
//
// It follows the records' framing in what it reads (their 5-byte
// headers, and the length each gives): inRecord tells whether what it
// handed crypto/tls ends inside a record, which crypto/tls then holds
// in part, as no read shows.
type tlsUnder struct {
	net.Conn
	probe bool
	left  int     // bytes of the record being read still to come
	hdr   [5]byte // the header being read, hn bytes of it
	hn    int
}

func (u *tlsUnder) Read(p []byte) (int, error) {
	if u.probe {
		return 0, errTLSProbe
	}
	k, err := u.Conn.Read(p)
	u.track(p[:k])
	return k, err
}

// track moves the record framing on over p, bytes read.
func (u *tlsUnder) track(p []byte) {
	for len(p) > 0 {
		if u.left > 0 {
			k := min(u.left, len(p))
			u.left -= k
			p = p[k:]
			continue
		}
		k := copy(u.hdr[u.hn:], p)
		u.hn += k
		p = p[k:]
		if u.hn == len(u.hdr) {
			u.left, u.hn = int(u.hdr[3])<<8|int(u.hdr[4]), 0
		}
	}
}

// inRecord reports whether the bytes read end inside a record.
func (u *tlsUnder) inRecord() bool { return u.left > 0 || u.hn > 0 }

// CloseWrite half-closes the connection under crypto/tls (upgraded's
// CloseWrite), when it can.
func (u *tlsUnder) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// errTLSProbe is what tlsUnder's Read fails with while probing.
var errTLSProbe error = tlsProbeError{}

type tlsProbeError struct{}

func (tlsProbeError) Error() string   { return "upstream: looking for what crypto/tls holds" }
func (tlsProbeError) Timeout() bool   { return false }
func (tlsProbeError) Temporary() bool { return true }

// roundTrip writes req and reads the response head on c. retry reports
// whether the failure happened on a reused connection in a way that makes
// a fresh attempt safe.
func (c *conn) roundTrip(ctx context.Context, req *Request) (resp *http.Response, retry bool, err error) {
	n := c.node
	if ctx.Done() != nil {
		if ar, ok := ctx.(AbortRegistry); ok && ar.SetAbort(c) {
			c.areg = ar
		} else {
			c.stop = context.AfterFunc(ctx, c.abortFn)
		}
	}
	c.aborted.Store(false)
	// Cut marks the upstream before it aborts the connections: either
	// its abort comes after the reset above, or the mark is seen here.
	if n.up.cut.Load() {
		return nil, false, fmt.Errorf("%w: %s", ErrCut, n.url)
	}
	c.lr.n = 0
	c.lr.limit = maxHeaderBytes
	c.lr.idle = 0
	// A bodiless request on a plain TCP connection waits for the answer
	// in its write (writeWait): the head's deadline goes first.
	waitInWrite := c.ww.stepFn != nil && (req.Body == nil || req.ContentLength == 0)
	if n.respTimeout > 0 {
		// The request's writes have ResponseTimeout too (a body's are
		// moved on as it goes, extendWrite): a node that accepted the
		// connection but reads nothing (hung, its listen backlog still
		// taking connections) would otherwise hold a head larger than
		// the socket buffers, and the request, until the client gives up.
		c.writeDeadline(n.respTimeout)
		if waitInWrite {
			c.readDeadline(n.respTimeout)
		}
		// As below: an abort that ran meanwhile lost its past deadline.
		if ctx.Err() != nil {
			return nil, false, ctxError(ctx, n, ctx.Err())
		}
	}
	consumed, err := c.writeRequest(req, waitInWrite)
	if err != nil {
		// The body's error first: a server may cancel the context of a
		// request whose body failed (net/http does on a read timeout or
		// a half-close), and it is still the client's error.
		if errors.Is(err, ErrRequestBody) {
			return nil, false, fmt.Errorf("upstream: %s: %w", n.url, err)
		}
		if ctx.Err() != nil {
			return nil, false, ctxError(ctx, n, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A node that answered early and then neither reads the
			// rest nor closes has answered all the same: its answer,
			// long in the receive buffer, is the client's (a 413 to
			// its upload), not a timeout of the node's.
			if consumed {
				if resp, ok := c.earlyResponse(ctx, req, earlyAnswerWait); ok {
					return resp, false, nil
				}
			}
			return nil, false, fmt.Errorf("%w: %s: request not read within %s", ErrTimeout, n.url, n.respTimeout)
		}
		if consumed {
			// A node may answer before it has read the whole body (a 413,
			// a 401) and close: the rest of the body then meets its reset.
			// Its answer is in the receive buffer; it is the client's,
			// not a failure of the node. On a kept-alive connection too:
			// the node has answered this request, so it is not sent
			// again on a fresh one (that retry is for a connection the
			// node had closed before any byte of an answer). Looked for
			// before the body is rewound; the connection failed, so the
			// read does not wait.
			if resp, ok := c.earlyResponse(ctx, req, n.respTimeout); ok {
				return resp, false, nil
			}
			if ctx.Err() != nil {
				return nil, false, ctxError(ctx, n, err)
			}
		}
		retry := c.reused && (!consumed || req.Replayable && rewound(req.Body))
		return nil, retry, fmt.Errorf("upstream: %s: writing request: %w", n.url, err)
	}
	if n.tls != nil && n.respTimeout > 0 {
		// crypto/tls may write from a Read (the answer to a KeyUpdate):
		// a response read for longer than ResponseTimeout must not meet
		// the request's write deadline. A plain connection writes nothing
		// more until its next request moves the deadline on.
		c.nc.SetWriteDeadline(time.Time{})
		c.wdl.Forget()
	}
	if n.respTimeout > 0 && !waitInWrite {
		c.readDeadline(n.respTimeout)
		// That may have replaced the past deadline of an abort that ran
		// meanwhile; ctx is canceled before the abort runs, so look.
		if ctx.Err() != nil {
			return nil, false, ctxError(ctx, n, ctx.Err())
		}
	}
	resp, err = c.readResponse(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, false, ctxError(ctx, n, err)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, false, fmt.Errorf("%w: %s: no response head within %s", ErrTimeout, n.url, n.respTimeout)
		}
		// Bytes that are no answer (errNoStatusLine) are, on a reused
		// connection, what the node sent after its previous answer and
		// the peek missed: no answer to this request began, as when the
		// node closed the connection before any byte.
		noAnswer := c.lr.n == 0 || errors.Is(err, errNoStatusLine)
		retry = c.reused && noAnswer && req.Replayable && (!consumed || rewound(req.Body))
		return nil, retry, fmt.Errorf("upstream: %s: reading response: %w", n.url, err)
	}
	c.lr.limit = -1
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if !req.Upgrade {
			return nil, false, fmt.Errorf("upstream: %s: %w", n.url, errUnexpected101)
		}
		if !switchesAsAsked(req.Header["Upgrade"], resp.Header["Upgrade"]) {
			return nil, false, fmt.Errorf("upstream: %s: %w", n.url, errWrongUpgrade)
		}
		if n.respTimeout > 0 {
			// A tunnel may idle as long as it likes, and its writes
			// wait for the peer as long as the tunnel lasts.
			c.nc.SetDeadline(time.Time{})
			c.rdl.Forget()
			c.wdl.Forget()
			// An abort that ran before the deadline was cleared is lost:
			// look at ctx again (it is canceled before the abort runs).
			if ctx.Err() != nil {
				return nil, false, ctxError(ctx, n, ctx.Err())
			}
		}
		resp.Body = &upgraded{c: c}
		return resp, false, nil
	}
	// The head's deadline stays until the body needs the network; from
	// then on every read gets ResponseTimeout afresh. A connection put
	// back with a stale deadline gets a new one before its next head.
	c.lr.idle = n.respTimeout
	// A body still to come is the node's to break: RoundTrip's verdict
	// on the request waits for its end. Not an early answer's (its node
	// stopped reading the upload: its close may cut its own answer).
	c.body.watch = !c.body.eof
	if req.Upgrade {
		// A declined upgrade leaves the connection in a state the
		// request made uncertain: a node that is itself a proxy may have
		// tunnelled it to its backend all the same (as proxies open to
		// WebSocket smuggling do, whatever the status), and the next
		// request on it, another client's, would go through that tunnel.
		c.body.reuse = false
	}
	return resp, false, nil
}

// earlyAnswerWait is how long a body's write that timed out looks for an
// answer the node sent meanwhile: one that came is in the receive buffer
// already, and the request has waited ResponseTimeout.
const earlyAnswerWait = 100 * time.Millisecond

// earlyResponse reads the answer a node sent before writing the request's
// body to it failed, its head within wait. The connection is not reused
// after it: the node stopped reading the request.
func (c *conn) earlyResponse(ctx context.Context, req *Request, wait time.Duration) (*http.Response, bool) {
	n := c.node
	if wait > 0 {
		c.readDeadline(wait)
		if ctx.Err() != nil {
			return nil, false
		}
	}
	resp, err := c.readResponse(req)
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil, false
	}
	c.lr.limit = -1
	c.lr.idle = n.respTimeout
	c.body.reuse = false
	resp.Close = true
	return resp, true
}

// switchesAsAsked reports whether a 101's Upgrade field names the
// protocols switched to, each one the request offered (RFC 9110 7.8): a
// 101 without it, or switching to another protocol (h2c to a WebSocket
// upgrade), would make the caller tunnel what the client never asked for.
func switchesAsAsked(asked, got []string) bool {
	n := 0
	for _, v := range got {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = httpsyntax.TrimOWS(tok); tok == "" {
				continue
			}
			n++
			offered := false
			for _, a := range asked {
				if httpsyntax.HasToken(a, tok) {
					offered = true
					break
				}
			}
			if !offered {
				return false
			}
		}
	}
	return n > 0
}

// writeRequest writes the head and the body. consumed reports whether the
// body was read from at all (then the request can be replayed only if
// the body rewinds). With
// wait, the last write waits for the answer too (writeWait).
func (c *conn) writeRequest(req *Request, wait bool) (consumed bool, err error) {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(&c.ww)
	cl := req.ContentLength
	hasBody := req.Body != nil && cl != 0
	chunked := hasBody && cl < 0
	var buf *[chunkBufSize]byte
	var first int // the bytes of a chunked body's first read, in buf
	if chunked {
		// A body of unknown length is read once before its head is
		// written (no byte reached the node before the first chunk
		// anyway: the head waited in bw for it): one that turns out
		// empty, an HTTP/2 request whose stream ended with an empty DATA
		// frame, goes as no body rather than as an empty chunked one.
		// Servers that take no chunked requests refuse a GET with
		// Transfer-Encoding: chunked (Apache: 501).
		consumed = true
		buf = chunkPool.Get().(*[chunkBufSize]byte)
		defer chunkPool.Put(buf)
		var rerr error
		first, rerr = readSome(req.Body, buf[:])
		switch {
		case first == 0 && rerr == io.EOF:
			hasBody, chunked = false, false
		case rerr != nil && rerr != io.EOF:
			bw.Reset(nil)
			writerPool.Put(bw)
			return consumed, fmt.Errorf("%w: %w", ErrRequestBody, rerr)
		}
		// The wait was the client's: the head's writes (a head larger
		// than bw goes out as it is written) get ResponseTimeout from
		// now.
		c.extendWrite()
	}

	uri := req.URI
	if uri == "" {
		uri = "/"
	}
	host := req.Host
	if host == "" {
		host = c.node.authority
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		if skipHeader(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	for _, f := range req.Fields {
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case hasBody || (req.Method != http.MethodGet && req.Method != http.MethodHead && !req.Upgrade):
		// Like net/http: many servers expect Content-Length: 0 on bodiless
		// POST, PUT, PATCH, DELETE...
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), max(cl, 0), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")

	if hasBody {
		consumed = true
		// A node that stops reading an upload must not hold the request
		// forever: every flush gets ResponseTimeout (refreshed per write,
		// so a slow client's long upload still passes). roundTrip
		// clears the deadline once the request is written on TLS, where
		// a Read may write, and for a tunnel; elsewhere it stays until
		// the next request moves it on.
		if chunked {
			err = c.writeChunked(bw, req.Body, buf, first)
		} else {
			err = c.writeBody(bw, req.Body, cl)
		}
	}
	if err == nil {
		if hasBody {
			c.extendWrite()
		}
		c.ww.wait = wait
		err = bw.Flush()
		c.ww.wait = false
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	return consumed, err
}

// extendWrite moves the write deadline ResponseTimeout ahead while a body
// is being sent.
func (c *conn) extendWrite() {
	if c.node.respTimeout > 0 {
		c.writeDeadline(c.node.respTimeout)
	}
}

// writeBody copies exactly n bytes of body through bw, reading straight
// into bw's free space.
func (c *conn) writeBody(bw *bufio.Writer, body io.Reader, n int64) error {
	for n > 0 {
		if bw.Available() == 0 {
			c.extendWrite()
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		p := bw.AvailableBuffer()
		p = p[:min(int64(cap(p)), n)]
		k, err := body.Read(p)
		if k > 0 {
			bw.Write(p[:k])
			n -= int64(k)
		}
		if err != nil {
			if err == io.EOF {
				if n == 0 {
					return nil
				}
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: %w", ErrRequestBody, err)
		}
	}
	return nil
}

// readSome reads body into p until it gives a byte or an error: a
// Read may return neither.
func readSome(body io.Reader, p []byte) (int, error) {
	for {
		k, err := body.Read(p)
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// writeChunked streams body with the chunked encoding, one chunk and one
// flush per Read so that a slow upload reaches the node as it comes. The
// body's first k bytes were read into buf already (writeRequest), and
// its read that ended at them gave no error other than io.EOF.
func (c *conn) writeChunked(bw *bufio.Writer, body io.Reader, buf *[chunkBufSize]byte, k int) error {
	for {
		var err error
		if k == 0 {
			k, err = body.Read(buf[:])
		}
		if k > 0 {
			c.extendWrite()
			var hex [16]byte
			bw.Write(strconv.AppendInt(hex[:0], int64(k), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:k])
			bw.WriteString("\r\n")
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
			k = 0
		}
		if err == io.EOF {
			bw.WriteString("0\r\n\r\n")
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrRequestBody, err)
		}
	}
}

// skipHeader reports, in any case, the headers that RoundTrip writes
// itself.
func skipHeader(k string) bool {
	switch len(k) {
	case 4:
		return strings.EqualFold(k, "Host")
	case 7:
		return strings.EqualFold(k, "Trailer")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// checkRequest refuses what would split or smuggle the request.
func checkRequest(req *Request) error {
	if !httpsyntax.IsToken(req.Method) {
		return fmt.Errorf("invalid method %q", req.Method)
	}
	if !httpsyntax.IsVisible(req.URI) {
		return fmt.Errorf("invalid request URI %q", req.URI)
	}
	if req.Host != "" && !httpsyntax.IsVisible(req.Host) {
		return fmt.Errorf("invalid Host %q", req.Host)
	}
	if req.ContentLength > 0 && req.Body == nil {
		return fmt.Errorf("ContentLength %d without a Body", req.ContentLength)
	}
	for k, vv := range req.Header {
		if !httpsyntax.IsToken(k) {
			return fmt.Errorf("invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpsyntax.IsFieldValue(v) {
				return fmt.Errorf("invalid value of header %q", k)
			}
		}
	}
	for _, f := range req.Fields {
		if !httpsyntax.IsToken(f.Name) {
			return fmt.Errorf("invalid header name %q", f.Name)
		}
		// Written as given, unlike Header's: a framing field, or the
		// Connection and Upgrade RoundTrip sets for an upgrade, would go
		// out beside RoundTrip's own.
		if skipHeader(f.Name) || strings.EqualFold(f.Name, "Connection") || strings.EqualFold(f.Name, "Upgrade") {
			return fmt.Errorf("header %q cannot be a Field", f.Name)
		}
		if !httpsyntax.IsFieldValue(f.Value) {
			return fmt.Errorf("invalid value of header %q", f.Name)
		}
	}
	return nil
}

func ctxError(ctx context.Context, n *Node, err error) error {
	return fmt.Errorf("upstream: %s: %w (%v)", n.url, context.Cause(ctx), err)
}

// upgraded is the raw connection after 101 Switching Protocols. Read and
// Write may run in two goroutines; Close may be called from either.
type upgraded struct {
	c    *conn
	once sync.Once
}

func (u *upgraded) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.c.nc.Write(p) }

func (u *upgraded) Close() error {
	u.once.Do(func() { u.c.finish(false) })
	return nil
}

// SetWriteDeadline bounds the writes to the node, as net.Conn's does.
func (u *upgraded) SetWriteDeadline(t time.Time) error { return u.c.nc.SetWriteDeadline(t) }

// CloseWrite half-closes the connection when it supports it (TCP, TLS).
// Over TLS that is the close_notify and then the FIN: tls.Conn's
// CloseWrite sends only the alert, and a node (or a TLS terminator in
// front of it) that reads its TCP stream would see the end only when the
// tunnel closes.
func (u *upgraded) CloseWrite() error {
	nc := u.c.nc
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		nc = tc.NetConn()
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
