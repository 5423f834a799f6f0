package upstream

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
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
// within its timeout is not sent, and is no verdict on its node.
func TestProbesInFlightAreBoundedAcrossTheProcess(t *testing.T) {
	const limit = 4
	withProbeLimit(t, limit)
	var hung openCounter
	var logged bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))

	// Two upstreams (two environments) of 6 nodes each that accept a
	// probe and never answer it: 12 probes would be open at once.
	slow := &ActiveCheck{Path: "/healthz", Interval: 10 * time.Millisecond, Timeout: 2 * time.Second, Unhealthy: 1}
	var ups []*Upstream
	for _, env := range []string{"a", "b"} {
		var hosts []string
		for range 6 {
			hosts = append(hosts, hung.hangBackend(t))
		}
		ups = append(ups, newUpstream(t, Config{Env: env, Name: "hung", Logger: logger, Active: slow}, hosts...))
	}
	// A third upstream whose node answers at once; its probes wait for
	// room no longer than their timeout.
	var fineLogged bytes.Buffer
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	fineLogger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &fineLogged}, nil))
	fine := newUpstream(t, Config{Env: "c", Name: "fine", Logger: fineLogger, Active: &ActiveCheck{
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
