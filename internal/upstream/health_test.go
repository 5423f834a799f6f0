package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

func TestPassiveEjection(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	})
	const eject = 200 * time.Millisecond
	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 3, Eject: eject}}, be.host())
	n := u.Nodes()[0]
	send := func() int {
		resp, _ := do(t, n, &Request{Method: "GET", URI: "/"})
		return resp.StatusCode
	}

	// A success resets the count: 2 failures, 1 success, 2 failures.
	send()
	send()
	status.Store(200)
	send()
	status.Store(http.StatusServiceUnavailable)
	send()
	send()
	require.True(t, n.Healthy(), "never 3 failures in a row")

	send()
	ejectedAt := time.Now()
	assert.False(t, n.Healthy())
	assert.Same(t, n, u.Pick(nil, nil, nil), "the only node, ejected: panic mode picks it all the same")
	st := n.Stats()
	assert.True(t, st.Ejected)
	assert.EqualValues(t, 1, st.Ejections)
	assert.EqualValues(t, 5, st.Failures)
	if assert.NotNil(t, st.Out, "since when and why") {
		assert.WithinDuration(t, ejectedAt, st.Out.Since, time.Second)
		assert.Equal(t, "ejected after 3 failures in a row: 502/503/504 response", st.Out.Reason)
	}

	require.Eventually(t, n.Healthy, 2*time.Second, 5*time.Millisecond, "back after the ejection")
	assert.GreaterOrEqual(t, time.Since(ejectedAt), eject-10*time.Millisecond)
	assert.Equal(t, n, u.Pick(nil, nil, nil))
	assert.False(t, n.Stats().Ejected)
	assert.Nil(t, n.Stats().Out, "a healthy node is not out")
}

func TestPassiveEjectionOnConnectFailure(t *testing.T) {
	dead := loopback.Refused(t)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alive") })

	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 2, Eject: time.Minute}}, dead, be.host())
	bad, good := u.Nodes()[0], u.Nodes()[1]
	for range 2 {
		_, err := bad.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
		require.ErrorIs(t, err, ErrConnect)
	}
	assert.False(t, bad.Healthy())
	for range 10 {
		assert.Equal(t, good, u.Pick(nil, nil, nil))
	}
}

