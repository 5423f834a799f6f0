package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"edged/internal/httpsyntax"
)

// Defaults for zero Config values.
const (
	// DefaultMaxIdlePerNode is the idle pool size when Config.MaxIdlePerNode
	// is 0. Size it for the peak concurrency per node: a pool smaller than
	// that opens a connection per request at the peak.
	DefaultMaxIdlePerNode = 256
	// DefaultIdleTimeout is how long an idle connection may wait in the
	// pool before it is closed instead of reused.
	DefaultIdleTimeout = 90 * time.Second
	// tcpKeepAlive is the keep-alive period of dialed connections.
	tcpKeepAlive = 30 * time.Second
)

// NodeConfig is one backend node.
type NodeConfig struct {
	Scheme string // "http" or "https"
	Host   string // host:port, e.g. "127.0.0.1:9001"
	Weight int    // relative share of requests; 0 means 1
}

// Config describes an upstream: its nodes, how requests are spread over
// them, the client's timeouts and the health checks.
type Config struct {
	// Env and Name label logs and stats.
	Env, Name string
	Nodes     []NodeConfig
	// Balance is "round_robin" (smooth weighted, nginx's algorithm; the
	// default), "least_request" (fewest requests in flight relative to
	// weight, ties broken at random by weight) or "hash" (rendezvous
	// hashing on HashOn).
	Balance string
	// HashOn is "header:NAME", "cookie:NAME" or "client_ip" (the host part
	// of http.Request.RemoteAddr); "header:Host" is http.Request.Host
	// without its port or a trailing dot, in any case. Requests without a key are balanced
	// round robin.
	HashOn string
	// ConnectTimeout bounds the dial and the TLS handshake; 0 = only the
	// request's context.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for the response head after the
	// request was written, and each wait for more of the response body
	// (an idle limit: a slow body that keeps coming is never cut); 0 = none.
	ResponseTimeout time.Duration
	// MaxIdlePerNode caps each node's idle pool; 0 = DefaultMaxIdlePerNode,
	// negative = no keep-alive.
	MaxIdlePerNode int
	// IdleTimeout closes connections idle longer than it: the reaper
	// started by Start closes them within half of it (at most a second
	// later), and a request never takes one; 0 = DefaultIdleTimeout.
	IdleTimeout time.Duration
	// TLS configures https nodes (nil = system roots). It is cloned per
	// node with ServerName set to the node's host (unless already set) and
	// NextProtos set to http/1.1.
	TLS     *tls.Config
	Active  *ActiveCheck  // nil = no active health checks
	Passive *PassiveCheck // nil = no passive ejection
	// Logger is the environment's (it names env, and the environment's
	// labels); New adds the upstream's name. nil = slog.Default().
	Logger *slog.Logger
}

// ActiveCheck probes every node with GET Path each Interval. A 2xx or 3xx
// answer that ends within Timeout (its body unbroken, up to the part a
// probe reads) is a success. Unhealthy consecutive failures take a
// node out, Healthy consecutive successes bring it back (0 means 1). A
// probe that finds no room before its next turn (Interval) among the
// process's probes in flight (MaxProbesInFlight), or its environment's
// share of them, is skipped: neither a success nor a failure.
type ActiveCheck struct {
	Path string // default "/"
	// Host is the probes' Host header; "" = the node's Authority. A
	// name-based backend answers only the host its requests carry, so a
	// caller that rewrites Host sets it (as nginx plus and Envoy probe
	// with the configured host).
	Host               string
	Interval, Timeout  time.Duration
	Healthy, Unhealthy int
}

// PassiveCheck ejects a node for Eject after Failures consecutive failed
// requests (connect failure, timeout, bad response, 502/503/504, a
// response body the node broke).
type PassiveCheck struct {
	Failures int
	Eject    time.Duration
}

