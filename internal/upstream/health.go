package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// MaxProbesInFlight bounds the active health checks open at once across
// the process, every upstream of every environment together (a
// generation a reload replaced probes no more: Retire). Each is a new
// connection, held
// until its node answers or its timeout ends: one per node, 260,000 nodes
// with 10 ms checks ran the process out of the file descriptors its
// listeners, logs and config reloads need too. A probe waits for room
// until its next turn (its interval): the checkers of an upstream probe
// together, and take turns when its nodes outnumber the room. One that
// finds none by then is not sent and is no verdict on its node (HAProxy
// queues the checks past tune.max-checks-per-thread).
//
// One environment's probes hold at most a quarter of that room: its
// nodes may all hang, each probe holding its place for the whole of its
// timeout, and the other environments' probes still run.
const MaxProbesInFlight = 1024

// probeSkipLogEvery spaces the lines that say probes were skipped.
const probeSkipLogEvery = 10 * time.Second

// probeLimit is the room for probes that the upstreams of the process
// share.
type probeLimit struct {
	slots   *semaphore.Weighted
	size    int64
	envSize int64 // each environment's share: size/4, at least 1

	mu sync.Mutex
	// envs holds each environment's share, by name: the upstreams of
	// every generation of an environment take from one. An entry goes
	// with the last upstream using it (release): environment names come
	// and go over the life of the process (one per branch or review app).
	envs map[string]*envShare

	// skipped counts the probes skipped since the last line that said so,
	// loggedAt is when that line was (nanotime; 0: never).
	skipped  atomic.Uint64
	loggedAt atomic.Int64
}

// envShare is an environment's share of the room, and how many
// upstreams (of every generation) use it.
type envShare struct {
	slots *semaphore.Weighted
	users int
}

func newProbeLimit(n int64) *probeLimit {
	return &probeLimit{slots: semaphore.NewWeighted(n), size: n, envSize: max(n/4, 1), envs: map[string]*envShare{}}
}

// env returns the share of the environment called name, for one more
// upstream that gives it back with release.
func (l *probeLimit) env(name string) *semaphore.Weighted {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.envs[name]
	if s == nil {
		s = &envShare{slots: semaphore.NewWeighted(l.envSize)}
		l.envs[name] = s
	}
	s.users++
	return s.slots
}

// release gives back an upstream's use of the share of the environment
// called name, once its checkers have stopped (none holds a place).
func (l *probeLimit) release(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.envs[name]; s != nil {
		if s.users--; s.users <= 0 {
			delete(l.envs, name)
		}
	}
}

// probes is the process's probeLimit; New gives it to each upstream.
var probes = newProbeLimit(MaxProbesInFlight)

// maxProbeAnswer bounds what a probe reads of its answer, head and body
// together (nginx's proxy_buffer_size bounds a head to 4 or 8 KiB,
// HAProxy's check buffer an answer to 16 KiB). A head past it fails the
// check; the rest of a body past it is not read.
const maxProbeAnswer = 64 << 10

// probeHeader is shared by every probe; it is only read.
var probeHeader = http.Header{
	"Connection": {"close"},
	"User-Agent": {"edged-health-check"},
}

// Start starts the upstream's goroutines: the reaper of idle connections
// (unless keep-alive is off) and one active health checker per node
// (with Config.Active). They belong to u: Close (or Retire) stops them,
// and Close waits for them. Start is a no-op after Close or when called
// again.
func (u *Upstream) Start() {
	if u.closed.Load() {
		return
	}
	u.startOnce.Do(func() {
		if n := u.nodes[0]; n.maxIdle > 0 {
			u.wg.Add(1)
			go u.reapLoop(reapEvery(n.idleTimeout))
		}
		if u.active == nil {
			return
		}
		for _, n := range u.nodes {
			u.wg.Add(1)
			go u.checkLoop(n)
		}
	})
}

