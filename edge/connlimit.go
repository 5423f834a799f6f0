package edge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Clients' connections open on the public listeners, process-wide, and
// the pauses of their accept loops at max_connections.
var (
	clientConnsOpen atomic.Int64
	_               = metrics.NewGauge(`edged_client_connections`, func() float64 { return float64(clientConnsOpen.Load()) })
	connLimitWaits  = metrics.NewCounter(`edged_client_connections_limit_reached_total`)
)

// connLimitLogEvery is how often the limit is reported at most.
const connLimitLogEvery = 10 * time.Second

// connLimit is [server] max_connections: the clients' connections open at
// once on the public listeners, both counted against one limit. At the
// limit the accept loops stop accepting, as HAProxy does at maxconn: new
// connections wait in the kernel's listen queue, not in edged's memory,
// and edged keeps file descriptors for its nodes, logs and config files.
// A flood of connections that stay open (slow heads, idle keep-alives)
// would otherwise take every descriptor, and every environment would fail
// to reach its nodes. The limit moves with a reload; connections above a
// lowered one are not closed, new ones wait until enough have.
type connLimit struct {
	mu     sync.Mutex
	open   int
	max    int
	wake   chan struct{} // closed when a slot may have come free; nil when nobody waits
	logged time.Time     // when the limit was last reported
}

// setMax changes the limit; n <= 0 takes it from the open-file limit.
func (l *connLimit) setMax(n int) {
	if n <= 0 {
		n = connLimitFromFiles()
	}
	l.mu.Lock()
	l.max = n
	l.wakeLocked()
	l.mu.Unlock()
}

// connLimitFromFiles is the default max_connections: half the open-file
// limit (openFiles, 0 when unknown or unlimited), less 1024 kept for
// everything else, so that every client connection can have a connection
// to a node beside it.
func connLimitFromFiles() int {
	n := openFiles()
	if n == 0 {
		return maxDefaultConns
	}
	return int(max(min((n-1024)/2, maxDefaultConns), 64))
}

// maxDefaultConns bounds the default where the open-file limit is very
// high or unknown.
const maxDefaultConns = 1 << 20

// acquire takes a slot for a connection about to be accepted, waiting
// while the limit is reached; it reports false when stop closes first.
// The slot is the accept loop's until a connection takes it (accepted) or
// the accept fails (unreserve): edged_client_connections counts it only
// then, and an accept loop waiting for its next connection, as each
// public listener's does while edged is idle, is not one.
func (l *connLimit) acquire(stop <-chan struct{}, log func(open, max int)) bool {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return true
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		open, max := l.open, l.max
		report := time.Since(l.logged) >= connLimitLogEvery
		if report {
			l.logged = time.Now()
		}
		l.mu.Unlock()
		connLimitWaits.Inc()
		if report && log != nil {
			log(open, max)
		}
		select {
		case <-wake:
		case <-stop:
			return false
		}
	}
}

// accepted counts the connection that took the slot acquire gave.
func (l *connLimit) accepted() { clientConnsOpen.Add(1) }

// release gives a connection's slot back.
func (l *connLimit) release() {
	clientConnsOpen.Add(-1)
	l.unreserve()
}

// unreserve gives back a slot that no connection took.
func (l *connLimit) unreserve() {
	l.mu.Lock()
	l.open--
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *connLimit) wakeLocked() {
	if l.wake != nil && l.open < l.max {
		close(l.wake)
		l.wake = nil
	}
}
