// Package pool admits requests into one environment: a fixed number of
// worker slots, a bounded FIFO queue of requests waiting for one, and a
// bounded set of held requests that found the queue full.
//
// Each environment owns exactly one Pool, so an environment at its limit
// queues, holds and rejects only its own requests. A caller that finds the
// queue full is held for the pool's reject delay, holding no worker, and
// only then told ErrQueueFull: a client that retries at once (or a load
// test) throttles itself to what the environment serves, instead of
// spending the neighbours' CPU on a storm of instant rejections. Past
// MaxHeld held callers the answer is immediate.
//
// A Lane is one proxy's share of its environment's pool: at most its
// maxInFlight workers and maxQueued places in the queue, so a proxy whose
// backend hangs cannot take every worker and every queue place of the
// environment, and its siblings keep being served.
//
// Retire ends every wait in a pool (its environment was replaced by a
// reload): its waiters get ErrRetired, to try the replacement instead.
//
// A Pool is safe for concurrent use; the uncontended Acquire/Release pair
// is a compare-and-swap each (plus one atomic add on the lane's counter
// when a lane is given) and allocates nothing. Holding allocates nothing
// either: the timer comes from a sync.Pool, and the caller's own goroutine
// waits on it.
//
// The package must never block a caller longer than its queue timeout (or
// reject delay) or its context allows — a caller handed a slot by the queue
// then pauses at most 4 ms more, holding it (see handoffJitter) — never let a later caller take a
// slot ahead of an earlier waiter that may have it (with lanes, barring a
// race of a few instructions with a lane's fast path, after which that
// waiter gets the next slot freed), never lose a slot
// (every successful Acquire is matched by exactly one Release), never let
// a held caller take a slot, and never know about HTTP: turning
// ErrQueueFull and ErrQueueTimeout into a 503 is the caller's job.
package pool
