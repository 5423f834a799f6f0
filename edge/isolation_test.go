package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"edged/internal/pool"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingBackend answers only once release is closed (or the request is
// cancelled); the Cleanup closes it.
func blockingBackend(t *testing.T) (*backend, func()) {
	b, open, _ := countingBlockingBackend(t)
	return b, open
}

// countingBlockingBackend is blockingBackend that also counts the
// requests it got and the body bytes it read.
func countingBlockingBackend(t *testing.T) (*backend, func(), *blockedCounts) {
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open)
	n := new(blockedCounts)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := io.Copy(io.Discard, r.Body)
		n.requests.Add(1)
		n.bodyBytes.Add(k)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "late")
	}))
	return b, open, n
}

type blockedCounts struct{ requests, bodyBytes atomic.Int64 }

// adminGet fetches path from the admin listener.
func (te *testEdge) adminGet(path string) string {
	te.t.Helper()
	resp, err := http.Get("http://" + te.admin + path)
	require.NoError(te.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(te.t, err)
	return string(b)
}

// TestFloodedEnvironmentHoldsItsRejections: environment A, full (workers
// busy on a backend that does not answer, queue full), is flooded by a
// bounded number of clients. Each of them gets 503 env.overloaded, no
// sooner than A's reject_delay, while they are held A's metrics and
// /status show them, and environment B's requests all succeed meanwhile.
func TestFloodedEnvironmentHoldsItsRejections(t *testing.T) {
	const (
		// Long enough for every flooding request to be held at once
		// even when the machine is slow to finish their handshakes.
		delay = 2 * time.Second
		flood = 12
	)
	testCertDir(t)
	slow, open := blockingBackend(t)
	fast := nameBackend(t, "fast")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": `
[[environment]]
name = "a"
workers = 2
queue = 2
queue_timeout = "30s"
reject_delay = "` + delay.String() + `"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") + proxyTOML("a", "slow", "/", slow.addr),
		"b.toml": envTOML("b", "") + groupTOML("b", "b-group", "uat.acme.com", "uat.acme.com") + proxyTOML("b", "fast", "/", fast.addr),
	})
	ca := te.client("test.acme.com", nil)
	envA := te.srv.Snapshot().Env("a")
	assert.Nil(t, envA.proxies["slow"].lane, "a lone proxy has no share: admission stays one CAS")

	// Fill A: 2 workers busy on the backend that does not answer, 2 queued.
	var fill []<-chan answer
	for range 4 {
		fill = append(fill, getAsync(ca, "https://test.acme.com/x"))
	}
	require.Eventually(t, func() bool {
		st := envA.pool.Stats()
		return st.InFlight == 2 && st.Queued == 2
	}, 5*time.Second, 5*time.Millisecond)

	// The flood: each client's request is held, then refused.
	type result struct {
		status  int
		code    string
		retry   string
		elapsed time.Duration
		err     error
	}
	results := make(chan result, flood)
	for range flood {
		go func() {
			start := time.Now()
			resp, err := ca.Get("https://test.acme.com/x")
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			var f faultBody
			err = json.NewDecoder(resp.Body).Decode(&f)
			results <- result{resp.StatusCode, f.Fault.Code, resp.Header.Get("Retry-After"), time.Since(start), err}
		}()
	}
	require.Eventually(t, func() bool { return envA.pool.Stats().Held == flood }, 5*time.Second, 2*time.Millisecond,
		"every flooding request is held (the first answers come no sooner than %v)", delay)
	heldMetrics := te.adminGet("/metrics")
	assert.Contains(t, heldMetrics, fmt.Sprintf(`edged_environment_requests_held{env="a"} %d`, flood))
	assert.Contains(t, heldMetrics, `edged_pool_hold_off{env="a"} 0`, "under the hold bound: holding, no hold-off")
	var st Status
	require.NoError(t, json.Unmarshal([]byte(te.adminGet("/status")), &st))
	assert.Equal(t, flood, st.Environments["a"].Pool.Held)
	assert.Equal(t, 2, st.Environments["a"].Pool.InFlight, "held requests hold no worker")

	// B is served while A's flood is held.
	cb := te.client("uat.acme.com", nil)
	for i := range 20 {
		resp, err := cb.Get(fmt.Sprintf("https://uat.acme.com/y%d", i))
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, fmt.Sprintf("fast /y%d", i), string(b))
	}

	for range flood {
		r := <-results
		require.NoError(t, r.err)
		assert.Equal(t, 503, r.status)
		assert.Equal(t, "env.overloaded", r.code)
		assert.Equal(t, "1", r.retry)
		assert.GreaterOrEqual(t, r.elapsed, delay, "a held rejection comes no sooner than reject_delay")
	}
	ps := envA.pool.Stats()
	assert.Equal(t, 0, ps.Held)
	assert.Equal(t, uint64(flood), ps.HeldTotal)
	assert.Equal(t, uint64(flood), ps.Rejected)
	metrics := te.adminGet("/metrics")
	assert.Contains(t, metrics, fmt.Sprintf(`edged_pool_held_total{env="a"} %d`, flood))
	assert.Contains(t, metrics, fmt.Sprintf(`edged_pool_rejected_total{env="a",reason="queue_full"} %d`, flood))

	open()
	for _, c := range fill {
		a := <-c
		require.NoError(t, a.err)
		assert.Equal(t, 200, a.status)
	}
}

