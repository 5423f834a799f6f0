package edge

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"edged/internal/pool"
	"edged/internal/upstream"
)

// ServeHTTP routes one client request: method, request-target and Host
// (over HTTP/2, a Host header beside :authority too) checked (400, or 405
// for TRACE), OPTIONS * answered by edged itself
// (answerServerOptions), a path holding "%00" refused (400), dot
// segments of the path resolved (400 when they climb above "/" or one
// has parameters, "..;"), Host → env group (421 when the TLS SNI
// chose another group, or the group wants client certificates and the
// connection, made before a reload asked for them, has none, or one
// that expired since, or its TLS version or cipher suite is one a
// reload took off; 404 on the
// plain listener for a group that wants client certificates), base path → proxy, then the proxy's environment
// admits, forwards and answers it. The checks are here rather than in a
// parser so that HTTP/1.1 and HTTP/2 refuse the same requests.
//
// A request routed on a snapshot that a reload retired meanwhile (its
// environment replaced and draining) is refused by Env.serve and routed
// again on the snapshot serving now: it is never counted in an
// environment whose drain may already have closed it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// edged's HTTP/1.1 server read the clock when it had the head: one
	// clock read fewer per request. HTTP/2's requests start here.
	// Its parser also saw whether the head holds '_' (the connection's
	// head is this request's while the handler runs): without one, the
	// header needs no pass of dropUnderscoreHeaders below.
	var start time.Time
	underscores := true
	if hw, ok := w.(*h1Response); ok {
		start, underscores = hw.start, hw.c.head.underscores
	} else {
		start = time.Now()
	}
	rid := requestID(r)
	if !validMethod(r.Method) || !validTarget(r.Method, r.RequestURI, r.ProtoMajor == 2) {
		s.refuse(w, r, s.sniCounters(r, nil), refusedInvalid, http.StatusBadRequest, "malformed request method or target", rid)
		return
	}
	if r.Method == http.MethodTrace {
		w.Header()["Allow"] = allowAll
		s.refuse(w, r, s.sniCounters(r, nil), refusedMethod, http.StatusMethodNotAllowed, "method TRACE is not allowed", rid)
		return
	}
	if !validHost(r.Host) {
		s.refuse(w, r, s.sniCounters(r, nil), refusedInvalid, http.StatusBadRequest, "missing or malformed Host "+r.Host, rid)
		return
	}
	if r.ProtoMajor == 2 && !hostMatchesAuthority(r) {
		s.refuse(w, r, s.sniCounters(r, nil), refusedInvalid, http.StatusBadRequest, "a Host header that differs from :authority "+r.Host, rid)
		return
	}
	if r.Method == http.MethodOptions && asksTheServer(r) {
		answerServerOptions(w, rid)
		return
	}
	path, why := normalizePath(r.URL)
	if why != "" {
		s.refuse(w, r, s.sniCounters(r, nil), refusedInvalid, http.StatusBadRequest, "path "+r.URL.EscapedPath()+" "+why, rid)
		return
	}
	host := hostOnly(r.Host)
	// Dropped once, before routing: a request routed again after a reload
	// (below) does not scan its header twice.
	if underscores {
		if !s.snap.Load().underscores {
			dropUnderscoreHeaders(r.Header)
		} else {
			dropUnderscoreAliases(r.Header)
		}
	}
	// Each turn reads a snapshot that no reload had retired when the
	// previous turn was refused, so the loop ends with the reloads.
	for !s.route(w, r, path, host, rid, start) {
	}
}

// asksTheServer reports whether an OPTIONS request is about the server
// rather than a resource: asterisk-form ("OPTIONS *", HTTP/2's :path
// "*"), or absolute-form without a path, which RFC 9112 3.2.4 makes the
// same request. Such a request matches no base path; routed, it went to
// the root proxy as "OPTIONS /*" or "OPTIONS /", another request.
func asksTheServer(r *http.Request) bool {
	return r.RequestURI == "*" || r.URL.Host != "" && r.URL.Path == "" && r.URL.RawQuery == "" && !r.URL.ForceQuery
}

// answerServerOptions answers OPTIONS * for edged, the server the client
// talks to: 200 with no body, as Go's net/http server does (Traefik and
// Caddy answer so), not forwarded to any backend (nginx refuses it with
// 400, Envoy with 404: a ping has no reason to fail).
func answerServerOptions(w http.ResponseWriter, rid string) {
	h := w.Header()
	h["Content-Length"] = contentLengthZero
	h["X-Request-Id"] = []string{rid}
	w.WriteHeader(http.StatusOK)
}

