package edge

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// bodyWaitMax is how much of a request body edged reads before the
// request takes a worker of its environment (HAProxy's option
// http-buffer-request, nginx's request buffering): the whole body when
// it is no larger, else its first bodyWaitMax bytes, the rest streamed
// to the node as it comes. A client that announces a body and sends
// nothing then holds no worker: only its connection, for read_timeout.
// It is replayMax, so that what is read ahead is the copy a retry
// sends (one buffer, never both), and the HTTP/2 stream window edged
// gives until the request has its worker (h2StreamPreread): a client
// sends it without waiting for a WINDOW_UPDATE (the whole window,
// h2UploadPerStream, would let one connection's h2_max_concurrent_streams
// hold 62 MiB). Past it a client
// may still hold a worker by sending no more, at the price of
// bodyWaitMax bytes a worker. What is read ahead is read out of an
// HTTP/2 stream's buffer, which gives its window back: streams waiting
// for their bodies never keep the connection's window (1 MiB, shared)
// from one another, as streams that only waited would (five uploads of
// 256 KiB at once). Given back, the window no longer bounds what one
// connection's streams read ahead: h2ReadAheadPerConn does (a
// readAheadBudget), else 250 streams sending 60 KiB each and never the
// rest held 35 MiB of one connection.
const bodyWaitMax = replayMax

// readAheadBudget is what a connection carrying many requests at once
// (HTTP/2) lets them read ahead of their workers (fill), all together:
// takeReadAhead reserves n more bytes, or reports false when they would
// pass the connection's bound or the process's (readAheadPerProcess);
// giveReadAhead returns them once the wait is over. An HTTP/1.1
// connection, one request at a time, has the process's bound only. The bytes stay with the request (the copy a retry sends), in
// its environment's queue or worker, which bound them from then on.
type readAheadBudget interface {
	takeReadAhead(n int) bool
	giveReadAhead(n int)
}

// processBudget bounds what one kind of per-connection buffer holds in
// all of the process's connections together: a connection's own bound
// times max_connections (half the open-file limit by default) bounds
// nothing a machine has. take reserves n bytes, or reports false when they
// would pass max; give returns them.
type processBudget struct {
	used, max atomic.Int64
}

func newProcessBudget(max int64) *processBudget {
	b := new(processBudget)
	b.max.Store(max)
	return b
}

