package edge

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"edged/internal/config"
	"edged/internal/termsafe"
)

// adminHandler serves the admin listener: the status page on / (with its
// assets), /metrics, /healthz, /readyz and /status. It only reads; control
// actions go through the local control socket, never through here. On a
// loopback listener, Listen puts it behind adminHostGuard.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /assets/page.css", pageAsset("page.css"))
	mux.HandleFunc("GET /assets/page.js", pageAsset("page.js"))
	mux.HandleFunc("GET /assets/favicon.svg", pageAsset("favicon.svg"))
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() || s.snap.Load() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// For the status page's script: compact, with the series.
		series := r.URL.Query().Get("series") == "1"
		key := "status"
		if series {
			key = "status?series=1"
		}
		_ = s.writeRendered(w, r, key, func() ([]byte, error) { return s.statusJSON(series), nil })
	})
	return adminHeaders(mux)
}

// writeRendered writes the answer render makes, shared with the other
// reads of the same (answers), gzip-compressed when the client's
// Accept-Encoding takes gzip: Prometheus asks for it on every scrape, and
// a browser for the page and its /status?series=1 every 2 s. With 10,000
// proxies, each with its target, and rules.prometheus, /metrics is 26 MB
// of text and 1.3 MB gzipped, /status 10 MB and 0.3 MB; a reader that
// takes its answer slowly also holds only the compressed one while it is
// written. On an error of render, nothing is written and the error is
// returned.
func (s *Server) writeRendered(w http.ResponseWriter, r *http.Request, key string, render func() ([]byte, error)) error {
	gz := acceptsGzip(r.Header.Values("Accept-Encoding"))
	if gz {
		key += " gzip"
		plain := render
		render = func() ([]byte, error) {
			b, err := plain()
			if err != nil {
				return nil, err
			}
			return gzipped(b), nil
		}
	}
	k, now := s.answerKey(key), time.Now()
	h := s.testHookAnswer.Load()
	if h != nil {
		(*h)(true)
	}
	a, mine := s.answers.use(k, now)
	defer s.answers.done(k, a)
	if mine {
		s.answers.render(k, a, func() ([]byte, error) {
			b, err := render()
			if h != nil {
				(*h)(false)
			}
			return b, err
		})
	}
	<-a.ready
	if a.panicked != nil {
		panic(a.panicked) // as its rendering's read did
	}
	if a.err != nil {
		return a.err
	}
	hd := w.Header()
	hd.Add("Vary", "Accept-Encoding")
	if gz {
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("Content-Length", strconv.Itoa(len(a.body)))
	_, _ = w.Write(a.body)
	return nil
}

// answerShareFor is how long after it was asked for a rendered answer
// still being written to a reader is given to the reads of the same
// that come meanwhile (sharedAnswers).
const answerShareFor = 10 * time.Second

// sharedAnswers are the answers of /metrics, /status, /status?series=1
// and the page by answerKey, each kept while a read uses it: a read
// finds there one of the same (generation, reload attempt and readiness
// included, so a read that follows "edged reload" shows that reload)
// that is being rendered, or that was asked for less than answerShareFor
// ago and is still being written to a reader, and writes it rather than
// render its own; a read that finds none renders anew.
//
// Both bound what the admin listener's readers hold. /metrics of 10,000
// nodes with rules.prometheus is 47 MB (300 MB allocated to render it),
// /status 6 MB (57 MB), and the maxAdminConns connections reading at
// once each rendered their own. A reader that takes its answer slowly,
// or not at all until the admin listener's 30 s write timeout, held one
// rendering of its own: 16 connections scraping a second apart held 450
// MiB with 10,000 proxies, and the admin listener serves 64 (any local
// user's). Now a key holds at most one rendering per answerShareFor
// while its readers take it.
type sharedAnswers struct {
	mu sync.Mutex
	m  map[string]*sharedAnswer
}

// sharedAnswer is one answer of sharedAnswers; its body must not be
// written to.
type sharedAnswer struct {
	since time.Time     // when it was asked for
	ready chan struct{} // closed once rendered: body, err and panicked are set
	body  []byte
	err   error
	// panicked is what its rendering panicked with: each read of it
	// panics so, its connection closed, as net/http does with a handler's
	// panic.
	panicked any
	users    int // reads using it (under sharedAnswers.mu)
}

// errNotRendered is the error of an answer whose rendering did not
// return.
var errNotRendered = errors.New("the answer's rendering did not return")

// use returns the answer under key a read arriving at now is to write,
// counted as used once more: one being rendered, or one asked for less
// than answerShareFor before now, else a new one, which the read renders
// (mine) with render.
func (a *sharedAnswers) use(key string, now time.Time) (sa *sharedAnswer, mine bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sa = a.m[key]; sa != nil {
		select {
		case <-sa.ready:
			if now.Sub(sa.since) < answerShareFor {
				sa.users++
				return sa, false
			}
		default: // being rendered
			sa.users++
			return sa, false
		}
	}
	if a.m == nil {
		a.m = map[string]*sharedAnswer{}
	}
	sa = &sharedAnswer{since: now, ready: make(chan struct{}), users: 1}
	a.m[key] = sa
	return sa, true
}

// render makes sa, kept under key, with render. One that failed is
// forgotten at once: the next read renders anew.
func (a *sharedAnswers) render(key string, sa *sharedAnswer, render func() ([]byte, error)) {
	returned := false
	defer func() {
		if !returned {
			sa.panicked, sa.err = recover(), errNotRendered
		}
		a.mu.Lock()
		if sa.err != nil && a.m[key] == sa {
			delete(a.m, key)
		}
		close(sa.ready)
		a.mu.Unlock()
		if sa.panicked != nil {
			panic(sa.panicked)
		}
	}()
	sa.body, sa.err = render()
	returned = true
}

// done counts one use of sa, taken under key, as over; sa is forgotten
// after its last.
func (a *sharedAnswers) done(key string, sa *sharedAnswer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sa.users--; sa.users == 0 && a.m[key] == sa {
		delete(a.m, key)
	}
}

// gzipped is b compressed at gzip's fastest level: a large page compresses
// nearly as well at it (the series repeat their names and labels), in a
// fraction of the time of the default level.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(b)/8 + 64)
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a valid level: no error
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// acceptsGzip reports whether Accept-Encoding fields (RFC 9110 section
// 12.5.3) take gzip: named (or as x-gzip), else through "*", with a
// weight above 0. A weight that does not parse takes nothing.
func acceptsGzip(fields []string) bool {
	named, star := -1.0, -1.0
	for _, f := range fields {
		for item := range strings.SplitSeq(f, ",") {
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.TrimSpace(coding)
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				name, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
					var err error
					if q, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || q < 0 || q > 1 {
						q = 0
					}
				}
			}
			switch {
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				named = max(named, q)
			case coding == "*":
				star = max(star, q)
			}
		}
	}
	if named >= 0 {
		return named > 0
	}
	return star > 0
}