var contentLengthZero = []string{"0"}

// connectionClose, as a response's Connection, ends the connection once
// the answer is out: HTTP/1.1 sends it and closes, HTTP/2 sends GOAWAY
// (h2Response.writeFields), as Go's net/http servers do.
var connectionClose = []string{"close"}

// route routes a request on the current snapshot and serves it. It
// reports false, having written nothing, when the environment it chose
// was retired by a reload before the request was counted in it.
func (s *Server) route(w http.ResponseWriter, r *http.Request, path requestPath, host, rid string, start time.Time) bool {
	snap := s.snap.Load()
	g, ok := snap.hosts.lookup(host)
	if !ok {
		s.refuse(w, r, s.sniCounters(r, snap), refusedHostUnknown, http.StatusNotFound, "no env group serves host "+host, rid)
		return true
	}
	if r.TLS != nil && snap.groupForSNI(r.TLS.ServerName) != g {
		s.refuse(w, r, s.sniCounters(r, snap), refusedMisdirected, http.StatusMisdirectedRequest,
			"host "+host+" is not served on a connection made for "+r.TLS.ServerName, rid)
		return true
	}
	if r.TLS != nil && g.clientCerts && !g.trustsClient(r.TLS.VerifiedChains, start) {
		// A connection outlives reloads: one made before client_ca_file
		// was set has no certificate, one made before it changed may
		// have one that no CA of it signed. It outlives its certificate
		// too, which may have expired since the handshake. 421 has the
		// client connect again, and that handshake checks against the
		// CAs and the time of now. The connection can serve the group
		// nothing more: it ends once the answer is out (HTTP/1.1:
		// Connection: close; HTTP/2: GOAWAY), or a client that does not
		// retry 421 by itself would be answered 421 on it for as long
		// as it stayed open.
		w.Header()["Connection"] = connectionClose
		why := "this connection was made without one"
		if end, ok := expiredAt(r.TLS.VerifiedChains, start); ok {
			why = "this connection was made with one that expired at " + end.UTC().Format(time.RFC3339)
		} else if len(r.TLS.PeerCertificates) > 0 {
			why = "this connection was made with one that no CA of it signed (before a reload changed it)"
		}
		s.refuse(w, r, g.counters, refusedMisdirected, http.StatusMisdirectedRequest,
			"host "+host+" requires a client certificate signed by its client_ca_file; "+why, rid)
		return true
	}
	if r.TLS != nil && !g.allowsTLS(r.TLS) {
		// The same for its TLS version and cipher suite: a reload that
		// raised min_tls, lowered max_tls or took a suite off
		// cipher_suites holds for the connections made before it, which
		// ends too.
		w.Header()["Connection"] = connectionClose
		s.refuse(w, r, g.counters, refusedMisdirected, http.StatusMisdirectedRequest,
			"host "+host+" is not served over "+tls.VersionName(r.TLS.Version)+" with "+tls.CipherSuiteName(r.TLS.CipherSuite)+
				" any more; this connection was made before its virtual host's min_tls, max_tls or cipher_suites changed", rid)
		return true
	}
	if r.TLS == nil && g.clientCerts {
		// The plain listener (http_mode = "serve") has no certificate to
		// check: a group that wants one is not served there at all.
		s.refuse(w, r, nil, refusedHostUnknown, http.StatusNotFound, "no env group serves host "+host+" without TLS", rid)
		return true
	}
	px, ok := g.paths.match(path.routedOn())
	if !ok {
		// On TLS, g is the SNI's group too (the 421 above).
		s.refuse(w, r, g.counters, refusedProxyNotFound, http.StatusNotFound, "no proxy for host "+host+" and path "+path.decoded, rid)
		return true
	}
	if hook := s.testHookRouted.Load(); hook != nil {
		(*hook)()
	}
	var cc *clientCertFields
	if g.forwardClientCert {
		// The connection's certificate, trusted by the group's CAs as
		// they are now (trustsClient above), as RFC 9440's fields.
		cc = clientCertOf(w, r)
	}
	return px.env.serve(w, r, px, path, rid, start, cc)
}

// refuse answers a request refused before it reached an environment with
// its fault, and counts and logs it under vc, the virtual host's counters
// (nil: none known).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, vc *vhostCounters, why refusal, status int, msg, rid string) {
	s.refusals.request(vc, why, status, r.RemoteAddr, r.Host, msg)
	writeFault(w, status, refusalNames[why], msg, rid)
}

