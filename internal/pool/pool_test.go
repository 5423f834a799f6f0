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

const waitFor = 5 * time.Second

// queued waits until p has n callers queued.
func queued(t *testing.T, p *Pool, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats().Queued == n },
		waitFor, time.Millisecond, "want %d queued", n)
}

func TestAcquireFreeSlots(t *testing.T) {
	p := New(Config{Workers: 3, Queue: 0, QueueTimeout: time.Second})
	ctx := context.Background()
	for range 3 {
		require.NoError(t, p.Acquire(ctx, nil))
	}
	assert.ErrorIs(t, p.Acquire(ctx, nil), ErrQueueFull, "queue 0 must not wait")
	assert.Equal(t, Stats{Workers: 3, QueueCap: 0, MaxHeld: 1024, InFlight: 3, Admitted: 3, Rejected: 1}, p.Stats())
	for range 3 {
		p.Release(nil)
	}
	assert.Equal(t, 0, p.Stats().InFlight)
	require.NoError(t, p.Acquire(ctx, nil), "released slots are free again")
	p.Release(nil)
}

// waitCount is a WaitNotifier that counts its calls.
type waitCount struct{ n, ends atomic.Int32 }

func (c *waitCount) WaitStarts() { c.n.Add(1) }
func (c *waitCount) WaitEnds()   { c.ends.Add(1) }

// told waits until c was told: the pool calls WaitStarts just after it
// counts the caller as queued or held, so the count can lag the Stats.
func told(t *testing.T, c *waitCount, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return c.n.Load() > 0 }, waitFor, time.Millisecond, "%s: told", what)
}

// TestAcquireNotify: AcquireNotify tells its notifier when the caller is
// about to wait, queued or held, and only then: not when it is admitted,
// on the fast path or on the slow one (a free slot while another lane's
// waiter is queued), nor when it is refused at once; and it tells the
// wait's end once, when the wait is over and only then.
func TestAcquireNotify(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := New(Config{Workers: 2, Queue: 1, QueueTimeout: time.Hour, RejectDelay: time.Hour})
	capped := p.NewLane(1, 1)
	var c waitCount
	require.NoError(t, p.AcquireNotify(ctx, capped, &c))
	assert.Equal(t, int32(0), c.n.Load(), "admitted on the fast path")
	assert.Equal(t, int32(0), c.ends.Load(), "admitted on the fast path: no wait ended")

	queuedErr := make(chan error, 1)
	var cq waitCount
	go func() { queuedErr <- p.AcquireNotify(ctx, capped, &cq) }()
	queued(t, p, 1)
	told(t, &cq, "queued")

	require.NoError(t, p.AcquireNotify(ctx, nil, &c), "a free slot, its lane under no cap")
	assert.Equal(t, int32(0), c.n.Load(), "admitted on the slow path (a waiter queued): not told")

	heldErr := make(chan error, 1)
	var ch waitCount
	hctx, hcancel := context.WithCancel(ctx)
	go func() { heldErr <- p.AcquireNotify(hctx, nil, &ch) }()
	held(t, p, 1)
	told(t, &ch, "held")
	assert.Equal(t, int32(0), ch.ends.Load(), "held: its wait has not ended")
	hcancel()
	assert.ErrorIs(t, <-heldErr, context.Canceled)
	assert.Equal(t, int32(1), ch.n.Load(), "held: told once")
	assert.Equal(t, int32(1), ch.ends.Load(), "held: its end told once")

	assert.Equal(t, int32(0), cq.ends.Load(), "queued: its wait has not ended")
	p.Release(capped)
	require.NoError(t, <-queuedErr, "the capped lane's slot goes to its waiter")
	assert.Equal(t, int32(1), cq.n.Load(), "queued: told once")
	assert.Equal(t, int32(1), cq.ends.Load(), "queued: its end told once")
	p.Release(capped)
	p.Release(nil)
	assert.Equal(t, 0, p.Stats().InFlight)

	now := New(Config{Workers: 1, Queue: 0, RejectDelay: 0})
	require.NoError(t, now.Acquire(ctx, nil))
	assert.ErrorIs(t, now.AcquireNotify(ctx, nil, &c), ErrQueueFull)
	assert.Equal(t, int32(0), c.n.Load(), "refused at once: not told")
	assert.Equal(t, int32(0), c.ends.Load(), "never waited: no end told")
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 2, QueueTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, p.Acquire(ctx, nil))

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() { errs <- p.Acquire(ctx, nil) })
	}
	queued(t, p, 2)

	start := time.Now()
	err := p.Acquire(context.Background(), nil)
	require.ErrorIs(t, err, ErrQueueFull)
	// Not a performance assertion: "at once" means it did not wait for the
	// hour-long queue timeout; a minute leaves any loaded machine room.
	assert.Less(t, time.Since(start), time.Minute)
	st := p.Stats()
	assert.Equal(t, uint64(1), st.Rejected)
	assert.Equal(t, 2, st.Queued)

	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, context.Canceled)
	}
	p.Release(nil)
	assert.Equal(t, Stats{Workers: 1, QueueCap: 2, MaxHeld: 1024, Admitted: 1, Rejected: 1}, p.Stats())
}