// A node that sends a head and then breaks its body (closes or resets
// the connection before the body's end, stalls past ResponseTimeout,
// sends a malformed chunk) failed the request: the caller answers 502 or
// 504 when nothing of it left yet, and cuts the client's response
// otherwise. It counts as the node's failure, and such failures in a
// row eject it (HAProxy's observe layer7 counts a body's read error,
// timeout or bad framing, Envoy's outlier detection a reset); the head
// that came first is no success that starts the count again. A request
// its caller ended (the client left mid-body) or closed before the end
// is no failure.
func TestPassiveEjectionOnBrokenBodies(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
	cases := []struct {
		name  string
		serve func(nc net.Conn)
	}{
		{"closed", func(nc net.Conn) { io.WriteString(nc, head) }},
		{"reset", func(nc net.Conn) {
			io.WriteString(nc, head)
			time.Sleep(20 * time.Millisecond)
			nc.(*net.TCPConn).SetLinger(0)
		}},
		{"stalled", func(nc net.Conn) {
			io.WriteString(nc, head)
			io.Copy(io.Discard, nc)
		}},
		{"bad chunk", func(nc net.Conn) {
			io.WriteString(nc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n")
			io.Copy(io.Discard, nc)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(nc net.Conn) {
				if _, err := readHead(bufio.NewReader(nc)); err == nil {
					c.serve(nc)
				}
			})
			u := newUpstream(t, Config{ResponseTimeout: 100 * time.Millisecond, Passive: &PassiveCheck{Failures: 3, Eject: time.Minute}}, addr)
			n := u.Nodes()[0]
			for i := range 3 {
				require.True(t, n.Healthy(), "request %d", i)
				resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
				require.NoError(t, err, "the head came")
				_, err = io.ReadAll(resp.Body)
				require.Error(t, err, "the body broke")
				resp.Body.Close()
			}
			st := n.Stats()
			assert.EqualValues(t, 3, st.Failures)
			assert.False(t, n.Healthy(), "ejected after 3 broken bodies in a row")
			assert.EqualValues(t, 1, st.Ejections)
			assert.Zero(t, st.InFlight)
		})
	}

	t.Run("not the node's doing", func(t *testing.T) {
		addr, _ := loopback.Backend(t, func(nc net.Conn) {
			br := bufio.NewReader(nc)
			for {
				if _, err := readHead(br); err != nil {
					return
				}
				// A long body, sent slowly: the caller gives up on it first.
				io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n0123456789")
				time.Sleep(200 * time.Millisecond)
			}
		})
		n := newUpstream(t, Config{ResponseTimeout: 5 * time.Second, Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, addr).Nodes()[0]
		for range 3 {
			// The client leaves while the body is being read.
			ctx, cancel := context.WithCancel(t.Context())
			resp, err := n.RoundTrip(ctx, &Request{Method: "GET", URI: "/"})
			require.NoError(t, err)
			time.AfterFunc(20*time.Millisecond, cancel)
			_, err = io.ReadAll(resp.Body)
			require.Error(t, err)
			resp.Body.Close()
			cancel()
			// The caller stops reading before the end (its client's write
			// failed) and closes.
			resp, err = n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
			require.NoError(t, err)
			io.ReadFull(resp.Body, make([]byte, 10))
			resp.Body.Close()
		}
		assert.Zero(t, n.Stats().Failures)
		assert.True(t, n.Healthy())
	})
}

func TestActiveHealth(t *testing.T) {
	var failing atomic.Bool
	var probes atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			io.WriteString(w, "app")
			return
		}
		probes.Add(1)
		assert.Equal(t, "edged-health-check", r.UserAgent())
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	u := newUpstream(t, Config{Active: &ActiveCheck{
		Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, Healthy: 2, Unhealthy: 2,
	}}, be.host())
	n := u.Nodes()[0]
	u.Start()
	u.Start() // no second set of checkers

	require.Eventually(t, func() bool { return probes.Load() >= 3 }, 2*time.Second, 5*time.Millisecond)
	assert.True(t, n.Healthy())

	failing.Store(true)
	require.Eventually(t, func() bool { return !n.Healthy() }, 2*time.Second, 5*time.Millisecond)
	assert.True(t, n.Stats().Down)
	assert.Nil(t, u.Pick(nil, nil, nil))
	if out := n.Stats().Out; assert.NotNil(t, out) {
		assert.Contains(t, out.Reason, "down after 2 failed health checks: health check ")
		assert.Contains(t, out.Reason, "status 500")
	}

	failing.Store(false)
	require.Eventually(t, n.Healthy, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, n, u.Pick(nil, nil, nil))
	assert.Zero(t, n.Stats().Dials, "probes use their own connections, not counted as traffic")
}

func TestActiveHealthTimeoutAndRefused(t *testing.T) {
	be := newBackend(t, hangingHandler(t))
	dead := loopback.Refused(t)

	u := newUpstream(t, Config{Active: &ActiveCheck{
		Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond,
	}}, be.host(), dead)
	u.Start()
	for _, n := range u.Nodes() {
		require.Eventually(t, func() bool { return !n.Healthy() }, 2*time.Second, 5*time.Millisecond, n.URL())
	}
	assert.Nil(t, u.Pick(nil, nil, nil))
}