// Upstream is a pool of nodes. It is safe for concurrent use.
type Upstream struct {
	env, name string
	nodes     []*Node
	bal       balancer
	active    *ActiveCheck
	passive   *PassiveCheck
	log       *slog.Logger

	// retrying and budgetDenied are the retry budget's (budget.go).
	// retrying counts the retries of the upstream u replaced too, while
	// they share nodes (InheritHealth), and budgetDenied its denials
	// (ContinueCounters).
	retrying     *atomic.Int64
	budgetDenied *atomic.Uint64

	// probes is the room for health probes the process's upstreams
	// share, envProbes the share of it u's environment may take
	// (health.go); nil without active checks.
	probes    *probeLimit
	envProbes *semaphore.Weighted

	startOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	// probeCtx is u.ctx for the health checkers, also ended by Cut: a
	// cut upstream serves nothing more, and its checkers' waits for room
	// and probes (one still dialing, not yet among the conns Cut
	// aborts) must not hold a place the live generations need.
	probeCtx  context.Context
	cutProbes context.CancelFunc
	wg        sync.WaitGroup
	closed    atomic.Bool
	// cut is set by Cut: every request still on the upstream fails.
	cut atomic.Bool
}

// New validates cfg and builds the upstream. It dials nothing and starts
// no goroutine: call Start for the idle connection reaper and active
// health checks.
func New(cfg Config) (*Upstream, error) {
	where := fmt.Sprintf("upstream %q (environment %q)", cfg.Name, cfg.Env)
	if len(cfg.Nodes) == 0 {
		return nil, fmt.Errorf("%s: no nodes", where)
	}
	u := &Upstream{env: cfg.Env, name: cfg.Name, log: cfg.Logger, retrying: new(atomic.Int64), budgetDenied: new(atomic.Uint64), probes: probes}
	if u.log == nil {
		u.log = slog.Default()
	}
	u.log = u.log.With("upstream", cfg.Name)
	if a := cfg.Active; a != nil {
		ac := *a
		if ac.Interval <= 0 {
			return nil, fmt.Errorf("%s: active health check: interval must be > 0", where)
		}
		if ac.Path == "" {
			ac.Path = "/"
		}
		if !strings.HasPrefix(ac.Path, "/") || !httpsyntax.IsVisible(ac.Path) {
			return nil, fmt.Errorf("%s: active health check: path %q must start with / and hold no spaces or control characters", where, ac.Path)
		}
		if !httpsyntax.IsVisible(ac.Host) {
			return nil, fmt.Errorf("%s: active health check: host %q must hold no spaces or control characters", where, ac.Host)
		}
		if ac.Timeout <= 0 {
			ac.Timeout = ac.Interval
		}
		ac.Healthy = max(ac.Healthy, 1)
		ac.Unhealthy = max(ac.Unhealthy, 1)
		u.active = &ac
	}
	if p := cfg.Passive; p != nil {
		if p.Failures < 1 || p.Eject <= 0 {
			return nil, fmt.Errorf("%s: passive health check: failures must be >= 1 and eject > 0", where)
		}
		pc := *p
		u.passive = &pc
	}
	maxIdle := cfg.MaxIdlePerNode
	switch {
	case maxIdle == 0:
		maxIdle = DefaultMaxIdlePerNode
	case maxIdle < 0:
		maxIdle = 0
	}
	idleTimeout := cfg.IdleTimeout
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleTimeout
	}
	seen := make(map[string]bool, len(cfg.Nodes))
	for i, nc := range cfg.Nodes {
		if nc.Scheme != "http" && nc.Scheme != "https" {
			return nil, fmt.Errorf("%s: node %d: scheme %q must be http or https", where, i, nc.Scheme)
		}
		host, _, err := net.SplitHostPort(nc.Host)
		if err != nil || host == "" {
			return nil, fmt.Errorf("%s: node %d: host %q must be host:port", where, i, nc.Host)
		}
		key := nc.Scheme + "://" + nc.Host
		if seen[key] {
			return nil, fmt.Errorf("%s: node %s is listed twice", where, key)
		}
		seen[key] = true
		if nc.Weight < 0 {
			return nil, fmt.Errorf("%s: node %s: weight %d must be >= 0", where, key, nc.Weight)
		}
		n := &Node{
			up:          u,
			scheme:      nc.Scheme,
			host:        nc.Host,
			authority:   authority(nc.Scheme, nc.Host),
			url:         key,
			inFlight:    new(atomic.Int64),
			down:        new(atomic.Bool),
			downOut:     new(atomic.Pointer[Outage]),
			counts:      new(nodeCounts),
			weight:      max(nc.Weight, 1),
			seed:        mix64(fnv64a(key)),
			maxIdle:     maxIdle,
			idleTimeout: idleTimeout,
			respTimeout: cfg.ResponseTimeout,
			dialer: net.Dialer{
				Timeout:   cfg.ConnectTimeout,
				KeepAlive: tcpKeepAlive,
			},
			connectTimeout: cfg.ConnectTimeout,
		}
		if u.active != nil {
			n.run = new(checkRun)
		}
		if nc.Scheme == "https" {
			var tc *tls.Config
			if cfg.TLS != nil {
				tc = cfg.TLS.Clone()
			} else {
				tc = &tls.Config{}
			}
			if tc.ServerName == "" {
				tc.ServerName = host
			}
			tc.NextProtos = []string{"http/1.1"}
			if tc.ClientSessionCache == nil {
				tc.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			}
			n.tls = tc
		}
		u.nodes = append(u.nodes, n)
	}
	bal, err := newBalancer(cfg.Balance, cfg.HashOn, u.nodes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	u.bal = bal
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.probeCtx, u.cutProbes = context.WithCancel(u.ctx)
	if u.active != nil {
		// Taken last, when nothing can fail any more: Close gives it back.
		u.envProbes = u.probes.env(u.env)
	}
	return u, nil
}

