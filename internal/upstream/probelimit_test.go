package upstream

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// withProbeLimit makes the process's probe limit n for the upstreams the
// test builds from now on.
func withProbeLimit(t *testing.T, n int64) {
	saved := probes
	probes = newProbeLimit(n)
	t.Cleanup(func() { probes = saved })
}

// openCounter counts the connections open at once at a set of backends,
// and the most it saw.
type openCounter struct {
	open, most atomic.Int64
}

func (o *openCounter) add(d int64) {
	now := o.open.Add(d)
	for {
		m := o.most.Load()
		if now <= m || o.most.CompareAndSwap(m, now) {
			return
		}
	}
}

// hangBackend accepts a connection, reads what comes and never answers:
// the connection stays open until the prober closes it.
func (o *openCounter) hangBackend(t *testing.T) string {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		o.add(1)
		defer o.add(-1)
		io.Copy(io.Discard, c)
	})
	return addr
}

// TestProbesInFlightAreBoundedAcrossTheProcess: every node's checker
// opened its probe's connection whenever its interval came, however many
// were still open: 260,000 nodes with 10 ms checks ran the process out of
// file descriptors, which its listeners, logs and config reloads need
// too. Probes open at once are now bounded across the process, every
// upstream of every environment together; a probe that finds no room
// before its next turn is not sent, and is no verdict on its node.
func TestProbesInFlightAreBoundedAcrossTheProcess(t *testing.T) {
	const limit = 8 // an environment's share: 2
	withProbeLimit(t, limit)
	var hung openCounter
	var logged bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))

	// Four upstreams (four environments) of 4 nodes each that accept a
	// probe and never answer it: 16 probes would be open at once.
	slow := &ActiveCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 2 * time.Second, Unhealthy: 1}
	var ups []*Upstream
	for _, env := range []string{"a", "b", "c", "d"} {
		var hosts []string
		for range 4 {
			hosts = append(hosts, hung.hangBackend(t))
		}
		ups = append(ups, newUpstream(t, Config{Env: env, Name: "hung", Logger: logger, Active: slow}, hosts...))
	}
	// A fifth environment's upstream whose node answers at once; its
	// probes wait for room no longer than their interval.
	var fineLogged bytes.Buffer
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	fineLogger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &fineLogged}, nil))
	fine := newUpstream(t, Config{Env: "e", Name: "fine", Logger: fineLogger, Active: &ActiveCheck{
		Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond, Healthy: 1, Unhealthy: 1,
	}}, be.host())

	for _, u := range ups {
		u.Start()
	}
	require.Eventually(t, func() bool { return hung.open.Load() >= limit }, 5*time.Second, 5*time.Millisecond, "the hung nodes' probes")
	fine.Start()
	time.Sleep(300 * time.Millisecond) // rounds of every checker: none may open a probe past the limit
	assert.LessOrEqual(t, hung.most.Load(), int64(limit), "probes open at once at the hung nodes")
	n := fine.Nodes()[0]
	require.Eventually(t, func() bool { return n.Stats().ProbesSkipped > 0 }, 5*time.Second, 5*time.Millisecond,
		"the fine node's probe, finding no room")
	assert.True(t, n.Healthy(), "a probe that could not start is no verdict on its node")
	assert.False(t, n.Stats().Down)
	for _, u := range ups {
		u.Close()
	}
	fine.Close()
	mu.Lock()
	defer mu.Unlock()
	assert.NotContains(t, fineLogged.String(), "upstream node unhealthy")
	// One line for the process, whichever checker skipped first.
	assert.Contains(t, logged.String()+fineLogged.String(), "health check skipped")
}

