package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"edged/internal/config"
	"edged/internal/pool"
	"edged/internal/upstream"
)

// Env is the runtime of one environment: its worker pool, upstreams
// (with their connection pools and health checkers), metrics and access
// log. Nothing in it is shared with another environment, so one
// environment's overload or dead backends cannot slow another down.
//
// An Env lives across reloads as long as its EnvPlan hash is unchanged;
// otherwise the new snapshot gets a new Env and this one drains.
type Env struct {
	Name string
	Hash string

	plan      *EnvPlan
	pool      *pool.Pool
	upstreams map[string]*upstream.Upstream
	// certs are the ends of the certificate files the upstreams with
	// https nodes use, by upstream name, found when the environment is
	// built (a changed file rebuilds it: EnvPlan's TLS sums).
	certs   map[string]upstreamCerts
	proxies map[string]*proxyRuntime // by proxy name
	maxBody int64
	// writeTimeout is how long a write to a client may take; streams
	// extend it before every write.
	writeTimeout time.Duration
	set          *metrics.Set
	metrics      *requestMetrics // every request of the environment
	labels       string          // Prometheus labels of every series: env="x" and the environment's labels
	access       *lineLog        // nil when rules.access_log is off
	// accessCombined: access lines in nginx's combined format, not JSON.
	accessCombined bool
	audit          *lineLog // nil when rules.audit_log is off
	log            *slog.Logger

	inflight atomic.Int64 // requests between admission and their last byte
	// bodyWaits counts the requests of inflight waiting for their bodies
	// (awaitBody), which a reload's drain does not wait for (drain).
	bodyWaits atomic.Int64
	// retired is set by Server.Apply once a reload has replaced or
	// removed the environment, before its drain starts: serve then
	// refuses new requests (they are routed on the new snapshot).
	retired atomic.Bool
	// The two messages of an env.overloaded fault, made once so that a
	// rejection builds no string.
	msgQueueFull, msgQueueTimeout string
	// lastOverloadLog is when (unix nanoseconds) the last "at its limit"
	// line was logged: one line per overloadLogEvery, not one per 503.
	lastOverloadLog atomic.Int64
	// lastShareLog is lastOverloadLog for the 503s of proxies at their
	// share of the pool (pool.ErrShareFull): a hung proxy's refusals must
	// not take the slot of the environment's own.
	lastShareLog atomic.Int64
	// warnLines budgets the per-request lines on stderr (see
	// upstreamLinesBurst).
	warnLines lineBudget
	tunnelMu  sync.Mutex
	tunnels   map[net.Conn]struct{} // upgraded connections; nil once closed
	// unlogged counts the tunnels (added by addTunnel) whose request is
	// not recorded yet (tunnelLogged, from exchange.finish). allLogged,
	// made by Close while some are not, is closed by the last of them:
	// Close waits for the tunnels it cut before it closes the logs.
	unlogged  int
	allLogged chan struct{}
	// tunnelsOpen counts the open tunnels for edged_websocket_tunnels; an
	// environment rebuilt by a reload shares its predecessor's, whose
	// tunnels still run while it drains.
	tunnelsOpen *atomic.Int64
	// carry holds the pool counters of the instances of the environment
	// this one replaced, shared by them all while its labels stay the
	// same: its counters continue across rebuilds (poolTotals).
	carry *poolCarry
	// cut is closed when the environment's drain ends (cutStreams): a
	// response body still being copied stops at its next read
	// (copyBody), so that drain_timeout bounds a stream as it bounds a
	// tunnel.
	cut     chan struct{}
	cutting sync.Once
	// drainEnd is closed when a reload's drain of the environment stops
	// waiting for its requests: at drain_timeout, or sooner when more
	// than maxDrainingGenerations newer generations of it drain
	// (Server.boundDrains; outlived says so).
	drainEnd    chan struct{}
	endingDrain sync.Once
	outlived    atomic.Bool
	// shuttingDown is set by Server.Shutdown before it cuts the
	// environment: the 503 of a request cut then says so.
	shuttingDown atomic.Bool
	closing      sync.Once
	closed       chan struct{}
}

// proxyRuntime is one proxy as the request path needs it.
type proxyRuntime struct {
	env          *Env
	name         string
	basePath     string
	targetPath   string
	upstream     *upstream.Upstream
	upstreamName string
	passHost     string // pass | node | rewrite
	upstreamHost string
	retries      int
	// tunnelIdle closes a WebSocket tunnel through which no byte went
	// either way for this long: the upstream's response_timeout.
	tunnelIdle time.Duration
	metrics    *requestMetrics // the proxy's own series; nil when rules.prometheus is off
	// served counts the proxy's finished requests for the status page
	// when metrics is nil (metrics counts them otherwise).
	served atomic.Uint64
	// lane is the proxy's share of the environment's pool (pointing at
	// share); nil when the proxy may use all of it (a lone proxy without
	// max_in_flight), which keeps admission to the pool's single CAS.
	lane  *pool.Lane
	share pool.Lane
	// msgShareFull is the env.overloaded message when the proxy's share
	// is taken, made at the first such answer and kept (most proxies
	// never give one, and a reload builds thousands of them).
	msgShareFull atomic.Pointer[string]
}