func TestFIFO(t *testing.T) {
	const n = 20
	p := New(Config{Workers: 1, Queue: n, QueueTimeout: time.Hour})
	ctx := context.Background()
	require.NoError(t, p.Acquire(ctx, nil))

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			if !assert.NoError(t, p.Acquire(ctx, nil)) {
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.Release(nil)
		})
		queued(t, p, i+1) // i is queued before i+1 starts
	}
	p.Release(nil)
	wg.Wait()

	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, order)
	assert.Equal(t, Stats{Workers: 1, QueueCap: n, MaxHeld: 1024, Admitted: n + 1}, p.Stats())
}

func TestNoBarging(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 1, QueueTimeout: time.Hour})
	require.NoError(t, p.Acquire(context.Background(), nil))

	got := make(chan error, 1)
	go func() { got <- p.Acquire(context.Background(), nil) }()
	queued(t, p, 1)

	p.Release(nil)
	// The slot went to the waiter, not back to the pool: a newcomer
	// finds it taken even though the waiter may not have run yet.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, p.Acquire(ctx, nil), context.Canceled)

	require.NoError(t, <-got)
	assert.Equal(t, 1, p.Stats().InFlight)
	p.Release(nil)
	assert.Equal(t, 0, p.Stats().InFlight)
}

func TestQueueTimeout(t *testing.T) {
	const timeout = 20 * time.Millisecond
	p := New(Config{Workers: 1, Queue: 4, QueueTimeout: timeout})
	require.NoError(t, p.Acquire(context.Background(), nil))

	start := time.Now()
	err := p.Acquire(context.Background(), nil)
	require.ErrorIs(t, err, ErrQueueTimeout)
	assert.GreaterOrEqual(t, time.Since(start), timeout-timeout/timeoutJitter, "timed out before its limit")
	st := p.Stats()
	assert.Equal(t, uint64(1), st.TimedOut)
	assert.Equal(t, 0, st.Queued, "a timed-out waiter leaves the queue")
	assert.Equal(t, 1, st.InFlight)

	p.Release(nil)
	require.NoError(t, p.Acquire(context.Background(), nil))
	p.Release(nil)
}