// checkRun is what a node's active check counted in a row: passed and
// failed checks, and the passes since a passive ejection began. The
// checkers of the generations sharing it (InheritHealth) may run at once
// for a moment (a rebuilt environment's start before the reload retires
// the one it replaces): mu orders their results.
type checkRun struct {
	mu      sync.Mutex
	ok, bad int
	// A passive ejection ends early after Healthy checks in a row pass
	// once it began, as HAProxy's on-error mark-down ends after rise
	// checks and Envoy's outlier ejection at a passing active check: the
	// node answers again, and need not sit out all of Eject. An ejection
	// renewed meanwhile (another failure, a new end) counts again.
	ejection int64 // the ejection's end the passes count for
	passes   int
	// last is when (nanotime) the last turn of a checker of the node
	// began, 0 before the first: the checker of a rebuilt upstream takes
	// its first turn an interval after it, not at once.
	last int64
}

// turn records that a checker of the node takes its turn now.
func (r *checkRun) turn() {
	r.mu.Lock()
	r.last = nanotime()
	r.mu.Unlock()
}

// untilTurn is how long a new checker of the node waits for its first
// turn: an interval after the last one of the checker it takes over from
// (none when there was none).
func (r *checkRun) untilTurn(interval time.Duration) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == 0 {
		return 0
	}
	return time.Duration(r.last + int64(interval) - nanotime())
}

// checkLoop probes n now and then every Interval until Close or Retire.
// A node taken over from the upstream u replaced (InheritHealth) is
// probed when its next check is due, not at once: a deploy tool's
// reloads, each rebuilding the environment, would otherwise probe every
// node at each of them, however long the interval.
func (u *Upstream) checkLoop(n *Node) {
	defer u.wg.Done()
	if wait := n.run.untilTurn(u.active.Interval); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-u.probeCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	t := time.NewTicker(u.active.Interval)
	defer t.Stop()
	for {
		n.run.turn()
		sent, err := u.check(n)
		if u.probeCtx.Err() != nil || u.cut.Load() {
			// Cut aborts the probes' connections too: a probe it ended
			// says nothing of the node. A cut upstream serves nothing
			// more, so there is nothing left to check for.
			return
		}
		// A probe not sent (no room among the process's probes, no file
		// descriptor for its connection) is no verdict: the counts stand
		// as they were.
		if sent {
			u.checked(n, err)
		}
		select {
		case <-u.probeCtx.Done():
			return
		case <-t.C:
		}
	}
}

// checked counts a probe of n that passed (err nil) or failed, and takes
// n down, brings it back or ends its ejection when the count calls for it.
func (u *Upstream) checked(n *Node, err error) {
	a, r := u.active, n.run
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.ok, r.bad = 0, r.bad+1
		r.passes = 0
		if r.bad >= a.Unhealthy && !n.down.Load() {
			n.markDown(fmt.Sprintf("down after %d failed health checks: %s", r.bad, err.Error()))
			n.down.Store(true)
			u.log.Warn("upstream node unhealthy", "node", n.url, "failures", r.bad, "error", err.Error())
		}
		return
	}
	r.ok, r.bad = r.ok+1, 0
	if r.ok >= a.Healthy && n.down.Load() {
		n.down.Store(false)
		u.log.Info("upstream node healthy", "node", n.url, "successes", r.ok)
	}
	until := n.ejectedUntil.Load()
	if until == 0 {
		r.ejection, r.passes = 0, 0
		return
	}
	if until != r.ejection {
		r.ejection, r.passes = until, 0
	}
	r.passes++
	// The compare-and-swap loses to a renewal since the load, which then
	// counts afresh.
	if r.passes >= a.Healthy && n.ejectedUntil.CompareAndSwap(until, 0) {
		u.log.Info("upstream node back after ejection", "node", n.url, "health_checks_passed", r.passes)
		r.ejection, r.passes = 0, 0
	}
}

