package edge

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// h2Conn sits between edged's HTTP/2 server (h2server.go) and the TLS
// connection of one HTTP/2 client, and gathers the frames written into
// fewer writes.
//
// Each stream's handler writes its frames as it goes, and the
// connection's reader writes its own (SETTINGS and PING answers, window
// updates): written straight to the socket, a busy connection would send
// a TLS record and make a write(2) per frame, about two per response. An
// h2Conn's Write only appends to a pending buffer; a flusher goroutine
// first lets every goroutine that is ready to run go ahead (the other
// streams' handlers and the connection's reader, which add their
// frames), then sends all that is pending in one write, the way nginx
// sends what one pass of its event loop produced.
//
// Pending bytes are bounded (h2PendingMax): past it, Write waits for the
// wire like a plain socket would. The write timeout applies to each write
// on the wire; its first error fails every later Write and closes the
// connection. Close sends what is pending first, bounded by the timeout.
// An idle connection holds no buffer and no flusher goroutine.
type h2Conn struct {
	*tls.Conn
	timeout time.Duration // a write that cannot finish within this fails

	mu       sync.Mutex
	drained  sync.Cond // signalled after each write on the wire
	pending  *[]byte   // written by the server, not yet on the wire; nil when empty
	flushing bool      // a flusher goroutine owns the wire
	err      error     // the wire's first error
	// lingerUntil is when a lingering close ends at the latest (unix
	// nanoseconds), 0 before CloseLingering.
	lingerUntil atomic.Int64
}

const (
	// h2PendingMax bounds the bytes a connection holds ahead of its
	// socket, the size of one write on the wire at most.
	h2PendingMax = 256 << 10
	// h2CloseFlushTimeout bounds the last flush of a connection without
	// write_timeout.
	h2CloseFlushTimeout = 5 * time.Second
	// h2LingerMax bounds a lingering close that the client's frames keep
	// extending (nginx's lingering_time).
	h2LingerMax = 30 * time.Second
)

var h2Buffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func newH2Conn(c *tls.Conn, timeout time.Duration) *h2Conn {
	hc := &h2Conn{Conn: c, timeout: timeout}
	hc.drained.L = &hc.mu
	return hc
}

// Write queues p for the flusher, waiting while h2PendingMax bytes are
// pending.
func (c *h2Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for c.err == nil && c.pending != nil && len(*c.pending) >= h2PendingMax {
			c.drained.Wait()
		}
		if c.err != nil {
			return n, c.err
		}
		if c.pending == nil {
			c.pending = h2Buffers.Get().(*[]byte)
		}
		chunk := p[:min(len(p), h2PendingMax-len(*c.pending))]
		*c.pending = append(*c.pending, chunk...)
		n += len(chunk)
		p = p[len(chunk):]
		if !c.flushing {
			c.flushing = true
			go c.flush()
		}
	}
	return n, nil
}

// flush writes what is pending until nothing is, then exits.
func (c *h2Conn) flush() {
	for {
		runtime.Gosched() // let the ready goroutines add their frames first
		c.mu.Lock()
		buf := c.pending
		c.pending = nil
		if buf == nil || c.err != nil {
			c.flushing = false
			c.drained.Broadcast()
			c.mu.Unlock()
			if buf != nil {
				putH2Buffer(buf)
			}
			return
		}
		c.mu.Unlock()

		err := c.writeWire(*buf)
		putH2Buffer(buf)

		c.mu.Lock()
		if err != nil && c.err == nil {
			c.err = err
		}
		c.drained.Broadcast()
		c.mu.Unlock()
		if err != nil {
			// A broken wire: stop the reader too, so that http2 tears
			// the connection down even when it has nothing to write.
			c.Conn.NetConn().Close()
		}
	}
}

// writeWire writes b on the wire within the connection's timeout, or,
// without write_timeout, within the silent-peer check's times (30 s +
// 15 s): a peer that takes nothing for that long could not answer that
// check's ping, which waits behind the write, while the writer that waits
// for room holds the connection's lock the check needs.
func (c *h2Conn) writeWire(b []byte) error {
	d := c.timeout
	if d <= 0 {
		d = h2ReadIdleTimeout + h2PingTimeout
	}
	return c.writeWithin(b, d)
}

func (c *h2Conn) writeWithin(b []byte, d time.Duration) error {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	_, err := c.Conn.Write(b)
	return err
}

// closeTimeout bounds the last writes of Close and CloseLingering, and
// the write in progress then.
func (c *h2Conn) closeTimeout() time.Duration {
	if c.timeout > 0 {
		return c.timeout
	}
	return h2CloseFlushTimeout
}