// statusJSON is /status: with the series compact, since indenting
// hundreds of points per environment is most of the cost; without them
// indented, for people.
func (s *Server) statusJSON(series bool) []byte {
	st := s.Status()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if !series {
		for name, e := range st.Environments {
			e.Rates.Series = nil
			st.Environments[name] = e
		}
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(st)
	// Names from files, read with curl in a terminal too.
	return termsafe.JSON(buf.Bytes())
}

// answerKey is the key of a shared rendering of the answer named name:
// reads join only a rendering of the same generation, reload attempt and
// readiness as they find on arrival.
func (s *Server) answerKey(name string) string {
	var gen uint64
	if snap := s.snap.Load(); snap != nil {
		gen = snap.Generation
	}
	s.statusMu.Lock()
	attempts := s.attempts
	s.statusMu.Unlock()
	return fmt.Sprintf("%s %d %d %t", name, gen, attempts, s.draining.Load())
}

// adminHeaders sets, on every admin answer, what keeps it out of caches
// and other pages: /status and the page name files, owners and upstream
// addresses, which no browser or proxy cache should keep (no-store); no
// answer is to be read as another type than it says (nosniff); and no
// other site may frame them (X-Frame-Options for older browsers; the
// page's CSP says frame-ancestors too).
func adminHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		h.ServeHTTP(w, r)
	})
}