// check probes n once its environment's share and the process have
// room for one more probe, waiting for it no longer than the probe's
// interval; sent is false when none came, or when the process had no
// file descriptor left for the probe's connection (OwnShortage): nothing
// was sent, and err says nothing of n.
func (u *Upstream) check(n *Node) (sent bool, err error) {
	a, lim := u.active, u.probes
	// One wait, for both: made only when the room is not there at once.
	var wait context.Context
	stopWait := func() {}
	defer func() { stopWait() }()
	take := func(s *semaphore.Weighted) bool {
		if s.TryAcquire(1) {
			return true
		}
		if wait == nil {
			wait, stopWait = context.WithTimeout(u.probeCtx, a.Interval)
		}
		return s.Acquire(wait, 1) == nil
	}
	if !take(u.envProbes) {
		u.probeSkipped(n)
		return false, nil
	}
	defer u.envProbes.Release(1)
	if !take(lim.slots) {
		u.probeSkipped(n)
		return false, nil
	}
	defer lim.slots.Release(1)
	stopWait()
	ctx, cancel := context.WithTimeout(u.probeCtx, a.Timeout)
	defer cancel()
	// probe closes its connection before it returns: the room is given
	// back with the descriptor.
	err = n.probe(ctx, a.Path, a.Host)
	if OwnShortage(err) {
		// Not sent for want of a descriptor of edged's own: no verdict.
		return false, nil
	}
	return true, err
}

// probeSkipped counts a probe of n that found no room, and says so in a
// line at most every probeSkipLogEvery for the whole process: every
// node's checker may skip at once.
func (u *Upstream) probeSkipped(n *Node) {
	if u.probeCtx.Err() != nil {
		return // closed or cut: not skipped, stopped
	}
	n.counts.probesSkipped.Add(1)
	lim := u.probes
	lim.skipped.Add(1)
	now := max(nanotime(), 1)
	last := lim.loggedAt.Load()
	if last != 0 && now-last < int64(probeSkipLogEvery) || !lim.loggedAt.CompareAndSwap(last, now) {
		return
	}
	u.log.Warn("health check skipped: no room among the probes in flight; the node keeps its last verdict",
		"node", n.url, "probes_in_flight_limit", lim.size, "environment_share", lim.envSize, "interval", u.active.Interval.String(),
		"skipped", lim.skipped.Swap(0))
}

// probe sends GET path with Host host ("": the node's Authority) on a
// fresh connection (never a pooled one: a working idle connection would
// hide a node that accepts no new ones) and wants a 2xx or 3xx answer
// that ends, its body unbroken, before ctx ends.
func (n *Node) probe(ctx context.Context, path, host string) error {
	c, err := n.dial(ctx, false)
	if err != nil {
		return err
	}
	defer c.close()
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	req := &Request{Method: http.MethodGet, URI: path, Host: host, Header: probeHeader}
	// The whole answer, head and body, is read within maxProbeAnswer: a
	// probe wants a status, and the process runs up to MaxProbesInFlight
	// of them, every interval.
	c.lr.limit = maxProbeAnswer
	if _, err := c.writeRequest(req, false); err != nil {
		return fmt.Errorf("health check %s%s: %w", n.url, path, err)
	}
	resp, err := c.readResponse(req)
	if errors.Is(err, errHeaderTooLarge) {
		return fmt.Errorf("health check %s%s: answer head larger than %d KiB", n.url, path, maxProbeAnswer>>10)
	}
	if err != nil {
		return fmt.Errorf("health check %s%s: %w", n.url, path, err)
	}
	c.body.probe = true
	// The answer is judged once it has ended, within the probe's
	// deadline: a 2xx head whose body the node breaks (closed before
	// its end, framed wrong) or does not finish in time is no passed
	// check, as the passive check counts such a body a failure and
	// Envoy's checker judges at the end of the answer's stream. Reaching
	// maxProbeAnswer is no failure: the rest is not read.
	_, berr := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("health check %s%s: status %d", n.url, path, resp.StatusCode)
	}
	if berr != nil && !errors.Is(berr, errHeaderTooLarge) {
		return fmt.Errorf("health check %s%s: status %d, answer body: %w", n.url, path, resp.StatusCode, berr)
	}
	return nil
}

