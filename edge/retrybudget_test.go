package edge

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// When every node answers 503, retries would double the load on nodes
// that are already overloaded. The retry budget (Envoy's defaults: a fifth
// of the upstream's requests in flight, at least 3) lets a few through and
// answers the others with the 503 in hand.
func TestRetryBudgetBoundsRetriesWhenEveryNodeFails(t *testing.T) {
	testCertDir(t)
	const clients = 20
	var hits atomic.Int64
	firsts, retries := make(chan struct{}), make(chan struct{})
	overloaded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= clients {
			<-firsts
		} else {
			<-retries
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "overloaded")
	})
	a, b := startBackend(t, overloaded), startBackend(t, overloaded)
	te := budgetEdge(t, a.addr, b.addr)
	answers := getAll(te, clients)
	require.Eventually(t, func() bool { return hits.Load() == clients }, 10*time.Second, 5*time.Millisecond, "every first attempt at a node")

	// Every first attempt gets its 503 at once. Each request is then either
	// retried (and held by the other node) or answered 503 at once.
	close(firsts)
	answered := 0
	deadline := time.After(10 * time.Second)
	for answered+int(hits.Load()-clients) < clients {
		select {
		case code := <-answers:
			assert.Equal(t, http.StatusServiceUnavailable, code)
			answered++
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d answered, %d retried: not all %d accounted for", answered, hits.Load()-clients, clients)
		}
	}
	retried := int(hits.Load() - clients)
	// 20 in flight (held answers count until they are released) allow 4;
	// a request answered meanwhile lowers that to 3.
	assert.GreaterOrEqual(t, retried, 3, "at least the budget's minimum is retried")
	assert.LessOrEqual(t, retried, 4, "no more than a fifth of the requests in flight are retried")
	series := `edged_upstream_retries_denied_total{env="test",upstream="up"}`
	assert.EqualValues(t, clients-retried, scrape(t, te).samples[series])

	close(retries)
	for answered < clients {
		assert.Equal(t, http.StatusServiceUnavailable, <-answers, "the retried ones get the second node's 503")
		answered++
	}
	assert.EqualValues(t, clients+retried, hits.Load(), "no retry after the budget's refusal")
}

// A request that cannot be retried, as no node it has not tried is left
// (an upstream of one node, the most common), takes no place in the retry
// budget and is no retry the budget denied: its 503 goes to the client as
// it would without a budget, and edged_upstream_retries_denied_total says
// nothing of it. It used to take a place for as long as it ran (here, its
// 503's body), and so count the requests answered meanwhile as denied.
func TestRetryBudgetIsNotSpentWhereNoNodeIsLeft(t *testing.T) {
	testCertDir(t)
	const clients = 10
	var hits atomic.Int64
	release := make(chan struct{})
	overloaded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "overloaded")
		w.(http.Flusher).Flush()
		<-release // the body's end
	})
	a := startBackend(t, overloaded)
	te := budgetEdge(t, a.addr)
	answers := getAll(te, clients)
	require.Eventually(t, func() bool { return hits.Load() == clients }, 10*time.Second, 5*time.Millisecond, "every request at the node")
	time.Sleep(100 * time.Millisecond) // each one has its 503's head and streams its body
	series := `edged_upstream_retries_denied_total{env="test",upstream="up"}`
	assert.EqualValues(t, 0, scrape(t, te).samples[series], "no retry was possible, none was denied")
	close(release)
	for range clients {
		assert.Equal(t, http.StatusServiceUnavailable, <-answers)
	}
	assert.EqualValues(t, clients, hits.Load())
}

// budgetEdge is an environment of 64 workers whose proxy /p goes to an
// upstream of nodes with retries = 1.
func budgetEdge(t *testing.T, nodes ...string) *testEdge {
	t.Helper()
	var ns []string
	for _, n := range nodes {
		ns = append(ns, `{ url = "http://`+n+`" }`)
	}
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"groups.toml": groupTOML("test", "test.acme.com", "test.acme.com", "test.acme.com"),
		"test.toml": `
[[environment]]
name = "test"
workers = 64

[[upstream]]
name = "up"
environment = "test"
nodes = [` + strings.Join(ns, ", ") + `]
retries = 1

[[proxy]]
name = "p"
environment = "test"
base_path = "/p"
upstream = "up"
`,
	})
}

// getAll sends n GETs to /p at once and gives their statuses as they come
// (0 for a request that failed).
func getAll(te *testEdge, n int) <-chan int {
	c := te.client("test.acme.com", nil)
	answers := make(chan int, n)
	for i := range n {
		go func() {
			resp, err := c.Get(fmt.Sprintf("https://test.acme.com/p/%d", i))
			if err != nil {
				answers <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers <- resp.StatusCode
		}()
	}
	return answers
}

// A request that was retried gives its place in the retry budget back
// once it has the answer it passes on: a WebSocket whose first node
// answered 503 and whose retry got the 101 is no retry for as long as
// the tunnel lasts. Three such tunnels (the budget's minimum) used to
// spend the budget for their whole lives, hours for a WebSocket, and
// every other request's retry was denied meanwhile.
func TestRetriedTunnelGivesBackItsRetryPlace(t *testing.T) {
	testCertDir(t)
	// Every odd request at either node is answered 503, every even one
	// 101 (an upgrade, then echoed) or 200: each request below is
	// answered 503 once, then retried on the other node.
	var hits atomic.Int64
	serve := func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch {
			case hits.Add(1)%2 == 1:
				io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
			case req.Header.Get("Upgrade") != "":
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
				io.Copy(c, br)
				return
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	}
	a, _ := loopback.Backend(t, serve)
	b, _ := loopback.Backend(t, serve)
	te := budgetEdge(t, a, b)
	const tunnels = 3 // the budget's minimum
	for i := range tunnels {
		conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
		require.NoError(t, err)
		upTunnel(t, conn, fmt.Sprintf("GET /p/ws%d HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", i))
	}
	require.EqualValues(t, 2*tunnels, hits.Load(), "each tunnel was retried once")

	resp, err := te.client("test.acme.com", nil).Get("https://test.acme.com/p/plain")
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the request's 503 was retried on the other node")
	series := `edged_upstream_retries_denied_total{env="test",upstream="up"}`
	assert.EqualValues(t, 0, scrape(t, te).samples[series], "the open tunnels hold no place in the retry budget")
}
