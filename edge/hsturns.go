package edge

import (
	"os"
	"runtime"
)

// handshakeTurns puts the CPU-heavy part of TLS handshakes behind the
// requests of established connections, as HAProxy runs its handshakes in
// a lower scheduling class (TL_HEAVY). That part (from the ClientHello to
// the server's first flight: the key exchange and the signature, most of
// the ~0.5–0.6 ms of CPU a new connection costs, bench/ "newconn") runs
// in turns; between two turns the network poller runs,
// and what it made ready runs first. Without turns, a flood of new
// connections to one environment (an open-loop client opening a
// connection for every request it cannot place, bench/README "Isolation
// against an open-loop flood") queued handshake after handshake ahead of
// every other environment's requests: Go's scheduler looks at the poller
// only when nothing else is runnable.
//
// The turns are bytes in a pipe, one per P: taking one is a read of the
// pipe, giving it back a write. A handshake that finds none waits in the
// poller for the pipe, so it is woken by a poll, in the same batch as the
// sockets that became ready meanwhile, and yields before it goes on
// (runtime.Gosched) so that they run first. With turns to spare, a
// handshake takes one at once: an idle server pays a read, a write and a
// yield per handshake. Waiters line up on the pipe's own read lock
// (os.File serializes its reads), so one of them at a time waits in the
// poller.
type handshakeTurns struct {
	r, w *os.File
}

// newHandshakeTurns returns n turns (n ≥ 1).
func newHandshakeTurns(n int) (*handshakeTurns, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(make([]byte, max(n, 1))); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	return &handshakeTurns{r: r, w: w}, nil
}

// take waits for a turn. It fails only once the turns are closed.
func (t *handshakeTurns) take() error {
	var b [1]byte
	if _, err := t.r.Read(b[:]); err != nil {
		return err
	}
	runtime.Gosched()
	return nil
}

// give returns a turn.
func (t *handshakeTurns) give() {
	_, _ = t.w.Write([]byte{0})
}

// close ends the turns: a waiting take fails, and so does every later one.
func (t *handshakeTurns) close() {
	t.r.Close()
	t.w.Close()
}