func putH2Buffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // let an outsized burst's buffer go
	}
	*b = (*b)[:0]
	h2Buffers.Put(b)
}

// SetWriteDeadline is a no-op: Write does not touch the wire, and the
// flusher gives every write on the wire the connection's timeout.
func (c *h2Conn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only (see SetWriteDeadline).
func (c *h2Conn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close sends what is pending, then closes the connection.
func (c *h2Conn) Close() error {
	c.flushLast()
	return c.Conn.Close()
}

// flushLast waits for the write in progress, fails the writes to come,
// and sends what is pending, within closeTimeout; it reports whether the
// wire had failed, or failed now.
func (c *h2Conn) flushLast() (failed bool) {
	if c.timeout <= 0 {
		// Bounds the write in progress.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(h2CloseFlushTimeout))
	}
	c.mu.Lock()
	for c.flushing {
		c.drained.Wait()
	}
	failed = c.err != nil
	if c.err == nil {
		c.err = net.ErrClosed
	}
	buf := c.pending
	c.pending = nil
	c.mu.Unlock()
	if buf != nil {
		failed = c.writeWithin(*buf, c.closeTimeout()) != nil || failed
		putH2Buffer(buf)
	}
	return failed
}

// CloseLingering ends a connection whose last GOAWAY is written: it
// sends what is pending and the TLS close_notify, shuts the socket's
// sending side, and leaves the reading side open for h1Linger, as
// HTTP/1.1's lingering close does, for the connection's reader to read
// and drop what the client still sends meanwhile (the window it gives
// back as it reads the last answer, a request sent before it saw the
// GOAWAY); the reader's end closes the connection (Close). Closed at
// once, the socket would answer those frames with a reset, which drops
// what the kernel had not sent yet: the tail of the last answers, and
// the GOAWAY itself. A client reading a long tail slowly gives window
// back all along, so each frame read extends the wait by h1Linger
// (Lingered), up to h2LingerMax in all. Writes fail from now on, without
// touching the wire.
func (c *h2Conn) CloseLingering() {
	now := time.Now()
	if !c.lingerUntil.CompareAndSwap(0, now.Add(h2LingerMax).UnixNano()) {
		return // lingering already (a connection error during the linger)
	}
	if c.flushLast() || c.Conn.CloseWrite() != nil {
		c.Conn.Close()
		return
	}
	shutWrite(c.Conn.NetConn()) // the FIN, under the handshake's wrapper
	_ = c.Conn.SetReadDeadline(time.Now().Add(h1Linger))
}

// DrainLingering reads and drops what the client sends until the
// lingering close ends, for a connection whose frames are no longer read
// (a connection error's: what follows may not even be frames).
func (c *h2Conn) DrainLingering() {
	var scratch [4 << 10]byte
	for {
		if _, err := c.Conn.Read(scratch[:]); err != nil {
			return
		}
		c.Lingered()
	}
}

// Lingered extends a lingering close after a frame was read, if one is
// under way.
func (c *h2Conn) Lingered() {
	until := c.lingerUntil.Load()
	if until == 0 {
		return
	}
	end := time.Now().Add(h1Linger)
	if last := time.Unix(0, until); end.After(last) {
		end = last
	}
	_ = c.Conn.SetReadDeadline(end)
}

// h2RequestIDKey is X-Request-Id as HTTP/2 sends it (RFC 9113 §8.2.1:
// lowercase), the key exchange.respond gives it in an HTTP/2 answer's
// header, so that lowerKey has nothing to do for it.
const h2RequestIDKey = "x-request-id"

// h2GrowStack needs a frame of h2StackFrame bytes: called first on a 2 KiB
// stack, it grows the stack to 8 KiB in one copy. Each HTTP/2 stream's
// handler runs on a fresh goroutine, whose stack begins at 2 KiB and,
// before a request is forwarded, doubles twice (to 8 KiB) deep inside the
// upstream client, each time copying every frame above it: about a tenth
// of edged's CPU on HTTP/2 in profiles (h2load -m16, x/net's server).
// h2Stream.run asks for the 8 KiB at once, while the stack holds only a
// few frames. (The runtime sizes a grown stack to fit the frame that
// needed it.) HTTP/1.1 requests run on their connection's goroutine,
// whose stack has grown by its first request.
//
//go:noinline
func h2GrowStack(i int) byte {
	var b [h2StackFrame]byte
	return b[i]
}

// h2StackFrame makes h2GrowStack's frame more than a 4 KiB stack can hold
// and less than 8 KiB: with the runtime's guard, an 8 KiB stack.
const h2StackFrame = 4 << 10