// maxAdminConns is how many connections the admin listener serves at
// once. It is on loopback, open to every local user: a flood of
// connections (held open, or opened faster than its header timeout
// closes them) would otherwise take the file descriptors that
// max_connections keeps for the environments' connections to their nodes.
// Past it, new connections wait in the kernel's listen queue, or take the
// place of a connection idle between requests (adminConns). Scrapers and
// a few status pages (a browser opens up to 6) need far fewer.
const maxAdminConns = 64

// adminConns bounds the admin listener to maxAdminConns connections at
// once. A new connection that finds every place taken closes the one
// kept alive the longest between requests, as nginx reuses its keep-alive
// connections when worker_connections run out: a place held by an idle
// connection until its idle timeout (60 s), which a client renews with a
// request a minute, would otherwise keep new ones out for as long as its
// holder likes, the load balancer's /readyz and Prometheus' /metrics with
// them. A connection whose request is under way (its head arriving, its
// answer being written) keeps its place, but for one that sent fewer than
// the 4 bytes net/http waits for before its header timeout runs; with
// none idle, the new one waits, accepted, for a place (the listen queue
// holds the next ones).
type adminConns struct {
	net.Listener

	mu   sync.Mutex
	open map[*adminConn]struct{}
	// freed gets a value when a connection closes, for Accept waiting
	// for a place.
	freed     chan struct{}
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// adminConn is one connection of the admin listener.
type adminConn struct {
	net.Conn
	l *adminConns
	// idleSince is when the connection went idle after an answer, zero
	// while a request is under way (under l.mu).
	idleSince time.Time
	// arrived counts the bytes read since the connection went idle: the
	// next request's head, which net/http calls active only once it is
	// read whole. From 4 bytes on, net/http's header timeout (5 s) runs
	// (it waits for 4 before it starts the timeout); fewer, and only the
	// idle timeout does, and the connection may give its place.
	arrived atomic.Int64
}

// adminListener bounds ln to maxAdminConns connections at once; its
// connState is the admin server's ConnState.
func adminListener(ln net.Listener) *adminConns {
	return &adminConns{Listener: ln, open: map[*adminConn]struct{}{}, freed: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept returns the next connection once it has a place: a free one, or
// the place of the connection idle the longest.
func (l *adminConns) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		// net/http's Serve waits out only the errors Go calls
		// temporary, and returns the others, which ended edged serve:
		// every failure of an open listener is waited out, as on the
		// client listeners (acceptFailures).
		return nil, retryAccept{err}
	}
	for {
		l.mu.Lock()
		if len(l.open) < maxAdminConns {
			c := &adminConn{Conn: nc, l: l}
			l.open[c] = struct{}{}
			l.mu.Unlock()
			return c, nil
		}
		var idlest *adminConn
		for c := range l.open {
			if !c.idleSince.IsZero() && c.arrived.Load() < 4 && (idlest == nil || c.idleSince.Before(idlest.idleSince)) {
				idlest = c
			}
		}
		l.mu.Unlock()
		if idlest != nil {
			idlest.Close()
			continue
		}
		select {
		case <-l.freed:
		case <-l.done:
			nc.Close()
			return nil, net.ErrClosed
		}
	}
}

// retryAccept is a failed accept that net/http's Serve is to wait out
// and try again.
type retryAccept struct{ error }

func (e retryAccept) Temporary() bool { return true }
func (e retryAccept) Timeout() bool   { return false }
func (e retryAccept) Unwrap() error   { return e.error }

// Close closes the listener; an Accept waiting for a place returns.
func (l *adminConns) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState follows whether each connection is idle between requests.
func (l *adminConns) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*adminConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateIdle:
		c.arrived.Store(0)
		c.idleSince = time.Now()
	case http.StateActive:
		c.idleSince = time.Time{}
	}
}

func (c *adminConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.arrived.Add(int64(n))
	}
	return n, err
}

// Close gives the connection's place back.
func (c *adminConn) Close() error {
	c.l.mu.Lock()
	_, open := c.l.open[c]
	delete(c.l.open, c)
	c.l.mu.Unlock()
	if open {
		select {
		case c.l.freed <- struct{}{}:
		default:
		}
	}
	return c.Conn.Close()
}