// TestQueueLimitSpreadsWithinTheTimeout: a caller's limit in the queue is
// the queue timeout less at most an eighth of it, never more, drawn per
// caller, so that callers queued together time out apart.
func TestQueueLimitSpreadsWithinTheTimeout(t *testing.T) {
	const timeout = time.Second
	seen := map[time.Duration]bool{}
	lo, hi := timeout, time.Duration(0)
	for range 1000 {
		d := queueLimit(timeout)
		require.LessOrEqual(t, d, timeout, "never past the queue timeout")
		require.Greater(t, d, timeout-timeout/timeoutJitter, "at most an eighth less")
		seen[d] = true
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.Greater(t, len(seen), 990, "drawn per caller")
	// 1000 uniform draws all within 90% of the range: probability < 1e-40
	assert.Greater(t, hi-lo, timeout/timeoutJitter*9/10, "spread over the eighth")
	assert.Equal(t, time.Duration(7), queueLimit(7), "too short to spread")
}

func TestContextDone(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		p := New(Config{Workers: 1, Queue: 4, QueueTimeout: 0}) // 0: no queue timeout, only the context bounds it
		require.NoError(t, p.Acquire(context.Background(), nil))
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() { got <- p.Acquire(ctx, nil) }()
		queued(t, p, 1)
		cancel()
		assert.ErrorIs(t, <-got, context.Canceled)
		st := p.Stats()
		assert.Equal(t, 0, st.Queued)
		assert.Equal(t, uint64(0), st.TimedOut, "cancellation is not a queue timeout")
		p.Release(nil)
		assert.Equal(t, 0, p.Stats().InFlight)
	})
	t.Run("deadline", func(t *testing.T) {
		p := New(Config{Workers: 1, Queue: 4, QueueTimeout: time.Hour})
		require.NoError(t, p.Acquire(context.Background(), nil))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, p.Acquire(ctx, nil), context.DeadlineExceeded)
		p.Release(nil)
	})
	t.Run("cancelled waiter in the middle keeps order", func(t *testing.T) {
		p := New(Config{Workers: 1, Queue: 3, QueueTimeout: time.Hour})
		require.NoError(t, p.Acquire(context.Background(), nil))
		ctx, cancel := context.WithCancel(context.Background())
		first, middle, last := make(chan error, 1), make(chan error, 1), make(chan error, 1)
		go func() { first <- p.Acquire(context.Background(), nil) }()
		queued(t, p, 1)
		go func() { middle <- p.Acquire(ctx, nil) }()
		queued(t, p, 2)
		go func() { last <- p.Acquire(context.Background(), nil) }()
		queued(t, p, 3)

		cancel()
		assert.ErrorIs(t, <-middle, context.Canceled)
		queued(t, p, 2)
		p.Release(nil)
		require.NoError(t, <-first)
		select {
		case <-last:
			t.Fatal("last got a slot while first holds the only one")
		default:
		}
		p.Release(nil)
		require.NoError(t, <-last)
		p.Release(nil)
		assert.Equal(t, Stats{Workers: 1, QueueCap: 3, MaxHeld: 1024, Admitted: 3}, p.Stats())
	})
}

// TestStorm races hand-offs against timeouts and cancellations: a slot
// handed to a waiter that is giving up must reach someone else, so after
// the storm every slot is free and the counts add up.
func TestStorm(t *testing.T) {
	const (
		workers    = 4
		goroutines = 64
		rounds     = 300
	)
	p := New(Config{Workers: workers, Queue: 48, QueueTimeout: 300 * time.Microsecond})
	var (
		inUse, maxInUse atomic.Int64
		ok, cancelled   atomic.Uint64
		wg              sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range rounds {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(4) == 0 {
					go cancel() // cancel while queued, or about to be
				}
				err := p.Acquire(ctx, nil)
				cancel()
				switch {
				case err == nil:
					n := inUse.Add(1)
					for {
						m := maxInUse.Load()
						if n <= m || maxInUse.CompareAndSwap(m, n) {
							break
						}
					}
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
					}
					inUse.Add(-1)
					ok.Add(1)
					p.Release(nil)
				case errors.Is(err, context.Canceled):
					cancelled.Add(1)
				case errors.Is(err, ErrQueueFull), errors.Is(err, ErrQueueTimeout):
				default:
					t.Errorf("unexpected error %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	st := p.Stats()
	assert.LessOrEqual(t, maxInUse.Load(), int64(workers))
	assert.Equal(t, 0, st.InFlight, "slot leaked")
	assert.Equal(t, 0, st.Queued)
	assert.Equal(t, ok.Load(), st.Admitted)
	assert.Equal(t, uint64(goroutines*rounds), st.Admitted+st.Rejected+st.TimedOut+cancelled.Load())
	t.Logf("admitted %d rejected %d timed out %d cancelled %d",
		st.Admitted, st.Rejected, st.TimedOut, cancelled.Load())

	for range workers {
		require.NoError(t, p.Acquire(context.Background(), nil), "every slot is free again")
	}
	for range workers {
		p.Release(nil)
	}
}

func TestMisuse(t *testing.T) {
	assert.Panics(t, func() { New(Config{Workers: 0, Queue: 1, QueueTimeout: time.Second}) })
	assert.Panics(t, func() { New(Config{Workers: 1, Queue: -1, QueueTimeout: time.Second}) })
	assert.PanicsWithValue(t, "pool: Release without a matching Acquire", func() { New(Config{Workers: 1, Queue: 0, QueueTimeout: 0}).Release(nil) })
}

func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		p := New(Config{Workers: 64, Queue: 256, QueueTimeout: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Acquire(ctx, nil); err != nil {
				b.Fatal(err)
			}
			p.Release(nil)
		}
	})
	// Enough workers for every goroutine: the uncontended path under
	// parallel load, which is what a healthy environment sees.
	b.Run("parallel", func(b *testing.B) {
		p := New(Config{Workers: 1 << 16, Queue: 256, QueueTimeout: time.Second})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Acquire(ctx, nil); err != nil {
					b.Error(err)
					return
				}
				p.Release(nil)
			}
		})
	})
	// Fewer workers than goroutines: callers queue and slots are handed
	// over, the path an environment at its limit takes.
	b.Run("parallel-saturated", func(b *testing.B) {
		p := New(Config{Workers: 2, Queue: 1 << 16, QueueTimeout: time.Minute})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Acquire(ctx, nil); err != nil {
					b.Error(err)
					return
				}
				p.Release(nil)
			}
		})
	})
}