// A probe's answer is judged once it has ended: a 2xx whose body the
// node then breaks (closes the connection before its end, frames it
// wrong) or does not finish within the probe's timeout fails the check,
// as the passive check counts such a body a failure of the node and
// Envoy's HTTP checker judges a check at the end of its answer's
// stream. Such a node used to pass every check, at the end of its
// timeout for a stalled body, and stay in rotation while every request
// got the same cut answer. An answer whose body is longer than the 64
// KiB a probe reads (TestProbeReadsLittleOfItsAnswer), or ends at the
// close (HTTP/1.0), still passes.
func TestProbeAnswerCutOrStalledFailsTheCheck(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name, answer string
		stall        bool // the node keeps the connection open, sending nothing more
		pass         bool
		want         string
	}{
		{"length, closed before its end", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok", false, false, "unexpected EOF"},
		{"chunked, closed before the last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", false, false, "unexpected EOF"},
		{"chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", false, false, "malformed chunk"},
		{"chunked, stalled", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", true, false, "timeout"},
		{"length, stalled", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok", true, false, "timeout"},
		{"whole", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, true, ""},
		{"whole, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true, true, ""},
		{"up to the close", "HTTP/1.0 200 OK\r\n\r\nok", false, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				if _, err := readHead(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, tc.answer)
				if tc.stall {
					io.Copy(io.Discard, c) // until the probe closes
				}
			})
			n := newUpstream(t, Config{Active: &ActiveCheck{Interval: time.Hour}}, addr).Nodes()[0]
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			err := n.probe(ctx, "/healthz", "")
			if tc.pass {
				assert.NoError(t, err)
				return
			}
			if assert.Error(t, err, "a 2xx head whose body does not end is no passed check") {
				assert.Contains(t, err.Error(), "health check http://"+addr+"/healthz: status 200, answer body: ")
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

func TestCloseStopsCheckers(t *testing.T) {
	var probes atomic.Int64
	var hosts []string
	for range 3 {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { probes.Add(1) })
		hosts = append(hosts, be.host())
	}
	before := runtime.NumGoroutine()

	u, err := New(Config{
		Logger: discardLogger,
		Nodes: []NodeConfig{
			{Scheme: "http", Host: hosts[0]}, {Scheme: "http", Host: hosts[1]}, {Scheme: "http", Host: hosts[2]},
		},
		Active: &ActiveCheck{Path: "/", Interval: 10 * time.Millisecond},
	})
	require.NoError(t, err)
	u.Start()
	require.Eventually(t, func() bool { return probes.Load() >= 9 }, 2*time.Second, 5*time.Millisecond)
	require.Greater(t, runtime.NumGoroutine(), before)

	u.Close()
	after := probes.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, after, probes.Load(), "no probe after Close returned")
	// Not require.Eventually: it runs the condition in goroutines of its own.
	now := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); now > before && time.Now().Before(deadline); now = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	require.LessOrEqual(t, now, before, "goroutines left after Close")
	u.Start() // after Close: a no-op
	time.Sleep(30 * time.Millisecond)
	assert.Equal(t, after, probes.Load())
}

// InheritHealth carries a verdict only to a node of the same URL, and
// only the kinds of check the new upstream has.
func TestInheritHealth(t *testing.T) {
	passive := &PassiveCheck{Failures: 2, Eject: time.Hour}
	active := &ActiveCheck{Interval: time.Hour}
	prev := newUpstream(t, Config{Passive: passive, Active: active}, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3")
	p := prev.Nodes()
	p[0].recordFailure(nil)
	p[0].recordFailure(nil) // ejected
	p[1].markDown("down after 3 failed health checks: status 500")
	p[1].down.Store(true)   // down by the active check
	p[2].recordFailure(nil) // one failure counted
	until := p[0].ejectedUntil.Load()

	u := newUpstream(t, Config{Passive: passive, Active: active}, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4")
	u.InheritHealth(prev)
	n := u.Nodes()
	assert.False(t, n[0].Healthy())
	assert.Equal(t, until, n[0].ejectedUntil.Load(), "the ejection ends when it would have")
	assert.True(t, n[1].Stats().Down)
	for i := range 2 {
		if assert.NotNil(t, n[i].Stats().Out) {
			assert.Equal(t, p[i].Stats().Out, n[i].Stats().Out, "since when and why carry over")
		}
	}
	n[2].recordFailure(nil)
	assert.True(t, n[2].Stats().Ejected, "the failure counted before the reload counts")
	assert.True(t, n[3].Healthy(), "a node prev does not have starts healthy")

	// Without the checks, no verdict of theirs.
	bare := newUpstream(t, Config{}, "127.0.0.1:1", "127.0.0.1:2")
	bare.InheritHealth(prev)
	for _, n := range bare.Nodes() {
		assert.True(t, n.Healthy(), n.URL())
	}
	// Another URL starts fresh.
	other := newUpstream(t, Config{Passive: passive, Active: active}, "127.0.0.2:1")
	other.InheritHealth(prev)
	assert.True(t, other.Nodes()[0].Healthy())
	u.InheritHealth(nil) // no previous runtime: nothing to do
}

// With every node out, the nodes the passive check ejected are balanced
// over again (panic mode), but never one the active check found down:
// its probes, unlike the failed requests behind an ejection, look at the
// node now and again, and see it come back.
func TestEveryNodeOutPicksTheEjectedNotTheDown(t *testing.T) {
	health := func(ok bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" && !ok {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			if r.URL.Path != "/healthz" {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}
	}
	down := newBackend(t, health(false))   // fails its probes
	ejected := newBackend(t, health(true)) // passes them, fails requests
	u := newUpstream(t, Config{
		Active:  &ActiveCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second},
		Passive: &PassiveCheck{Failures: 1, Eject: time.Minute},
	}, down.host(), ejected.host())
	d, e := u.Nodes()[0], u.Nodes()[1]
	u.Start()
	require.Eventually(t, func() bool { return d.Stats().Down }, 2*time.Second, 5*time.Millisecond)

	resp, _ := do(t, e, &Request{Method: "GET", URI: "/"})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.True(t, e.Stats().Ejected)
	require.False(t, e.Healthy())

	for range 10 {
		assert.Same(t, e, u.Pick(nil, nil, nil), "every node out: the ejected one, not the down one")
	}
	assert.Nil(t, u.Pick(nil, nil, []*Node{e}), "not one already tried")
	assert.True(t, e.Stats().Ejected, "still counted ejected")
}

// Panic mode is the upstream's state, not a request's: while a node is
// healthy, a retry never goes to an ejected one.
func TestRetryAvoidsEjectedWhileOneIsHealthy(t *testing.T) {
	bad := newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	good := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: time.Minute}}, bad.host(), good.host())
	b, g := u.Nodes()[0], u.Nodes()[1]
	do(t, b, &Request{Method: "GET", URI: "/"})
	require.False(t, b.Healthy())
	assert.Same(t, g, u.Pick(nil, nil, nil))
	assert.Nil(t, u.Pick(nil, nil, []*Node{g}), "the healthy node tried: none left")
}

