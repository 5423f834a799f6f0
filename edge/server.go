package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"edged/internal/config"
	"edged/internal/pool"
)

// Server owns the listeners and the current snapshot. Apply swaps in new
// configurations; the listeners stay open across every reload.
type Server struct {
	log *slog.Logger

	snap atomic.Pointer[Snapshot]
	// testHookRouted, set only by tests before the first request, runs
	// between a request's routing and its admission into the environment:
	// the window a reload may retire the environment in.
	testHookRouted atomic.Pointer[func()]
	// testHookAnswer, set only by tests, runs as a read of /metrics,
	// /status or the page arrives (true) and as a rendering of it is
	// made, before it is shared (false).
	testHookAnswer atomic.Pointer[func(arriving bool)]
	// answers are /metrics, /status and the page as rendered for the
	// reads that use them, which the reads of the same that come
	// meanwhile share (writeRendered).
	answers sharedAnswers
	apply   sync.Mutex // serialises Apply; never taken on the request path
	genBase uint64     // generations continue from here (the history of earlier runs)
	// started is the [server] of the first Apply: the listeners and the
	// settings read at start run with it until a restart (under apply).
	started config.Server

	listenOnce sync.Once
	https      *h1Server // the TLS listener: HTTP/1.x, and "h2" through serveH2
	// The HTTP/2 connections, for GOAWAY at shutdown; h2down once sent.
	h2mu      sync.Mutex
	h2conns   map[*h2sConn]struct{}
	h2down    bool
	plain     *h1Server
	admin     *http.Server
	adminLn   *adminConns // the admin listener's connections
	lns       []net.Listener
	httpsAddr net.Addr
	plainAddr net.Addr
	adminAddr net.Addr
	serveErr  chan error
	serving   sync.WaitGroup // the listeners' Serve loops
	draining  atomic.Bool

	// bodyWaitsCut: the shutdown's cut ended the HTTP/2 requests' waits
	// for their bodies (cutWaits); a wait that starts later ends at
	// once.
	bodyWaitsCut atomic.Bool

	// Environments replaced or removed by a reload drain in goroutines
	// owned here: Shutdown stops and waits for them.
	drains    sync.WaitGroup
	stopDrain chan struct{}
	stopOnce  sync.Once

	// refusals counts and logs requests refused before routing and TLS
	// handshakes.
	refusals *refusalLog
	// conns is max_connections over both public listeners, set by Apply.
	conns connLimit
	// readAhead bounds the request bodies read ahead of their workers
	// over both public listeners (readAheadPerProcess).
	readAhead *processBudget
	// held bounds the HTTP/2 answer bytes held for window in all
	// connections (h2HeldPerProcess).
	held *processBudget
	// uploads bounds the HTTP/2 request body bytes held unread for streams
	// with their workers whose connection window was given back
	// (h2UploadsPerProcess).
	uploads *processBudget
	// turns orders TLS handshakes behind established connections' work
	// (hsturns.go); set with the TLS listener, closed by Shutdown.
	turns *handshakeTurns

	// for /status: the last reload attempt, and the replaced environments
	// still draining (since when; boundDrains ends the oldest)
	statusMu   sync.Mutex
	lastResult *ReloadRecord
	attempts   uint64 // reload attempts recorded, lastResult the last
	retiring   map[*Env]time.Time
	recentGens atomic.Pointer[func() []GenerationSummary]
	homes      homesCache // the environments' homes, for Status (admin.go)

	// The status page's series: sampled once a second while the admin
	// listener serves; Shutdown stops the sampler and waits for it.
	sampler     *sampler
	stopSampler chan struct{}
	sampling    sync.WaitGroup
}

// ReloadRecord is the outcome of one reload attempt.
type ReloadRecord struct {
	Time       time.Time      `json:"time"`
	Trigger    string         `json:"trigger"`
	OK         bool           `json:"ok"`
	Generation uint64         `json:"generation"`
	Errors     []config.Error `json:"errors,omitempty"`
	// ErrorsOmitted is how many errors after Errors the reload had: a
	// record keeps the first maxReportedErrors.
	ErrorsOmitted int     `json:"errors_omitted,omitempty"`
	Change        *Change `json:"change,omitempty"`
	// Unchanged says the reload found the same files (config, certificates,
	// keys) as the serving generation: nothing was built, and Generation
	// is the one that kept serving.
	Unchanged bool `json:"unchanged,omitempty"`
}