// adminHostGuard refuses (403) a request whose Host is a name other than
// localhost; Listen puts it in front of an admin listener on a loopback
// address. That is what a DNS rebinding looks like: a page of
// evil.example, open in the operator's browser, whose name the attacker's
// DNS now resolves to 127.0.0.1 reads /status (file paths, owners,
// upstream addresses) as its own origin. A browser sends the page's name
// in Host, so an IP address or localhost there means the client chose
// this listener itself. An admin listener set to another address is
// reachable by others anyway, and scrapers may use a name: no guard.
func adminHostGuard(h http.Handler) http.Handler {
	return adminHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r.Host) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintln(w, "admin listener: on loopback, the Host must be an IP address or localhost, e.g. http://127.0.0.1:PORT/ (another name could be a DNS rebinding)")
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// localHost reports whether a Host header names no one but this machine:
// an IP address, localhost or a name under .localhost (RFC 6761: never
// resolved through DNS), with or without a port. No Host at all (HTTP/1.0)
// is no browser's.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" || net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_ = s.writeRendered(w, r, "metrics", func() ([]byte, error) {
		var raw, page bytes.Buffer
		s.writeSeries(&raw)
		page.Grow(raw.Len() + raw.Len()/8)
		writeExposition(&page, raw.Bytes())
		return page.Bytes(), nil
	})
}

// writeSeries writes the series of /metrics, in no order of families;
// writeExposition groups them and adds their HELP and TYPE. The
// environments' series are those of one snapshot, the one serving: an
// environment a reload replaces is never missing from a scrape, nor there
// twice. (Sets registered with VictoriaMetrics one by one were: a scrape
// between the reload's unregistering of the old instances and its
// registering of the new ones missed them.)
func (s *Server) writeSeries(w io.Writer) {
	metrics.WritePrometheus(w, true)
	snap := s.snap.Load()
	writeRefusalMetrics(w, snap)
	if snap != nil {
		envs := make([]string, 0, len(snap.envs))
		for name := range snap.envs {
			envs = append(envs, name)
		}
		sort.Strings(envs)
		for _, name := range envs {
			snap.envs[name].set.WritePrometheus(w)
		}
		names := make([]string, 0, len(snap.groups))
		for name := range snap.groups {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if g := snap.groups[name]; !g.notAfter.IsZero() {
				writeGauge(w, fmt.Sprintf(`edged_certificate_not_after_seconds{virtual_host=%q}`, name), float64(g.notAfter.Unix()))
			}
			if g := snap.groups[name]; g.clientCAFile != "" {
				writeGauge(w, fmt.Sprintf(`edged_client_ca_not_after_seconds{virtual_host=%q,file=%s}`, name, promQuote(fileLabel(g.clientCAFile))), float64(g.clientCANotAfter.Unix()))
			}
		}
	}
}

// Status is what /status shows.
type Status struct {
	Generation uint64        `json:"generation"`
	Applied    time.Time     `json:"applied"`
	Draining   bool          `json:"draining"`
	LastReload *ReloadRecord `json:"last_reload,omitempty"`
	// FileErrors lists, per file, what the last reload attempt refused in
	// it; empty once a reload succeeds.
	FileErrors   map[string][]string  `json:"file_errors,omitempty"`
	Environments map[string]EnvStatus `json:"environments"`
	// DrainingEnvironments are those a reload replaced or removed that
	// still finish their requests in flight, by name, oldest first.
	DrainingEnvironments []DrainingEnv        `json:"draining_environments,omitempty"`
	Certificates         map[string]time.Time `json:"certificates"`

	// Now is when the status was taken, for "how long ago" on the page.
	Now time.Time `json:"now"`
	// ReloadErrors are FileErrors in the order the reload reported them,
	// each with where (file:line) apart from what.
	ReloadErrors []ReloadError `json:"reload_errors,omitempty"`
	// ReloadErrorsOmitted is how many errors of the refused reload are
	// left out of LastReload, FileErrors and ReloadErrors, which show the
	// first maxReportedErrors.
	ReloadErrorsOmitted int `json:"reload_errors_omitted,omitempty"`
	// Groups are the env groups by name, with hostnames and environments.
	Groups []GroupStatus `json:"groups"`
	// CertificateDetails are the virtual hosts' certificates by name: the
	// names they are good for and their expiry.
	CertificateDetails []CertificateStatus `json:"certificate_details"`
	// RecentGenerations are the last applied generations, newest first,
	// from edged's history (see SetRecentGenerations).
	RecentGenerations []GenerationSummary `json:"recent_generations,omitempty"`
}

