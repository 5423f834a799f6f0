package upstream

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backend is a net/http server on 127.0.0.1:0 that counts the
// connections it accepted.
type backend struct {
	*httptest.Server
	conns atomic.Int64
}

func newBackend(tb testing.TB, h http.HandlerFunc) *backend {
	tb.Helper()
	b := &backend{Server: httptest.NewUnstartedServer(h)}
	b.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	tb.Cleanup(b.Close)
	return b
}

func (b *backend) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(b.URL, "http://"), "https://")
}

// readHead reads one request head (no body) from br.
func readHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		sb.WriteString(line)
		if line == "\r\n" {
			return sb.String(), nil
		}
	}
}

var discardLogger = slog.New(slog.DiscardHandler)

func newUpstream(tb testing.TB, cfg Config, hosts ...string) *Upstream {
	tb.Helper()
	for _, h := range hosts {
		cfg.Nodes = append(cfg.Nodes, NodeConfig{Scheme: "http", Host: h, Weight: 1})
	}
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	u, err := New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(u.Close)
	return u
}

func TestNewValidates(t *testing.T) {
	node := []NodeConfig{{Scheme: "http", Host: "127.0.0.1:1"}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no nodes", Config{}, "no nodes"},
		{"scheme", Config{Nodes: []NodeConfig{{Scheme: "ftp", Host: "a:1"}}}, "scheme"},
		{"host", Config{Nodes: []NodeConfig{{Scheme: "http", Host: "nohost"}}}, "host:port"},
		{"twice", Config{Nodes: append(node, node...)}, "twice"},
		{"weight", Config{Nodes: []NodeConfig{{Scheme: "http", Host: "a:1", Weight: -1}}}, "weight"},
		{"balance", Config{Nodes: node, Balance: "random"}, "balance"},
		{"hash_on", Config{Nodes: node, Balance: "hash", HashOn: "query:x"}, "hash_on"},
		{"interval", Config{Nodes: node, Active: &ActiveCheck{Path: "/h"}}, "interval"},
		{"path", Config{Nodes: node, Active: &ActiveCheck{Path: "h", Interval: time.Second}}, "path"},
		{"passive", Config{Nodes: node, Passive: &PassiveCheck{Failures: 0, Eject: time.Second}}, "passive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Env, tt.cfg.Name = "test", "pool"
			_, err := New(tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), `upstream "pool" (environment "test")`)
		})
	}
}

func TestNodeAccessors(t *testing.T) {
	u := newUpstream(t, Config{Nodes: []NodeConfig{
		{Scheme: "http", Host: "127.0.0.1:1", Weight: 0},
		{Scheme: "https", Host: "localhost:2", Weight: 5},
	}})
	nodes := u.Nodes()
	require.Len(t, nodes, 2)
	assert.Equal(t, "127.0.0.1:1", nodes[0].Addr())
	assert.Equal(t, 1, nodes[0].Weight(), "weight 0 means 1")
	assert.Equal(t, "https://localhost:2", nodes[1].URL())
	assert.Equal(t, 5, nodes[1].Weight())
	assert.Equal(t, "localhost", nodes[1].tls.ServerName)
	assert.Equal(t, []string{"http/1.1"}, nodes[1].tls.NextProtos)
	assert.True(t, nodes[0].Healthy())
	st := nodes[0].Stats()
	assert.Equal(t, "http://127.0.0.1:1", st.Addr)
	assert.True(t, st.Healthy)
	assert.Zero(t, st.InFlight)
}

func TestCloseClosesIdleAndReturnedConns(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	u := newUpstream(t, Config{}, be.host())
	n := u.Nodes()[0]

	held, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/"})
	require.NoError(t, err)
	_, body := do(t, n, &Request{Method: "GET", URI: "/"})
	require.Equal(t, "hello", body)
	require.Equal(t, 1, n.Stats().Idle)

	u.Close()
	assert.Equal(t, 0, n.Stats().Idle, "Close closes idle connections")
	_, err = io.ReadAll(held.Body)
	require.NoError(t, err, "a response in flight finishes after Close")
	require.NoError(t, held.Body.Close())
	assert.Equal(t, 0, n.Stats().Idle, "a connection returned after Close is closed")
	assert.Zero(t, n.InFlight())
	u.Close() // idempotent
}

func TestConcurrentRoundTrips(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	u := newUpstream(t, Config{MaxIdlePerNode: 8}, be.host())
	n := u.Nodes()[0]
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				uri := "/" + strings.Repeat("x", g) + "/" + string(rune('a'+i%26))
				resp, err := n.RoundTrip(context.Background(), &Request{Method: "GET", URI: uri})
				if !assert.NoError(t, err) {
					return
				}
				b, err := io.ReadAll(resp.Body)
				assert.NoError(t, err)
				assert.NoError(t, resp.Body.Close())
				assert.Equal(t, uri, string(b))
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, be.conns.Load(), int64(8))
	assert.Zero(t, n.InFlight())
	assert.EqualValues(t, 400, n.Stats().Requests)
}

// The backend drops its idle keep-alive connections again and again (as
// a graceful restart or an idle timeout does) while requests keep coming:
// none may fail.
func TestNoLossWhenBackendDropsIdleConnections(t *testing.T) {
	be := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	u := newUpstream(t, Config{}, be.host())
	n := u.Nodes()[0]

	done := make(chan struct{})
	var toggler sync.WaitGroup
	toggler.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			be.Config.SetKeepAlivesEnabled(false) // closes idle connections
			be.Config.SetKeepAlivesEnabled(true)
		}
	})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 300 {
				resp, err := n.RoundTrip(t.Context(), &Request{Method: "GET", URI: "/", Replayable: true})
				if err != nil {
					failed.Add(1)
					t.Log(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(done)
	toggler.Wait()
	assert.Zero(t, failed.Load())
	t.Logf("conns %d, retried %d", be.conns.Load(), n.Stats().Retried)
}

// TestNodeAuthority: the Host a node is addressed with leaves out its
// scheme's default port only (see TestPassHostNodeOmitsTheDefaultPort in
// edge for the requests and probes that carry it).
func TestNodeAuthority(t *testing.T) {
	u := newUpstream(t, Config{Nodes: []NodeConfig{
		{Scheme: "http", Host: "users.internal:80"},
		{Scheme: "https", Host: "users.internal:443"},
		{Scheme: "http", Host: "users.internal:443"},
		{Scheme: "https", Host: "users.internal:80"},
		{Scheme: "http", Host: "[2001:db8::1]:80"},
		{Scheme: "https", Host: "[2001:db8::1]:8443"},
	}})
	var got []string
	for _, n := range u.Nodes() {
		got = append(got, n.Authority())
	}
	assert.Equal(t, []string{"users.internal", "users.internal", "users.internal:443", "users.internal:80", "[2001:db8::1]", "[2001:db8::1]:8443"}, got)
}