// NewServer returns a server with nothing applied yet.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{log: log, refusals: newRefusalLog(log), serveErr: make(chan error, 4), stopDrain: make(chan struct{}), retiring: map[*Env]time.Time{},
		sampler: newSampler(), stopSampler: make(chan struct{}), readAhead: newProcessBudget(readAheadPerProcess),
		held: newProcessBudget(h2HeldPerProcess), uploads: newProcessBudget(h2UploadsPerProcess)}
}

// ContinueGenerations makes the first Apply number its generation last+1,
// so numbers stay unique across restarts. Call it before the first Apply.
func (s *Server) ContinueGenerations(last uint64) { s.genBase = last }

// Snapshot returns the snapshot serving now (nil before the first Apply).
func (s *Server) Snapshot() *Snapshot { return s.snap.Load() }

// Apply compiles cfg and swaps it in. Environments whose compiled content
// is unchanged keep running as they are; changed and removed ones drain
// for drain_timeout and close. A failure changes nothing that serves.
func (s *Server) Apply(cfg *config.Config) (*Snapshot, Change, error) {
	s.apply.Lock()
	defer s.apply.Unlock()
	prev := s.snap.Load()
	var prevPlan *Plan
	if prev != nil {
		prevPlan = prev.Plan
	}
	plan, err := compile(cfg, prevPlan)
	if err != nil {
		return nil, Change{}, err
	}
	gen := s.genBase + 1
	if prev != nil {
		gen = prev.Generation + 1
	}
	next, ch, err := build(plan, prev, gen, s.log)
	if err != nil {
		return nil, Change{}, err
	}
	var replaced []*Env
	if prev == nil {
		s.started = cfg.Server
	} else {
		warnRestartNeeded(s.log, s.started, cfg.Server)
		for name, old := range prev.envs {
			if ne := next.envs[name]; ne != old {
				// The new instance of the same name counts on from old's
				// pool counters (they share the carry) before either set
				// changes: a scrape never sees them go back.
				if ne != nil && ne.carry == old.carry {
					old.carry.retire(old, ne)
				}
				// Its series go with the old snapshot: /metrics writes the
				// environments of the one serving (writeSeries).
				replaced = append(replaced, old)
			}
		}
	}
	maxConns := cfg.Server.MaxConnections
	if maxConns <= 0 {
		maxConns = connLimitFromFiles()
	}
	for _, e := range next.envs {
		e.pool.SetMaxHeld(maxHeld(e.plan.Env, maxConns))
	}
	s.snap.Store(next)
	// Drains start once no new request can pick the old snapshot up: an
	// idle replaced environment closes at once, and must not while the
	// old snapshot still serves.
	now := time.Now()
	for _, old := range replaced {
		// Before the drain reads the in-flight count: see Env.serve.
		old.retired.Store(true)
		// And the requests still waiting in its pool go back to be
		// routed on next (Env.serve), instead of waiting there for the
		// old environment's workers.
		old.pool.Retire()
		// Its upstreams serve only its requests in flight from now on:
		// their health checkers, reapers and idle connections go now,
		// not when the drain ends (the new generation checks the same
		// nodes).
		for _, u := range old.upstreams {
			u.Retire()
		}
		s.drains.Add(1)
		s.statusMu.Lock()
		s.retiring[old] = now
		s.statusMu.Unlock()
		go func(old *Env, timeout time.Duration) {
			defer s.drains.Done()
			old.drain(timeout, s.stopDrain)
			old.carry.fold(old)
			s.statusMu.Lock()
			delete(s.retiring, old)
			s.statusMu.Unlock()
		}(old, prev.Plan.Config.Server.DrainTimeout.Duration)
	}
	s.boundDrains(next)
	s.conns.setMax(maxConns)
	configGeneration.Store(gen)
	lastReloadSuccess.Store(time.Now().Unix())
	lastReloadFailed.Store(false)
	return next, ch, nil
}

// heldConnsShare is the share of max_connections (1/heldConnsShare) that
// one environment's held requests may keep (maxHeld).
const heldConnsShare = 4