func (b *processBudget) take(n int) bool {
	if b.used.Add(int64(n)) > b.max.Load() {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *processBudget) give(n int) { b.used.Add(-int64(n)) }

// readAheadPerProcess bounds the body bytes that requests waiting for
// their bodies (awaitBody) read ahead, in all connections, HTTP/1.1 and
// HTTP/2: 4,096 requests' bodyWaitMax. A request that finds no room
// takes its worker with what it has, as one past its connection's bound
// does.
const readAheadPerProcess = 256 << 20

// bodyWaiter is a request's connection, told when the request starts and
// stops waiting for its body (awaitBody): the shutdown's cut, its drain
// over, ends such a wait (Server.cutWaits) as it ends a wait for a
// node, so that the request is answered 503 while its connection is still
// open, not left waiting until the connections close.
type bodyWaiter interface {
	waitingBody(on bool)
}

// errBodyWaitCut is the body error of a request whose wait for its body
// the shutdown ended (Server.cutWaits); bodyFailed answers it as
// edged's cut.
var errBodyWaitCut = errors.New("edged is shutting down and its drain_timeout passed")

// fillFirst is fill's first buffer for a body larger than it.
const fillFirst = 2 << 10

// hasBody reports whether r announces a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// awaitBody reads the request's body, up to bodyWaitMax, before the
// request takes a worker (Env.serve), within the time the server gives
// a body (read_timeout: HTTP/1.1 from the start of the head, HTTP/2 from
// the start of the stream's handler). Its first read sends the 100
// Continue a client may wait for. It reports the client's error, kept
// in x.body.err too.
//
// A reload's drain does not wait for it (Env.bodyWaits): once its
// environment is replaced, the request is routed on the new snapshot when
// its body has come, and never serves in the old one.
//
// What the connection's streams read ahead at once is bounded over
// HTTP/2, and what all connections' requests read ahead by the process's
// bound (readAheadBudget): a request that finds no room left stops
// reading ahead and goes on with what it has, its body streamed to the
// node as it comes, as one larger than bodyWaitMax.
func (x *exchange) awaitBody() error {
	x.body = limitedBody{rc: x.r.Body, limit: x.px.env.maxBody}
	budget, _ := x.w.(readAheadBudget)
	bw, _ := x.w.(bodyWaiter)
	if bw != nil {
		bw.waitingBody(true)
	}
	waits := &x.px.env.bodyWaits
	waits.Add(1)
	err := x.body.fill(x.r.ContentLength, budget)
	waits.Add(-1)
	if bw != nil {
		bw.waitingBody(false)
	}
	x.bytesIn = x.body.n
	return err
}

// fill reads the body, whose length is cl (-1: unknown), until all of it
// or bodyWaitMax bytes of it are in kept, for Read to give first, or
// until budget (nil: none) has no room for kept to grow.
func (b *limitedBody) fill(cl int64, budget readAheadBudget) error {
	need := int64(bodyWaitMax)
	if cl >= 0 && cl < need {
		need = cl
	}
	b.keeping = true
	granted := 0
	for int64(len(b.kept)) < need && !b.eof && b.err == nil {
		if len(b.kept) == cap(b.kept) {
			// Grown as the bytes come, never to what a client announces
			// before it sends it: 250 HTTP/2 streams announcing 64 KiB
			// each and sending nothing cost 2 KiB each, not 16 MiB.
			size := int(min(max(2*int64(cap(b.kept)), fillFirst), need))
			if budget != nil {
				if !budget.takeReadAhead(size - cap(b.kept)) {
					break
				}
				granted += size - cap(b.kept)
			}
			b.kept = slices.Grow(b.kept, size-len(b.kept))
		}
		n, err := b.rc.Read(b.kept[len(b.kept):min(int64(cap(b.kept)), need)])
		b.n += int64(n)
		b.kept = b.kept[:len(b.kept)+n]
		if b.limit > 0 && b.n > b.limit {
			err = errTooLarge
		}
		if err == io.EOF {
			b.eof = true
		} else if err != nil {
			b.err = err
		}
	}
	if granted > 0 {
		budget.giveReadAhead(granted)
	}
	b.pos = 0
	if !b.eof && b.err == nil {
		// The rest is read by the code that writes it to the node: from
		// now on, the time between two reads is edged's, not the
		// client's (readDeadlineMover). One read whole needs no clock.
		if m, ok := b.rc.(readDeadlineMover); ok {
			b.mover, b.since = m, time.Now()
		}
	}
	return b.err
}

// detach hands the body, with what fill kept of it, over to the exchange
// of a request routed again after a reload (Env.serve returning false):
// it is given first, then the client's body goes on.
func (b *limitedBody) detach() io.ReadCloser {
	return &limitedBody{rc: b.rc, kept: b.kept, eof: b.eof}
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// moveReadDeadline passes the move on to the client's body, for a body
// routed again after a reload (detach), read through a new exchange's.
func (b *limitedBody) moveReadDeadline(d time.Duration, now time.Time) {
	if m, ok := b.rc.(readDeadlineMover); ok {
		m.moveReadDeadline(d, now)
	}
}

// bodyFailed answers a request whose client's body failed (x.body.err):
// 413 past max_body_bytes, else 400; the client's error, never logged as
// the node's. A client that reset its stream or left is recorded as 499.
// Once its environment was cut (the shutdown's drain over, whose end
// closes the connections left), a body that failed is edged's cut, as
// for a request waiting on its node (gone): 503, not the client's fault.
func (x *exchange) bodyFailed() {
	if !errors.Is(x.body.err, errTooLarge) && chanClosed(x.px.env.cut) {
		x.cutAnswer()
		return
	}
	if errors.Is(x.body.err, errTooLarge) {
		x.fault(http.StatusRequestEntityTooLarge, faultTooLarge, "request body is larger than the limit of this environment")
	} else {
		x.fault(http.StatusBadRequest, faultInvalid, bodyErrorMessage(x.body.err))
	}
	if x.r.Context().Err() != nil {
		x.gone()
	}
}
