package edge

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"
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
// yield per handshake.
//
// One waiter at a time reads the pipe. The others wait in a line per
// virtual host, and the lines take the pipe in rotation: a flood of
// handshakes to one virtual host delays another's new connections by one
// handshake per flooded host, not by the flood's whole backlog.
type handshakeTurns struct {
	r, w *os.File

	mu     sync.Mutex
	atPipe bool                       // a waiter reads the pipe, or is about to
	lines  map[string][]chan struct{} // the waiters of each virtual host, oldest first
	ring   []string                   // the hosts with waiters, in the order they take the pipe
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
	return &handshakeTurns{r: r, w: w, lines: make(map[string][]chan struct{})}, nil
}

// take waits for a turn for a handshake to virtual host host, until
// deadline (zero: no limit), the handshake's own: a handshake still
// waiting then is one its client has likely given up on, and the turn's
// key exchange and signature would be spent on nobody (under a flood,
// every turn on a stale handshake). It fails at the deadline, leaving its
// line, and once the turns are closed: the pipe's read fails, and each
// waiter in turn is handed the pipe and fails on it too.
func (t *handshakeTurns) take(host string, deadline time.Time) error {
	t.mu.Lock()
	if t.atPipe {
		ch := make(chan struct{})
		line := t.lines[host]
		if len(line) == 0 {
			t.ring = append(t.ring, host)
		}
		t.lines[host] = append(line, ch)
		t.mu.Unlock()
		if err := t.waitInLine(host, ch, deadline); err != nil {
			return err
		}
	} else {
		t.atPipe = true
		t.mu.Unlock()
	}
	// One waiter reads the pipe at a time: the deadline is its own.
	_ = t.r.SetReadDeadline(deadline)
	var b [1]byte
	_, err := t.r.Read(b[:])
	t.passPipe()
	if err != nil {
		return fmt.Errorf("no handshake turn: %w", err)
	}
	runtime.Gosched()
	return nil
}

// waitInLine waits until ch, the waiter's place in host's line, is handed
// the pipe, or deadline passes: then the waiter leaves the line, unless
// passPipe handed it the pipe meanwhile.
func (t *handshakeTurns) waitInLine(host string, ch chan struct{}, deadline time.Time) error {
	if deadline.IsZero() {
		<-ch
		return nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ch:
		return nil
	case <-timer.C:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	line := t.lines[host]
	i := slices.Index(line, ch)
	if i < 0 {
		return nil // passPipe took it out of the line: the pipe is this waiter's
	}
	if line = slices.Delete(line, i, i+1); len(line) > 0 {
		t.lines[host] = line
	} else {
		delete(t.lines, host)
		t.ring = slices.DeleteFunc(t.ring, func(h string) bool { return h == host })
	}
	return fmt.Errorf("no handshake turn: %w", os.ErrDeadlineExceeded)
}

// passPipe hands the pipe to the oldest waiter of the next host in the
// rotation; that host goes to the back of the rotation if it has more.
func (t *handshakeTurns) passPipe() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ring) == 0 {
		t.atPipe = false
		return
	}
	host := t.ring[0]
	t.ring = t.ring[1:]
	line := t.lines[host]
	next := line[0]
	line[0] = nil
	if line = line[1:]; len(line) == 0 {
		delete(t.lines, host)
	} else {
		t.lines[host] = line
		t.ring = append(t.ring, host)
	}
	close(next)
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