// sniCounters are the counters of the virtual host a request's TLS
// connection chose on snap (nil: the snapshot serving now); nil on the
// plain listener.
func (s *Server) sniCounters(r *http.Request, snap *Snapshot) *vhostCounters {
	if r.TLS == nil {
		return nil
	}
	if snap == nil {
		snap = s.snap.Load()
	}
	if g := snap.groupForSNI(r.TLS.ServerName); g != nil {
		return g.counters
	}
	return nil
}

// serve runs one request inside the environment: its body's first bytes
// read (awaitBody), admission through the worker pool, panic
// containment, forwarding, metrics and access log. It reports false,
// having answered nothing, when the environment is retired before the
// request is admitted: on arrival, while its body comes, or while it
// waits in the pool (pool.ErrRetired; but for the shutdown's cut, whose
// 503 it answers).
func (e *Env) serve(w http.ResponseWriter, r *http.Request, px *proxyRuntime, path requestPath, rid string, start time.Time, cc *clientCertFields) (served bool) {
	// Counted first, then checked: Server.Apply marks an environment
	// retired before its drain reads the count, so either the drain sees
	// this request and waits for it, or the request sees the mark and
	// goes back to be routed on the new snapshot (atomics are
	// sequentially consistent).
	e.inflight.Add(1)
	if e.retired.Load() {
		e.inflight.Add(-1)
		return false
	}
	defer e.inflight.Add(-1)
	// Named so that a panic the deferred recover below contains still
	// reports the request served (it is, with a 500): never routed twice.
	served = true
	x := exchanges.Get().(*exchange)
	*x = exchange{w: w, r: r, px: px, path: path, rid: rid, start: start, clientCert: cc}
	defer func() {
		*x = exchange{}
		exchanges.Put(x)
	}()
	if x.tooLarge() {
		// The client's mistake, told before it takes a worker or waits
		// for one: behind a busy pool it would otherwise wait, and be
		// answered 503 env.overloaded rather than 413.
		x.finish()
		return true
	}
	if hasBody(r) {
		// The body comes before the worker (bodyWaitMax of it): a
		// client that announces one and sends nothing holds no worker
		// and no queue place, only its connection, until read_timeout.
		err := x.awaitBody()
		if e.retired.Load() {
			// Replaced while the body came: routed again, with what
			// came of it (and its error, which the body repeats).
			r.Body = x.body.detach()
			return false
		}
		if err != nil {
			x.bodyFailed()
			x.finish()
			return true
		}
	}
	// A request that finds no worker free waits in Acquire: queued, or,
	// when the queue is full, held for the environment's reject_delay,
	// holding no worker, before its 503. The rejection path does no
	// upstream work and builds no string. An HTTP/1.1 answer is told when
	// the wait starts (h1Response.WaitStarts), and gets its write_timeout
	// afresh when it ends (WaitEnds).
	wn, _ := w.(pool.WaitNotifier)
	err := e.pool.AcquireNotify(r.Context(), px.lane, wn)
	if err != nil {
		if r.Context().Err() != nil {
			// Gone while queued or held: recorded, then aborted like any
			// other gone client (clientGone), never answered an empty 200.
			x.gone()
			x.finish()
			panic(http.ErrAbortHandler)
		}
		if err == pool.ErrRetired && e.shuttingDown.Load() {
			// The shutdown's cut ended its wait, queued or held
			// (Env.cutAll): edged's cut, answered as one waiting on its
			// node is, while its connection is still open.
			x.cutAnswer()
			x.finish()
			return true
		}
		if err == pool.ErrRetired {
			// A reload replaced the environment while the request
			// waited in its pool: it is routed again, as one that had
			// not reached the pool yet, and recorded only there. What
			// came of its body goes with it. A hold on an HTTP/1.1
			// connection watched the client in place of the background
			// read, which starts again.
			if x.body.rc != nil {
				r.Body = x.body.detach()
			}
			if hw, ok := w.(*h1Response); ok {
				hw.c.rewatch()
			}
			return false
		}
		w.Header()["Retry-After"] = retryAfter1
		x.fault(http.StatusServiceUnavailable, faultOverloaded, e.overloaded(err, px))
		x.finish()
		return true
	}
	x.holding = true
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			if ok, skipped := e.warnLines.take(); ok {
				e.log.Error("panic while serving", "proxy", px.name, "request_id", rid, "panic", fmt.Sprint(v), "stack", string(debug.Stack()), "suppressed", skipped)
			}
			if !x.wroteHeader {
				x.fault(http.StatusInternalServerError, faultInternal, "internal error in environment "+e.Name)
				v = nil
			} else {
				// The head has left: ended cleanly (HTTP/1.1's last
				// chunk, HTTP/2's END_STREAM), a body cut short would
				// look whole to the client. Aborted, as net/http does.
				x.faultCode, v = faultInternal, http.ErrAbortHandler
			}
		}
		x.releaseWorker()
		x.aborting = v != nil
		x.finish()
		if v != nil {
			panic(v)
		}
	}()
	x.forward()
	return true
}