// shareFullMessage is the message of a 503 for a proxy whose share of its
// environment's pool is taken.
func (pr *proxyRuntime) shareFullMessage() string {
	if m := pr.msgShareFull.Load(); m != nil {
		return *m
	}
	st := pr.lane.Stats()
	m := fmt.Sprintf("proxy %s of environment %s is at its share (%d workers, %d queue places) of the environment's limit",
		pr.name, pr.env.Name, st.MaxInFlight, st.MaxQueued)
	pr.msgShareFull.Store(&m)
	return m
}

// requests returns how many requests the proxy has finished.
func (pr *proxyRuntime) requests() uint64 {
	if m := pr.metrics; m != nil {
		var n uint64
		for c := 1; c <= 5; c++ {
			n += m.byClass[c].Load()
		}
		return n
	}
	return pr.served.Load()
}

// newEnv builds and starts the runtime of an environment. prev is the
// runtime it replaces (nil when the environment is new): its upstreams'
// health verdicts carry over to the nodes whose URL is unchanged.
func newEnv(ep *EnvPlan, prev *Env, log *slog.Logger) (*Env, error) {
	e := &Env{
		Name: ep.Env.Name,
		Hash: ep.Hash,
		plan: ep,
		pool: pool.New(pool.Config{
			Workers:      ep.Env.Workers,
			Queue:        ep.Env.QueueLen(),
			QueueTimeout: ep.Env.QueueTimeout.Duration,
			RejectDelay:  ep.Env.RejectDelay.Duration,
		}),
		upstreams:    map[string]*upstream.Upstream{},
		proxies:      map[string]*proxyRuntime{},
		maxBody:      ep.MaxBodyBytes,
		writeTimeout: ep.WriteTimeout,
		set:          metrics.NewSet(),
		labels:       envLabels(ep.Env),
		log:          log.With(logLabels(ep.Env)...),
		closed:       make(chan struct{}),
		cut:          make(chan struct{}),
		drainEnd:     make(chan struct{}),
		warnLines:    lineBudget{perSec: upstreamLinesPerSec, burst: upstreamLinesBurst},
		tunnels:      map[net.Conn]struct{}{},
	}
	if prev != nil {
		e.tunnelsOpen = prev.tunnelsOpen
	} else {
		e.tunnelsOpen = new(atomic.Int64)
	}
	// The counters continue from prev's where the series are the same
	// (same labels): Prometheus sees no reset, and the requests prev
	// finishes while it drains are counted. Labels that changed make
	// other series, which start from zero.
	counted := prev
	if prev != nil && prev.labels != e.labels {
		counted = nil
	}
	if counted != nil {
		e.carry = counted.carry
	} else {
		e.carry = &poolCarry{draining: map[*Env]bool{}}
	}
	e.msgQueueFull = "environment " + e.Name + " is at its limit: " + pool.ErrQueueFull.Error()
	e.msgQueueTimeout = "environment " + e.Name + " is at its limit: " + pool.ErrQueueTimeout.Error()
	for _, uc := range ep.Upstreams {
		u, err := upstream.New(upstreamConfig(e.Name, uc, ep, e.log))
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("environment %q: upstream %q: %w", e.Name, uc.Name, err)
		}
		if prev != nil {
			u.InheritHealth(prev.upstreams[uc.Name])
			u.ContinueRotation(prev.upstreams[uc.Name])
		}
		if counted != nil {
			u.ContinueCounters(counted.upstreams[uc.Name])
		}
		e.upstreams[uc.Name] = u
		if c := upstreamCertsOf(uc, ep); c.caFile != "" || c.certFile != "" {
			if e.certs == nil {
				e.certs = map[string]upstreamCerts{}
			}
			e.certs[uc.Name] = c
		}
	}
	e.metrics = newRequestMetrics(e.labels)
	if counted != nil {
		e.metrics = counted.metrics
	}
	series := []*requestMetrics{e.metrics}
	prom := ep.Env.Rules.Prometheus.On()
	for _, px := range ep.Proxies {
		upName := px.Upstream
		if px.Target != "" {
			upName = targetUpstreamName(px.Name)
		}
		uc := ep.upstreams[upName]
		pr := &proxyRuntime{
			env:          e,
			name:         px.Name,
			basePath:     px.BasePath,
			targetPath:   px.ForwardPath(),
			upstream:     e.upstreams[upName],
			upstreamName: upName,
			passHost:     uc.PassHost,
			upstreamHost: uc.UpstreamHost,
			retries:      uc.RetryCount(),
			tunnelIdle:   uc.ResponseTimeout.Duration,
		}
		if maxIn, maxQ := ep.Env.ProxyLimits(px, len(ep.Proxies)); maxIn < ep.Env.Workers || maxQ < ep.Env.QueueLen() {
			e.pool.InitLane(&pr.share, maxIn, maxQ)
			pr.lane = &pr.share
		}
		if prom {
			if counted != nil && counted.proxies[px.Name] != nil {
				pr.metrics = counted.proxies[px.Name].metrics
			}
			if pr.metrics == nil {
				pr.metrics = newRequestMetrics(e.labels + ",proxy=" + promQuote(px.Name))
			}
			series = append(series, pr.metrics)
		}
		e.proxies[px.Name] = pr
	}
	e.registerMetrics(series)
	if al := ep.Env.Rules.AccessLog; al.On() {
		a, err := openLineLog(al.Path, logPlace{stateDir: ep.stateDir, logDir: ep.logDir}, e.log)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("environment %q: access_log: %w", e.Name, err)
		}
		e.access = a
		e.accessCombined = al.Format == config.AccessLogCombined
		a.gone.suppressed, a.dropped = new(metrics.Counter), new(metrics.Counter)
		if counted != nil && counted.access != nil {
			a.gone.suppressed, a.dropped = counted.access.gone.suppressed, counted.access.dropped
		}
	}
	if ep.AuditPath != "" {
		if err := os.MkdirAll(filepath.Dir(ep.AuditPath), 0o750); err != nil {
			e.Close()
			return nil, fmt.Errorf("environment %q: audit_log: %w", e.Name, err)
		}
		a, err := openLineLog(ep.AuditPath, logPlace{}, e.log)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("environment %q: audit_log: %w", e.Name, err)
		}
		e.audit = a
		a.mustWrite = true
		a.gone.suppressed = new(metrics.Counter)
		if counted != nil && counted.audit != nil {
			a.gone.suppressed = counted.audit.gone.suppressed
		}
	}
	for _, u := range e.upstreams {
		u.Start()
	}
	return e, nil
}

