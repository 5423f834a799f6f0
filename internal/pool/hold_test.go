package pool

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// held waits until p holds n callers.
func held(t *testing.T, p *Pool, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats().Held == n },
		waitFor, time.Millisecond, "want %d held", n)
}

// fill takes every worker and queue place of p with callers that wait
// until ctx is done; it returns their results.
func fill(t *testing.T, ctx context.Context, p *Pool) <-chan error {
	t.Helper()
	st := p.Stats()
	for range st.Workers {
		require.NoError(t, p.Acquire(ctx, nil))
	}
	errs := make(chan error, st.QueueCap)
	for range st.QueueCap {
		go func() { errs <- p.Acquire(ctx, nil) }()
	}
	queued(t, p, st.QueueCap)
	return errs
}

func TestHeldRejectionWaitsTheDelay(t *testing.T) {
	const delay = 300 * time.Millisecond // long enough for held() to see the hold on a slow machine
	p := New(Config{Workers: 1, Queue: 1, QueueTimeout: time.Hour, RejectDelay: delay})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiters := fill(t, ctx, p)

	start := time.Now()
	got := make(chan error, 1)
	go func() { got <- p.Acquire(context.Background(), nil) }()
	held(t, p, 1)
	assert.Equal(t, 1, p.Stats().Queued, "a held caller takes no queue place")
	assert.Equal(t, 1, p.Stats().InFlight, "... and no worker")
	require.ErrorIs(t, <-got, ErrQueueFull)
	assert.GreaterOrEqual(t, time.Since(start), delay, "answered before the reject delay")

	st := p.Stats()
	assert.Equal(t, 0, st.Held)
	assert.Equal(t, uint64(1), st.HeldTotal)
	assert.Equal(t, uint64(1), st.Rejected)

	cancel()
	assert.ErrorIs(t, <-waiters, context.Canceled)
	p.Release(nil)
}

func TestHeldRejectionZeroDelayIsImmediate(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: 0})
	require.NoError(t, p.Acquire(context.Background(), nil))
	start := time.Now()
	require.ErrorIs(t, p.Acquire(context.Background(), nil), ErrQueueFull)
	// Not a speed assertion: "at once" against an hour-long anything.
	assert.Less(t, time.Since(start), time.Minute)
	assert.Equal(t, uint64(0), p.Stats().HeldTotal)
	p.Release(nil)
}

func TestHoldBound(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: time.Hour, MaxHeld: 3})
	require.NoError(t, p.Acquire(context.Background(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- p.Acquire(ctx, nil) }()
	}
	held(t, p, 3)

	// Past the bound the answer is immediate, not after the hour.
	done := make(chan error, 1)
	go func() { done <- p.Acquire(context.Background(), nil) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrQueueFull)
	case <-time.After(waitFor):
		t.Fatal("a caller past the hold bound was held")
	}
	st := p.Stats()
	assert.Equal(t, 3, st.Held)
	assert.Equal(t, uint64(1), st.Rejected)
	assert.Equal(t, uint64(0), st.HeldTotal)

	cancel()
	for range 3 {
		assert.ErrorIs(t, <-errs, context.Canceled, "a held caller leaves when its context ends")
	}
	st = p.Stats()
	assert.Equal(t, 0, st.Held)
	assert.Equal(t, uint64(3), st.HeldTotal)
	assert.Equal(t, uint64(1), st.Rejected, "a cancelled hold is not a rejection")
	p.Release(nil)
}

// TestSetMaxHeld: the hold bound changes on a pool in use (edge lowers
// it under a share of max_connections at every reload): the callers held
// already stay held, a caller that finds the new bound reached is refused
// at once and starts a hold-off; 0 sets the default again.
func TestSetMaxHeld(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: time.Hour})
	require.NoError(t, p.Acquire(context.Background(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- p.Acquire(ctx, nil) }()
	}
	held(t, p, 3)

	p.SetMaxHeld(2)
	done := make(chan error, 1)
	go func() { done <- p.Acquire(context.Background(), nil) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrQueueFull)
	case <-time.After(waitFor):
		t.Fatal("a caller past the lowered hold bound was held")
	}
	st := p.Stats()
	assert.Equal(t, 3, st.Held, "held before the bound was lowered: still held")
	assert.Equal(t, 2, st.MaxHeld)
	assert.True(t, st.HoldOff)

	p.SetMaxHeld(0)
	assert.Equal(t, DefaultMaxHeld(1, 0), p.Stats().MaxHeld)
	cancel()
	for range 3 {
		assert.ErrorIs(t, <-errs, context.Canceled)
	}
	p.Release(nil)
}