// Env returns the environment the upstream belongs to.
func (u *Upstream) Env() string { return u.env }

// Name returns the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Nodes returns the nodes in configuration order. The slice is shared:
// do not modify it.
func (u *Upstream) Nodes() []*Node { return u.nodes }

// Pick chooses a healthy node for r, never one in tried. fields are those
// the request carries to the node beside r's header (Request.Fields),
// which hash_on "header:NAME" consults first. It returns nil when none is
// left; the caller answers 503 upstream.unavailable.
//
// When no node is healthy and some are only ejected by the passive check,
// Pick balances over those (panic mode: Envoy's panic threshold at its
// floor, nginx's reset of max_fails when every server failed). An
// ejection is inferred from requests that failed up to eject ago, and
// with every node ejected nothing would ever try them again before the
// ejections end: every request would fail while the backends may be
// back. A node the active check found down stays out even then: its
// checker looks at it every interval and brings it back as soon as it
// answers, so the verdict is current. Panic mode is the upstream's state,
// not a request's: while one node is healthy, a retry that has tried it
// gets none.
func (u *Upstream) Pick(r *http.Request, fields []Field, tried []*Node) *Node {
	if n := u.bal.pick(r, fields, tried, false); n != nil || u.passive == nil {
		return n
	}
	for _, n := range u.nodes {
		if n.Healthy() {
			return nil
		}
	}
	return u.bal.pick(r, fields, tried, true)
}

// Close stops the reaper and the health checkers and waits for them, then
// closes every idle connection. Connections in use are closed when they are returned.
// Requests may still run on the nodes after Close (an old generation
// draining); they dial as needed and their connections are not pooled.
func (u *Upstream) Close() {
	if !u.closed.CompareAndSwap(false, true) {
		return
	}
	u.cancel()
	u.wg.Wait()
	if u.envProbes != nil {
		u.probes.release(u.env)
	}
	for _, n := range u.nodes {
		n.closeIdle()
	}
}