// registerMetrics adds the environment's pool and upstream series, and its
// request series (the environment's and its proxies'), to its set.
func (e *Env) registerMetrics(series []*requestMetrics) {
	name := func(metric, extra string) string {
		return metric + "{" + e.labels + extra + "}"
	}
	e.set.NewGauge(name("edged_pool_workers", ""), func() float64 { return float64(e.pool.Stats().Workers) })
	e.set.NewGauge(name("edged_pool_in_flight", ""), func() float64 { return float64(e.pool.Stats().InFlight) })
	e.set.NewGauge(name("edged_pool_queued", ""), func() float64 { return float64(e.pool.Stats().Queued) })
	e.set.NewGauge(name("edged_pool_rejected_total", `,reason="queue_full"`), func() float64 { return float64(e.poolTotals().rejected) })
	e.set.NewGauge(name("edged_pool_rejected_total", `,reason="queue_timeout"`), func() float64 { return float64(e.poolTotals().timedOut) })
	e.set.NewGauge(name("edged_pool_admitted_total", ""), func() float64 { return float64(e.poolTotals().admitted) })
	e.set.NewGauge(name("edged_environment_requests_held", ""), func() float64 { return float64(e.pool.Stats().Held) })
	e.set.NewGauge(name("edged_pool_held_total", ""), func() float64 { return float64(e.poolTotals().heldTotal) })
	e.set.NewGauge(name("edged_pool_hold_off", ""), func() float64 {
		if e.pool.Stats().HoldOff {
			return 1
		}
		return 0
	})
	e.set.NewGauge(name("edged_pool_hold_offs_total", ""), func() float64 { return float64(e.poolTotals().holdOffs) })
	e.set.NewGauge(name("edged_websocket_tunnels", ""), func() float64 { return float64(e.tunnelsOpen.Load()) })
	e.set.RegisterMetricsWriter(func(w io.Writer) {
		for _, m := range series {
			m.writePrometheus(w)
		}
		e.writeShares(w)
		e.writeNodes(w)
		e.writeCerts(w)
		e.writeLogCounters(w)
	})
}

// writeLogCounters writes the counters of the environment's access and
// audit logs. They are written, not registered in the set, so that a
// rebuilt environment's logs count on from its predecessor's (newEnv).
func (e *Env) writeLogCounters(w io.Writer) {
	if a := e.access; a != nil {
		fmt.Fprintf(w, "edged_access_log_dropped_total{%s} %d\n", e.labels, a.dropped.Get())
		fmt.Fprintf(w, "edged_log_lines_suppressed_total{%s,log=\"access\"} %d\n", e.labels, a.gone.suppressed.Get())
	}
	if a := e.audit; a != nil {
		fmt.Fprintf(w, "edged_log_lines_suppressed_total{%s,log=\"audit\"} %d\n", e.labels, a.gone.suppressed.Get())
	}
}

// poolCarry holds, for the instances of an environment that a reload
// replaced (and whose labels the new ones kept), their pools' counters:
// those of the instances that closed, summed, and the instances still
// draining, whose pools may count on.
type poolCarry struct {
	mu       sync.Mutex
	closed   poolCounts
	draining map[*Env]bool
	// shares are the proxies limited to a share in the newest instance:
	// only theirs are carried (a removed proxy's series left /metrics).
	shares map[string]bool
}