// maxHeld is the bound on the requests an environment's pool holds at
// once before their 503 (pool.SetMaxHeld): the pool's own
// (pool.DefaultMaxHeld), and at most a quarter of max_connections. A held
// HTTP/1.1 request keeps its connection, which counts in max_connections
// with every other environment's; an open-loop flood (a new connection
// per request) keeps rate × reject_delay of them held. With a bound at or
// above max_connections, such a flood of one environment held every
// connection edged may have: edged stopped accepting, the other
// environments' new clients waited in the listen queue until the holds
// ended, and the bound, never reached, never started the hold-off that
// answers such a flood at once. Set on every Apply, since a reload
// changes max_connections without rebuilding the environments.
func maxHeld(env *config.Environment, maxConns int) int {
	return min(pool.DefaultMaxHeld(env.Workers, env.QueueLen()), max(1, maxConns/heldConnsShare))
}

// maxDrainingGenerations bounds how many generations of one environment
// drain at once. Each keeps its runtime (pool, proxies, upstreams: about
// 650 bytes a proxy) and a goroutine polling its drain 50 times a second
// for as long as one of its requests runs, up to drain_timeout: a deploy
// tool rewriting an environment's file every few hundred milliseconds,
// with a stream or WebSocket open in each generation, would keep reload
// rate × drain_timeout of them. Past the bound the oldest one's drain
// ends at once, as at its drain_timeout (HAProxy's mworker-max-reloads
// ends an old worker that outlived that many reloads). It is counted per
// environment: another environment's reloads never cut its requests. The
// generations of environments no longer served count together, whatever
// their names: whoever writes a home may rename its environment at every
// write, each generation draining under a name of its own.
const maxDrainingGenerations = 16

// boundDrains ends the drain of the generations older than the newest
// maxDrainingGenerations still running requests, of each environment
// next serves, and of those it does not serve together. Called by Apply
// once it started the drains of what next replaced.
func (s *Server) boundDrains(next *Snapshot) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	running := map[string][]*Env{} // by environment; "" for those next does not serve
	for g := range s.retiring {
		// An idle one closes without help; one whose drain already
		// ended only waits for the lines of what it cut.
		if chanClosed(g.drainEnd) || g.running() <= 0 {
			continue
		}
		name := g.Name
		if next.Env(name) == nil {
			name = ""
		}
		running[name] = append(running[name], g)
	}
	for _, gens := range running {
		if len(gens) <= maxDrainingGenerations {
			continue
		}
		// Newest first: each Apply retires at a later time.
		slices.SortFunc(gens, func(a, b *Env) int { return s.retiring[b].Compare(s.retiring[a]) })
		for _, g := range gens[maxDrainingGenerations:] {
			g.outlived.Store(true)
			g.endDrain()
		}
	}
}

// Listen binds the listeners named by the current snapshot's [server]. It
// is called once; later changes to the addresses need a restart.
func (s *Server) Listen() error {
	snap := s.snap.Load()
	if snap == nil {
		return errors.New("no configuration applied")
	}
	var err error
	s.listenOnce.Do(func() { err = s.listen(snap.Plan.Config.Server) })
	return err
}

