package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrQueueFull is returned by Acquire when every worker is busy and the
	// queue already holds as many waiters as it may (or has no room at all,
	// or the caller's lane has used its share of it). A held caller gets it
	// after the reject delay.
	ErrQueueFull = errors.New("pool: all workers busy and queue full")
	// ErrShareFull is the ErrQueueFull of a caller whose lane has every
	// slot and queue place of its share taken, while the pool's queue may
	// still have room for other lanes, or whose lane has every slot of its
	// share taken while workers are free and the queue has no room (none
	// at all, or taken by other lanes at their caps). errors.Is(err,
	// ErrQueueFull) holds.
	ErrShareFull = fmt.Errorf("%w for this share", ErrQueueFull)
	// ErrQueueTimeout is returned by Acquire when the caller waited in the
	// queue for the whole queue timeout without getting a worker.
	ErrQueueTimeout = errors.New("pool: timed out waiting for a worker")
	// ErrRetired is returned by Acquire to a caller that would wait, or
	// was waiting (queued or held), in a pool that Retire retired: it
	// holds no slot and was refused nothing, and may try again elsewhere
	// (edge routes it again on the configuration that replaced the
	// pool's environment).
	ErrRetired = errors.New("pool: retired")
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

// Config sizes a pool.
type Config struct {
	Workers int // slots, at least 1
	Queue   int // waiters allowed; 0 = no queue
	// QueueTimeout bounds a wait in the queue (each caller's bound is
	// drawn in (7/8, 1] of it, see queueLimit); zero or less bounds it by
	// the caller's context only.
	QueueTimeout time.Duration
	// RejectDelay is how long a caller that finds the queue full is held
	// before ErrQueueFull (plus up to a quarter of it at random, so that
	// callers held together are not answered together); zero or less
	// answers at once.
	RejectDelay time.Duration
	// MaxHeld bounds the callers held at once; past it ErrQueueFull comes
	// at once, for this caller and for the next RejectDelay (renewed while
	// the flood goes on; see Pool.holding). Zero means
	// DefaultMaxHeld(Workers, Queue).
	MaxHeld int
}

// DefaultMaxHeld is the hold bound of a pool that does not set one:
// four times what the pool admits at once (workers + queue), at least 1024.
//
// A closed-loop client (one that sends its next request when the last one
// was answered) holds one request at a time, so the bound is the number of
// such clients beyond the queue that are throttled to one rejection per
// reject delay: a flood of four times the environment's capacity, and at
// least 1024 connections whatever its size. A held request costs the pool
// nothing but its slot in the count (the timer is pooled); what it keeps
// alive is the request's own goroutine and connection, which a closed-loop
// client keeps open anyway. An open-loop flood (arrivals that do not wait
// for answers) keeps rate × delay requests held, and that is what the
// bound caps: past it, rejections are immediate again, until the arrivals
// would fit under it.
func DefaultMaxHeld(workers, queue int) int {
	return max(1024, 4*(workers+queue))
}

// Pool bounds the requests in flight in one environment, queues the excess
// in arrival order, and holds what the queue cannot take. The zero value is
// not usable; call New.
type Pool struct {
	state atomic.Uint64 // inFlight | waiters<<32

	workers      int
	queue        int
	queueTimeout time.Duration
	rejectDelay  time.Duration
	maxHeld      atomic.Int64 // see Config.MaxHeld and SetMaxHeld

	held      atomic.Int64 // callers held now
	admitted  atomic.Uint64
	rejected  atomic.Uint64
	heldTotal atomic.Uint64
	timedOut  atomic.Uint64

	// holdOff is the end (unix nanoseconds) of a window in which callers
	// are refused at once instead of held, 0 when holding; offRejected
	// counts the refusals of the current window. See holding.
	holdOff     atomic.Int64
	offRejected atomic.Int64
	holdOffs    atomic.Uint64 // windows started
	now         func() int64  // unix nanoseconds; tests set their own clock

	// mu guards the waiter list and the lanes' queued counts. The waiter
	// count in state changes only with mu held, so under mu it always
	// equals the length of the list.
	mu         sync.Mutex
	head, tail *waiter
	// retired is set, and retiredCh closed, by Retire, under mu: a
	// caller that would queue after it is refused under the same lock,
	// so none is left in a retired pool's queue.
	retired   atomic.Bool
	retiredCh chan struct{}
}