// TestHoldOffUnderOpenLoop: once the hold bound is reached, callers are
// refused at once for a reject delay; the window is renewed while its
// refusals would fill the bound again, and holding resumes when they
// would not. The pool's clock is the test's, so no step races the window.
func TestHoldOffUnderOpenLoop(t *testing.T) {
	const delay = time.Hour // a real hold never ends by itself here
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: delay, MaxHeld: 2})
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	p.now = clock.Load
	require.NoError(t, p.Acquire(context.Background(), nil))

	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 4)
	for range 2 {
		go func() { errs <- p.Acquire(ctx, nil) }()
	}
	held(t, p, 2)
	assert.False(t, p.Stats().HoldOff)

	// The third finds the bound reached: refused at once, and a window opens.
	refusedAtOnce := func(msg string) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- p.Acquire(context.Background(), nil) }()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, ErrQueueFull, msg)
		case <-time.After(waitFor):
			t.Fatal(msg + ": held")
		}
	}
	refusedAtOnce("past the bound")
	st := p.Stats()
	assert.True(t, st.HoldOff)
	assert.Equal(t, uint64(1), st.HoldOffs)

	// Inside the window nobody is held, even with the held ones gone.
	cancel()
	for range 2 {
		assert.ErrorIs(t, <-errs, context.Canceled)
	}
	held(t, p, 0)
	refusedAtOnce("in the window")
	refusedAtOnce("in the window, again")

	// Two refusals in the window = MaxHeld: held, they would have filled
	// the bound, so the next window starts at once.
	clock.Add(int64(delay))
	refusedAtOnce("the window is renewed")
	st = p.Stats()
	assert.True(t, st.HoldOff)
	assert.Equal(t, uint64(2), st.HoldOffs)

	// No refusal in the renewed window (the renewing caller's own opens it
	// and is not counted in it): under the bound, so the next caller is held.
	clock.Add(int64(delay))
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { errs <- p.Acquire(ctx2, nil) }()
	held(t, p, 1)
	st = p.Stats()
	assert.False(t, st.HoldOff)
	assert.Equal(t, uint64(2), st.HoldOffs)
	cancel2()
	assert.ErrorIs(t, <-errs, context.Canceled)
	p.Release(nil)
}

func TestHoldReleasedOnCancel(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: time.Hour})
	require.NoError(t, p.Acquire(context.Background(), nil))
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- p.Acquire(ctx, nil) }()
	held(t, p, 1)
	cancel()
	select {
	case err := <-got:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(waitFor):
		t.Fatal("a cancelled caller stayed held")
	}
	assert.Equal(t, 0, p.Stats().Held)
	p.Release(nil)
}

// TestHeldNeverTakesASlot: slots freed during a hold go to the queue in
// order, and a held caller is rejected even when a slot is free by then.
func TestHeldNeverTakesASlot(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 2, QueueTimeout: time.Hour, RejectDelay: time.Hour})
	require.NoError(t, p.Acquire(context.Background(), nil))
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- p.Acquire(context.Background(), nil) }()
	queued(t, p, 1)
	go func() { second <- p.Acquire(context.Background(), nil) }()
	queued(t, p, 2)

	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	heldErr := make(chan error, 1)
	go func() { heldErr <- p.Acquire(hctx, nil) }()
	held(t, p, 1)

	p.Release(nil)
	require.NoError(t, <-first, "the oldest waiter gets the slot")
	p.Release(nil)
	require.NoError(t, <-second)
	p.Release(nil)
	assert.Equal(t, 0, p.Stats().InFlight, "the free slot stays free: the held caller does not take it")
	assert.Equal(t, 1, p.Stats().Held)

	hcancel()
	assert.ErrorIs(t, <-heldErr, context.Canceled)
	assert.Equal(t, uint64(3), p.Stats().Admitted)
}