// BenchmarkLane is the fast path of a proxy in an environment with several
// proxies: the pool's CAS plus the lane's counter.
func BenchmarkLane(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		p := New(Config{Workers: 64, Queue: 256, QueueTimeout: time.Second})
		l := p.NewLane(48, 192)
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Acquire(ctx, l); err != nil {
				b.Fatal(err)
			}
			p.Release(l)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		p := New(Config{Workers: 1 << 16, Queue: 256, QueueTimeout: time.Second})
		l := p.NewLane(1<<15, 192)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Acquire(ctx, l); err != nil {
					b.Error(err)
					return
				}
				p.Release(l)
			}
		})
	})
}

// BenchmarkReject is the cost of a rejection at once, and the allocations
// of a held one (its ns/op is the timer's wake-up latency, not CPU).
func BenchmarkReject(b *testing.B) {
	ctx := context.Background()
	for _, delay := range []time.Duration{0, time.Microsecond} {
		name := "instant"
		if delay > 0 {
			name = "held"
		}
		b.Run(name, func(b *testing.B) {
			p := New(Config{Workers: 1, Queue: 0, RejectDelay: delay})
			if err := p.Acquire(ctx, nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Acquire(ctx, nil); err != ErrQueueFull {
					b.Fatal(err)
				}
			}
			p.Release(nil)
		})
	}
}