// ReloadError is one error of a refused reload on /status.
type ReloadError struct {
	Where   string `json:"where"` // file:line, or the file alone when the line is not known
	Message string `json:"message"`
}

// GroupStatus is one env group on /status.
type GroupStatus struct {
	Name         string   `json:"name"`
	Hostnames    []string `json:"hostnames"`
	Environments []string `json:"environments"`
}

// CertificateStatus is one virtual host's certificate on /status.
type CertificateStatus struct {
	VirtualHost string `json:"virtual_host"`
	// Names are the first maxStatusCertNames of the certificate's DNS
	// names and IP addresses, NamesTotal how many it has. One SAN
	// certificate often serves many virtual hosts: all its names for
	// each made /status 24 MB (400 virtual hosts, 2,000 names).
	Names      []string  `json:"names"`
	NamesTotal int       `json:"names_total"`
	NotAfter   time.Time `json:"not_after"`
	DaysLeft   int       `json:"days_left"` // whole days until NotAfter; negative once expired
	// ClientCAFile is the virtual host's client_ca_file, with the
	// earliest end of its CAs; nil without one.
	ClientCAFile *CertFileStatus `json:"client_ca_file,omitempty"`
}

// maxStatusCertNames is how many names of a certificate /status lists.
const maxStatusCertNames = 10

// MoreNames is how many of the certificate's names Names leaves out.
func (c CertificateStatus) MoreNames() int { return c.NamesTotal - len(c.Names) }

// GenerationSummary is one applied generation on /status.
type GenerationSummary struct {
	Generation uint64    `json:"generation"`
	Time       time.Time `json:"time"`
	// Trigger is the generation's cause, with who asked for it when a
	// command did ("edged promote by alice").
	Trigger string   `json:"trigger"`
	Changes []string `json:"changes,omitempty"` // "changed proxy user-service (uat)"
}

// SetRecentGenerations sets where /status takes the recent generations
// from: edged serve points it at its history, which edge does not read
// itself. f returns them newest first and must not block for long.
func (s *Server) SetRecentGenerations(f func() []GenerationSummary) {
	s.recentGens.Store(&f)
}

// DrainingEnv is a replaced environment on /status.
type DrainingEnv struct {
	Name     string    `json:"name"`
	Hash     string    `json:"hash"`
	Since    time.Time `json:"since"`
	InFlight int64     `json:"in_flight"`
}