func (s *Server) listen(sc config.Server) error {
	// Bind everything first: a port in use fails the start before any
	// listener serves.
	bind := func(name, addr string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen(listenNetwork(addr), addr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("server: %s: %w", name, err)
		}
		s.lns = append(s.lns, ln)
		return ln, nil
	}
	httpsLn, err := bind("https", sc.HTTPS)
	if err != nil {
		return err
	}
	plainLn, err := bind("http", sc.HTTP)
	if err != nil {
		return err
	}
	adminLn, err := bind("admin", sc.Admin)
	if err != nil {
		return err
	}

	if s.turns, err = newHandshakeTurns(runtime.GOMAXPROCS(0)); err != nil {
		s.closeListeners()
		return fmt.Errorf("server: https: %w", err)
	}
	s.https = s.clientServer(s, sc, &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: s.tlsForClient,
		NextProtos:         []string{"h2", "http/1.1"},
	})
	h2cfg := h2Config{
		maxStreams:   uint32(sc.H2MaxConcurrentStreams), // 1 to 10000, validated
		maxHeader:    uint32(sc.MaxHeaderBytes) + h2FieldAllowance,
		readTimeout:  sc.ReadTimeout.Duration,
		writeTimeout: sc.WriteTimeout.Duration,
		idleTimeout:  sc.IdleTimeout.Duration,
		headTimeout:  sc.ReadHeaderTimeout.Duration,
	}
	s.https.h2 = func(ctx context.Context, tc *tls.Conn) { s.serveH2(ctx, tc, h2cfg) }
	s.httpsAddr = httpsLn.Addr()
	s.serve(s.https.Serve, httpsLn)
	if plainLn != nil {
		var h http.Handler = s
		if sc.HTTPMode != "serve" {
			h = s.redirectHandler(httpsLn.Addr())
		}
		s.plain = s.clientServer(h, sc, nil)
		s.plainAddr = plainLn.Addr()
		s.serve(s.plain.Serve, plainLn)
	}
	if adminLn != nil {
		h := s.adminHandler()
		if a, ok := adminLn.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			h = adminHostGuard(h)
		}
		s.adminLn = adminListener(adminLn)
		s.admin = &http.Server{
			Handler:           h,
			ConnState:         s.adminLn.connState,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			// Its requests are short GETs: the proxy's default head
			// limit, not net/http's 1 MiB.
			MaxHeaderBytes: config.DefaultMaxHeaderBytes,
			// net/http's own errors (a TLS or accept failure) as
			// edged's log lines, not raw text on stderr.
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		s.adminAddr = adminLn.Addr()
		s.serve(s.admin.Serve, s.adminLn)
		s.sampling.Add(1)
		go func() {
			defer s.sampling.Done()
			s.sampler.run(s.snap.Load, s.stopSampler)
		}()
	}
	return nil
}

// HTTP/2 connection guards that [server] does not name. A peer that goes
// silent (a client that vanished with a long stream open) is pinged after
// h2ReadIdleTimeout and dropped when no answer comes within
// h2PingTimeout (variables for tests only). A write on the wire that does
// not finish within write_timeout closes the connection: h2Conn
// (h2conn.go) enforces it. The upload buffers are the flow-control
// windows: what one connection, and one stream of it, may send ahead of
// what edged has forwarded, so they bound the memory a client can pin.
//
// h2MaxFrame is the largest frame a client may send: RFC 9113's default
// (nginx's too). It must stay within the stream window: a client may
// send a DATA frame of the announced size at once, and one larger than
// the window is a flow-control error that resets the stream (h2spec 4.2.1
// with the earlier 1 MiB); and a HEADERS frame above it is the
// FRAME_SIZE_ERROR RFC 9113 wants (h2spec 4.2.3).
//
// h2StreamPreread is a stream's window until its request has its worker
// (SETTINGS_INITIAL_WINDOW_SIZE): what it reads ahead (bodyWaitMax), as
// nginx's http2_body_preread_size. Its first read with its worker opens
// it to h2UploadPerStream. A stream waiting in the queue with a whole
// stream window could hold that much unread besides what it read ahead,
// and four such held the connection's window, starving the upload being
// forwarded (and the body waits of the streams after them) until
// read_timeout blamed the client.
const (
	h2MaxFrame        = 16 << 10
	h2UploadPerConn   = 1 << 20
	h2UploadPerStream = 256 << 10
	h2StreamPreread   = bodyWaitMax
	// h2UploadsPerProcess bounds the body bytes that streams with their
	// workers hold unread, their connection's window given back when
	// they came (processData): 1,024 streams' h2UploadPerStream. Past
	// it, those bytes hold their connection's window until read.
	h2UploadsPerProcess = 256 << 20
)

var (
	h2ReadIdleTimeout = 30 * time.Second
	h2PingTimeout     = 15 * time.Second
)

// listenNetwork is the network a listener on addr binds: "tcp4" for an
// IPv4 address, 0.0.0.0 included, else "tcp". Go's "tcp" binds 0.0.0.0
// as [::] with IPV6_V6ONLY off, every IPv6 address too, where nginx,
// HAProxy and Envoy read it as every IPv4 address only: an admin
// listener on 0.0.0.0 behind a firewall for IPv4 answered over IPv6. "[::]"
// and an empty host (":443") stay both families (an IPv4 client is seen as
// its IPv4 address); config's sameListenAddr judges overlaps the same way.
func listenNetwork(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.To4() != nil {
		return "tcp4"
	}
	return "tcp"
}