// Lane is one proxy's share of a pool: at most maxInFlight of its slots and
// maxQueued of its queue places. Callers that pass a lane to Acquire must
// pass the same lane to Release.
type Lane struct {
	// inFlight counts the lane's slots. It can read high by one per caller
	// that is trying a slot it may not get (see take); it never reads low,
	// and no caller is admitted that would push it past max.
	inFlight  atomic.Int64
	max       int64
	maxQueued int
	queued    int // guarded by Pool.mu
	rejected  atomic.Uint64
	pool      *Pool
}

// slots is how many of the pool's workers callers of l may hold at once:
// workers, or fewer under l's share. A nil lane has all of them.
func (l *Lane) slots(workers int) int {
	if l == nil || int(l.max) > workers {
		return workers
	}
	return int(l.max)
}

// take counts one slot against the lane, unless the lane is at its cap.
// A nil lane always has room.
func (l *Lane) take() bool {
	if l == nil {
		return true
	}
	if l.inFlight.Add(1) <= l.max {
		return true
	}
	l.inFlight.Add(-1)
	return false
}

func (l *Lane) untake() {
	if l != nil {
		l.inFlight.Add(-1)
	}
}

// full reports whether the lane looks at its cap. A caller trying a slot
// makes it read high for a moment; that caller then either gets the slot or
// comes through acquireSlow, which dispatches again.
func (l *Lane) full() bool { return l != nil && l.inFlight.Load() >= l.max }