// A failure that renews an ejection which has just run out is never lost
// to a Healthy call that saw the old end: the node stays out for the new
// eject. Healthy used to clear the ejection after recordFailure renewed
// it (it had read the expired end before), and the failing node was back
// at once.
func TestEjectionRenewalIsNotLostToHealthy(t *testing.T) {
	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: time.Hour}}, "127.0.0.1:1")
	n := u.Nodes()[0]
	var stop atomic.Bool
	spinning := make(chan struct{})
	go func() { // the request path, asking all the time
		defer close(spinning)
		for !stop.Load() {
			n.Healthy()
		}
	}()
	lost := 0
	for range 1_000_000 {
		u.passive.Eject = -time.Nanosecond // an ejection that ended a moment ago
		n.recordFailure(errBadStatus)
		u.passive.Eject = time.Hour
		n.recordFailure(errBadStatus) // renewed for an hour
		if n.Healthy() {
			lost++
		}
	}
	stop.Store(true)
	<-spinning
	assert.Zero(t, lost, "renewed ejections lost")
}

// A passive ejection ends once the active check passes Healthy times in a
// row after it began (HAProxy's rise after an on-error mark-down, Envoy's
// un-ejection at a passing check), not only when Eject runs out: here an
// hour.
func TestPassingActiveChecksEndAPassiveEjection(t *testing.T) {
	var failApp atomic.Bool
	failApp.Store(true)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		if failApp.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, "app")
	})
	u := newUpstream(t, Config{
		Active:  &ActiveCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, Healthy: 2, Unhealthy: 2},
		Passive: &PassiveCheck{Failures: 1, Eject: time.Hour},
	}, be.host())
	n := u.Nodes()[0]
	u.Start()

	resp, _ := do(t, n, &Request{Method: "GET", URI: "/app"})
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.True(t, n.Stats().Ejected)
	require.Eventually(t, n.Healthy, 5*time.Second, 5*time.Millisecond, "passing health checks did not end the ejection")
	assert.False(t, n.Stats().Ejected)
	assert.Nil(t, n.Stats().Out)

	// A new failure ejects it again: the count starts over.
	resp, _ = do(t, n, &Request{Method: "GET", URI: "/app"})
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.EqualValues(t, 2, n.Stats().Ejections)
	require.Eventually(t, n.Healthy, 5*time.Second, 5*time.Millisecond)
}

// A node out for both reasons is reported for each as it stands: down
// (the active check's verdict, which panic mode never overrides) with
// the active check's reason, and ejected only while the ejection runs.
// An ejection that ran out while the node was down used to stay
// "ejected" for as long as the node stayed down, and the reason shown
// was whichever verdict came last.
func TestDownAndEjectedNodeIsReportedAsItStands(t *testing.T) {
	const eject = 100 * time.Millisecond
	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: eject}}, "127.0.0.1:1")
	n := u.Nodes()[0]

	// Down first, then a request that was in flight fails and ejects it.
	n.markDown("down after 2 failed health checks: refused")
	n.down.Store(true)
	n.recordFailure(errBadStatus)
	st := n.Stats()
	assert.True(t, st.Down)
	assert.True(t, st.Ejected, "the ejection runs")
	if assert.NotNil(t, st.Out) {
		assert.Equal(t, "down after 2 failed health checks: refused", st.Out.Reason,
			"down keeps it out, panic or not: the active check's reason")
	}

	deadline := time.Now().Add(10 * eject)
	for n.ejectedUntil.Load() != 0 && nanotime() < n.ejectedUntil.Load() && time.Now().Before(deadline) {
		time.Sleep(eject / 10)
	}
	time.Sleep(eject / 10)
	st = n.Stats()
	assert.True(t, st.Down)
	assert.False(t, st.Ejected, "the ejection ran out")
	if assert.NotNil(t, st.Out) {
		assert.Equal(t, "down after 2 failed health checks: refused", st.Out.Reason)
	}

	// Back from the active check, the node is healthy: no ejection
	// comes back with it.
	n.down.Store(false)
	assert.True(t, n.Healthy())
	assert.Nil(t, n.Stats().Out)
}