// BenchmarkHoldTimer is the CPU a hold spends on its timer (taken from the
// pool, armed, stopped, put back) while 1024 other holds are pending: the
// figure a shared timer wheel per environment would have to beat.
func BenchmarkHoldTimer(b *testing.B) {
	pending := make([]*time.Timer, 1024)
	for i := range pending {
		pending[i] = time.NewTimer(time.Hour)
	}
	defer func() {
		for _, t := range pending {
			t.Stop()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		t := timers.Get().(*time.Timer)
		t.Reset(time.Second)
		t.Stop()
		timers.Put(t)
	}
}

// TestHandoffJitter: the pause of a caller handed a slot by the queue is a
// sixteenth of the service time its wait measured, at most
// maxHandoffJitter, and none without a wait.
func TestHandoffJitter(t *testing.T) {
	for _, c := range []struct {
		workers, ahead int
		waited, want   time.Duration
	}{
		{32, 31, 0, 0},
		{1, 0, 16 * time.Millisecond, time.Millisecond},
		{4, 63, 16 * time.Millisecond, 62500 * time.Nanosecond},
		{32, 31, 32 * time.Millisecond, 2 * time.Millisecond},
		{32, 31, 200 * time.Millisecond, maxHandoffJitter}, // 12.5 ms, capped
		{32, 223, time.Hour, maxHandoffJitter},
	} {
		assert.Equal(t, c.want, handoffJitter(c.workers, c.ahead, c.waited), "%+v", c)
	}
}

// TestHandoffJitterCountsTheLanesShare: a caller queued behind its proxy's
// share waited for the share's slots, not the environment's: its pause is
// estimated from them (64 workers would have put it at the cap).
func TestHandoffJitterCountsTheLanesShare(t *testing.T) {
	p := New(Config{Workers: 64, Queue: 8, QueueTimeout: time.Second})
	var none *Lane
	assert.Equal(t, 64, none.slots(p.workers), "no lane: every worker")
	assert.Equal(t, 64, p.NewLane(64, 8).slots(p.workers))
	one := p.NewLane(1, 8)
	assert.Equal(t, 1, one.slots(p.workers))
	waited := 8 * time.Millisecond // three callers ahead and its own turn, 2 ms each
	assert.Equal(t, maxHandoffJitter, handoffJitter(p.workers, 3, waited), "the environment's count")
	assert.Equal(t, waited/4/16, handoffJitter(one.slots(p.workers), 3, waited), "the share's")
}

// TestHandoffPauseBounded: a waiter whose wait says the slots are held for
// an hour still returns promptly after its hand-off (the pause is at most
// maxHandoffJitter; a sixteenth of the hour would outlast waitFor), holding
// the slot it was given, and a newcomer cannot take that slot meanwhile. The pool's clock is the
// test's: the hour passes between the queueing and the hand-off.
func TestHandoffPauseBounded(t *testing.T) {
	p := New(Config{Workers: 1, Queue: 1, QueueTimeout: 2 * time.Hour})
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
	p.now = clock.Load
	require.NoError(t, p.Acquire(context.Background(), nil))

	got := make(chan error, 1)
	go func() { got <- p.Acquire(context.Background(), nil) }()
	queued(t, p, 1)
	clock.Add(int64(time.Hour))
	p.Release(nil)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, p.Acquire(ctx, nil), context.Canceled, "the paused waiter's slot is not free")
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("the waiter handed a slot did not return")
	}
	st := p.Stats()
	assert.Equal(t, 1, st.InFlight)
	assert.Equal(t, 0, st.Queued)
	p.Release(nil)
	assert.Equal(t, 0, p.Stats().InFlight)
}

// TestRetireEndsEveryWait: Retire hands ErrRetired to the callers queued
// (with and without a lane) and held, at once rather than after their
// queue timeout or reject delay, and to a caller that would wait after
// it; the slots in use are released as usual, a free one is still taken,
// and nothing of the waits is left counted (queue, lane, rejections).
func TestRetireEndsEveryWait(t *testing.T) {
	ctx := context.Background()
	p := New(Config{Workers: 2, Queue: 2, QueueTimeout: time.Hour, RejectDelay: time.Hour})
	lane := p.NewLane(1, 1)
	require.NoError(t, p.Acquire(ctx, nil))
	require.NoError(t, p.Acquire(ctx, lane))
	errs := make(chan error, 3)
	go func() { errs <- p.Acquire(ctx, lane) }()
	queued(t, p, 1)
	go func() { errs <- p.Acquire(ctx, nil) }()
	queued(t, p, 2)
	go func() { errs <- p.Acquire(ctx, nil) }()
	held(t, p, 1)

	p.Retire()
	for range 3 {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, ErrRetired)
		case <-time.After(waitFor):
			t.Fatal("a wait outlived Retire")
		}
	}
	assert.ErrorIs(t, p.Acquire(ctx, nil), ErrRetired, "no caller waits in a retired pool")
	st := p.Stats()
	assert.Equal(t, 2, st.InFlight)
	assert.Zero(t, st.Queued)
	assert.Zero(t, st.Held)
	assert.Zero(t, st.Rejected+st.TimedOut, "a retired wait is neither rejected nor timed out")
	assert.Zero(t, lane.Stats().Queued)

	p.Release(lane)
	require.NoError(t, p.Acquire(ctx, lane), "a free slot of a retired pool is still taken")
	p.Release(lane)
	p.Release(nil)
	assert.Zero(t, p.Stats().InFlight)
	p.Retire() // twice: no panic
}