// waiter is one caller queued in Acquire. It is reused through waiterPool,
// so its channel must be empty and granted and retired false when it goes
// back.
type waiter struct {
	ready      chan struct{} // receives once when a slot is handed over, or the pool retired
	granted    bool          // guarded by Pool.mu: a slot was handed to it
	retired    bool          // guarded by Pool.mu: Retire took it out of the queue
	lane       *Lane         // guarded by Pool.mu
	prev, next *waiter       // guarded by Pool.mu
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

// timers keeps stopped timers for queued and held callers, so waiting
// allocates nothing. Since Go 1.23 a stopped timer's channel holds no stale tick, so
// Reset on a pooled timer is safe.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// New returns a pool sized by c. New panics when Workers < 1 or Queue < 0:
// configuration validation rejects those before a pool is built.
func New(c Config) *Pool {
	if c.Workers < 1 || c.Workers > inFlightMask/2 {
		panic(fmt.Sprintf("pool: workers = %d, want 1..%d", c.Workers, inFlightMask/2))
	}
	if c.Queue < 0 || c.Queue > inFlightMask/2 {
		panic(fmt.Sprintf("pool: queue = %d, want 0..%d", c.Queue, inFlightMask/2))
	}
	p := &Pool{
		workers:      c.Workers,
		queue:        c.Queue,
		queueTimeout: c.QueueTimeout,
		rejectDelay:  c.RejectDelay,
		now:          func() int64 { return time.Now().UnixNano() },
		retiredCh:    make(chan struct{}),
	}
	p.SetMaxHeld(c.MaxHeld)
	return p
}

// SetMaxHeld changes the bound on callers held at once (Config.MaxHeld;
// n <= 0: DefaultMaxHeld). Callers held already stay held; a caller that
// finds n or more held is refused at once, and starts a hold-off. Edge
// lowers it under a share of max_connections, which a reload may change
// without rebuilding the environment.
func (p *Pool) SetMaxHeld(n int) {
	if n <= 0 {
		n = DefaultMaxHeld(p.workers, p.queue)
	}
	p.maxHeld.Store(int64(n))
}

// NewLane returns a share of p for one proxy: at most maxInFlight slots
// (1..workers) and maxQueued queue places (0..queue). NewLane panics on
// values out of range: configuration validation rejects those first.
func (p *Pool) NewLane(maxInFlight, maxQueued int) *Lane {
	l := new(Lane)
	p.InitLane(l, maxInFlight, maxQueued)
	return l
}

// InitLane makes the zero Lane l a share of p, as NewLane does: for a lane
// kept inside its owner's struct, so that an environment of thousands of
// proxies is built without an allocation per lane.
func (p *Pool) InitLane(l *Lane, maxInFlight, maxQueued int) {
	if maxInFlight < 1 || maxInFlight > p.workers {
		panic(fmt.Sprintf("pool: lane max in flight = %d, want 1..%d", maxInFlight, p.workers))
	}
	if maxQueued < 0 || maxQueued > p.queue {
		panic(fmt.Sprintf("pool: lane max queued = %d, want 0..%d", maxQueued, p.queue))
	}
	l.max, l.maxQueued, l.pool = int64(maxInFlight), maxQueued, p
}

// Acquire takes a worker slot for a caller of lane l (nil: no lane): at
// once if one is free, nobody is queued and the lane is under its cap;
// otherwise after waiting in the FIFO queue. When the queue (or the lane's
// share of it) has no room, the caller is held for the reject delay and
// then gets ErrQueueFull, or ErrShareFull when only the lane's share is
// taken (at once when the delay is zero or MaxHeld callers are held
// already). It returns ErrQueueTimeout when its limit in the
// queue (queueLimit) passed, and ctx.Err() when ctx is done first, also while held. A caller
// that got its slot from the queue returns after a random pause of at most
// maxHandoffJitter (see handoffJitter). Every nil return must be paired
// with exactly one Release(l).
func (p *Pool) Acquire(ctx context.Context, l *Lane) error {
	return p.AcquireNotify(ctx, l, nil)
}

// WaitNotifier is told when a caller of AcquireNotify is about to wait,
// queued or held before its rejection, and when that wait is over.
type WaitNotifier interface {
	// WaitStarts runs on the caller's goroutine, once at most per
	// AcquireNotify, before the wait begins.
	WaitStarts()
	// WaitEnds runs on the caller's goroutine once the wait is over
	// (the one WaitStarts announced, or a Holder's Hold), before
	// AcquireNotify returns, however the wait ended; never without a
	// wait.
	WaitEnds()
}

// Holder is a WaitNotifier that can wait out a hold itself, on the
// caller's goroutine: edge's HTTP/1.1 connection reads its own socket
// until the hold's end, so that a held request costs no timer and no
// goroutine besides the connection's.
type Holder interface {
	WaitNotifier
	// Hold waits d, or less when the caller goes away: its context is
	// then done when Hold returns. It reports false, having waited for
	// nothing, when it cannot wait this way: the pool then calls
	// WaitStarts and waits on a timer, as for a plain WaitNotifier.
	Hold(d time.Duration) bool
}

// AcquireNotify is Acquire, and calls n.WaitStarts (n non-nil) when the
// caller is about to wait, queued or held, and only then: not when it is
// admitted, even on the slow path, nor when it is refused at once; and
// n.WaitEnds when that wait is over. A caller that knows this way that it
// will wait can prepare for it (edge starts its HTTP/1.1 client-gone
// watch at once), and start afresh what the wait should not count
// against (edge's write_timeout).
func (p *Pool) AcquireNotify(ctx context.Context, l *Lane, n WaitNotifier) error {
	s := p.state.Load()
	// The lane is counted only when nobody waits: a count that reads high
	// for a moment (see Lane.inFlight) could make a hand-off skip a waiter
	// of the lane, and with waiters queued this caller goes slow anyway.
	if in, waiters := unpack(s); waiters == 0 && in < p.workers && l.take() {
		if p.state.CompareAndSwap(s, s+1) {
			p.admitted.Add(1)
			return nil
		}
		l.untake()
	}
	return p.acquireSlow(ctx, l, n)
}

func (p *Pool) acquireSlow(ctx context.Context, l *Lane, n WaitNotifier) error {
	p.mu.Lock()
	// A lane's count may have read high while a Release looked for an
	// eligible waiter (see Lane.inFlight); hand such slots over first so
	// that this caller does not overtake a waiter that may have them.
	p.dispatch()
	var ahead int // waiters queued before this caller
	for {
		s := p.state.Load()
		in, waiters := unpack(s)
		// After dispatch, a free slot with waiters queued means every
		// waiter's lane is at its cap: taking the slot overtakes nobody
		// who could have it.
		if in < p.workers && l.take() {
			if p.state.CompareAndSwap(s, s+1) {
				p.mu.Unlock()
				p.admitted.Add(1)
				return nil
			}
			l.untake()
			continue
		}
		if p.retired.Load() {
			// Nobody waits in a retired pool: its slots only drain.
			p.mu.Unlock()
			return ErrRetired
		}
		if waiters >= p.queue {
			p.mu.Unlock()
			full := ErrQueueFull
			if in < p.workers {
				// A slot is free but the lane is at its cap: its share is
				// what is full (with no queue, or a queue of other lanes
				// at their caps), not the environment.
				full = ErrShareFull
			}
			return p.hold(ctx, l, full, n)
		}
		if l != nil && l.queued >= l.maxQueued {
			p.mu.Unlock()
			return p.hold(ctx, l, ErrShareFull, n)
		}
		// Fast-path Releases race with us on the in-flight half of the
		// word; retry until the waiter is counted against a state we saw.
		if p.state.CompareAndSwap(s, s+waiterOne) {
			ahead = waiters
			break
		}
	}
	queuedAt := p.now()
	w := waiterPool.Get().(*waiter)
	w.lane = l
	if l != nil {
		l.queued++
	}
	p.pushBack(w)
	p.mu.Unlock()
	if n != nil {
		n.WaitStarts()
		defer n.WaitEnds()
	}

	var timeout <-chan time.Time
	if p.queueTimeout > 0 {
		t := timers.Get().(*time.Timer)
		t.Reset(queueLimit(p.queueTimeout))
		defer func() {
			t.Stop()
			timers.Put(t)
		}()
		timeout = t.C
	}

	var err error
	select {
	case <-w.ready:
		// dispatch (or Retire) set granted (retired) before sending and
		// touches w no more.
		if w.retired {
			w.retired, w.lane = false, nil
			waiterPool.Put(w)
			return ErrRetired
		}
		w.granted, w.lane = false, nil
		waiterPool.Put(w)
		p.admitted.Add(1)
		if j := handoffJitter(l.slots(p.workers), ahead, time.Duration(p.now()-queuedAt)); j > 0 {
			// A caller whose ctx ends meanwhile finds it done and
			// releases the slot.
			_ = sleep(ctx, time.Duration(rand.Int64N(int64(j))), nil)
		}
		return nil
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}

	p.mu.Lock()
	if w.granted {
		// dispatch handed us a slot while we were giving up. It is ours
		// now; pass it on rather than leak it, and still report the
		// timeout or cancellation the caller is already acting on.
		<-w.ready
		w.granted = false
		p.mu.Unlock()
		p.Release(l)
	} else if w.retired {
		// Retire took us out of the queue meanwhile: what ends our
		// wait is the retirement, unless the caller itself is gone.
		<-w.ready
		w.retired = false
		p.mu.Unlock()
		if err == ErrQueueTimeout {
			err = ErrRetired
		}
	} else {
		p.remove(w)
		if l != nil {
			l.queued--
		}
		p.state.Add(^uint64(waiterOne - 1)) // one waiter fewer
		p.mu.Unlock()
	}
	w.lane = nil
	waiterPool.Put(w)
	if err == ErrQueueTimeout {
		p.timedOut.Add(1)
	}
	return err
}

// timeoutJitter spreads queue time-outs over queue timeout ×
// (1 − [0, 1/timeoutJitter)), so that a wait never exceeds the queue
// timeout (see queueLimit).
const timeoutJitter = 8

// queueLimit is how long one caller may wait in the queue: the queue
// timeout less a random part of it, at most an eighth.
//
// Why not the queue timeout itself: a queue longer than its timeout's
// worth of service (a queue sized for the flood, say) times out the
// callers that reach its head too late, and callers queued together —
// the clients a cohort of answers sends back at once — then time out
// together, come back together (a closed-loop client retries at once)
// and are queued together again, one queue timeout later, for as long as
// the flood lasts: a burst of 503s and of requests read back every queue
// timeout, which a neighbour's request arriving in it waits out. A limit
// drawn per caller spreads the cohort over an eighth of the timeout in
// one round. Drawn downwards, so that queue_timeout stays the bound an
// operator set.
func queueLimit(timeout time.Duration) time.Duration {
	return timeout - randomPart(timeout, timeoutJitter)
}

// randomPart is a random duration in [0, d/n), zero when that is empty.
func randomPart(d time.Duration, n int64) time.Duration {
	if j := int64(d) / n; j > 0 {
		return time.Duration(rand.Int64N(j))
	}
	return 0
}

// maxHandoffJitter caps handoffJitter.
const maxHandoffJitter = 4 * time.Millisecond

// handoffJitter bounds the random pause of a caller that got its slot from
// the queue, before it goes on with the slot: a sixteenth of the slots'
// service time as the caller's wait measured it (ahead+1 hand-offs over
// the slots it could have took waited, so a slot is held slots × waited ÷
// (ahead+1)), at most maxHandoffJitter. Zero: no pause. slots is the
// environment's workers, or its lane's share when smaller (Lane.slots): a
// caller held back by its proxy's share waited for those few slots, and
// counting all the workers would make its pause, and with it the next
// caller's wait, grow to the cap. ahead counts the whole queue, so the
// estimate errs low, never high.
//
// Why pause at all: a saturated environment's slots are freed by its
// answers and handed at once to the queue's head, so requests admitted
// together stay together. With a backend whose latency barely varies
// (200 ms, say), the environment's whole cohort — answers, hand-offs and
// the requests its clients send back — comes as one burst of CPU every
// service time, and a neighbour's request that arrives during it waits for
// all of it: Go's scheduler runs every runnable goroutine before it asks
// the network poller for the neighbour's (so runtime.Gosched, which leaves
// the goroutine runnable, does not help; measured). A pause makes the
// goroutine not runnable, and a random one spreads the next cohort: the
// slots' phases drift apart cycle after cycle, and the bursts with them.
// The mean pause (a 32nd of the service time at most) is what the
// environment's throughput loses while it is saturated, and only then:
// a caller that found a slot free is never paused.
func handoffJitter(slots, ahead int, waited time.Duration) time.Duration {
	if waited <= 0 {
		return 0
	}
	return min(time.Duration(int64(waited)*int64(slots)/int64(ahead+1))/16, maxHandoffJitter)
}

// sleep waits d on a pooled timer, or until ctx is done: then it returns
// ctx.Err(); or until stop (nil: never) is closed.
func sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	t := timers.Get().(*time.Timer)
	t.Reset(d)
	var err error
	select {
	case <-t.C:
	case <-stop:
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.Stop()
	timers.Put(t)
	return err
}

// holdJitter spreads holds over reject delay × (1 + [0, 1/holdJitter)).
// A flood's connections open together and would otherwise be held and
// answered together, every reject delay, for as long as the flood lasts:
// a burst of rejections (and of the requests they send back) that the
// neighbours would feel as a latency spike each time.
const holdJitter = 4

// hold keeps a caller that found no room in the queue for the reject
// delay (plus a random part of it, see holdJitter, never less), then
// answers full (ErrQueueFull or ErrShareFull); n (non-nil) is told before
// a hold begins, or waits it out itself when it is a Holder that can. The
// caller holds no slot and no queue place, and is never given one: the
// delay throttles a retrying client, it does not grow the queue.
func (p *Pool) hold(ctx context.Context, l *Lane, full error, n WaitNotifier) error {
	if p.rejectDelay > 0 && p.holding() {
		var err error
		if p.held.Add(1) <= p.maxHeld.Load() {
			d := p.rejectDelay
			d += randomPart(d, holdJitter)
			if h, ok := n.(Holder); ok && h.Hold(d) {
				err = ctx.Err()
			} else {
				if n != nil {
					n.WaitStarts()
				}
				err = sleep(ctx, d, p.retiredCh)
			}
			if n != nil {
				n.WaitEnds()
			}
			p.heldTotal.Add(1)
		} else {
			// Past maxHeld: answered at once, and so are the callers of
			// the next reject delay (see holding).
			p.startHoldOff(p.now(), 0)
		}
		p.held.Add(-1)
		if err != nil {
			return err
		}
		if p.retired.Load() {
			// Retired while held: the caller may find room elsewhere.
			return ErrRetired
		}
	}
	p.rejected.Add(1)
	if l != nil {
		l.rejected.Add(1)
	}
	return full
}

// holding tells whether a caller that found no room is held (true) or
// refused at once, and counts the refusals of a hold-off window.
//
// Holding throttles closed-loop clients, which wait for each answer; it
// cannot throttle an open-loop flood, whose arrivals do not wait, and
// there it only costs: rate × reject delay requests held, and as many
// connections that the flood's clients replace with new ones (a TLS
// handshake each) while edged's CPU is what the neighbours share. So when
// the hold bound is reached, callers are refused at once for one reject
// delay (a hold-off window), and the window is renewed for as long as its
// refusals, held, would have filled the bound again: arrivals above
// MaxHeld ÷ RejectDelay per second. Below that, holding resumes.
func (p *Pool) holding() bool {
	until := p.holdOff.Load()
	if until == 0 {
		return true
	}
	now := p.now()
	if now < until {
		p.offRejected.Add(1)
		return false
	}
	if n := p.offRejected.Load(); n >= p.maxHeld.Load() {
		p.startHoldOff(now, until)
		return false
	}
	p.holdOff.CompareAndSwap(until, 0)
	return true
}

// startHoldOff starts a hold-off window at now, unless another caller
// already replaced the window that ended at prev (0: none) with its own.
func (p *Pool) startHoldOff(now, prev int64) {
	if p.holdOff.CompareAndSwap(prev, now+int64(p.rejectDelay)) {
		p.offRejected.Store(0)
		p.holdOffs.Add(1)
	}
}

// Retire ends every wait in p: the callers queued, and those held (at the
// end of their hold when a Holder waits it out), get ErrRetired, and so
// does any caller that would wait from now on. Slots go on being taken
// while free, and released: a retired pool only drains. Edge retires the
// pool of an environment a reload replaced, so that the requests still
// waiting in it go to the environment that replaced it, instead of
// waiting out the queue timeout behind the old one's backends; and every
// pool once the shutdown's drain is over, so that the requests waiting in
// them are answered before their connections close (edge ends the holds
// its Holders wait out itself then). Safe to call more than once.
func (p *Pool) Retire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired.Load() {
		return
	}
	p.retired.Store(true)
	close(p.retiredCh)
	for w := p.head; w != nil; {
		next := w.next
		p.remove(w)
		if w.lane != nil {
			w.lane.queued--
		}
		p.state.Add(^uint64(waiterOne - 1)) // one waiter fewer
		w.retired = true
		w.ready <- struct{}{} // buffered, and empty: never blocks
		w = next
	}
}

