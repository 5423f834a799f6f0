package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrQueueFull is returned by Acquire when every worker is busy and the
	// queue already holds as many waiters as it may (or has no room at all).
	ErrQueueFull = errors.New("pool: all workers busy and queue full")
	// ErrQueueTimeout is returned by Acquire when the caller waited in the
	// queue for the whole queue timeout without getting a worker.
	ErrQueueTimeout = errors.New("pool: timed out waiting for a worker")
)

// The pool's occupancy lives in one word so that the fast paths can decide
// "a slot is free and nobody waits" and take it in a single CAS: the low 32
// bits count slots in use, the high 32 bits count queued waiters.
const (
	inFlightMask = 1<<32 - 1
	waiterOne    = 1 << 32
)

func unpack(s uint64) (inFlight, waiters int) {
	return int(s & inFlightMask), int(s >> 32)
}

// Pool bounds the requests in flight in one environment and queues the
// excess in arrival order. The zero value is not usable; call New.
type Pool struct {
	state atomic.Uint64 // inFlight | waiters<<32

	workers      int
	queue        int
	queueTimeout time.Duration

	admitted atomic.Uint64
	rejected atomic.Uint64
	timedOut atomic.Uint64

	// mu guards the waiter list. The waiter count in state changes only
	// with mu held, so under mu it always equals the length of the list.
	mu         sync.Mutex
	head, tail *waiter
}

// waiter is one caller queued in Acquire. It is reused through waiterPool,
// so its channel must be empty and granted false when it goes back.
type waiter struct {
	ready      chan struct{} // receives once when a slot is handed over
	granted    bool          // guarded by Pool.mu: a slot was handed to it
	prev, next *waiter       // guarded by Pool.mu
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

// New returns a pool of workers slots and a FIFO queue of at most queue
// waiters, each of which waits at most queueTimeout for a slot. A
// queueTimeout of zero or less bounds waiting by the caller's context only.
// New panics when workers < 1 or queue < 0: configuration validation
// rejects those before a pool is built.
func New(workers, queue int, queueTimeout time.Duration) *Pool {
	if workers < 1 || workers > inFlightMask/2 {
		panic(fmt.Sprintf("pool: workers = %d, want 1..%d", workers, inFlightMask/2))
	}
	if queue < 0 || queue > inFlightMask/2 {
		panic(fmt.Sprintf("pool: queue = %d, want 0..%d", queue, inFlightMask/2))
	}
	return &Pool{workers: workers, queue: queue, queueTimeout: queueTimeout}
}

// Acquire takes a worker slot: at once if one is free and nobody is queued,
// otherwise after waiting in the FIFO queue. It returns ErrQueueFull at once
// when the queue has no room, ErrQueueTimeout when the queue timeout passed,
// and ctx.Err() when ctx is done first. Every nil return must be paired with
// exactly one Release.
func (p *Pool) Acquire(ctx context.Context) error {
	s := p.state.Load()
	if in, waiters := unpack(s); waiters == 0 && in < p.workers && p.state.CompareAndSwap(s, s+1) {
		p.admitted.Add(1)
		return nil
	}
	return p.acquireSlow(ctx)
}

func (p *Pool) acquireSlow(ctx context.Context) error {
	p.mu.Lock()
	for {
		s := p.state.Load()
		in, waiters := unpack(s)
		if waiters == 0 && in < p.workers {
			// A Release freed a slot between the fast path and the lock.
			if p.state.CompareAndSwap(s, s+1) {
				p.mu.Unlock()
				p.admitted.Add(1)
				return nil
			}
			continue
		}
		if waiters >= p.queue {
			p.mu.Unlock()
			p.rejected.Add(1)
			return ErrQueueFull
		}
		// Fast-path Releases race with us on the in-flight half of the
		// word; retry until the waiter is counted against a state we saw.
		if p.state.CompareAndSwap(s, s+waiterOne) {
			break
		}
	}
	w := waiterPool.Get().(*waiter)
	p.pushBack(w)
	p.mu.Unlock()

	var timeout <-chan time.Time
	if p.queueTimeout > 0 {
		t := time.NewTimer(p.queueTimeout)
		defer t.Stop()
		timeout = t.C
	}

	var err error
	select {
	case <-w.ready:
		// Release set granted before sending and touches w no more.
		w.granted = false
		waiterPool.Put(w)
		p.admitted.Add(1)
		return nil
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}

	p.mu.Lock()
	if w.granted {
		// Release handed us a slot while we were giving up. It is ours
		// now; pass it on rather than leak it, and still report the
		// timeout or cancellation the caller is already acting on.
		<-w.ready
		w.granted = false
		p.mu.Unlock()
		p.Release()
	} else {
		p.remove(w)
		p.state.Add(^uint64(waiterOne - 1)) // one waiter fewer
		p.mu.Unlock()
	}
	waiterPool.Put(w)
	if err == ErrQueueTimeout {
		p.timedOut.Add(1)
	}
	return err
}

// Release returns a slot taken by a successful Acquire. When callers are
// queued the slot goes straight to the oldest of them, so a newcomer can
// never overtake the queue.
func (p *Pool) Release() {
	s := p.state.Load()
	if in, waiters := unpack(s); waiters == 0 && in > 0 && p.state.CompareAndSwap(s, s-1) {
		return
	}
	p.releaseSlow()
}

func (p *Pool) releaseSlow() {
	p.mu.Lock()
	for {
		s := p.state.Load()
		in, waiters := unpack(s)
		if in == 0 {
			p.mu.Unlock()
			panic("pool: Release without a matching Acquire")
		}
		if waiters == 0 {
			if p.state.CompareAndSwap(s, s-1) {
				p.mu.Unlock()
				return
			}
			continue
		}
		// Hand the slot over: in-flight stays, one waiter fewer. With
		// waiters queued no fast path can succeed and every slow path
		// needs mu, so this CAS does not fail; the loop is for the
		// waiters == 0 case, where fast paths still run.
		if p.state.CompareAndSwap(s, s-waiterOne) {
			break
		}
	}
	w := p.head
	p.remove(w)
	w.granted = true
	w.ready <- struct{}{} // buffered, and empty: never blocks
	p.mu.Unlock()
}

func (p *Pool) pushBack(w *waiter) {
	w.prev, w.next = p.tail, nil
	if p.tail != nil {
		p.tail.next = w
	} else {
		p.head = w
	}
	p.tail = w
}

func (p *Pool) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		p.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		p.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// Stats is a point-in-time view of a pool, for metrics and /status.
type Stats struct {
	Workers  int // worker slots (the environment's workers)
	QueueCap int // waiters allowed (the environment's queue)
	InFlight int // slots in use now
	Queued   int // callers waiting now
	Admitted uint64
	Rejected uint64 // ErrQueueFull
	TimedOut uint64 // ErrQueueTimeout; a cancelled context counts nowhere
}

// Stats returns the pool's current occupancy and its counters since New.
func (p *Pool) Stats() Stats {
	in, waiters := unpack(p.state.Load())
	return Stats{
		Workers:  p.workers,
		QueueCap: p.queue,
		InFlight: in,
		Queued:   waiters,
		Admitted: p.admitted.Load(),
		Rejected: p.rejected.Load(),
		TimedOut: p.timedOut.Load(),
	}
}