// TestProbeReadsLittleOfItsAnswer: a probe read its answer's head up to
// the 1 MiB a proxied response may have: a node answering its health
// check with a 900 KiB header made each probe gather and keep it (more
// than 1 MiB allocated a probe; every 10 ms, from one node), and each of
// the process's probes in flight could hold as much. A probe now reads
// at most 64 KiB of its answer, head and body together, as nginx's
// proxy_buffer_size bounds a head and HAProxy's check buffer an answer;
// a head past it fails the check.
func TestProbeReadsLittleOfItsAnswer(t *testing.T) {
	big := []byte("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 900<<10) + "\r\nContent-Length: 2\r\n\r\nok")
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := readHead(bufio.NewReader(c)); err != nil {
			return
		}
		c.Write(big)
		io.Copy(io.Discard, c)
	})
	u := newUpstream(t, Config{Active: &ActiveCheck{Interval: time.Hour}}, addr)
	n := u.Nodes()[0]

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := n.probe(t.Context(), "/healthz", "")
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes allocated", allocated)
	assert.Less(t, allocated, uint64(512<<10), "bytes allocated by one probe (6,180,360 when it read the whole head)")
	if assert.Error(t, err, "a head past the probe's limit fails the check") {
		assert.Contains(t, err.Error(), "health check http://"+addr+"/healthz: answer head larger than 64 KiB")
	}

	// An answer within the limit, its body past it, still passes: the
	// rest of the body is not read.
	body := strings.Repeat("b", 1<<20)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	ok := newUpstream(t, Config{Active: &ActiveCheck{Interval: time.Hour}}, be.host())
	assert.NoError(t, ok.Nodes()[0].probe(t.Context(), "/healthz", ""))
}

// TestOneEnvironmentsHungNodesLeaveRoomForTheOthersProbes: the room for
// probes is the process's, and a probe holds its place until its node
// answers or its timeout ends: one environment whose nodes all hang held
// every place for as long as its timeout (any length), and every other
// environment's probes were skipped meanwhile, their dead nodes kept in
// rotation. An environment's probes now hold at most a quarter of the
// room, those of its upstreams and of its draining generations together.
func TestOneEnvironmentsHungNodesLeaveRoomForTheOthersProbes(t *testing.T) {
	const limit = 8
	withProbeLimit(t, limit)
	var hung openCounter
	slow := &ActiveCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: time.Minute, Unhealthy: 1}
	var hosts [2][]string
	for i := range hosts {
		for range limit {
			hosts[i] = append(hosts[i], hung.hangBackend(t))
		}
	}
	// Two upstreams of one environment, and the one of its generation
	// that a reload replaced, still draining.
	hog := []*Upstream{
		newUpstream(t, Config{Env: "hog", Name: "a", Active: slow}, hosts[0]...),
		newUpstream(t, Config{Env: "hog", Name: "b", Active: slow}, hosts[1]...),
		newUpstream(t, Config{Env: "hog", Name: "a", Active: slow}, hosts[0]...),
	}
	for _, u := range hog {
		u.Start()
	}
	require.Eventually(t, func() bool { return hung.open.Load() >= limit/4 }, 5*time.Second, 5*time.Millisecond)

	var probed atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { probed.Add(1) })
	other := newUpstream(t, Config{Env: "other", Name: "fine", Active: &ActiveCheck{
		Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, Healthy: 1, Unhealthy: 1,
	}}, be.host())
	other.Start()
	require.Eventually(t, func() bool { return probed.Load() >= 3 }, 5*time.Second, 5*time.Millisecond,
		"another environment's node probed while the hung nodes hold their places (%d probes open at the hung nodes)", hung.open.Load())
	assert.LessOrEqual(t, hung.most.Load(), int64(limit/4), "probes open at once at the one environment's hung nodes")
	assert.True(t, other.Nodes()[0].Healthy())
}

// TestProbesWaitForRoomUntilTheirNextTurn: the checkers of an upstream
// probe together, every interval; when its environment's share of the
// room is smaller than its nodes, the probes take turns. A probe that
// waited for room longer than its timeout was skipped, though room came
// well before its next turn: with room for 2, 8 nodes answering in 20 ms
// and a 30 ms timeout, about half of the probes were skipped every
// round, whatever the interval. A probe now waits for room until its
// next turn (its interval) and is skipped only then.
func TestProbesWaitForRoomUntilTheirNextTurn(t *testing.T) {
	withProbeLimit(t, 8) // an environment's share: 2
	var probes atomic.Int64
	var hosts []string
	for range 8 {
		be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond)
			probes.Add(1)
		})
		hosts = append(hosts, be.host())
	}
	u := newUpstream(t, Config{Active: &ActiveCheck{
		Path: "/healthz", Interval: 3 * time.Second, Timeout: 30 * time.Millisecond, Healthy: 1, Unhealthy: 100,
	}}, hosts...)
	u.Start()
	require.Eventually(t, func() bool { return probes.Load() >= 8 }, 10*time.Second, 5*time.Millisecond, "a probe at every node")
	var skipped uint64
	for _, n := range u.Nodes() {
		skipped += n.Stats().ProbesSkipped
	}
	assert.Zero(t, skipped, "probes skipped, with room enough before their next turn")
}

