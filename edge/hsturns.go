package edge

import (
	"bytes"
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
// the ~0.5–0.6 ms of CPU a new connection costs, bench/ "newconn"; after a
// HelloRetryRequest, from the second ClientHello: helloPhase) runs
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

// helloPhase is where a handshake is for its turns: a server's first
// write may be a HelloRetryRequest (TLS 1.3), asking the client for a key
// share of another group. The key exchange and the signature then come
// after the client's second ClientHello, and take a turn of their own
// once it has been read whole, as the first ClientHello's do.
type helloPhase uint8

const (
	helloFirst   helloPhase = iota // until the server's first write
	helloRetried                   // it was a HelloRetryRequest: a turn again after the second ClientHello
	helloOver                      // the turns are done with: nothing more to follow
)

// retakeTurn takes a turn for the handshake's work on the client's
// second ClientHello once the records have brought it whole: after the
// HelloRetryRequest, or with the first ClientHello (a client that sent
// both at once; crypto/tls then reads it from what it has read already).
// It waits until the handshake's deadline, in the virtual host's line.
func (c *helloConn) retakeTurn() error {
	if c.records.messages < 2 {
		return nil
	}
	c.phase = helloOver
	if err := c.turns.take(c.line, c.deadline); err != nil {
		return err
	}
	c.turn = c.turns
	return nil
}

// helloRecords follows the TLS records a client sends in its handshake
// and counts the handshake messages in them that have come whole: its
// ClientHellos. A record's header says its length, a handshake message's
// header its own, and a message may span records: only those headers are
// kept, never the payload.
type helloRecords struct {
	hdr      [5]byte // the current record's header
	nhdr     int     // bytes of hdr read
	left     int     // bytes of the current record's payload still to come
	msg      [4]byte // the current handshake message's header
	nmsg     int     // bytes of the current handshake message read, header included
	want     int     // its whole length, once its header is read
	messages int     // handshake messages read whole
}

func (h *helloRecords) feed(p []byte) {
	for len(p) > 0 {
		if h.nhdr < len(h.hdr) {
			n := copy(h.hdr[h.nhdr:], p)
			h.nhdr += n
			p = p[n:]
			if h.nhdr < len(h.hdr) {
				return
			}
			h.left = int(h.hdr[3])<<8 | int(h.hdr[4])
		}
		n := min(len(p), h.left)
		if h.hdr[0] == recordTypeHandshake {
			h.handshakeBytes(p[:n])
		}
		p = p[n:]
		if h.left -= n; h.left == 0 {
			h.nhdr = 0
		}
	}
}

func (h *helloRecords) handshakeBytes(q []byte) {
	for len(q) > 0 {
		if h.nmsg < len(h.msg) {
			k := copy(h.msg[h.nmsg:], q)
			h.nmsg += k
			q = q[k:]
			if h.nmsg < len(h.msg) {
				return
			}
			h.want = len(h.msg) + (int(h.msg[1])<<16 | int(h.msg[2])<<8 | int(h.msg[3]))
		}
		k := min(len(q), h.want-h.nmsg)
		h.nmsg += k
		q = q[k:]
		if h.nmsg == h.want {
			h.messages++
			h.nmsg = 0
		}
	}
}

// TLS record types (RFC 8446 5.1).
const (
	recordTypeChangeCipherSpec = 20
	recordTypeAlert            = 21
	recordTypeHandshake        = 22
)

// helloRetryRandom is the random of a ServerHello that is a
// HelloRetryRequest (RFC 8446 4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// isHelloRetryRequest reports whether a write of crypto/tls's is a
// HelloRetryRequest: a handshake record starting with a ServerHello
// (record header, message type and length, version, then the random).
func isHelloRetryRequest(p []byte) bool {
	return len(p) >= 43 && p[0] == recordTypeHandshake && p[5] == 2 && bytes.Equal(p[11:43], helloRetryRandom)
}

// isChangeCipherSpec reports whether a write is a ChangeCipherSpec
// record alone: the one TLS 1.3 servers send after a HelloRetryRequest
// for middleboxes (RFC 8446 D.4).
func isChangeCipherSpec(p []byte) bool {
	return len(p) == 6 && p[0] == recordTypeChangeCipherSpec
}