// Retire is for an upstream whose environment a reload replaced: it
// serves only the requests it has in flight until Close, which need no
// checker of its own (the nodes it shares with the upstream replacing
// it follow that one's verdicts: InheritHealth; the passive check still
// applies) and no idle pool (no new request comes). Its health checkers and its reaper stop (a probe
// in flight, or a wait for room among the probes, ends at once), its
// idle connections are closed, and a connection its requests give back
// is closed rather than pooled: a draining generation holds no goroutine,
// timer or connection per node, however many reloads keep generations
// draining at once. It does not wait for the goroutines: Close does.
func (u *Upstream) Retire() {
	u.cancel()
	for _, n := range u.nodes {
		n.closeIdle()
	}
}

// Node is one backend of an Upstream.
type Node struct {
	up          *Upstream
	scheme      string
	host        string // host:port
	authority   string // host[:port], the port left out when the scheme's default
	url         string // scheme://host:port
	weight      int
	seed        uint64 // rendezvous hashing identity, from url
	tls         *tls.Config
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration
	respTimeout time.Duration

	connectTimeout time.Duration

	mu     sync.Mutex
	idle   []*conn // LIFO: the most recently used connection is on top
	closed bool
	// conns are the node's open connections, idle or in use, for Cut;
	// under their own lock, which connections take as they close (some
	// close under mu).
	connsMu sync.Mutex
	conns   map[*conn]struct{}
	// reapBuf is the reaper's scratch list of the connections it checks;
	// only the reaper touches it.
	reapBuf []*conn

	// inFlight counts the requests on the node, those of the upstreams
	// this one replaced included: InheritHealth shares the counter of the
	// node it replaces, so that least_request sees the requests a
	// draining generation still has there (long streams above all).
	inFlight *atomic.Int64

	// Health. down is the active checkers' verdict, shared (with
	// downOut and run) with the node of the upstream u replaced when
	// both have active checks (InheritHealth): a retired upstream runs
	// no checker, and its requests' retries follow the verdicts of its
	// successor's. ejectedUntil is the passive one: when the ejection
	// ends (monotonic nanoseconds, see nanotime), 0 when there is none.
	// One word, so that Healthy ends an ejection that ran out only if no
	// failure renewed it meanwhile. consecutive counts passive failures
	// in a row.
	down         *atomic.Bool
	ejectedUntil atomic.Int64
	consecutive  atomic.Int32
	// downOut and ejectOut say since when and why the active check took
	// the node down and the passive one last ejected it: kept apart, so
	// that Stats reports the verdict that keeps the node out (down,
	// which panic mode never overrides, before a running ejection), not
	// whichever came last.
	downOut  *atomic.Pointer[Outage]
	ejectOut atomic.Pointer[Outage]
	// run is what the active check counted in a row (nil without
	// active checks), shared with the node of the upstream u replaced
	// (InheritHealth): a reload that rebuilds the environment goes on
	// counting where the replaced generation's checker was.
	run *checkRun

	// counts are the node's counters, those of the nodes it replaced
	// included (ContinueCounters).
	counts *nodeCounts
}

// nodeCounts are a node's counters: NodeStats says what each counts.
type nodeCounts struct {
	requests, dials, reused, failures, ejections, retried, redispatched atomic.Uint64
	probesSkipped                                                       atomic.Uint64
}

// NodeStats is a snapshot of a node's state and counters for /status and
// metrics. Counters only grow.
type NodeStats struct {
	Addr     string // scheme://host:port
	Healthy  bool
	Down     bool // taken out by the active health check
	Ejected  bool // ejected by the passive health check, the ejection running
	InFlight int64
	Idle     int // connections in the idle pool

	Requests  uint64 // RoundTrip calls
	Dials     uint64 // connections dialed (successful or not)
	Reused    uint64 // requests sent on a pooled connection
	Retried   uint64 // requests resent on a fresh connection after a stale pooled one failed
	Failures  uint64 // failed requests (connect, timeout, bad response, 502/503/504, a body the node broke)
	Ejections uint64 // passive ejections
	// Redispatched: requests the caller sent on to another node after
	// this one failed them or answered 502, 503 or 504 (Redispatch).
	Redispatched uint64
	// ProbesSkipped: active health checks not sent, for want of room
	// among the process's probes in flight (MaxProbesInFlight) before
	// their next turn; each left the node's verdict as it was.
	ProbesSkipped uint64

	// Out is since when and why the node is out of rotation: the active
	// check's verdict while it is down, else the running ejection's; nil
	// while it is healthy.
	Out *Outage
}

