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
	p := New(3, 0, time.Second)
	ctx := context.Background()
	for range 3 {
		require.NoError(t, p.Acquire(ctx))
	}
	assert.ErrorIs(t, p.Acquire(ctx), ErrQueueFull, "queue 0 must not wait")
	assert.Equal(t, Stats{Workers: 3, QueueCap: 0, InFlight: 3, Admitted: 3, Rejected: 1}, p.Stats())
	for range 3 {
		p.Release()
	}
	assert.Equal(t, 0, p.Stats().InFlight)
	require.NoError(t, p.Acquire(ctx), "released slots are free again")
	p.Release()
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	p := New(1, 2, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, p.Acquire(ctx))

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() { errs <- p.Acquire(ctx) })
	}
	queued(t, p, 2)

	start := time.Now()
	err := p.Acquire(context.Background())
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
	p.Release()
	assert.Equal(t, Stats{Workers: 1, QueueCap: 2, Admitted: 1, Rejected: 1}, p.Stats())
}

func TestFIFO(t *testing.T) {
	const n = 20
	p := New(1, n, time.Hour)
	ctx := context.Background()
	require.NoError(t, p.Acquire(ctx))

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			if !assert.NoError(t, p.Acquire(ctx)) {
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			p.Release()
		})
		queued(t, p, i+1) // i is queued before i+1 starts
	}
	p.Release()
	wg.Wait()

	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, order)
	assert.Equal(t, Stats{Workers: 1, QueueCap: n, Admitted: n + 1}, p.Stats())
}

func TestNoBarging(t *testing.T) {
	p := New(1, 1, time.Hour)
	require.NoError(t, p.Acquire(context.Background()))

	got := make(chan error, 1)
	go func() { got <- p.Acquire(context.Background()) }()
	queued(t, p, 1)

	p.Release()
	// The slot went to the waiter, not back to the pool: a newcomer
	// finds it taken even though the waiter may not have run yet.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, p.Acquire(ctx), context.Canceled)

	require.NoError(t, <-got)
	assert.Equal(t, 1, p.Stats().InFlight)
	p.Release()
	assert.Equal(t, 0, p.Stats().InFlight)
}

func TestQueueTimeout(t *testing.T) {
	p := New(1, 4, 20*time.Millisecond)
	require.NoError(t, p.Acquire(context.Background()))

	err := p.Acquire(context.Background())
	require.ErrorIs(t, err, ErrQueueTimeout)
	st := p.Stats()
	assert.Equal(t, uint64(1), st.TimedOut)
	assert.Equal(t, 0, st.Queued, "a timed-out waiter leaves the queue")
	assert.Equal(t, 1, st.InFlight)

	p.Release()
	require.NoError(t, p.Acquire(context.Background()))
	p.Release()
}

func TestContextDone(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		p := New(1, 4, 0) // 0: no queue timeout, only the context bounds it
		require.NoError(t, p.Acquire(context.Background()))
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() { got <- p.Acquire(ctx) }()
		queued(t, p, 1)
		cancel()
		assert.ErrorIs(t, <-got, context.Canceled)
		st := p.Stats()
		assert.Equal(t, 0, st.Queued)
		assert.Equal(t, uint64(0), st.TimedOut, "cancellation is not a queue timeout")
		p.Release()
		assert.Equal(t, 0, p.Stats().InFlight)
	})
	t.Run("deadline", func(t *testing.T) {
		p := New(1, 4, time.Hour)
		require.NoError(t, p.Acquire(context.Background()))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, p.Acquire(ctx), context.DeadlineExceeded)
		p.Release()
	})
	t.Run("cancelled waiter in the middle keeps order", func(t *testing.T) {
		p := New(1, 3, time.Hour)
		require.NoError(t, p.Acquire(context.Background()))
		ctx, cancel := context.WithCancel(context.Background())
		first, middle, last := make(chan error, 1), make(chan error, 1), make(chan error, 1)
		go func() { first <- p.Acquire(context.Background()) }()
		queued(t, p, 1)
		go func() { middle <- p.Acquire(ctx) }()
		queued(t, p, 2)
		go func() { last <- p.Acquire(context.Background()) }()
		queued(t, p, 3)

		cancel()
		assert.ErrorIs(t, <-middle, context.Canceled)
		queued(t, p, 2)
		p.Release()
		require.NoError(t, <-first)
		select {
		case <-last:
			t.Fatal("last got a slot while first holds the only one")
		default:
		}
		p.Release()
		require.NoError(t, <-last)
		p.Release()
		assert.Equal(t, Stats{Workers: 1, QueueCap: 3, Admitted: 3}, p.Stats())
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
	p := New(workers, 48, 300*time.Microsecond)
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
				err := p.Acquire(ctx)
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
					p.Release()
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
		require.NoError(t, p.Acquire(context.Background()), "every slot is free again")
	}
	for range workers {
		p.Release()
	}
}

func TestMisuse(t *testing.T) {
	assert.Panics(t, func() { New(0, 1, time.Second) })
	assert.Panics(t, func() { New(1, -1, time.Second) })
	assert.PanicsWithValue(t, "pool: Release without a matching Acquire", func() { New(1, 0, 0).Release() })
}

func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		p := New(64, 256, time.Second)
		b.ReportAllocs()
		for b.Loop() {
			if err := p.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
			p.Release()
		}
	})
	// Enough workers for every goroutine: the uncontended path under
	// parallel load, which is what a healthy environment sees.
	b.Run("parallel", func(b *testing.B) {
		p := New(1<<16, 256, time.Second)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Acquire(ctx); err != nil {
					b.Error(err)
					return
				}
				p.Release()
			}
		})
	})
	// Fewer workers than goroutines: callers queue and slots are handed
	// over, the path an environment at its limit takes.
	b.Run("parallel-saturated", func(b *testing.B) {
		p := New(2, 1<<16, time.Minute)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.Acquire(ctx); err != nil {
					b.Error(err)
					return
				}
				p.Release()
			}
		})
	})
}