// oneWorkerEdge is an edge whose environment a has one worker and a queue
// of one (queue_timeout 1m) before its reject_delay, on a backend that
// answers only once open is called, with the watch's timer out of reach:
// only a wait in the pool starts a watch. startOneWorkerEdge returns it
// with its one worker busy with busy's request.
type oneWorkerEdge struct {
	te     *testEdge
	envA   *Env
	ca     *http.Client
	busy   <-chan answer
	open   func()
	counts *blockedCounts // what the backend got
}

func startOneWorkerEdge(t *testing.T, rejectDelay string) *oneWorkerEdge {
	testCertDir(t)
	slow, open, counts := countingBlockingBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": `
[[environment]]
name = "a"
workers = 1
queue = 1
queue_timeout = "1m"
reject_delay = "` + rejectDelay + `"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") + proxyTOML("a", "slow", "/", slow.addr),
	})
	hs := te.srv.https
	hs.mu.Lock()
	hs.watchAfter = time.Hour
	hs.mu.Unlock()
	ca := te.client("test.acme.com", nil)
	envA := te.srv.Snapshot().Env("a")
	busy := getAsync(ca, "https://test.acme.com/busy")
	require.Eventually(t, func() bool { return envA.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)
	return &oneWorkerEdge{te: te, envA: envA, ca: ca, busy: busy, open: open, counts: counts}
}

// finish lets the backend answer and checks that busy and the other
// requests waiting for the worker are served.
func (o *oneWorkerEdge) finish(t *testing.T, waiting ...<-chan answer) {
	o.open()
	for _, c := range append([]<-chan answer{o.busy}, waiting...) {
		a := <-c
		require.NoError(t, a.err)
		assert.Equal(t, 200, a.status)
	}
}