// Outage is why and since when a node is out of rotation: the active
// check's failure that took it down, or the failure that ejected it.
type Outage struct {
	Since  time.Time
	Reason string
}

// markDown records that the active check takes the node down now, for
// reason.
func (n *Node) markDown(reason string) {
	n.downOut.Store(&Outage{Since: time.Now(), Reason: reason})
}

// markEjected records that the passive check ejects the node now, for
// reason.
func (n *Node) markEjected(reason string) {
	n.ejectOut.Store(&Outage{Since: time.Now(), Reason: reason})
}

// Addr returns the node's host:port.
func (n *Node) Addr() string { return n.host }

// Authority returns the node's host[:port] as a Host header names it:
// without the port when it is the scheme's default (80 for http, 443 for
// https), as curl, Go and nginx address "http://users.internal" (RFC
// 3986 6.2.3). A request without a Host of its own, and a probe without
// one, carry it.
func (n *Node) Authority() string { return n.authority }

// authority is host:port without a port that is scheme's default.
func authority(scheme, hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		return hostport
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// Scheme returns "http" or "https".
func (n *Node) Scheme() string { return n.scheme }

// URL returns scheme://host:port.
func (n *Node) URL() string { return n.url }

// Weight returns the node's weight (at least 1).
func (n *Node) Weight() int { return n.weight }

// InFlight returns the requests on the node whose response body is not
// finished yet.
func (n *Node) InFlight() int64 { return n.inFlight.Load() }

// Healthy reports whether the node may be picked: not taken out by the
// active check and not ejected by the passive one.
func (n *Node) Healthy() bool {
	if n.down.Load() {
		return false
	}
	for {
		until := n.ejectedUntil.Load()
		if until == 0 {
			return true
		}
		if nanotime() < until {
			return false
		}
		// Ended, unless recordFailure renewed it since the load: then
		// look again.
		if n.ejectedUntil.CompareAndSwap(until, 0) {
			n.up.log.Info("upstream node back after ejection", "node", n.url)
			return true
		}
	}
}

// Stats returns a snapshot of the node's state and counters.
func (n *Node) Stats() NodeStats {
	n.mu.Lock()
	idle := len(n.idle)
	n.mu.Unlock()
	healthy := n.Healthy()
	down := n.down.Load()
	// Healthy ends an ejection that ran out only while the node is not
	// down: one that ran out while it was is over all the same.
	until := n.ejectedUntil.Load()
	ejected := until != 0 && nanotime() < until
	var out *Outage
	switch {
	case healthy:
	case down:
		out = n.downOut.Load()
	default:
		out = n.ejectOut.Load()
	}
	return NodeStats{
		Addr:      n.url,
		Out:       out,
		Healthy:   healthy,
		Down:      down,
		Ejected:   ejected,
		InFlight:  n.inFlight.Load(),
		Idle:      idle,
		Requests:  n.counts.requests.Load(),
		Dials:     n.counts.dials.Load(),
		Reused:    n.counts.reused.Load(),
		Retried:   n.counts.retried.Load(),
		Failures:  n.counts.failures.Load(),
		Ejections: n.counts.ejections.Load(),

		Redispatched:  n.counts.redispatched.Load(),
		ProbesSkipped: n.counts.probesSkipped.Load(),
	}
}

// Redispatch records that the caller sent a request this node failed, or
// answered 502, 503 or 504, on to another node (HAProxy's redispatch).
func (n *Node) Redispatch() { n.counts.redispatched.Add(1) }

// String returns scheme://host:port.
func (n *Node) String() string { return n.url }

// getIdle pops the most recently used idle connection that is still
// usable, or returns nil.
func (n *Node) getIdle() *conn {
	for {
		n.mu.Lock()
		k := len(n.idle)
		if k == 0 {
			n.mu.Unlock()
			return nil
		}
		c := n.idle[k-1]
		n.idle[k-1] = nil
		n.idle = n.idle[:k-1]
		n.mu.Unlock()

		now := nanotime()
		if now-c.idleAt > int64(n.idleTimeout) || c.expired(now) {
			c.close()
			continue
		}
		// The server may have closed the connection (its keep-alive
		// timeout, a restart) or sent on it between requests (a second
		// answer to one request, a body after a HEAD's head): read as the
		// next request's answer, that would serve one client's response
		// to another. One non-blocking peek finds either before a request
		// is sent on it, however short the connection was idle, as
		// nginx's and Go's idle connections watch for reads.
		if !c.alive() {
			c.close()
			continue
		}
		return c
	}
}

// putIdle returns c to the idle pool, or closes it when the pool is full
// or closed.
func (n *Node) putIdle(c *conn) {
	c.idleAt = nanotime()
	n.mu.Lock()
	if n.closed || n.up.closed.Load() || len(n.idle) >= n.maxIdle {
		n.mu.Unlock()
		c.close()
		return
	}
	n.idle = append(n.idle, c)
	n.mu.Unlock()
}

// track and untrack keep n.conns: a connection is tracked once dialed,
// until it closes.
func (n *Node) track(c *conn) {
	n.connsMu.Lock()
	if n.conns == nil {
		n.conns = map[*conn]struct{}{}
	}
	n.conns[c] = struct{}{}
	n.connsMu.Unlock()
}

func (n *Node) untrack(c *conn) {
	n.connsMu.Lock()
	delete(n.conns, c)
	n.connsMu.Unlock()
}

// Cut ends every request still on the upstream, at once: a retired
// environment's, once its drain_timeout has passed. Each fails with
// ErrCut (a response body's read with an error), or, when its request
// began after Cut, never reaches the node. Its health checkers stop:
// a probe, or a wait for room among the probes in flight, ends at once.
// For an upstream no new request comes to; Close still has to be called.
func (u *Upstream) Cut() {
	u.cut.Store(true)
	u.cutProbes()
	for _, n := range u.nodes {
		n.connsMu.Lock()
		cs := make([]*conn, 0, len(n.conns))
		for c := range n.conns {
			cs = append(cs, c)
		}
		n.connsMu.Unlock()
		for _, c := range cs {
			c.abort()
		}
	}
}

func (n *Node) closeIdle() {
	n.mu.Lock()
	idle := n.idle
	n.idle = nil
	n.closed = true
	n.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// recordFailure counts a failed request and ejects the node after the
// configured number of consecutive failures.
func (n *Node) recordFailure(err error) {
	n.counts.failures.Add(1)
	p := n.up.passive
	if p == nil {
		return
	}
	if int(n.consecutive.Add(1)) < p.Failures {
		return
	}
	n.consecutive.Store(0)
	// Never 0, which is no ejection. One that ran out is over, whether or
	// not Healthy noticed yet (a request in flight since before it, on an
	// upstream nothing picked from meanwhile): this one is new, not a
	// renewal.
	now := nanotime()
	if old := n.ejectedUntil.Swap(max(now+int64(p.Eject), 1)); old == 0 || old <= now {
		n.counts.ejections.Add(1)
		n.markEjected(fmt.Sprintf("ejected after %d failures in a row: %s", p.Failures, errString(err)))
		n.up.log.Warn("upstream node ejected", "node", n.url, "failures", p.Failures, "eject", p.Eject.String(), "error", errString(err))
	}
}

// recordSuccess resets the consecutive failure count. It avoids a store
// (a shared cache line written on every request) when there is nothing
// to reset.
func (n *Node) recordSuccess() {
	if n.consecutive.Load() != 0 {
		n.consecutive.Store(0)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clockBase anchors nanotime so that it is monotonic.
var clockBase = time.Now()

// nanotime returns monotonic nanoseconds since process start.
func nanotime() int64 { return int64(time.Since(clockBase)) }

var errClosed = errors.New("upstream: connection closed")