// Release returns a slot taken by a successful Acquire with the same lane.
// When callers are queued the slot goes straight to the oldest of them
// whose lane is under its cap, so a newcomer can never overtake them.
func (p *Pool) Release(l *Lane) {
	// The lane first: a waiter of this lane is eligible for the slot.
	l.untake()
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
		in, _ := unpack(s)
		if in == 0 {
			p.mu.Unlock()
			panic("pool: Release without a matching Acquire")
		}
		if p.state.CompareAndSwap(s, s-1) {
			break
		}
	}
	p.dispatch()
	p.mu.Unlock()
}

// dispatch hands free slots to the oldest queued waiters whose lane is
// under its cap. Called with mu held. With waiters queued no fast path
// can change the state word (both need waiters == 0), so its CAS fails
// only against a fast path that started before the first waiter came.
func (p *Pool) dispatch() {
	for w := p.head; w != nil; {
		next := w.next
		s := p.state.Load()
		in, _ := unpack(s)
		if in >= p.workers {
			return
		}
		if !w.lane.full() && w.lane.take() {
			if !p.state.CompareAndSwap(s, s+1-waiterOne) {
				w.lane.untake()
				continue // w again, against the new state
			}
			p.remove(w)
			if w.lane != nil {
				w.lane.queued--
			}
			w.granted = true
			w.ready <- struct{}{} // buffered, and empty: never blocks
		}
		w = next
	}
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
	Workers     int           // worker slots (the environment's workers)
	QueueCap    int           // waiters allowed (the environment's queue)
	RejectDelay time.Duration // how long a full queue's rejection is held
	MaxHeld     int           // callers held at once, at most
	InFlight    int           // slots in use now
	Queued      int           // callers waiting now
	Held        int           // callers held now
	Admitted    uint64
	Rejected    uint64 // ErrQueueFull (ErrShareFull included), held or not
	HeldTotal   uint64 // holds ended (ErrQueueFull after the delay, or the context)
	// HoldOff is true while callers are refused at once because holding
	// them would exceed MaxHeld; HoldOffs counts such windows since New.
	HoldOff  bool
	HoldOffs uint64
	TimedOut uint64 // ErrQueueTimeout; a cancelled context counts nowhere else
}