// A reload rebuilds the upstream while the old one still has requests on
// its nodes (a drain, long streams): least_request must count them, or
// the new generation piles its requests onto the node the old one keeps
// busy.
func TestLeastRequestCountsTheReplacedUpstreamsRequests(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	busy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	idle := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := Config{Balance: "least_request"}
	prev := newUpstream(t, cfg, busy.host(), idle.host())
	done := make(chan error, 1)
	go func() {
		resp, err := prev.Nodes()[0].RoundTrip(context.Background(), &Request{Method: "GET", URI: "/stream"})
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered

	u := newUpstream(t, cfg, busy.host(), idle.host())
	u.InheritHealth(prev)
	r := httptest.NewRequest("GET", "/", nil)
	for range 20 {
		assert.Equal(t, idle.host(), u.Pick(r, nil, nil).Addr(), "the node the old upstream keeps busy is not the least loaded")
	}
	assert.EqualValues(t, 1, u.Nodes()[0].InFlight())
	close(release)
	require.NoError(t, <-done)
	assert.EqualValues(t, 0, u.Nodes()[0].InFlight(), "the old upstream's request ended")
}

// Cut, at the end of a retired upstream's drain, aborts the connections
// of its health probes too: a probe it aborts says nothing of the node,
// which must not be taken down, nor logged "upstream node unhealthy".
func TestCutProbeIsNoVerdictOnTheNode(t *testing.T) {
	probing := make(chan struct{}, 1)
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case probing <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "ok")
	})
	defer close(release)
	var logged bytes.Buffer
	var mu sync.Mutex
	u := newUpstream(t, Config{
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil)),
		Active: &ActiveCheck{Path: "/healthz", Interval: time.Hour, Timeout: 10 * time.Second, Healthy: 1, Unhealthy: 1},
	}, be.host())
	n := u.Nodes()[0]
	u.Start()
	select {
	case <-probing:
	case <-time.After(5 * time.Second):
		t.Fatal("no probe reached the node")
	}
	u.Cut()
	// The checker sees its probe fail at once: give it a while to (wrongly)
	// take the node down before Close stops it.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && n.Healthy(); {
		time.Sleep(10 * time.Millisecond)
	}
	u.Close() // waits for the checker
	assert.True(t, n.Healthy(), "a probe Cut aborted takes the node down")
	mu.Lock()
	defer mu.Unlock()
	assert.NotContains(t, logged.String(), "upstream node unhealthy")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A reload that rebuilds an environment takes over the active check's
// results counted in a row on the nodes it keeps, as it takes over the
// passive check's failures: rebuilt more often than unhealthy ×
// interval (a deploy tool rewriting a file), each generation counted
// afresh and a dead node was never taken out.
func TestActiveCheckCountsCarryAcrossRebuilds(t *testing.T) {
	var probes atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	})
	check := &ActiveCheck{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: 5 * time.Second, Healthy: 2, Unhealthy: 3}
	failed := func(n *Node) int {
		n.run.mu.Lock()
		defer n.run.mu.Unlock()
		return n.run.bad
	}
	// Each generation serves until its checker has counted one failed
	// probe more, then the next replaces it (and is retired, as a
	// reload retires it).
	var prev *Upstream
	var n *Node
	const gens = 5
	for range gens {
		u := newUpstream(t, Config{Env: "e", Name: "api", Active: check}, be.host())
		u.InheritHealth(prev)
		old := prev
		prev, n = u, u.Nodes()[0]
		counted := failed(n) // what it takes over
		u.Start()
		if old != nil {
			old.Retire()
		}
		require.Eventually(t, func() bool { return failed(n) > counted || !n.Healthy() }, 5*time.Second, time.Millisecond)
		if !n.Healthy() {
			break
		}
	}
	assert.False(t, n.Healthy(), "%d failed checks in a row over %d generations (unhealthy = 3) take the node down", probes.Load(), gens)
}