// TestCutUpstreamProbesNoMore: Cut ended the probes' connections, but
// not a checker's wait for room, nor a probe still dialing: a retired
// generation's checker waiting behind its environment's share when the
// drain's cut came took the next place before the new generation's
// (the room is handed out in turn), and probed a node of the cut
// upstream for as long as its timeout, the new generation's node
// getting no probe meanwhile. Cut now ends the waits and the probes.
func TestCutUpstreamProbesNoMore(t *testing.T) {
	withProbeLimit(t, 4) // an environment's share: 1
	var hung openCounter
	var accepted atomic.Int64
	var hosts []string
	for range 2 {
		addr, _ := loopback.Backend(t, func(c net.Conn) {
			accepted.Add(1)
			hung.add(1)
			defer hung.add(-1)
			io.Copy(io.Discard, c)
		})
		hosts = append(hosts, addr)
	}
	slow := &ActiveCheck{Path: "/healthz", Interval: time.Minute, Timeout: time.Minute, Unhealthy: 1}
	old := newUpstream(t, Config{Env: "e", Name: "a", Active: slow}, hosts...)
	old.Start()
	require.Eventually(t, func() bool { return hung.open.Load() == 1 }, 5*time.Second, 5*time.Millisecond, "one probe holding the share")
	time.Sleep(100 * time.Millisecond) // the other checker waits for the share meanwhile

	// The generation that replaced it, its node answering.
	var probed atomic.Int64
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { probed.Add(1) })
	cur := newUpstream(t, Config{Env: "e", Name: "a", Active: &ActiveCheck{
		Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, Healthy: 1, Unhealthy: 100,
	}}, be.host())
	cur.Start()
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, probed.Load(), "the share is held by the old generation's probe")

	old.Cut()
	require.Eventually(t, func() bool { return probed.Load() >= 1 }, 5*time.Second, 5*time.Millisecond,
		"the new generation's node probed once the old one is cut (%d probes open at its nodes)", hung.open.Load())
	assert.Equal(t, int64(1), accepted.Load(), "probes sent to the cut upstream's nodes")
	old.Close()
	assert.Equal(t, int64(1), accepted.Load(), "probes sent to the cut upstream's nodes")
}

// TestEnvironmentSharesGoWithTheirUpstreams: each environment's share
// of the room for probes was kept by name for the life of the process,
// whether or not an upstream still used it: every environment a reload
// ever named (one per branch or review app) left its entry behind, 50
// after 50 environments came and went. A share now goes with the last
// upstream of its environment, every generation counted, and the one
// left serving keeps it.
func TestEnvironmentSharesGoWithTheirUpstreams(t *testing.T) {
	withProbeLimit(t, 8)
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	check := &ActiveCheck{Interval: time.Hour, Timeout: time.Second}
	shares := func() int {
		probes.mu.Lock()
		defer probes.mu.Unlock()
		return len(probes.envs)
	}
	for i := range 50 {
		u := newUpstream(t, Config{Env: "review-" + strconv.Itoa(i), Name: "a", Active: check}, be.host())
		u.Start()
		u.Close()
	}
	assert.Zero(t, shares(), "shares of environments no upstream is in")

	// A generation replaced while another serves: the share stays with
	// the one left, the same share both took from.
	old := newUpstream(t, Config{Env: "prod", Name: "a", Active: check}, be.host())
	cur := newUpstream(t, Config{Env: "prod", Name: "a", Active: check}, be.host())
	require.Same(t, old.envProbes, cur.envProbes)
	old.Close()
	assert.Equal(t, 1, shares())
	next := newUpstream(t, Config{Env: "prod", Name: "a", Active: check}, be.host())
	assert.Same(t, cur.envProbes, next.envProbes, "the share of an environment still served")
	cur.Close()
	next.Close()
	assert.Zero(t, shares())

	// An upstream New refuses takes none.
	_, err := New(Config{Env: "bad", Name: "a", Nodes: []NodeConfig{{Scheme: "http", Host: be.host(), Weight: 1}},
		Active: check, Passive: &PassiveCheck{Failures: 0}})
	require.Error(t, err)
	assert.Zero(t, shares())
}