// Stats returns the pool's current occupancy and its counters since New.
func (p *Pool) Stats() Stats {
	in, waiters := unpack(p.state.Load())
	return Stats{
		Workers:     p.workers,
		QueueCap:    p.queue,
		RejectDelay: p.rejectDelay,
		MaxHeld:     int(p.maxHeld.Load()),
		InFlight:    in,
		Queued:      waiters,
		Held:        int(p.held.Load()),
		Admitted:    p.admitted.Load(),
		Rejected:    p.rejected.Load(),
		HeldTotal:   p.heldTotal.Load(),
		HoldOff:     p.holdOff.Load() > p.now(),
		HoldOffs:    p.holdOffs.Load(),
		TimedOut:    p.timedOut.Load(),
	}
}

// LaneStats is a point-in-time view of a lane.
type LaneStats struct {
	MaxInFlight int
	MaxQueued   int
	InFlight    int // may read one high per caller trying a slot
	Queued      int
	Rejected    uint64 // ErrQueueFull given to the lane's callers
}

// Stats returns the lane's occupancy and its rejections since NewLane.
func (l *Lane) Stats() LaneStats {
	l.pool.mu.Lock()
	q := l.queued
	l.pool.mu.Unlock()
	return LaneStats{
		MaxInFlight: int(l.max),
		MaxQueued:   l.maxQueued,
		InFlight:    int(l.inFlight.Load()),
		Queued:      q,
		Rejected:    l.rejected.Load(),
	}
}
