package upstream

import (
	"slices"
	"time"
)

// Bounds of the reaper's period, which is half the idle timeout: often
// enough that a connection outlives IdleTimeout by at most half of it,
// and that a connection the server closed leaves CLOSE_WAIT within two
// periods (a connection is peeked once idle for a whole period);
// rarely enough that a tiny IdleTimeout costs no busy loop.
const (
	minReapEvery = 10 * time.Millisecond
	maxReapEvery = time.Second
)

// reapEvery is the reaper's period for an idle timeout.
func reapEvery(idleTimeout time.Duration) time.Duration {
	return min(max(idleTimeout/2, minReapEvery), maxReapEvery)
}

// reapLoop closes, every period, the idle connections that the hot path
// will not take soon: the idle stack is LIFO, so after a burst the
// connections at its bottom would otherwise wait forever (and sit in
// CLOSE_WAIT once the server closed them). It belongs to u: Close (or
// Retire) stops it, and Close waits for it.
func (u *Upstream) reapLoop(every time.Duration) {
	defer u.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-u.ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range u.nodes {
			n.reap(every)
		}
	}
}

// reap closes n's idle connections that have waited longer than the idle
// timeout, and those idle for cold or longer that the server has closed
// (one non-blocking peek each) or whose node certificate has expired
// (conn.expires). Connections used within cold are the hot
// path's and are left alone.
//
// The checks run outside n.mu, so that a request never waits for them:
// the cold connections leave the pool meanwhile (a request that needs
// one more connection dials) and the live ones go back to its bottom,
// where they were.
func (n *Node) reap(cold time.Duration) {
	now := nanotime()
	n.mu.Lock()
	// putIdle appends with the current time, so idleAt grows from the
	// bottom of the stack to its top (up to the race between two putIdle
	// calls, which only delays a connection to the next round): the cold
	// connections are a prefix.
	k := 0
	for k < len(n.idle) && now-n.idle[k].idleAt >= int64(cold) {
		k++
	}
	if k == 0 {
		n.mu.Unlock()
		return
	}
	taken := append(n.reapBuf[:0], n.idle[:k]...)
	rest := copy(n.idle, n.idle[k:])
	clear(n.idle[rest:])
	n.idle = n.idle[:rest]
	n.mu.Unlock()

	keep := taken[:0]
	for _, c := range taken {
		if now-c.idleAt > int64(n.idleTimeout) || c.expired(now) || !c.alive() {
			c.close()
			continue
		}
		keep = append(keep, c)
	}
	if len(keep) > 0 {
		n.mu.Lock()
		room := n.maxIdle - len(n.idle)
		if n.closed || n.up.closed.Load() {
			room = 0
		}
		// The pool filled up meanwhile: the oldest go.
		if drop := len(keep) - max(room, 0); drop > 0 {
			for _, c := range keep[:drop] {
				c.close()
			}
			keep = keep[drop:]
		}
		n.idle = slices.Insert(n.idle, 0, keep...)
		n.mu.Unlock()
	}
	clear(taken)
	n.reapBuf = taken[:0]
}
