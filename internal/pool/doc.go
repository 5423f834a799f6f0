// Package pool admits requests into one environment: a fixed number of
// worker slots and a bounded FIFO queue of requests waiting for one.
//
// Each environment owns exactly one Pool, so an environment at its limit
// queues and rejects only its own requests. A Pool is safe for concurrent
// use; the uncontended Acquire/Release pair is a compare-and-swap each and
// allocates nothing.
//
// The package must never block a caller longer than its queue timeout or
// its context allows, never let a later caller take a slot ahead of an
// earlier waiter, never lose a slot (every successful Acquire is matched by
// exactly one Release), and never know about HTTP: turning ErrQueueFull and
// ErrQueueTimeout into a 503 is the caller's job.
package pool