// TestWaitingRequestIsWatchedAtOnce: an HTTP/1.1 request that waits in
// its environment's pool, queued or held, is watched for its client going
// away from the moment it starts to wait (WaitStarts, or the held
// request's own read), not by the watch's timer: with that timer out of reach, a queued and a held request whose
// clients leave still stop waiting at once, not after queue_timeout or
// reject_delay, and neither is counted as rejected or timed out.
func TestWaitingRequestIsWatchedAtOnce(t *testing.T) {
	o := startOneWorkerEdge(t, "1m")
	o.leave(t, "GET", "/queued", "", queuedOf)
	queued := getAsync(o.ca, "https://test.acme.com/queued")
	require.Eventually(t, func() bool { return o.envA.pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond)
	o.leave(t, "GET", "/held", "", heldOf)

	st := o.envA.pool.Stats()
	assert.Equal(t, uint64(0), st.Rejected, "a client that left was not rejected")
	assert.Equal(t, uint64(0), st.TimedOut, "nor timed out")
	o.finish(t, queued)
}

// TestWaitingUploadIsWatched: a request whose body is still unread when
// it starts to wait cannot be watched by reading its connection (the
// bytes are the body's); a queued or held upload whose client closes
// still stops waiting at once (hangupWatch), and one whose client stays
// is read whole once it gets the worker (the watch gave the connection
// back with the body's read deadline).
func TestWaitingUploadIsWatched(t *testing.T) {
	if !canWatchHangup {
		t.Skip("the hangup watch is Linux's")
	}
	o := startOneWorkerEdge(t, "1m")
	body := pattern(20000)
	o.leave(t, "PUT", "/queued", body, queuedOf)
	stays := doAsync(o.ca, mustReq(t, "PUT", "https://test.acme.com/stays", strings.NewReader(body)))
	require.Eventually(t, func() bool { return o.envA.pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond)
	o.leave(t, "PUT", "/held", body, heldOf)

	st := o.envA.pool.Stats()
	assert.Equal(t, uint64(0), st.Rejected, "a client that left was not rejected")
	assert.Equal(t, uint64(0), st.TimedOut, "nor timed out")
	o.finish(t, stays)
	assert.EqualValues(t, 2, o.counts.requests.Load(), "the two requests that stayed, and none of those that left")
	assert.EqualValues(t, len(body), o.counts.bodyBytes.Load(), "the upload that stayed, whole")
}

func queuedOf(s pool.Stats) int { return s.Queued }
func heldOf(s pool.Stats) int   { return s.Held }

// leave sends a request (with body, if not empty) that waits in A's pool
// (waiting counts it), then has its client close the connection, and
// requires the wait to end at once, not after queue_timeout or
// reject_delay.
func (o *oneWorkerEdge) leave(t *testing.T, method, path, body string, waiting func(pool.Stats) int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://test.acme.com"+path, rd)
	require.NoError(t, err)
	got := doAsync(o.ca, req)
	require.Eventually(t, func() bool { return waiting(o.envA.pool.Stats()) == 1 }, 5*time.Second, 5*time.Millisecond, path)
	cancel()
	require.Error(t, (<-got).err)
	require.Eventually(t, func() bool { return waiting(o.envA.pool.Stats()) == 0 }, 5*time.Second, 5*time.Millisecond,
		"%s %s: the wait ends with the client", method, path)
}

// TestHungProxyLeavesRoomForItsSibling: in an environment of 4 workers,
// 16 clients (4× its workers) call a proxy whose backend hangs; the
// sibling proxy of the same environment keeps answering 200 throughout,
// and the hung proxy's clients get 504 upstream.timeout (response_timeout)
// or 503 env.overloaded, never a worker of the sibling's share.
func TestHungProxyLeavesRoomForItsSibling(t *testing.T) {
	const clients = 16
	testCertDir(t)
	hung, open := blockingBackend(t)
	fast := nameBackend(t, "fast")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"a.toml": `
[[environment]]
name = "a"
workers = 4
queue = 4
queue_timeout = "1500ms"
reject_delay = "1s"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") + `
[[upstream]]
name = "hung"
environment = "a"
nodes = [{ url = "http://` + hung.addr + `" }]
response_timeout = "3s"
retries = 0

[[proxy]]
name = "foo1"
environment = "a"
base_path = "/foo1"
upstream = "hung"

[[upstream]]
name = "fast"
environment = "a"
nodes = [{ url = "http://` + fast.addr + `" }]

[[proxy]]
name = "foo2"
environment = "a"
base_path = "/foo2"
upstream = "fast"
`,
	})
	envA := te.srv.Snapshot().Env("a")
	foo1 := envA.proxies["foo1"]
	require.NotNil(t, foo1.lane, "with two proxies each has a share")
	assert.Equal(t, 3, foo1.lane.Stats().MaxInFlight, "4 workers less a quarter")
	assert.Equal(t, 3, foo1.lane.Stats().MaxQueued)

	ca := te.client("test.acme.com", nil)
	answers := make(chan answer, clients)
	for i := range clients {
		go func() { answers <- <-getAsync(ca, fmt.Sprintf("https://test.acme.com/foo1/%d", i)) }()
	}
	require.Eventually(t, func() bool {
		ls := foo1.lane.Stats()
		return ls.InFlight == 3 && ls.Queued == 3 && envA.pool.Stats().Held > 0
	}, 5*time.Second, 2*time.Millisecond, "the hung proxy takes its share, queues its share, and the rest is held")

	// While foo1 holds every worker it may, foo2 answers every request.
	cb := te.client("test.acme.com", nil)
	for i := range 20 {
		resp, err := cb.Get(fmt.Sprintf("https://test.acme.com/foo2/%d", i))
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode, string(b))
		require.Equal(t, fmt.Sprintf("fast /%d", i), string(b), "the base path is not forwarded")
	}
	assert.LessOrEqual(t, foo1.lane.Stats().InFlight, 3)

	var timeouts, overloaded, share int
	for range clients {
		a := <-answers
		require.NoError(t, a.err)
		switch {
		case a.status == 504 && strings.Contains(a.body, `"upstream.timeout"`):
			timeouts++
		case a.status == 503 && strings.Contains(a.body, `"env.overloaded"`):
			overloaded++
			if strings.Contains(a.body, "proxy foo1 of environment a is at its share (3 workers, 3 queue places)") {
				share++
			}
		default:
			t.Errorf("hung proxy answered %d %s", a.status, a.body)
		}
	}
	assert.Equal(t, 3, timeouts, "the requests that had a worker time out on response_timeout")
	assert.Equal(t, clients-3, overloaded)
	assert.Positive(t, share, "the requests past foo1's share of the queue are told so")
	open()
	var st Status
	require.NoError(t, json.Unmarshal([]byte(te.adminGet("/status")), &st))
	assert.Equal(t, 3, st.Environments["a"].ProxyShares["foo1"].MaxInFlight)
	// Every rejection was the hung proxy's (those past its queue share;
	// its queued requests timed out instead).
	rejected := envA.pool.Stats().Rejected
	assert.Positive(t, rejected)
	assert.Equal(t, rejected, foo1.lane.Stats().Rejected)
	assert.Contains(t, te.adminGet("/metrics"), fmt.Sprintf(`edged_pool_proxy_rejected_total{env="a",proxy="foo1"} %d`, rejected))
}

// TestHeldRequestWaitsOnItsOwnRead: an HTTP/1.1 request held before its
// 503 waits on its own connection's read (pool.Holder), not on a timer
// with the background read watching beside it: while it is held, only the
// queued request's connection has a background read in flight. A request
// the client pipelines meanwhile is kept and answered next, held in turn,
// in order; and a held client that leaves still ends its hold at once
// (TestWaitingRequestIsWatchedAtOnce).
func TestHeldRequestWaitsOnItsOwnRead(t *testing.T) {
	const delay = 400 * time.Millisecond
	o := startOneWorkerEdge(t, delay.String())
	te, ca, envA, hs := o.te, o.ca, o.envA, o.te.srv.https
	watching := func() (n int) {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		for c := range hs.conns {
			if c.bgPending() {
				n++
			}
		}
		return n
	}
	queued := getAsync(ca, "https://test.acme.com/queued")
	require.Eventually(t, func() bool { return envA.pool.Stats().Queued == 1 }, 5*time.Second, 5*time.Millisecond)
	// watchNow starts the background read in a goroutine of its own: it
	// may begin a moment after the request is counted in the queue.
	require.Eventually(t, func() bool { return watching() == 1 }, 5*time.Second, time.Millisecond,
		"the queued request is watched by its background read")

	c, br := dialH1(t, te)
	start := time.Now()
	_, err := io.WriteString(c, "GET /held1 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return envA.pool.Stats().Held == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 1, watching(), "the held request has no background read: it reads its own connection")
	_, err = io.WriteString(c, "GET /held2 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)

	var ids []string
	for range 2 {
		resp, body := readResp(t, br, "GET")
		assert.Equal(t, 503, resp.StatusCode)
		assert.Contains(t, body, "env.overloaded")
		ids = append(ids, resp.Header.Get("X-Request-Id"))
	}
	assert.GreaterOrEqual(t, time.Since(start), 2*delay, "the pipelined request was held in turn, after the first")
	assert.NotEqual(t, ids[0], ids[1], "two answers, one a request")
	assert.False(t, isClosed(t, c, br, 100*time.Millisecond), "the connection stays open after held rejections")
	st := envA.pool.Stats()
	assert.Equal(t, uint64(2), st.HeldTotal)
	assert.Equal(t, uint64(2), st.Rejected)
	o.finish(t, queued)
}

// TestHeldRequestsLeaveConnectionsToNeighbours: held requests keep their
// HTTP/1.1 connections, which count in max_connections with every other
// environment's. An open-loop flood of environment A (a new connection per
// request, closed once answered) held with a bound above max_connections
// took every connection: edged stopped accepting, environment B's new
// clients waited in the listen queue until A's holds ended, and A's hold
// bound, never reached, never turned the holding off. Held requests are
// bounded by a quarter of max_connections too: past it A's flood is
// answered at once, and B's new client is served while A's held requests
// are still held.
func TestHeldRequestsLeaveConnectionsToNeighbours(t *testing.T) {
	const (
		maxConns = 16
		flood    = 24
	)
	testCertDir(t)
	slow, open := blockingBackend(t)
	fast := nameBackend(t, "fast")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), fmt.Sprintf("max_connections = %d", maxConns)),
		"a.toml": `
[[environment]]
name = "a"
workers = 1
queue = 0
reject_delay = "1m"
` + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") + proxyTOML("a", "slow", "/", slow.addr),
		"b.toml": envTOML("b", "") + groupTOML("b", "b-group", "uat.acme.com", "uat.acme.com") + proxyTOML("b", "fast", "/", fast.addr),
	})
	envA := te.srv.Snapshot().Env("a")
	// dialGet opens a connection for host, sends GET / and reads the
	// answer's status, within d; no assertion, so that it may run after
	// the test in a goroutine the shutdown ends.
	dialGet := func(host string, d time.Duration) (int, error) {
		nc, err := net.DialTimeout("tcp", te.addr, 2*time.Second)
		if err != nil {
			return 0, err
		}
		defer nc.Close()
		tc := tls.Client(nc, &tls.Config{RootCAs: caPool(t), ServerName: host, NextProtos: []string{"http/1.1"}})
		_ = tc.SetDeadline(time.Now().Add(d))
		if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	busy := make(chan error, 1)
	go func() { _, err := dialGet("test.acme.com", time.Minute); busy <- err }()
	require.Eventually(t, func() bool { return envA.pool.Stats().InFlight == 1 }, 5*time.Second, 5*time.Millisecond)

	var answeredAtOnce atomic.Int64
	for range flood {
		go func() {
			if status, err := dialGet("test.acme.com", 2*time.Minute); err == nil && status == http.StatusServiceUnavailable && envA.pool.Stats().Held > 0 {
				answeredAtOnce.Add(1)
			}
		}()
	}
	// Settled: every connection edged may have is taken (A's busy one and
	// its held ones), or the flood is all held or answered.
	require.Eventually(t, func() bool {
		held := envA.pool.Stats().Held
		return 1+held >= maxConns || held+int(answeredAtOnce.Load()) == flood
	}, 10*time.Second, 5*time.Millisecond)
	held := envA.pool.Stats().Held
	assert.LessOrEqual(t, held, maxConns/4, "A's held requests leave three quarters of max_connections to the others")

	// B's new client is served while A's flood is still held.
	status, err := dialGet("uat.acme.com", 5*time.Second)
	require.NoError(t, err, "B's new connection was not served while A held %d requests", held)
	assert.Equal(t, http.StatusOK, status)
	assert.Positive(t, envA.pool.Stats().Held, "A's held requests are still held")
	st := envA.pool.Stats()
	assert.Equal(t, maxConns/4, st.MaxHeld)
	assert.True(t, st.HoldOff, "past the bound, A's flood is answered at once")
	open()
	require.NoError(t, <-busy)
}

// TestHoldBoundFollowsMaxConnections: an environment's hold bound is a
// quarter of max_connections at most (maxHeld), and a reload that changes
// max_connections alone moves it on the running pool, the environment
// kept as it was (not rebuilt: max_connections is no part of its plan).
func TestHoldBoundFollowsMaxConnections(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	state := t.TempDir()
	files := map[string]string{
		"server.toml": serverTOML(state, "max_connections = 16"),
		"a.toml": envTOML("a", "") + groupTOML("a", "a-group", "test.acme.com", "test.acme.com") +
			proxyTOML("a", "p", "/", b.addr),
	}
	te := startEdge(t, files)
	envA := te.srv.Snapshot().Env("a")
	assert.Equal(t, 4, envA.pool.Stats().MaxHeld, "a quarter of max_connections")

	files["server.toml"] = serverTOML(state, "max_connections = 2000")
	writeFiles(t, te.dir, files)
	te.reload()
	require.Same(t, envA, te.srv.Snapshot().Env("a"), "max_connections alone rebuilds no environment")
	assert.Equal(t, 500, envA.pool.Stats().MaxHeld)

	files["server.toml"] = serverTOML(state, "max_connections = 100000")
	writeFiles(t, te.dir, files)
	te.reload()
	assert.Equal(t, pool.DefaultMaxHeld(16, 16), envA.pool.Stats().MaxHeld, "the pool's own bound, below a quarter of max_connections")
}