// statusClientGone is logged when the client went away before an answer
// (nginx's 499).
const statusClientGone = 499

// gone records a request whose connection ended under it: its client's
// leaving, 499; or, once its environment was cut (Env.cutAll: the end of
// a drain, a reload's or the shutdown's, after which the shutdown closes
// the connections left), edged's own cut, never the client's: the status
// the client got, or 503 upstream.unavailable when it got none.
func (x *exchange) gone() {
	if chanClosed(x.px.env.cut) {
		if !x.wroteHeader {
			x.status, x.faultCode = http.StatusServiceUnavailable, faultUnavailable
		}
		return
	}
	x.status = statusClientGone
}

// cutAnswer answers a request that its environment's cut ended (the end
// of a reload's drain, or of the shutdown's) before it got an answer:
// 503 upstream.unavailable, to be tried again, edged's doing and neither
// the client's nor a node's.
func (x *exchange) cutAnswer() {
	env := x.px.env
	msg := "environment " + env.Name + " was replaced by a reload and its drain_timeout passed"
	if env.shuttingDown.Load() {
		msg = "edged is shutting down and its drain_timeout passed"
	}
	x.w.Header()["Retry-After"] = retryAfter1
	x.fault(http.StatusServiceUnavailable, faultUnavailable, msg)
}

var retryAfter1 = []string{"1"}

// exchanges recycles per-request state: one request, no allocation for it.
var exchanges = sync.Pool{New: func() any { return new(exchange) }}

// exchange is the state of one proxied request.
type exchange struct {
	w     http.ResponseWriter
	r     *http.Request
	px    *proxyRuntime
	path  requestPath // as routed and forwarded
	rid   string
	start time.Time

	holding     bool // the request holds one of its environment's workers
	tunnelled   bool // addTunnel took it: finish marks it logged
	aborting    bool // its answer is being aborted (http.ErrAbortHandler)
	status      int
	wroteHeader bool
	faultCode   string
	out         upstream.Request // the request as sent upstream
	body        limitedBody      // the client's body, counted and limited
	fwd         forwardedValues  // backing store of the headers edged sets
	tried       [maxAttempts]*upstream.Node
	bytesIn     int64
	bytesOut    int64
	node        string

	// clientCert is the connection's certificate as RFC 9440's fields,
	// where the virtual host has forward_client_cert; nil elsewhere.
	clientCert *clientCertFields
}

// fault answers the request with a fault body, counted in bytes_out as
// any body sent (a HEAD's is not).
func (x *exchange) fault(status int, code, msg string) {
	x.status, x.faultCode, x.wroteHeader = status, code, true
	if n := writeFault(x.w, status, code, msg, x.rid); x.r.Method != http.MethodHead {
		x.bytesOut += int64(n)
	}
}

// releaseWorker gives the request's worker back to the pool, once.
func (x *exchange) releaseWorker() {
	if x.holding {
		x.holding = false
		x.px.env.pool.Release(x.px.lane)
	}
}

// finish records the request in metrics, the access log and the audit log.
func (x *exchange) finish() {
	if hw, ok := x.w.(*h2Response); ok {
		// An HTTP/2 answer's last bytes may wait for the client's
		// window (h2Response.hold): its worker given back, the request
		// is recorded once they went, or with what went.
		x.bytesOut = max(0, x.bytesOut-hw.settle(!x.aborting))
	}
	d := time.Since(x.start)
	x.px.env.metrics.record(x.status, x.bytesIn, x.bytesOut, d)
	if x.px.metrics != nil {
		x.px.metrics.record(x.status, x.bytesIn, x.bytesOut, d)
	} else {
		x.px.served.Add(1)
	}
	// A client that went away (499) gets its lines within a budget per
	// log; what is left out is counted on /metrics.
	gone := x.status == statusClientGone
	if a := x.px.env.access; a != nil && (!gone || a.allowGone()) {
		if x.px.env.accessCombined {
			a.add(x.combinedLine())
		} else {
			a.add(x.accessLine(d))
		}
	}
	if a := x.px.env.audit; a != nil && (!gone || a.allowGone()) {
		a.add(x.auditLine())
	}
	if x.tunnelled {
		x.px.env.tunnelLogged()
	}
}