// serve runs a listener's Serve on ln until Shutdown; an unexpected stop
// is reported on Errors.
func (s *Server) serve(serve func(net.Listener) error, ln net.Listener) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- err
		}
	}()
}

// clientServer is edged's HTTP/1.x server for clients' connections with
// the [server] timeouts and limits; tc nil for the plain listener.
func (s *Server) clientServer(h http.Handler, sc config.Server, tc *tls.Config) *h1Server {
	hs := newH1Server(h, s.log, tc, sc.ReadHeaderTimeout.Duration, sc.ReadTimeout.Duration,
		sc.WriteTimeout.Duration, sc.IdleTimeout.Duration, sc.MaxHeaderBytes)
	hs.refusals = s.refusals
	hs.limit = &s.conns
	hs.lameDuck = &s.draining
	hs.readAhead = s.readAhead
	return hs
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Addrs returns the bound addresses: https, http (or nil), admin (or nil).
func (s *Server) Addrs() (https, plain, admin net.Addr) {
	return s.httpsAddr, s.plainAddr, s.adminAddr
}

// Errors reports a listener that stopped serving on its own.
func (s *Server) Errors() <-chan error { return s.serveErr }

// tlsForClient picks the virtual host of a handshake by SNI: exact name,
// then the longest wildcard, then the default virtual host, else refuse.
// What it chose is noted on the connection, to tell and count the
// handshake's outcome by virtual host (h1Conn.handshake).
func (s *Server) tlsForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	snap := s.snap.Load()
	if g := snap.groupForSNI(hello.ServerName); g != nil && g.tls != nil {
		noteHello(hello, g)
		if hc, ok := hello.Conn.(*helloConn); ok && s.turns != nil {
			if err := s.turns.take(g.name, hc.deadline); err != nil {
				return nil, err
			}
			hc.turn, hc.turns, hc.line = s.turns, s.turns, g.name
		}
		return g.tlsFor(hello.SupportedVersions), nil
	}
	noteHello(hello, nil)
	// The error only classifies the handshake (classifyHandshake), and
	// nothing logs it: quoting a name of up to 64 KiB in it cost every
	// unknown-name handshake a copy of it.
	return nil, errUnknownSNI
}

// NotReady makes /readyz answer 503 from now on while every listener
// keeps serving: the lame-duck period before Shutdown, in which a load
// balancer takes the instance out before its connections are refused.
// Every answer from now on ends its connection (HTTP/1.1: Connection:
// close; HTTP/2: GOAWAY, h2Response.writeFields), as Envoy's drain does:
// a keep-alive client sends its next request on a new connection, which
// a load balancer that took the instance out sends elsewhere. Kept open,
// the connection stayed on this instance until Shutdown closed it as an
// idle one, losing a request its client sent at that moment.
func (s *Server) NotReady() { s.draining.Store(true) }

// Shutdown stops accepting, lets in-flight requests and tunnels finish,
// and replaced environments drain, until ctx is done, then closes every
// environment (cutting what is left). The admin listener stays up until
// the client listeners have drained, so /readyz (503) and /status can be
// watched through the drain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var (
		errs []error
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	s.goAwayH2()
	// When ctx ends, the listeners close the connections left; edged's
	// cut goes first (cutEnvironments), so that a request it ends is
	// answered and logged as edged's cut (503), not taken for its
	// client's leaving (499) once its connection is closed under it.
	lctx, closeConns := context.WithCancel(context.Background())
	defer closeConns()
	cutDone := make(chan struct{})
	stopCut := context.AfterFunc(ctx, func() {
		defer close(cutDone)
		s.cutEnvironments()
		closeConns()
	})
	for _, hs := range []*h1Server{s.https, s.plain} {
		if hs == nil {
			continue
		}
		wg.Add(1)
		go func(hs *h1Server) {
			defer wg.Done()
			if err := hs.Shutdown(lctx); err != nil {
				if ctx.Err() != nil {
					err = ctx.Err() // lctx's end is ctx's
				}
				fail(err)
			}
		}(hs)
	}
	wg.Wait()
	// The tunnels (hijacked: the listeners no longer count them) and the
	// environments a reload replaced get the rest of the drain, as a
	// reload's drain gives them drain_timeout, before Close cuts them.
	drained := s.waitDrained(ctx)
	if !stopCut() {
		<-cutDone // the requests it cut are logged before Close below
		drained = false
	}
	if !drained && len(errs) == 0 {
		errs = append(errs, ctx.Err())
	}
	if s.admin != nil {
		// Its requests are short: once ctx is done, close what is left.
		if err := s.admin.Shutdown(ctx); err != nil {
			s.admin.Close()
			fail(err)
		}
	}
	s.serving.Wait() // closed by Shutdown or Close above: they return at once
	s.stopOnce.Do(func() {
		close(s.stopDrain)
		close(s.stopSampler)
	})
	s.sampling.Wait()
	s.drains.Wait()
	if s.turns != nil {
		s.turns.close()
	}
	if snap := s.snap.Load(); snap != nil {
		for _, e := range snap.envs {
			e.Close()
		}
	}
	return errors.Join(errs...)
}