// ContinueCounters makes u count on from prev's counters, which it then
// shares: each node's (requests, dials, failures, ejections, retries) for
// the nodes of u that prev has too (same scheme://host:port), and the
// retries the budget denied. The requests prev still finishes while it
// drains are counted with u's, and a reload that rebuilds an environment
// shows Prometheus no counter reset. prev is the same upstream (same
// environment and name) of the runtime u replaces. Call it before u
// serves.
func (u *Upstream) ContinueCounters(prev *Upstream) {
	if prev == nil {
		return
	}
	u.budgetDenied = prev.budgetDenied
	old := make(map[string]*Node, len(prev.nodes))
	for _, n := range prev.nodes {
		old[n.url] = n
	}
	for _, n := range u.nodes {
		if p := old[n.url]; p != nil {
			n.counts = p.counts
		}
	}
}

// ContinueRotation makes u's round robin go on from where prev's is,
// when both balance over the same nodes with the same weights in the same
// order: every rebuild would otherwise start the rotation again at the
// first node (the heaviest), and an environment rebuilt between requests
// (a deploy tool rewriting its files) would send them all there. prev is
// the same upstream (same environment and name) of the runtime u
// replaces. Call it before u serves.
func (u *Upstream) ContinueRotation(prev *Upstream) {
	if prev == nil {
		return
	}
	if b, p := rotation(u.bal), rotation(prev.bal); b != nil && p != nil {
		b.continueFrom(p)
	}
}

// InheritHealth takes over prev's health verdicts for the nodes of u
// that prev has too (same scheme://host:port), so that a reload which
// rebuilds the environment neither sends traffic to a node it had
// ejected or found down nor forgets the failures counted so far. prev is
// the same upstream (same environment and name) of the runtime u
// replaces; a node it does not have starts healthy, as does every node
// of a newly named upstream. The nodes u shares with prev also share
// their count of requests in flight: least_request then weighs the
// requests prev still has on them (draining, or long streams) with u's;
// and, sharing nodes, u and prev share one retry budget (budget.go),
// whose size counts those requests too.
//
// A passive ejection carries only when u has passive checks (it ends at
// the same time as it would have in prev, or u's eject from now when
// that is sooner). With active checks on both,
// the nodes share the active check's verdict (down, and why), what their
// checks counted in a row and when they were probed last (checkRun):
// prev, once retired (Retire), runs no checker and its requests' retries
// follow u's verdicts; a generation rebuilt more often than Unhealthy
// checks take would otherwise count afresh every time, and never take a
// dead node out; and u's checkers go on at the interval prev's kept.
// Call it before Start and before u serves: it writes u's nodes' state
// without the checkers' ordering. prev may still be serving (draining);
// what it does not share with u is read atomically and left as is.
func (u *Upstream) InheritHealth(prev *Upstream) {
	if prev == nil {
		return
	}
	old := make(map[string]*Node, len(prev.nodes))
	for _, n := range prev.nodes {
		old[n.url] = n
	}
	for _, n := range u.nodes {
		p := old[n.url]
		if p == nil {
			continue
		}
		n.inFlight = p.inFlight
		u.retrying = prev.retrying
		if u.active != nil && prev.active != nil {
			n.run, n.down, n.downOut = p.run, p.down, p.downOut
		}
		if u.passive != nil && prev.passive != nil {
			n.consecutive.Store(p.consecutive.Load())
			if until := p.ejectedUntil.Load(); until != 0 {
				// Never longer than u's eject from now: a reload that
				// shortens eject (a mistaken "1h") brings the nodes
				// back then, rather than leave a restart the only way.
				n.ejectedUntil.Store(max(min(until, nanotime()+int64(u.passive.Eject)), 1))
				n.ejectOut.Store(p.ejectOut.Load())
			}
		}
	}
}