func TestLaneCapLeavesRoomForSiblings(t *testing.T) {
	p := New(Config{Workers: 4, Queue: 4, QueueTimeout: time.Hour, RejectDelay: time.Hour})
	hung, sibling := p.NewLane(3, 3), p.NewLane(3, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 3 {
		require.NoError(t, p.Acquire(ctx, hung))
	}
	// The hung lane is at its cap: its next callers queue though a
	// worker is free.
	hungErrs := make(chan error, 3)
	for range 3 {
		go func() { hungErrs <- p.Acquire(ctx, hung) }()
	}
	queued(t, p, 3)
	assert.Equal(t, 3, p.Stats().InFlight)

	// Past its queue share it is held, like a full queue.
	p2 := make(chan error, 1)
	go func() { p2 <- p.Acquire(ctx, hung) }()
	held(t, p, 1)

	// The sibling gets the free worker at once, past the hung waiters.
	require.NoError(t, p.Acquire(ctx, sibling))
	// Its next caller queues in the place the hung lane left...
	sib := make(chan error, 1)
	go func() { sib <- p.Acquire(ctx, sibling) }()
	queued(t, p, 4)
	// ... and the sibling's release goes to it, skipping the older
	// waiters of the lane at its cap.
	p.Release(sibling)
	require.NoError(t, <-sib)
	assert.Equal(t, LaneStats{MaxInFlight: 3, MaxQueued: 3, InFlight: 1}, sibling.Stats())

	// A release of the hung lane goes to its oldest waiter.
	p.Release(hung)
	require.NoError(t, <-hungErrs)
	assert.Equal(t, LaneStats{MaxInFlight: 3, MaxQueued: 3, InFlight: 3, Queued: 2}, hung.Stats())

	cancel()
	for range 2 {
		assert.ErrorIs(t, <-hungErrs, context.Canceled)
	}
	assert.ErrorIs(t, <-p2, context.Canceled)
	p.Release(sibling)
	for range 3 {
		p.Release(hung)
	}
	assert.Equal(t, 0, p.Stats().InFlight)
	assert.Equal(t, 0, p.Stats().Queued)
}

func TestLaneFIFOWithinLane(t *testing.T) {
	const n = 10
	p := New(Config{Workers: 2, Queue: n, QueueTimeout: time.Hour})
	l := p.NewLane(1, n)
	require.NoError(t, p.Acquire(context.Background(), l))
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			if !assert.NoError(t, p.Acquire(context.Background(), l)) {
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.Release(l)
		})
		queued(t, p, i+1)
	}
	p.Release(l)
	wg.Wait()
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, order)
}

func TestLaneMisuse(t *testing.T) {
	p := New(Config{Workers: 4, Queue: 2})
	assert.Panics(t, func() { p.NewLane(0, 1) })
	assert.Panics(t, func() { p.NewLane(5, 1) })
	assert.Panics(t, func() { p.NewLane(4, 3) })
}