// poolCounts are the counters of a pool and its proxies' shares.
type poolCounts struct {
	admitted, rejected, timedOut, heldTotal, holdOffs uint64
	proxyRejected                                     map[string]uint64 // of the proxies limited to a share
}

func (c *poolCounts) add(o poolCounts) {
	c.admitted += o.admitted
	c.rejected += o.rejected
	c.timedOut += o.timedOut
	c.heldTotal += o.heldTotal
	c.holdOffs += o.holdOffs
	for name, n := range o.proxyRejected {
		if c.proxyRejected == nil {
			c.proxyRejected = map[string]uint64{}
		}
		c.proxyRejected[name] += n
	}
}

// ownCounts are the counters of e's own pool.
func (e *Env) ownCounts() poolCounts {
	st := e.pool.Stats()
	c := poolCounts{admitted: st.Admitted, rejected: st.Rejected, timedOut: st.TimedOut, heldTotal: st.HeldTotal, holdOffs: st.HoldOffs}
	for name, pr := range e.proxies {
		if pr.lane != nil {
			if c.proxyRejected == nil {
				c.proxyRejected = map[string]uint64{}
			}
			c.proxyRejected[name] = pr.lane.Stats().Rejected
		}
	}
	return c
}

// poolTotals are e's pool counters counted on from those of the
// instances it replaced (carry). Read at scrape time only.
func (e *Env) poolTotals() poolCounts {
	t := e.ownCounts()
	e.carry.mu.Lock()
	defer e.carry.mu.Unlock()
	t.add(e.carry.closed)
	for d := range e.carry.draining {
		if d != e {
			t.add(d.ownCounts())
		}
	}
	return t
}

// retire hands c old, an instance replaced by next, which shares c, while
// it drains; fold sums its counters into c's once it has closed.
func (c *poolCarry) retire(old, next *Env) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining[old] = true
	c.shares = map[string]bool{}
	for name, pr := range next.proxies {
		if pr.lane != nil {
			c.shares[name] = true
		}
	}
	c.pruneShares()
}

func (c *poolCarry) fold(old *Env) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining[old] {
		delete(c.draining, old)
		c.closed.add(old.ownCounts())
		c.pruneShares()
	}
}

// pruneShares forgets the counts of the proxies that are no longer
// limited to a share, c.mu held: what c keeps is bounded by the config.
func (c *poolCarry) pruneShares() {
	for name := range c.closed.proxyRejected {
		if !c.shares[name] {
			delete(c.closed.proxyRejected, name)
		}
	}
}

// writeNodes writes the health and counters of every upstream node, at
// scrape time as writeShares does: a proxy's fixed target is an upstream
// of its own, so an environment of thousands of proxies has thousands of
// nodes, none of them registered one by one.
func (e *Env) writeNodes(w io.Writer) {
	for _, uc := range e.plan.Upstreams {
		u := e.upstreams[uc.Name]
		fmt.Fprintf(w, "edged_upstream_retries_denied_total{%s,upstream=%s} %d\n", e.labels, promQuote(uc.Name), u.RetriesDenied())
		for _, n := range u.Nodes() {
			st := n.Stats()
			labels := e.labels + ",upstream=" + promQuote(uc.Name) + ",node=" + promQuote(n.Addr())
			healthy := 0
			if n.Healthy() {
				healthy = 1
			}
			fmt.Fprintf(w, "edged_upstream_node_healthy{%s} %d\n", labels, healthy)
			fmt.Fprintf(w, "edged_upstream_requests_total{%s} %d\n", labels, st.Requests)
			fmt.Fprintf(w, "edged_upstream_failures_total{%s} %d\n", labels, st.Failures)
			fmt.Fprintf(w, "edged_upstream_connections_total{%s} %d\n", labels, st.Dials)
			fmt.Fprintf(w, "edged_upstream_ejections_total{%s} %d\n", labels, st.Ejections)
			fmt.Fprintf(w, "edged_upstream_retries_total{%s,kind=\"fresh_connection\"} %d\n", labels, st.Retried)
			fmt.Fprintf(w, "edged_upstream_retries_total{%s,kind=\"other_node\"} %d\n", labels, st.Redispatched)
		}
	}
}

// upstreamCerts are the certificate files an upstream shows its https
// nodes or verifies them against, with when each stops verifying.
type upstreamCerts struct {
	certFile, caFile string // tls_cert_file, tls_ca_file; "" when not set
	// certEnd is the client certificate chain's end (config.ChainNotAfter),
	// caEnd the earliest end of the CAs (config.CABundle.NotAfter): both
	// found by the load that read the files, with their warnings.
	certEnd, caEnd time.Time
}

// upstreamCertsOf finds the certificate files of uc in what ep's load
// read; none for an upstream without an https node, which uses none.
func upstreamCertsOf(uc *config.Upstream, ep *EnvPlan) upstreamCerts {
	var c upstreamCerts
	if !config.HasHTTPSNode(uc) {
		return c
	}
	if b := ep.CAs[uc.TLSCAFile]; b != nil && uc.TLSCAFile != "" && !b.NotAfter.IsZero() {
		c.caFile, c.caEnd = uc.TLSCAFile, b.NotAfter
	}
	if cc := ep.Certs[config.ClientCertKey(uc)]; cc != nil && !cc.NotAfter.IsZero() {
		c.certFile, c.certEnd = uc.TLSCertFile, cc.NotAfter
	}
	return c
}