// shutdownCutWait bounds how long Shutdown, its drain over, waits for the
// requests it cut to be answered before it closes their connections.
const shutdownCutWait = time.Second

// cutEnvironments ends what still runs in every environment, serving and
// draining, once the shutdown's drain is over (Env.cutAll: the waits in
// their pools too), the requests' waits for their bodies and the HTTP/1.1
// holds waited out on their connections' reads (cutWaits), and waits
// shutdownCutWait at most for those requests to end: they are answered
// (a 503 to a request still waiting for its node or its body) and logged
// as edged's cut while their connections are still open.
func (s *Server) cutEnvironments() {
	var envs []*Env
	if snap := s.snap.Load(); snap != nil {
		for _, e := range snap.envs {
			envs = append(envs, e)
		}
	}
	s.statusMu.Lock()
	for e := range s.retiring {
		envs = append(envs, e)
	}
	s.statusMu.Unlock()
	for _, e := range envs {
		e.shuttingDown.Store(true)
		e.cutAll()
	}
	s.cutWaits()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	wait, cancel := context.WithTimeout(context.Background(), shutdownCutWait)
	defer cancel()
	for _, e := range envs {
		if !e.waitIdle(false, tick.C, wait.Done(), nil) {
			return
		}
	}
}

// cutWaits ends every request's wait for its body (awaitBody), over
// both protocols, and the HTTP/1.1 holds waited out on connections' reads
// (an HTTP/2 hold is a timer Env.cutAll's retirement ends), once the
// environments are cut: each such request holds
// no worker and no node, so Env.cutAll does not reach it, and its client
// may still have read_timeout to send the body. Its read fails, and it is
// answered 503 as edged's cut (bodyFailed). Not a reload's cut: a request
// waiting for its body in a replaced environment goes on to the new one
// once the body has come.
func (s *Server) cutWaits() {
	for _, hs := range []*h1Server{s.https, s.plain} {
		if hs != nil {
			hs.cutWaits()
		}
	}
	s.bodyWaitsCut.Store(true)
	for _, c := range s.h2Conns() {
		c.cutBodyWaits()
	}
}