// TestLaneStorm races lanes, hand-offs, holds, timeouts and cancellations:
// no lane ever exceeds its cap, the pool never exceeds its workers, and
// afterwards every slot is free and the counts add up.
func TestLaneStorm(t *testing.T) {
	const (
		workers    = 6
		goroutines = 48
		rounds     = 200
	)
	p := New(Config{Workers: workers, Queue: 8, QueueTimeout: 300 * time.Microsecond, RejectDelay: 50 * time.Microsecond, MaxHeld: 8})
	lanes := []*Lane{p.NewLane(4, 6), p.NewLane(2, 2), p.NewLane(5, 6), nil}
	var (
		inUse, maxInUse [4]atomic.Int64
		total, maxTotal atomic.Int64
		ok, cancelled   atomic.Uint64
		full            [4]atomic.Uint64 // ErrQueueFull (ErrShareFull included) by lane
		wg              sync.WaitGroup
	)
	bump := func(v *atomic.Int64, n int64) {
		for {
			m := v.Load()
			if n <= m || v.CompareAndSwap(m, n) {
				return
			}
		}
	}
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for range rounds {
				li := rng.IntN(len(lanes))
				l := lanes[li]
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(4) == 0 {
					go cancel()
				}
				err := p.Acquire(ctx, l)
				cancel()
				switch {
				case err == nil:
					bump(&maxInUse[li], inUse[li].Add(1))
					bump(&maxTotal, total.Add(1))
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
					}
					total.Add(-1)
					inUse[li].Add(-1)
					ok.Add(1)
					p.Release(l)
				case errors.Is(err, context.Canceled):
					cancelled.Add(1)
				case errors.Is(err, ErrQueueFull):
					full[li].Add(1)
				case errors.Is(err, ErrQueueTimeout):
				default:
					t.Errorf("unexpected error %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	assert.LessOrEqual(t, maxTotal.Load(), int64(workers))
	for i, l := range lanes[:3] {
		assert.LessOrEqual(t, maxInUse[i].Load(), l.max, "lane %d over its cap", i)
		assert.Equal(t, LaneStats{MaxInFlight: int(l.max), MaxQueued: l.maxQueued, Rejected: full[i].Load()}, l.Stats(), "lane %d: its caps, nothing left in use, and its rejections counted", i)
	}
	st := p.Stats()
	assert.Equal(t, 0, st.InFlight, "slot leaked")
	assert.Equal(t, 0, st.Queued)
	assert.Equal(t, 0, st.Held)
	assert.Equal(t, ok.Load(), st.Admitted)
	assert.Equal(t, uint64(goroutines*rounds), st.Admitted+st.Rejected+st.TimedOut+cancelled.Load())
	t.Logf("admitted %d rejected %d (held %d) timed out %d cancelled %d",
		st.Admitted, st.Rejected, st.HeldTotal, st.TimedOut, cancelled.Load())
	for range workers {
		require.NoError(t, p.Acquire(context.Background(), nil), "every slot is free again")
	}
	for range workers {
		p.Release(nil)
	}
}

func TestShareFullIsQueueFull(t *testing.T) {
	p := New(Config{Workers: 2, Queue: 4, QueueTimeout: time.Hour})
	l := p.NewLane(1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, p.Acquire(ctx, l))
	waiting := make(chan error, 1)
	go func() { waiting <- p.Acquire(ctx, l) }()
	queued(t, p, 1)

	err := p.Acquire(ctx, l)
	require.ErrorIs(t, err, ErrShareFull, "the lane's share of the queue is full, the pool's queue is not")
	assert.ErrorIs(t, err, ErrQueueFull)
	assert.Equal(t, uint64(1), l.Stats().Rejected)
	require.NoError(t, p.Acquire(ctx, nil), "another lane still finds a worker")

	cancel()
	assert.ErrorIs(t, <-waiting, context.Canceled)
	p.Release(nil)
	p.Release(l)
	assert.Equal(t, 0, p.Stats().InFlight)
}

// testHolder is a Holder that records its calls: it takes a hold on
// itself (can) and returns at once, after cancelling the caller's context
// when leave is set (the client left); or it declines (!can), and the pool
// must then call WaitStarts and wait on its own timer.
type testHolder struct {
	can    bool
	leave  context.CancelFunc
	holds  []time.Duration
	starts int
	ends   int
}

func (h *testHolder) WaitStarts() { h.starts++ }
func (h *testHolder) WaitEnds()   { h.ends++ }

func (h *testHolder) Hold(d time.Duration) bool {
	h.holds = append(h.holds, d)
	if !h.can {
		return false
	}
	if h.leave != nil {
		h.leave()
	}
	return true // waited, as far as the pool can tell
}

func TestHolderWaitsOutTheHold(t *testing.T) {
	const delay = time.Second
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: delay})
	require.NoError(t, p.Acquire(context.Background(), nil))
	defer p.Release(nil)

	// A Holder that can: it is given the delay (with its random part,
	// never less, under a quarter more), and what it waited is the hold.
	h := &testHolder{can: true}
	start := time.Now()
	require.ErrorIs(t, p.AcquireNotify(context.Background(), nil, h), ErrQueueFull)
	took := time.Since(start)
	require.Len(t, h.holds, 1)
	assert.GreaterOrEqual(t, h.holds[0], delay)
	assert.Less(t, h.holds[0], delay+delay/holdJitter)
	assert.Zero(t, h.starts, "a Holder that waits is not told WaitStarts")
	assert.Equal(t, 1, h.ends, "a Holder's hold is a wait: its end is told")
	assert.Less(t, took, delay, "the pool adds no wait of its own to the Holder's")

	// One that cannot: told WaitStarts, then the pool's own timer.
	h = &testHolder{}
	start = time.Now()
	require.ErrorIs(t, p.AcquireNotify(context.Background(), nil, h), ErrQueueFull)
	assert.GreaterOrEqual(t, time.Since(start), delay, "the pool waited instead")
	assert.Equal(t, 1, h.starts)
	assert.Equal(t, 1, h.ends)

	// One whose client leaves during the hold: the caller's context error.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h = &testHolder{can: true, leave: cancel}
	require.ErrorIs(t, p.AcquireNotify(ctx, nil, h), context.Canceled)

	st := p.Stats()
	assert.Equal(t, uint64(3), st.HeldTotal)
	assert.Equal(t, uint64(2), st.Rejected, "a client that left is not rejected")
	assert.Equal(t, 0, st.Held)
}