// writeCerts writes when the certificate files of the environment's
// upstreams stop verifying.
func (e *Env) writeCerts(w io.Writer) {
	for _, uc := range e.plan.Upstreams {
		c, ok := e.certs[uc.Name]
		if !ok {
			continue
		}
		labels := e.labels + ",upstream=" + promQuote(uc.Name)
		if c.certFile != "" {
			fmt.Fprintf(w, "edged_upstream_client_certificate_not_after_seconds{%s,file=%s} %d\n", labels, promQuote(fileLabel(c.certFile)), c.certEnd.Unix())
		}
		if c.caFile != "" {
			fmt.Fprintf(w, "edged_upstream_ca_not_after_seconds{%s,file=%s} %d\n", labels, promQuote(fileLabel(c.caFile)), c.caEnd.Unix())
		}
	}
}

// fileLabel is a file's path as a label value: Prometheus takes UTF-8
// only, and a file's name may be any bytes.
func fileLabel(path string) string { return strings.ToValidUTF8(path, "\uFFFD") }

// certFileStatus is a certificate file on /status at now; nil for none.
func certFileStatus(path string, end, now time.Time) *CertFileStatus {
	if path == "" {
		return nil
	}
	return &CertFileStatus{Path: path, NotAfter: end, DaysLeft: daysLeft(end, now)}
}

// daysLeft is the whole days from now until end; negative once it has
// passed.
func daysLeft(end, now time.Time) int { return int(math.Floor(end.Sub(now).Hours() / 24)) }

// writeShares writes the series of the proxies limited to a share of the
// pool. They are written at scrape time rather than registered one by one,
// so that building an environment of thousands of proxies registers
// nothing per proxy.
func (e *Env) writeShares(w io.Writer) {
	rejected := e.poolTotals().proxyRejected
	for _, pr := range e.proxies {
		if pr.lane == nil {
			continue
		}
		st := pr.lane.Stats()
		labels := e.labels + ",proxy=" + promQuote(pr.name)
		fmt.Fprintf(w, "edged_pool_proxy_max_in_flight{%s} %d\n", labels, st.MaxInFlight)
		fmt.Fprintf(w, "edged_pool_proxy_in_flight{%s} %d\n", labels, st.InFlight)
		fmt.Fprintf(w, "edged_pool_proxy_queued{%s} %d\n", labels, st.Queued)
		fmt.Fprintf(w, "edged_pool_proxy_rejected_total{%s} %d\n", labels, rejected[pr.name])
	}
}