// A reload that rebuilds an environment does not probe the nodes it
// keeps at once: their checks go on at the interval the replaced
// generation kept. Probing every node at each rebuild multiplied the
// probes a deploy tool's reloads sent each backend by the reload rate
// (one a node per reload, whatever the interval), every node at once.
func TestRebuildsKeepTheChecksInterval(t *testing.T) {
	var probes atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { probes.Add(1) })
	check := &ActiveCheck{Path: "/healthz", Interval: time.Hour, Timeout: 5 * time.Second}
	prev := newUpstream(t, Config{Env: "e", Name: "api", Active: check}, be.host())
	prev.Start()
	require.Eventually(t, func() bool { return probes.Load() == 1 }, 5*time.Second, 5*time.Millisecond, "the first generation probes at its start")
	const rebuilds = 5
	for range rebuilds {
		before := probes.Load()
		u := newUpstream(t, Config{Env: "e", Name: "api", Active: check}, be.host())
		u.InheritHealth(prev)
		u.Start()
		prev.Retire()
		prev = u
		// Each generation serves a while (a reload every 200 ms):
		// time for a probe it (wrongly) sends at once to arrive.
		for deadline := time.Now().Add(200 * time.Millisecond); probes.Load() == before && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	assert.EqualValues(t, 1, probes.Load(), "probes of one node over %d rebuilds within its interval", rebuilds)
	assert.True(t, prev.Nodes()[0].Healthy())
}

// A retired upstream (its environment replaced, draining) runs no
// checker of its own: its nodes follow the verdicts of the upstream that
// replaced it, which checks the same nodes. Its requests' retries must
// not be sent to a node the serving generation took down since.
func TestRetiredUpstreamFollowsItsSuccessorsVerdicts(t *testing.T) {
	var failing atomic.Bool
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	check := &ActiveCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, Healthy: 1, Unhealthy: 1}
	prev := newUpstream(t, Config{Env: "e", Name: "api", Active: check}, be.host())
	prev.Start()
	u := newUpstream(t, Config{Env: "e", Name: "api", Active: check}, be.host())
	u.InheritHealth(prev)
	u.Start()
	prev.Retire()
	old, cur := prev.Nodes()[0], u.Nodes()[0]

	failing.Store(true)
	require.Eventually(t, func() bool { return !cur.Healthy() }, 5*time.Second, 5*time.Millisecond, "the serving upstream takes the node down")
	assert.False(t, old.Healthy(), "the retired upstream's node, taken down by its successor")
	assert.True(t, prev.Pick(httptest.NewRequest("GET", "/", nil), nil, nil) == nil, "a retry in the retired upstream gets no node")

	failing.Store(false)
	require.Eventually(t, func() bool { return cur.Healthy() }, 5*time.Second, 5*time.Millisecond, "the serving upstream brings the node back")
	assert.True(t, old.Healthy(), "the retired upstream's node, back with its successor's")
}

// A failure that ejects a node whose last ejection ran out, before
// anything asked whether it was healthy (a request in flight from before
// that ejection, on an upstream no other request picks from meanwhile),
// is a new ejection: counted, logged, and reported since now, not taken
// for a renewal of the one that ended.
func TestEjectionAfterAnUnnoticedEndIsCounted(t *testing.T) {
	release := make(chan struct{})
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	const eject = 50 * time.Millisecond
	u := newUpstream(t, Config{Passive: &PassiveCheck{Failures: 1, Eject: eject}}, be.host())
	n := u.Nodes()[0]
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		resp, err := n.RoundTrip(context.Background(), &Request{Method: "GET", URI: "/slow"})
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	require.Eventually(t, func() bool { return n.InFlight() == 1 }, 2*time.Second, time.Millisecond)
	do(t, n, &Request{Method: "GET", URI: "/"}) // 503: ejected
	require.EqualValues(t, 1, n.counts.ejections.Load())
	time.Sleep(3 * eject) // the ejection ends; nothing asks
	failedAt := time.Now()
	close(release) // the slow request's 503: ejected again
	<-slow
	st := n.Stats()
	assert.True(t, st.Ejected)
	assert.EqualValues(t, 2, st.Ejections, "a second ejection")
	if assert.NotNil(t, st.Out) {
		assert.False(t, st.Out.Since.Before(failedAt), "out since the second ejection, not the first (%s before)", failedAt.Sub(st.Out.Since))
	}
}