// waitDrained waits until the serving environments have no request in
// flight (their tunnels) and the replaced ones have drained (true), or
// until ctx is done (false).
func (s *Server) waitDrained(ctx context.Context) bool {
	drained := func() bool {
		s.statusMu.Lock()
		n := len(s.retiring)
		s.statusMu.Unlock()
		if n > 0 {
			return false
		}
		if snap := s.snap.Load(); snap != nil {
			for _, e := range snap.envs {
				if e.inflight.Load() > 0 {
					return false
				}
			}
		}
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !drained() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// auditEnvWait is how long AuditEnv waits for room in an audit log's
// queue before it logs the line on stderr instead.
const auditEnvWait = time.Second

// AuditEnv appends a line to an environment's audit log, when it has one.
// A reload calls it on edged's main loop (signals, reloads, shutdown), so
// an audit log that is behind (its disk stuck) may hold it only briefly,
// not for as long as it holds the environment's requests: past
// auditEnvWait the line goes to edged's own log, never nowhere.
func (s *Server) AuditEnv(env string, line []byte) {
	if snap := s.snap.Load(); snap != nil {
		if e := snap.envs[env]; e != nil && e.audit != nil {
			if !e.audit.addWithin(line, auditEnvWait) {
				s.log.Error("audit log is behind: its line is logged here instead", "env", env, "path", e.audit.w.path, "line", strings.TrimSuffix(string(line), "\n"))
			}
		}
	}
}

// ReopenLogs reopens every environment's access and audit log (SIGUSR1).
func (s *Server) ReopenLogs() error {
	snap := s.snap.Load()
	if snap == nil {
		return nil
	}
	var errs []error
	reopened := make(map[*logWriter]bool) // environments sharing a path share its writer: reopen it once
	for _, e := range snap.envs {
		for _, l := range []*lineLog{e.access, e.audit} {
			if l == nil || reopened[l.w] {
				continue
			}
			reopened[l.w] = true
			// The path may lead elsewhere by now than when e was built (a
			// directory on it swapped for a symlink): an access log's is
			// checked again as it is opened (openOutsideState).
			if err := l.reopenFile(); err != nil {
				errs = append(errs, fmt.Errorf("environment %q: %w; it goes on in the file it had", e.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// redirectHandler answers plain HTTP with a permanent redirect to HTTPS on
// the TLS listener's port, for hosts that an env group serves; any other
// Host gets the 404 host.unknown fault (a redirect must never point a
// client at whatever host it named). OPTIONS * is answered as on the TLS
// listener.
func (s *Server) redirectHandler(httpsAddr net.Addr) http.Handler {
	port := ""
	if ta, ok := httpsAddr.(*net.TCPAddr); ok && ta.Port != 443 {
		port = ":" + strconv.Itoa(ta.Port)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !validHost(r.Host) {
			// "evil.com:x.test.acme.com" must not become a Location.
			msg := "missing or malformed Host " + r.Host
			s.refusals.request(nil, refusedInvalid, http.StatusBadRequest, r.RemoteAddr, r.Host, msg)
			writeFault(w, http.StatusBadRequest, faultInvalid, msg, requestID(r))
			return
		}
		if r.Method == http.MethodOptions && asksTheServer(r) {
			// Answered as on the TLS listener: "*" has no place in a
			// Location ("https://host:port*").
			answerServerOptions(w, requestID(r))
			return
		}
		host := hostOnly(r.Host)
		if _, ok := s.snap.Load().hosts.lookup(host); !ok {
			msg := "no env group serves host " + host
			s.refusals.request(nil, refusedHostUnknown, http.StatusNotFound, r.RemoteAddr, r.Host, msg)
			writeFault(w, http.StatusNotFound, faultHostUnknown, msg, requestID(r))
			return
		}
		target := "https://" + host + port + r.URL.RequestURI()
		w.Header().Set("Location", target)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// warnRestartNeeded logs the [server] settings a reload cannot apply: the
// listeners and their timeouts are bound once, at start, and so is the
// history's size (history_keep). old is what edged started with, not the
// last reload's: a key changed earlier is still not applied, and one
// changed back to its running value needs no restart.
func warnRestartNeeded(log *slog.Logger, old, new config.Server) {
	type setting struct {
		key      string
		old, new any
	}
	for _, st := range []setting{
		{"https", old.HTTPS, new.HTTPS},
		{"http", old.HTTP, new.HTTP},
		{"http_mode", old.HTTPMode, new.HTTPMode},
		{"admin", old.Admin, new.Admin},
		{"state_dir", old.StateDir, new.StateDir},
		{"history_keep", old.HistoryKeep, new.HistoryKeep},
		{"read_header_timeout", old.ReadHeaderTimeout, new.ReadHeaderTimeout},
		{"read_timeout", old.ReadTimeout, new.ReadTimeout},
		{"write_timeout", old.WriteTimeout, new.WriteTimeout},
		{"idle_timeout", old.IdleTimeout, new.IdleTimeout},
		{"max_header_bytes", old.MaxHeaderBytes, new.MaxHeaderBytes},
		{"h2_max_concurrent_streams", old.H2MaxConcurrentStreams, new.H2MaxConcurrentStreams},
		{"reload_debounce", old.ReloadDebounce, new.ReloadDebounce},
		{"reload_max_wait", old.ReloadMaxWait, new.ReloadMaxWait},
		{"rescan_interval", old.RescanInterval, new.RescanInterval},
	} {
		if st.old != st.new {
			log.Warn("server setting changed; it takes effect after a restart", "key", st.key, "running", fmt.Sprint(st.old), "configured", fmt.Sprint(st.new))
		}
	}
}