// upstreamConfig maps an [[upstream]] to the upstream package's config;
// ep holds the CA bundle and client certificate it may name.
func upstreamConfig(env string, uc *config.Upstream, ep *EnvPlan, log *slog.Logger) upstream.Config {
	c := upstream.Config{
		Env:             env,
		Name:            uc.Name,
		Balance:         uc.Balance,
		HashOn:          uc.HashOn,
		ConnectTimeout:  uc.ConnectTimeout.Duration,
		ResponseTimeout: uc.ResponseTimeout.Duration,
		MaxIdlePerNode:  uc.MaxIdlePerNode,
		IdleTimeout:     uc.IdleTimeout.Duration,
		Logger:          log,
	}
	if uc.TLSCAFile != "" || uc.TLSServerName != "" || uc.TLSCertFile != "" {
		c.TLS = &tls.Config{ServerName: uc.TLSServerName}
		if b := ep.CAs[uc.TLSCAFile]; b != nil {
			c.TLS.RootCAs = b.Pool
		}
		if cc := ep.Certs[config.ClientCertKey(uc)]; cc != nil {
			// Sent whatever CAs the node's request names, as nginx and
			// OpenSSL send it: crypto/tls by itself sends none to a node
			// that lists other CAs (or verifies against a bundle it does
			// not advertise), and the handshake fails.
			cert := &cc.Cert
			c.TLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
	}
	if c.MaxIdlePerNode == 0 {
		// The key's 0 keeps no idle connection; the upstream package's
		// 0 means its default, and -1 none.
		c.MaxIdlePerNode = -1
	}
	for _, n := range uc.Nodes {
		u, err := url.Parse(n.URL)
		if err != nil {
			continue // validated by config; unreachable
		}
		c.Nodes = append(c.Nodes, upstream.NodeConfig{Scheme: u.Scheme, Host: u.Host, Weight: n.Weight})
	}
	if a := uc.Health.Active; a != nil {
		c.Active = &upstream.ActiveCheck{Path: a.Path, Interval: a.Interval.Duration, Timeout: a.Timeout.Duration, Healthy: a.Healthy, Unhealthy: a.Unhealthy}
		if uc.PassHost == "rewrite" {
			// Probed as its requests are addressed: a name-based backend
			// answers another Host 404 and would be taken out.
			c.Active.Host = uc.UpstreamHost
		}
	}
	if p := uc.Health.Passive; p != nil {
		c.Passive = &upstream.PassiveCheck{Failures: p.Failures, Eject: p.Eject.Duration}
	}
	return c
}

// drain waits until the environment has no request in flight (but those
// waiting for their bodies, routed again once it has come: waitIdle),
// or until its drain ends (drainEnd: timeout has passed, or too many
// newer generations of it drain, Server.boundDrains), then closes it; at
// the drain's end it first cuts its streams and tunnels and waits for the
// requests left, tunnelLogWait plus the longest response_timeout at most,
// so that their lines reach the logs. stop cuts every wait short (the
// process is shutting down).
func (e *Env) drain(timeout time.Duration, stop <-chan struct{}) {
	defer e.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.AfterFunc(timeout, e.endDrain)
	defer deadline.Stop()
	if e.waitIdle(true, tick.C, e.drainEnd, stop) || chanClosed(stop) {
		return
	}
	why, attrs := "drain timeout passed", []any{"in_flight", e.running()}
	if e.outlived.Load() {
		why = "drain ended before drain_timeout: too many newer generations of the environment (or of environments no longer served) are draining"
		attrs = append(attrs, "draining_at_most", maxDrainingGenerations)
	}
	e.log.Warn(why+"; cutting the responses still streaming and the tunnels, and closing with requests in flight", attrs...)
	// The tunnels are cut now too, not by Close after the wait below:
	// they count in flight, and would run on past drain_timeout for the
	// whole wait. The streams stop at their next read, and the requests
	// still waiting for a backend's answer (or a quiet stream's next
	// chunk) at once. Their lines reach the logs before Close closes
	// them, the wait bounded by their response_timeout: closed under
	// them, the logs would lose their lines.
	e.cutAll()
	wait, cancel := context.WithTimeout(context.Background(), tunnelLogWait+e.longestResponseTimeout())
	defer cancel()
	e.waitIdle(true, tick.C, wait.Done(), stop)
}

// endDrain ends the drain's wait for the requests in flight (drain).
func (e *Env) endDrain() { e.endingDrain.Do(func() { close(e.drainEnd) }) }

// running is how many requests run in the environment but those waiting
// for their bodies (which a replaced one does not serve: waitIdle).
func (e *Env) running() int64 { return e.inflight.Load() - e.bodyWaits.Load() }

// longestResponseTimeout is the longest response_timeout of the
// environment's upstreams: how long a request may still wait on a node.
func (e *Env) longestResponseTimeout() time.Duration {
	var d time.Duration
	for _, uc := range e.plan.Upstreams {
		d = max(d, uc.ResponseTimeout.Duration)
	}
	return d
}

// waitIdle waits until no request is in flight (true), or until or stop
// comes first (false). With bodiesAside, for a replaced environment, a
// request waiting for its body (bodyWaits) counts for nothing, as it will
// be routed on the new snapshot once its body has come (Env.serve checks
// retired then). Counted in flight before it starts waiting (inflight,
// read first), a request is never missed between the two counts.
func (e *Env) waitIdle(bodiesAside bool, tick <-chan time.Time, until, stop <-chan struct{}) bool {
	for {
		busy := e.inflight.Load()
		if bodiesAside {
			busy -= e.bodyWaits.Load()
		}
		if busy <= 0 {
			return true
		}
		select {
		case <-tick:
		case <-until:
			return false
		case <-stop:
			return false
		}
	}
}

// chanClosed reports whether c is closed.
func chanClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// tunnelLogWait bounds how long Close waits for the tunnels it cut to be
// recorded in the access and audit logs (an audit line waits for a slow
// disk).
const tunnelLogWait = 5 * time.Second

// Close stops the environment's health checkers and closes its idle
// upstream connections, its tunnels and its logs. The tunnels go first,
// and the logs wait (tunnelLogWait at most) for their requests' lines: a
// tunnel the drain's end or a shutdown cuts is logged like any other.
// Safe to call more than once.
func (e *Env) Close() {
	e.closing.Do(func() {
		e.cutStreams()
		for _, u := range e.upstreams {
			u.Close()
		}
		e.tunnelMu.Lock()
		for c := range e.tunnels {
			c.Close()
		}
		e.tunnels = nil
		var logged chan struct{}
		if e.unlogged > 0 {
			logged = make(chan struct{})
			e.allLogged = logged
		}
		e.tunnelMu.Unlock()
		if logged != nil {
			wait := time.NewTimer(tunnelLogWait)
			select {
			case <-logged:
			case <-wait.C:
			}
			wait.Stop()
		}
		for _, l := range []*lineLog{e.access, e.audit} {
			if l != nil {
				l.close()
			}
		}
		close(e.closed)
	})
}

// cutAll ends what still runs in the environment once its drain is over
// (a reload's, or the shutdown's): the streams stop at their next read,
// the tunnels are closed, and the requests still waiting on a node (for
// its answer, or a quiet stream's next chunk) end now, not when their
// response_timeout passes. Each is logged as edged's cut, not as its
// client's leaving (exchange.gone). The waits in its pool end too
// (pool.Retire; a reload retired a replaced environment's already): at
// the shutdown, a request queued or held there is answered as edged's
// cut (Env.serve) while its connection is open, not left waiting for the
// connections to close.
func (e *Env) cutAll() {
	e.cutStreams()
	e.cutTunnels()
	for _, u := range e.upstreams {
		u.Cut()
	}
	e.pool.Retire()
}

// cutStreams ends the responses still being copied to clients: each stops
// at its next read from its node, and is aborted (copyBody).
func (e *Env) cutStreams() { e.cutting.Do(func() { close(e.cut) }) }

// cutTunnels closes the tunnels open now; each one's request then ends,
// is logged and leaves the in-flight count. One established later (its
// 101 was on its way) is cut by Close.
func (e *Env) cutTunnels() {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	for c := range e.tunnels {
		c.Close()
	}
}

// addTunnel registers an upgraded connection, which Close will cut, and
// whose request's exchange.finish must then call tunnelLogged.
// It reports false when the environment is already closed.
func (e *Env) addTunnel(c net.Conn) bool {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	if e.tunnels == nil {
		return false
	}
	e.tunnels[c] = struct{}{}
	e.unlogged++
	e.tunnelsOpen.Add(1)
	return true
}

// tunnelLogged records that the request of a tunnel addTunnel took has
// been logged; the last one Close waits for ends its wait.
func (e *Env) tunnelLogged() {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	e.unlogged--
	if e.unlogged == 0 && e.allLogged != nil {
		close(e.allLogged)
		e.allLogged = nil
	}
}

// removeTunnel forgets a tunnel addTunnel took, once it ended.
func (e *Env) removeTunnel(c net.Conn) {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	delete(e.tunnels, c)
	e.tunnelsOpen.Add(-1)
}

// overloadLogEvery spaces the "at its limit" log lines of an environment:
// a flood gets one line per interval, not one per rejected request.
const overloadLogEvery = 10 * time.Second

// overloaded returns the message of a 503 env.overloaded for a pool error
// of proxy px, and logs that the environment is at its limit, or that a
// proxy is at its share of it (which leaves the environment's other
// workers free), each at most once per overloadLogEvery.
func (e *Env) overloaded(err error, px *proxyRuntime) string {
	if err == pool.ErrShareFull {
		last := e.lastShareLog.Load()
		if n := time.Now().UnixNano(); n-last >= int64(overloadLogEvery) && e.lastShareLog.CompareAndSwap(last, n) {
			st, ls := e.pool.Stats(), px.lane.Stats()
			e.log.Warn("proxy at its share of the environment's limit: answering 503 env.overloaded (logged at most every 10s)",
				"proxy", px.name, "proxy_in_flight", ls.InFlight, "proxy_max_in_flight", ls.MaxInFlight, "proxy_queued", ls.Queued,
				"proxy_rejected_total", ls.Rejected, "in_flight", st.InFlight, "workers", st.Workers)
		}
		return px.shareFullMessage()
	}
	last := e.lastOverloadLog.Load()
	if n := time.Now().UnixNano(); n-last >= int64(overloadLogEvery) && e.lastOverloadLog.CompareAndSwap(last, n) {
		st := e.pool.Stats()
		e.log.Warn("environment at its limit: answering 503 env.overloaded (logged at most every 10s)",
			"in_flight", st.InFlight, "queued", st.Queued, "held", st.Held, "hold_off", st.HoldOff,
			"rejected_total", st.Rejected, "timed_out_total", st.TimedOut)
	}
	if err == pool.ErrQueueTimeout {
		return e.msgQueueTimeout
	}
	return e.msgQueueFull
}

// Done is closed once the environment has been closed.
func (e *Env) Done() <-chan struct{} { return e.closed }

// EnvStatus is what /status shows of an environment.
type EnvStatus struct {
	Hash string     `json:"hash"`
	Pool pool.Stats `json:"pool"`
	// ProxyShares are the proxies limited to a share of the pool, by name.
	ProxyShares map[string]pool.LaneStats `json:"proxy_shares,omitempty"`
	InFlight    int64                     `json:"in_flight"`
	Upstreams   []UpstreamStatus          `json:"upstreams"`
	// Home is the directory the environment is declared in, whose owner
	// and group decide who may change it.
	Home *config.Home `json:"home,omitempty"`
	// Rates are the environment's rates and sparkline series (the
	// status page's sampler).
	Rates EnvRates `json:"rates"`
	// Proxies are the environment's proxies by name.
	Proxies []ProxyStatus `json:"proxies"`
}

// ProxyStatus is one proxy on /status.
type ProxyStatus struct {
	Name     string `json:"name"`
	BasePath string `json:"base_path"`
	Upstream string `json:"upstream,omitempty"`
	Target   string `json:"target,omitempty"`
	// RequestsPerSecond is over the last 10 seconds; null until the
	// environment has been sampled that long.
	RequestsPerSecond *float64 `json:"requests_per_second"`
}

// UpstreamStatus is one upstream on /status.
type UpstreamStatus struct {
	Name  string       `json:"name"`
	Nodes []NodeStatus `json:"nodes"`
	// TLSCertFile is the client certificate shown to its https nodes,
	// with its chain's end; TLSCAFile the CAs they are verified
	// against, with the earliest end among them. Nil when not set, or
	// with no https node.
	TLSCertFile *CertFileStatus `json:"tls_cert_file,omitempty"`
	TLSCAFile   *CertFileStatus `json:"tls_ca_file,omitempty"`
}

// CertFileStatus is a certificate file edged depends on, other than a
// virtual host's cert_file, on /status.
type CertFileStatus struct {
	Path     string    `json:"path"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"` // whole days until NotAfter; negative once it has passed
}

// NodeStatus is one node on /status.
type NodeStatus struct {
	Addr    string             `json:"addr"`
	Healthy bool               `json:"healthy"`
	Stats   upstream.NodeStats `json:"stats"`
	// OutSince and OutReason say since when and why a node that is not
	// healthy was taken out (health check or passive ejection).
	OutSince  *time.Time `json:"out_since,omitempty"`
	OutReason string     `json:"out_reason,omitempty"`
}

func (e *Env) status(now time.Time) EnvStatus {
	st := EnvStatus{Hash: e.Hash, Pool: e.pool.Stats(), InFlight: e.inflight.Load()}
	// The counters go on across rebuilds, as on /metrics.
	t := e.poolTotals()
	st.Pool.Admitted, st.Pool.Rejected, st.Pool.TimedOut, st.Pool.HeldTotal, st.Pool.HoldOffs = t.admitted, t.rejected, t.timedOut, t.heldTotal, t.holdOffs
	for name, pr := range e.proxies {
		if pr.lane != nil {
			if st.ProxyShares == nil {
				st.ProxyShares = map[string]pool.LaneStats{}
			}
			ls := pr.lane.Stats()
			ls.Rejected = t.proxyRejected[name]
			st.ProxyShares[name] = ls
		}
	}
	for _, uc := range e.plan.Upstreams {
		u := e.upstreams[uc.Name]
		us := UpstreamStatus{Name: uc.Name}
		if c, ok := e.certs[uc.Name]; ok {
			us.TLSCertFile, us.TLSCAFile = certFileStatus(c.certFile, c.certEnd, now), certFileStatus(c.caFile, c.caEnd, now)
		}
		for _, n := range u.Nodes() {
			ns := NodeStatus{Addr: n.Addr(), Stats: n.Stats()}
			ns.Healthy = ns.Stats.Healthy
			if out := ns.Stats.Out; out != nil {
				ns.OutSince, ns.OutReason = &out.Since, out.Reason
			}
			us.Nodes = append(us.Nodes, ns)
		}
		st.Upstreams = append(st.Upstreams, us)
	}
	st.Proxies = make([]ProxyStatus, 0, len(e.plan.Proxies))
	for _, px := range e.plan.Proxies {
		st.Proxies = append(st.Proxies, ProxyStatus{Name: px.Name, BasePath: px.BasePath, Upstream: px.Upstream, Target: px.Target})
	}
	return st
}

// reservedLabels are the label names edged's own series use; an
// environment label of the same name is left out of metrics.
var reservedLabels = map[string]bool{"env": true, "proxy": true, "class": true, "reason": true, "upstream": true, "node": true, "kind": true, "le": true, "code": true, "result": true, "virtual_host": true, "log": true, "file": true}

// envLabels renders env="name" followed by the environment's labels,
// sorted by key. Keys beginning with "__" are left out too: Prometheus
// reserves them for its own use, and a "__name__" would clash with every
// sample's name.
func envLabels(env *config.Environment) string {
	var b strings.Builder
	b.WriteString("env=")
	b.WriteString(promQuote(env.Name))
	keys := make([]string, 0, len(env.Labels))
	for k := range env.Labels {
		if !reservedLabels[k] && !strings.HasPrefix(k, "__") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(",")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(promQuote(env.Labels[k]))
	}
	return b.String()
}

// logLabels are the attributes of every log line of an environment.
func logLabels(env *config.Environment) []any {
	attrs := []any{"env", env.Name}
	if len(env.Labels) > 0 {
		keys := make([]string, 0, len(env.Labels))
		for k := range env.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		group := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			group = append(group, k, env.Labels[k])
		}
		attrs = append(attrs, slog.Group("labels", group...))
	}
	return attrs
}

// promQuote quotes a label value as the Prometheus text format wants it.
var promEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func promQuote(v string) string { return `"` + promEscaper.Replace(v) + `"` }

// Per-request warnings about an environment's nodes (upstream failed,
// timed out, a body cut) and its contained panics go to stderr within a
// budget per environment: upstreamLinesBurst at once, then
// upstreamLinesPerSec a second; a logged line says how many were left
// out since the previous one. stderr is every environment's and the
// process's own, and a line per request of a failing backend would
// flood it (and have journald's rate limit drop the other environments'
// lines with it); the access log keeps every request and its fault.
const (
	upstreamLinesPerSec = 20
	upstreamLinesBurst  = 100
)