// Status reports the serving generation, the last reload attempt with its
// errors per file and line, every environment's pool, rates, proxies,
// upstream health and home (owner and group as they were at most
// homesFresh ago, not as they were at the reload), the env groups,
// certificate names and expiry per virtual host, and the recent
// generations. The pools' and nodes' figures are atomics; the locks it
// takes (a proxy share's queue count, a node's idle count, the sampler,
// the recent generations, the homes' cache) are each held for a read of a
// few words. It waits at most homesWait for the homes (see homesCache).
func (s *Server) Status() Status {
	now := time.Now()
	st := Status{Draining: s.draining.Load(), Environments: map[string]EnvStatus{}, Certificates: map[string]time.Time{},
		Now: now, Groups: []GroupStatus{}, CertificateDetails: []CertificateStatus{}}
	if f := s.recentGens.Load(); f != nil {
		st.RecentGenerations = (*f)()
	}
	s.statusMu.Lock()
	st.LastReload = s.lastResult
	for e, since := range s.retiring {
		st.DrainingEnvironments = append(st.DrainingEnvironments, DrainingEnv{Name: e.Name, Hash: e.Hash, Since: since, InFlight: e.inflight.Load()})
	}
	s.statusMu.Unlock()
	sort.Slice(st.DrainingEnvironments, func(i, j int) bool {
		a, b := st.DrainingEnvironments[i], st.DrainingEnvironments[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Since.Before(b.Since)
	})
	if lr := st.LastReload; lr != nil && !lr.OK {
		st.ReloadErrorsOmitted = lr.ErrorsOmitted
		st.FileErrors = map[string][]string{}
		for _, e := range lr.Errors {
			st.FileErrors[e.Pos.File] = append(st.FileErrors[e.Pos.File], e.Error())
			where := e.Pos.String()
			st.ReloadErrors = append(st.ReloadErrors, ReloadError{Where: where, Message: strings.TrimPrefix(e.Error(), where+": ")})
		}
	}
	snap := s.snap.Load()
	if snap == nil {
		return st
	}
	st.Generation, st.Applied = snap.Generation, snap.Applied
	var homes map[string]config.Home
	if snap.Plan.Config != nil {
		homes = s.homes.homesOf(snap.Plan.Config)
	}
	for name, e := range snap.envs {
		es := e.status(now)
		if h, ok := homes[name]; ok {
			es.Home = &h
		}
		var proxyRates map[string]float64
		es.Rates, proxyRates = s.sampler.rates(name)
		for i := range es.Proxies {
			if r, ok := proxyRates[es.Proxies[i].Name]; ok {
				es.Proxies[i].RequestsPerSecond = &r
			}
		}
		st.Environments[name] = es
	}
	for name, g := range snap.groups {
		if !g.notAfter.IsZero() {
			st.Certificates[name] = g.notAfter
		}
	}
	for _, gp := range snap.Plan.Groups {
		st.Groups = append(st.Groups, GroupStatus{Name: gp.Group.Name, Hostnames: gp.Group.Hostnames, Environments: gp.Group.Environments})
		if vh := gp.VirtualHost; vh != nil && vh.Certificate.Leaf != nil {
			leaf := vh.Certificate.Leaf
			end := leaf.NotAfter
			g := snap.groups[gp.Group.Name]
			if g != nil && !g.notAfter.IsZero() {
				end = g.notAfter // the chain's
			}
			cs := CertificateStatus{VirtualHost: vh.Name, NamesTotal: len(leaf.DNSNames) + len(leaf.IPAddresses), NotAfter: end,
				DaysLeft: daysLeft(end, now)}
			if g != nil {
				cs.ClientCAFile = certFileStatus(g.clientCAFile, g.clientCANotAfter, now)
			}
			cs.Names = append([]string{}, leaf.DNSNames[:min(len(leaf.DNSNames), maxStatusCertNames)]...)
			for _, ip := range leaf.IPAddresses[:min(len(leaf.IPAddresses), maxStatusCertNames-len(cs.Names))] {
				cs.Names = append(cs.Names, ip.String())
			}
			st.CertificateDetails = append(st.CertificateDetails, cs)
		}
	}
	sort.Slice(st.Groups, func(i, j int) bool { return st.Groups[i].Name < st.Groups[j].Name })
	sort.Slice(st.CertificateDetails, func(i, j int) bool {
		return st.CertificateDetails[i].VirtualHost < st.CertificateDetails[j].VirtualHost
	})
	return st
}

// maxReportedErrors is how many errors of a refused config are reported:
// logged, kept in the reload's record (for /status and the status page,
// the audit line, `edged reload`'s answer), each cut by ClipError. The
// first, in file and line order, as a compiler stops at its first errors: one 2 MiB file of
// "[[proxy]]" lines has 838,820, which made /status 400 MB and the
// attempt's audit line 100 MB. It is also how many warnings of a load
// are logged (LogWarnings).
const maxReportedErrors = 100

// Bounds of each part of an error reported (see ClipError).
const (
	maxReportedObject = 512
	maxReportedField  = 256
	maxReportedMsg    = 2048
)

// FirstErrors is a copy of the first maxReportedErrors of errs (errs
// itself when it has no more and none is cut), each cut by ClipError, and
// how many it leaves out.
func FirstErrors(errs []config.Error) ([]config.Error, int) {
	kept, omitted := errs, 0
	if len(errs) > maxReportedErrors {
		kept, omitted = errs[:maxReportedErrors], len(errs)-maxReportedErrors
	}
	var out []config.Error
	if omitted > 0 {
		out = append([]config.Error(nil), kept...)
	}
	for i, e := range kept {
		if c := ClipError(e); c != e {
			if out == nil {
				out = append([]config.Error(nil), kept...)
			}
			out[i] = c
		}
	}
	if out == nil {
		return errs, 0
	}
	return out, omitted
}

// ClipError cuts each part of e past its bound, saying how long it was.
// A message quotes the names it is about in full, with an unprintable
// rune as a 10-byte escape: one environment's name of 1.6 MB, and a few
// wrong fields, made 11 errors of 36 MB, shown three times on /status
// (119 MB on every read), in the audit line and the log.
func ClipError(e config.Error) config.Error {
	e.Object = clipText(e.Object, maxReportedObject)
	e.Field = clipText(e.Field, maxReportedField)
	e.Msg = clipText(e.Msg, maxReportedMsg)
	return e
}

// clipText is s when it has at most most bytes, else its first bytes (up
// to a rune's start) and "... (N bytes)".
func clipText(s string, most int) string {
	if len(s) <= most {
		return s
	}
	n := most - 32
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

// RecordReload keeps the outcome of a reload attempt for /status and
// counts it in edged_config_reloads_total. It keeps the first
// maxReportedErrors errors only, not the caller's list: the record stays
// until the next attempt.
func (s *Server) RecordReload(rec ReloadRecord) {
	if rec.OK {
		reloadsOK.Inc()
	} else {
		reloadsFailed.Inc()
	}
	lastReloadFailed.Store(!rec.OK)
	var omitted int
	rec.Errors, omitted = FirstErrors(rec.Errors)
	rec.ErrorsOmitted += omitted
	s.statusMu.Lock()
	s.lastResult = &rec
	s.attempts++
	s.statusMu.Unlock()
}

// Taking the homes: how long they are kept before Status takes them anew,
// and how long a Status call waits for that.
const (
	homesFresh = 10 * time.Second
	homesWait  = 250 * time.Millisecond
)

// homesCache holds the environments' homes for Status. Taking them stats
// each home and looks its owner up in the user database, and either may
// hang: a home on an NFS mount whose server is gone, an LDAP directory
// that does not answer. One goroutine at a time takes them, and Status
// waits for it at most homesWait, then shows what was taken last for the
// same config (or the directories without owners): were each /status to
// take them itself, hung calls would hold every admin connection
// (maxAdminConns) and /metrics would stop answering. A goroutine stuck in
// a stat cannot be stopped; there is never more than one.
type homesCache struct {
	// of takes them: config.Homes when nil (tests count and hold calls;
	// set under mu).
	of func(*config.Config) map[string]config.Home

	mu    sync.Mutex
	cfg   *config.Config // the config homes were taken for
	homes map[string]config.Home
	taken time.Time
	// running is closed when the taking under way ends; nil when none.
	running chan struct{}
}

// homesOf returns the homes of cfg's environments, as they were at most
// homesFresh ago when they could be taken within homesWait.
func (c *homesCache) homesOf(cfg *config.Config) map[string]config.Home {
	c.mu.Lock()
	if c.cfg == cfg && time.Since(c.taken) < homesFresh {
		defer c.mu.Unlock()
		return c.homes
	}
	if c.running == nil {
		done := make(chan struct{})
		c.running = done
		go c.take(cfg, c.of, done)
	}
	running := c.running
	c.mu.Unlock()

	wait := time.NewTimer(homesWait)
	select {
	case <-running:
	case <-wait.C:
	}
	wait.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg == cfg {
		return c.homes
	}
	homes := make(map[string]config.Home, len(cfg.Environments))
	for _, e := range cfg.Environments {
		homes[e.Name] = config.Home{Dir: e.Home()}
	}
	return homes
}

// take takes the homes of cfg with of and keeps them.
func (c *homesCache) take(cfg *config.Config, of func(*config.Config) map[string]config.Home, done chan struct{}) {
	if of == nil {
		of = config.Homes
	}
	homes := of(cfg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg, c.homes, c.taken = cfg, homes, time.Now()
	c.running = nil
	close(done)
}