// A lane at its cap while workers are free is refused for its share, not
// for a full environment, also when the pool has no queue (or its queue is
// taken by other lanes at their caps): the 503 must not say that every
// worker is busy.
func TestShareFullWithWorkersFree(t *testing.T) {
	p := New(Config{Workers: 4, Queue: 0})
	l := p.NewLane(1, 0)
	require.NoError(t, p.Acquire(context.Background(), l))
	err := p.Acquire(context.Background(), l)
	require.ErrorIs(t, err, ErrShareFull, "three workers are free: the lane's share is full, not the pool")
	assert.ErrorIs(t, err, ErrQueueFull)
	assert.Equal(t, uint64(1), l.Stats().Rejected)
	require.NoError(t, p.Acquire(context.Background(), nil), "the pool still admits")

	// A queue taken by another lane's waiter, with workers free.
	q := New(Config{Workers: 4, Queue: 1, QueueTimeout: time.Hour})
	a, b := q.NewLane(1, 1), q.NewLane(1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, q.Acquire(ctx, a))
	require.NoError(t, q.Acquire(ctx, b))
	waiting := make(chan error, 1)
	go func() { waiting <- q.Acquire(ctx, a) }()
	queued(t, q, 1)
	require.ErrorIs(t, q.Acquire(ctx, b), ErrShareFull, "b is refused for its cap: two workers are free")
	cancel()
	assert.ErrorIs(t, <-waiting, context.Canceled)
	q.Release(a)
	q.Release(b)
	p.Release(l)
	p.Release(nil)
}

// retiringHolder is a Holder during whose hold the pool is retired.
type retiringHolder struct{ p *Pool }

func (h retiringHolder) WaitStarts() {}
func (h retiringHolder) WaitEnds()   {}

func (h retiringHolder) Hold(time.Duration) bool {
	h.p.Retire()
	return true
}

// A caller held by its own Holder when the pool is retired gets
// ErrRetired at the hold's end, not the rejection it was held for.
func TestHolderOfARetiredPool(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 0, RejectDelay: time.Hour})
	require.NoError(t, p.Acquire(context.Background(), nil))
	require.ErrorIs(t, p.AcquireNotify(context.Background(), nil, retiringHolder{p}), ErrRetired)
	st := p.Stats()
	assert.Zero(t, st.Rejected, "retired, not rejected")
	assert.Zero(t, st.Held)
	p.Release(nil)
}
