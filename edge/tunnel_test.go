package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// silentUpgradeBackend answers every request with 101 and hands the raw
// connection to the test, which decides what the backend does with it;
// it neither reads nor closes on its own.
func silentUpgradeBackend(t testing.TB) (*backend, <-chan net.Conn) {
	conns := make(chan net.Conn, 1)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		conns <- conn
	}))
	return b, conns
}

// tunnelEdge is an edge with one WebSocket proxy to addr whose upstream has
// the given response_timeout.
func tunnelEdge(t testing.TB, addr, responseTimeout string) *testEdge {
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    tunnelEnvTOML(addr, responseTimeout),
	})
}

// tunnelEnvTOML is tunnelEdge's environment "test": proxy /ws to addr.
func tunnelEnvTOML(addr, responseTimeout string) string {
	return envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "ws-up"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = %q

[[proxy]]
name = "ws"
environment = "test"
base_path = "/ws"
upstream = "ws-up"
`, addr, responseTimeout)
}

// openTunnel upgrades a TLS connection to the edge and returns it with
// its reader and the backend's side of the tunnel.
func openTunnel(t testing.TB, te *testEdge, backConns <-chan net.Conn) (*tls.Conn, *bufio.Reader, net.Conn) {
	conn, br, back := upgradeThrough(t, te, backConns)
	require.Equal(t, 1, tunnelCount(te.srv.Snapshot().Env("test")))
	return conn, br, back
}

// upgradeThrough is openTunnel without its check that the tunnel is the
// environment's only one.
func upgradeThrough(t testing.TB, te *testEdge, backConns <-chan net.Conn) (*tls.Conn, *bufio.Reader, net.Conn) {
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	var back net.Conn
	select {
	case back = <-backConns:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no upgrade")
	}
	require.NoError(t, back.SetDeadline(time.Now().Add(10*time.Second)))
	// One byte each way: the tunnel is up.
	_, err = conn.Write([]byte("c"))
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(back, b)
	require.NoError(t, err)
	_, err = back.Write([]byte("b"))
	require.NoError(t, err)
	_, err = io.ReadFull(br, b)
	require.NoError(t, err)
	return conn, br, back
}

func tunnelCount(e *Env) int {
	e.tunnelMu.Lock()
	defer e.tunnelMu.Unlock()
	return len(e.tunnels)
}

// readsEnd reports whether a read on r ends (EOF or error) before its
// deadline passes.
func readsEnd(r io.Reader) bool {
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// A client that closes its side has the backend's side shut at once (it
// reads the end of the stream); a backend that then neither sends nor
// closes does not hold the tunnel for all of response_timeout: it ends
// after tunnelFinTimeout of quiet.
func TestTunnelClientCloseClosesBackend(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "30s")
	conn, _, back := openTunnel(t, te, backConns)
	env := te.srv.Snapshot().Env("test")

	require.NoError(t, conn.Close())
	require.NoError(t, back.SetReadDeadline(time.Now().Add(5*time.Second)))
	assert.True(t, readsEnd(back), "the backend reads the end of the client's stream")
	assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 2*tunnelFinTimeout, 50*time.Millisecond,
		"the tunnel is gone although the backend never closed")
}

// A backend that closes its side has the client's side shut: the client
// reads the end of the stream, and once it closes too the tunnel is gone.
func TestTunnelBackendCloseClosesClient(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "30s")
	conn, br, back := openTunnel(t, te, backConns)
	env := te.srv.Snapshot().Env("test")

	require.NoError(t, back.Close())
	assert.True(t, readsEnd(br), "the client reads the end of the backend's stream")
	require.NoError(t, conn.Close())
	assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// A tunnel through which nothing goes either way for the upstream's
// response_timeout is closed on both sides.
func TestTunnelIdleTimeoutClosesBothSides(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "300ms")
	conn, br, back := openTunnel(t, te, backConns)
	env := te.srv.Snapshot().Env("test")

	// Neither side sends or closes. The deadlines (5s) are far past the
	// idle limit; a read that reaches them means the tunnel stayed open.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, back.SetReadDeadline(time.Now().Add(5*time.Second)))
	assert.True(t, readsEnd(br), "the client's connection is closed by the idle limit")
	assert.True(t, readsEnd(back), "the backend's connection is closed by the idle limit")
	assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// A side of a tunnel that stops reading while the other keeps sending is
// cut once a write to it has waited for the idle limit, even though bytes
// keep coming the other way: without a deadline on the tunnel's writes,
// a client that sends a byte now and then and never reads (or a backend
// that never reads an upload while it streams) held the tunnel, and the
// writer on the other side, forever.
func TestTunnelStalledWriteEndsDespiteTrafficTheOtherWay(t *testing.T) {
	testCertDir(t)
	for _, tc := range []struct {
		name string
		// flood writes until it fails; trickle writes a byte now and then
		// and never reads.
		flood, trickle func(conn, back net.Conn) net.Conn
	}{
		{"to the client", func(conn, back net.Conn) net.Conn { return back }, func(conn, back net.Conn) net.Conn { return conn }},
		{"to the backend", func(conn, back net.Conn) net.Conn { return conn }, func(conn, back net.Conn) net.Conn { return back }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be, backConns := silentUpgradeBackend(t)
			te := tunnelEdge(t, be.addr, "300ms")
			conn, _, back := openTunnel(t, te, backConns)
			env := te.srv.Snapshot().Env("test")

			stop := make(chan struct{})
			defer close(stop)
			flood, trickle := tc.flood(conn, back), tc.trickle(conn, back)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := flood.Write(buf); err != nil {
						return
					}
				}
			}()
			go func() {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := trickle.Write([]byte("p")); err != nil {
							return
						}
					}
				}
			}()
			assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 4*time.Second, 20*time.Millisecond,
				"the write that waits on a side that does not read ends the tunnel")
		})
	}
}

// A backend's 101 to a WebSocket upgrade must name websocket in its
// Upgrade header (RFC 9110 7.8; RFC 6455 4.1 has clients fail any other):
// one without Upgrade, or switching to another protocol (h2c), is the
// backend's error, answered 502 upstream.failed, and never tunnelled.
func TestTunnelNeedsTheBackendToSwitchToWebSocket(t *testing.T) {
	testCertDir(t)
	for _, tc := range []struct {
		name, head string
		tunnel     bool
	}{
		{"no Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", false},
		{"Upgrade: h2c", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", false},
		{"Upgrade: WebSocket", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, tc.head)
				io.Copy(c, c)
			})
			te := tunnelEdge(t, addr, "30s")
			conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
			fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			resp.Body.Close()
			if tc.tunnel {
				assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
				return
			}
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "the backend's 101 does not switch to websocket")
			assert.Equal(t, 0, tunnelCount(te.srv.Snapshot().Env("test")))
		})
	}
}

// A tunnel cut because its environment closes (a reload replaced it and
// its drain ran out, or edged shuts down) still gets its access line:
// the environment cuts its tunnels, and closes its logs only once their
// requests have been recorded.
func TestTunnelCutByItsEnvironmentIsLogged(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	envFile := func(access string) string {
		return envTOML("test", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "ws-up"
environment = "test"
nodes = [{ url = "http://%s" }]
[[proxy]]
name = "ws"
environment = "test"
base_path = "/ws"
upstream = "ws-up"
`, be.addr)
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "env.toml": envFile(first)})
	_, br, _ := openTunnel(t, te, backConns)
	old := te.srv.Snapshot().Env("test")

	// Another access log path: the environment is rebuilt, and the old
	// one's log is its own. Its drain (2 s) waits for the tunnel, then
	// the environment closes and cuts it.
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile(second)})
	te.reload()
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced environment did not close")
	}
	assert.True(t, readsEnd(br), "the tunnel was cut")
	lines := readJSONLines(t, first)
	require.Len(t, lines, 1, "the cut tunnel's access line")
	assert.EqualValues(t, 101, lines[0]["status"])
	assert.Equal(t, "ws", lines[0]["proxy"])
	assert.EqualValues(t, 1, lines[0]["bytes_in"])
	assert.EqualValues(t, 1, lines[0]["bytes_out"])

	// Shutting down cuts the new environment's tunnel the same way, once
	// its drain (ctx) has ended.
	_, br, _ = openTunnel(t, te, backConns)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, te.srv.Shutdown(ctx), context.DeadlineExceeded)
	assert.True(t, readsEnd(br), "the tunnel was cut")
	lines = readJSONLines(t, second)
	require.Len(t, lines, 1, "the access line of the tunnel shutdown cut")
	assert.EqualValues(t, 101, lines[0]["status"])
}

// The node's 101 reaches the client without its hop-by-hop fields but
// the upgrade's own (Connection: Upgrade, Upgrade: websocket): those its
// Connection names (X-Internal), Keep-Alive and Proxy-Connection are
// dropped as from any other answer; its end-to-end fields
// (Sec-WebSocket-Accept) are kept, and the id is edged's.
func TestTunnelSwitchDropsHopByHopFields(t *testing.T) {
	testCertDir(t)
	back := make(chan net.Conn, 1)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Internal\r\n"+
			"X-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nSec-Websocket-Accept: abc\r\nX-Request-Id: from-the-node\r\n\r\n")
		brw.Flush()
		back <- conn
	}))
	te := tunnelEdge(t, be.addr, "30s")
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	h := resp.Header
	assert.Equal(t, []string{"websocket"}, h["Upgrade"])
	assert.Equal(t, []string{"Upgrade"}, h["Connection"])
	assert.Equal(t, []string{"abc"}, h["Sec-Websocket-Accept"])
	for _, k := range []string{"X-Internal", "Keep-Alive", "Proxy-Connection"} {
		assert.Empty(t, h[k], k)
	}
	require.Len(t, h["X-Request-Id"], 1)
	assert.Len(t, h["X-Request-Id"][0], 32, "edged's id")
	select {
	case c := <-back:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no upgrade")
	}
}

// A node's 101 that carries a Content-Length reaches the client without
// it (RFC 9110 8.6: never in a 1xx, as edged's other answers drop it):
// a client or an intermediary that took it for a body's length would
// read the first bytes of the tunnel as that body. They come through
// the tunnel as they are.
func TestTunnelSwitchCarriesNoLength(t *testing.T) {
	testCertDir(t)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Content-Length: 7\r\nSec-Websocket-Accept: abc\r\n\r\nws-data")
		brw.Flush()
	}))
	te := tunnelEdge(t, be.addr, "30s")
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	tp := textproto.NewReader(bufio.NewReader(conn))
	status, err := tp.ReadLine()
	require.NoError(t, err)
	require.Equal(t, "HTTP/1.1 101 Switching Protocols", status)
	h, err := tp.ReadMIMEHeader()
	require.NoError(t, err)
	assert.Equal(t, []string{"abc"}, h["Sec-Websocket-Accept"])
	assert.Empty(t, h["Content-Length"], "a 101 has no length")
	data := make([]byte, len("ws-data"))
	_, err = io.ReadFull(tp.R, data)
	require.NoError(t, err)
	assert.Equal(t, "ws-data", string(data), "the tunnel's first bytes")
}

// An HTTP/1.0 request's Upgrade is ignored (RFC 9110 7.8: a server MUST
// ignore it; RFC 6455 4.1 wants 1.1 for a WebSocket): it is forwarded as
// a plain request, without Connection: Upgrade and Upgrade, and no tunnel
// is opened.
func TestUpgradeOnHTTP10IsIgnored(t *testing.T) {
	testCertDir(t)
	seen := make(chan http.Header, 1)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "plain")
	}))
	te := tunnelEdge(t, b.addr, "5s")
	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	fmt.Fprint(conn, "GET /ws HTTP/1.0\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "plain", string(body))
	h := <-seen
	assert.Empty(t, h.Values("Upgrade"), "the Upgrade of an HTTP/1.0 request reached the backend")
	assert.NotContains(t, h.Get("Connection"), "Upgrade")
	assert.Zero(t, tunnelCount(te.srv.Snapshot().Env("test")))
}

// A tunnel of an environment that a reload replaced is cut once the
// environment's drain_timeout has passed, as drain_timeout promises ("past
// it, a replaced environment cuts its tunnels"): not drain_timeout plus the
// 5 s the drain then gives requests still waiting for a backend's answer
// (tunnelLogWait), during which a tunnel was still counted in flight and
// kept running on the replaced environment.
func TestTunnelOfReplacedEnvironmentIsCutAtDrainTimeout(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"300ms\"\n", t.TempDir())
	te := startEdge(t, map[string]string{"server.toml": server, "env.toml": tunnelEnvTOML(be.addr, "30s")})
	conn, br, _ := openTunnel(t, te, backConns)
	old := te.srv.Snapshot().Env("test")

	writeFiles(t, te.dir, map[string]string{"env.toml": tunnelEnvTOML(be.addr, "31s")})
	start := time.Now()
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("test"))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.True(t, readsEnd(br), "the tunnel was cut")
	took := time.Since(start)
	assert.Less(t, took, 2*time.Second, "the tunnel was cut %s after the reload, with drain_timeout 300ms", took)
	select {
	case <-old.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the replaced environment did not close")
	}
}

// BenchmarkIdleTunnelMemory opens b.N WebSocket tunnels through edged and
// leaves them idle: heap-bytes/tunnel is the heap they hold, each with its
// client's and backend's ends (all in this process), after a GC.
func BenchmarkIdleTunnelMemory(b *testing.B) {
	testCertDir(b)
	back, conns := silentUpgradeBackend(b)
	te := tunnelEdge(b, back.addr, "1h")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	for range b.N {
		upgradeThrough(b, te, conns)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse-before)/float64(b.N), "heap-bytes/tunnel")
}

// Shutdown gives the tunnels drain_timeout (its ctx), as a reload's drain
// does, rather than cutting them once the listeners' other requests have
// finished: a tunnel still carries bytes after Shutdown began, Shutdown
// returns (nil) when it ends on its own, and a tunnel still open when
// ctx ends is cut then, and Shutdown reports the drain incomplete.
func TestShutdownGivesTunnelsTheDrain(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "30s")
	conn, br, back := openTunnel(t, te, backConns)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- te.srv.Shutdown(ctx) }()
	// Shutdown is under way: the listener no longer accepts.
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", te.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	_, err := conn.Write([]byte("x"))
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(back, b)
	require.NoError(t, err, "the tunnel carries the client's bytes during the shutdown's drain")
	_, err = back.Write([]byte("y"))
	require.NoError(t, err)
	_, err = io.ReadFull(br, b)
	require.NoError(t, err, "the tunnel carries the backend's bytes during the shutdown's drain")
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a tunnel open and its drain not over", err)
	default:
	}
	require.NoError(t, back.Close())
	require.True(t, readsEnd(br))
	require.NoError(t, conn.Close())
	select {
	case err := <-done:
		assert.NoError(t, err, "every tunnel ended within the drain")
	case <-time.After(8 * time.Second):
		t.Fatal("Shutdown did not return once the last tunnel ended")
	}

	// A tunnel still open at the drain's end is cut then.
	be2, backConns2 := silentUpgradeBackend(t)
	te2 := tunnelEdge(t, be2.addr, "30s")
	_, br2, _ := openTunnel(t, te2, backConns2)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	err = te2.srv.Shutdown(ctx2)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the drain did not complete")
	assert.True(t, readsEnd(br2), "the tunnel was cut at the drain's end")
}

// edged_websocket_tunnels{env} is the number of the environment's open
// tunnels (HAProxy's and Envoy's operators watch one), the tunnels of the
// instance a reload replaced, still draining, included: a tunnel does
// not vanish from the gauge while it still runs.
func TestTunnelGauge(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"30s\"\n", t.TempDir())
	te := startEdge(t, map[string]string{"server.toml": server, "env.toml": tunnelEnvTOML(be.addr, "30s")})
	gauge := func() (float64, bool) {
		v, ok := scrape(t, te).samples[`edged_websocket_tunnels{env="test"}`]
		return v, ok
	}
	v, ok := gauge()
	require.True(t, ok, "the gauge is on /metrics")
	assert.Zero(t, v)

	conn, _, back := openTunnel(t, te, backConns)
	v, _ = gauge()
	assert.Equal(t, 1.0, v)

	// A reload replaces the environment: its tunnel drains, and counts.
	old := te.srv.Snapshot().Env("test")
	writeFiles(t, te.dir, map[string]string{"env.toml": tunnelEnvTOML(be.addr, "31s")})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("test"))
	require.Equal(t, 1, tunnelCount(old), "the old tunnel is still open")
	v, _ = gauge()
	assert.Equal(t, 1.0, v, "the replaced environment's tunnel still counts")

	conn2, _, back2 := upgradeThrough(t, te, backConns)
	v, _ = gauge()
	assert.Equal(t, 2.0, v)

	for _, c := range []net.Conn{conn, back, conn2, back2} {
		c.Close()
	}
	assert.Eventually(t, func() bool { v, _ := gauge(); return v == 0 }, 5*time.Second, 20*time.Millisecond)
}

// shutClientWrite half-closes a client's TLS connection: close_notify,
// then FIN.
func shutClientWrite(t *testing.T, conn *tls.Conn) {
	t.Helper()
	require.NoError(t, conn.CloseWrite())
	require.NoError(t, conn.NetConn().(*net.TCPConn).CloseWrite())
}

// A half-close is relayed, as HAProxy does in a tunnel: a client that
// shuts its side after its last message (FIN) still gets what the
// backend answers before the backend closes, and the other way round, a
// backend that shuts its side still gets what the client sends after it.
// The tunnel ends once both sides are done.
func TestTunnelRelaysHalfClose(t *testing.T) {
	testCertDir(t)
	t.Run("client first", func(t *testing.T) {
		be, backConns := silentUpgradeBackend(t)
		te := tunnelEdge(t, be.addr, "30s")
		conn, br, back := openTunnel(t, te, backConns)
		env := te.srv.Snapshot().Env("test")

		_, err := conn.Write([]byte("bye"))
		require.NoError(t, err)
		shutClientWrite(t, conn)
		got, err := io.ReadAll(back)
		require.NoError(t, err, "the backend reads the client's last bytes, then the end of its stream")
		assert.Equal(t, "bye", string(got))
		_, err = back.Write([]byte("reply"))
		require.NoError(t, err)
		require.NoError(t, back.Close())
		got, err = io.ReadAll(br)
		require.NoError(t, err)
		assert.Equal(t, "reply", string(got), "the client that half-closed gets the backend's answer")
		assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 5*time.Second, 10*time.Millisecond)
	})
	t.Run("backend first", func(t *testing.T) {
		be, backConns := silentUpgradeBackend(t)
		te := tunnelEdge(t, be.addr, "30s")
		conn, br, back := openTunnel(t, te, backConns)
		env := te.srv.Snapshot().Env("test")

		_, err := back.Write([]byte("last"))
		require.NoError(t, err)
		require.NoError(t, back.(*net.TCPConn).CloseWrite())
		got, err := io.ReadAll(br)
		require.NoError(t, err, "the client reads the backend's last bytes, then the end of its stream")
		assert.Equal(t, "last", string(got))
		_, err = conn.Write([]byte("more"))
		require.NoError(t, err)
		shutClientWrite(t, conn)
		got, err = io.ReadAll(back)
		require.NoError(t, err)
		assert.Equal(t, "more", string(got), "the backend that half-closed gets what the client sends after")
		assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 5*time.Second, 10*time.Millisecond)
	})
}

// A backend that sends its last bytes and shuts its side while the
// client is still sending must not have the client's connection reset:
// closed with the client's bytes unread, the socket would answer with a
// reset that drops what the kernel had not sent to the client yet. The
// tunnel shuts the client's side after the last byte and goes on reading
// what the client sends, so the client gets every byte and a clean end.
func TestTunnelEndDoesNotResetTheClient(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "30s")
	conn, br, back := openTunnel(t, te, backConns)

	go io.Copy(io.Discard, back) // the backend reads all the client sends
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the client keeps sending while it reads the answer
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	last := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	_, err := back.Write(last)
	require.NoError(t, err)
	require.NoError(t, back.(*net.TCPConn).CloseWrite())
	// The client reads the answer only now: the edge has seen the
	// backend's end meanwhile.
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	got, err := io.ReadAll(br)
	require.NoError(t, err, "the client's connection ends cleanly, not with a reset")
	assert.Equal(t, len(last), len(got), "the client got every byte the backend sent")
}

// A backend that fails (its connection reset) while the client is still
// sending: the client still gets what the backend sent before, then a
// clean end, not a reset that drops what the edge had not sent it yet.
// What the client sends meanwhile is read and dropped (a lingering close).
func TestTunnelBackendResetLingersOnTheClient(t *testing.T) {
	testCertDir(t)
	be, backConns := silentUpgradeBackend(t)
	te := tunnelEdge(t, be.addr, "30s")
	conn, br, back := openTunnel(t, te, backConns)
	env := te.srv.Snapshot().Env("test")

	go io.Copy(io.Discard, back)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the client keeps sending until it has read the end
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	last := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	_, err := back.Write(last)
	require.NoError(t, err)
	// Everything the backend sent has left it; then it resets.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, back.(*net.TCPConn).SetLinger(0))
	require.NoError(t, back.Close())
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	got, err := io.ReadAll(br)
	require.NoError(t, err, "the client's connection ends cleanly, not with a reset")
	assert.Equal(t, len(last), len(got), "the client got every byte the backend sent before it failed")
	conn.Close()
	assert.Eventually(t, func() bool { return tunnelCount(env) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// A client gone (its connection reset) by the time the backend's 101
// comes is logged 499, as any client gone before its answer, not 101:
// the switch never reached it and no tunnel ran.
func TestTunnelClientGoneAtThe101Is499(t *testing.T) {
	testCertDir(t)
	asked, answer := make(chan struct{}, 1), make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		<-answer
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, conn)
	}))
	log := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(log)+"\"\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "ws-up"
environment = "test"
nodes = [{ url = "http://%s" }]
[[proxy]]
name = "ws"
environment = "test"
base_path = "/ws"
upstream = "ws-up"
`, be.addr),
	})
	// The request's watch for a gone client would see the reset first
	// and abort the request: what is looked at here is the 101 itself.
	hs := te.srv.https
	hs.mu.Lock()
	hs.watchAfter = time.Hour
	hs.mu.Unlock()

	conn, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no upgrade")
	}
	require.NoError(t, conn.NetConn().(*net.TCPConn).SetLinger(0))
	require.NoError(t, conn.Close())
	close(answer)
	lines := accessLinesAtShutdown(t, te, log, 1)
	assert.EqualValues(t, 499, lines[0]["status"])
}

// The half-close relayed to an https node is a TLS close_notify and then
// a FIN, as to the client: a node (or a TLS terminator in front of one,
// stunnel, HAProxy) that reads its TCP stream sees the end of the
// client's while the tunnel still carries its answer. Only the
// close_notify went, and the FIN came when the tunnel ended (fin timeout).
func TestTunnelRelaysHalfCloseToATLSNode(t *testing.T) {
	testCertDir(t)
	caFile, cert := privateCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	type nodeConn struct {
		tc  *tls.Conn
		raw net.Conn
	}
	conns := make(chan nodeConn, 1)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { raw.Close() })
			tc := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := http.ReadRequest(bufio.NewReader(tc)); err != nil {
				continue
			}
			fmt.Fprint(tc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			conns <- nodeConn{tc, raw}
		}
	}()
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "ws-up"
environment = "test"
nodes = [{ url = "https://%s" }]
tls_ca_file = %q
tls_server_name = "backend.internal"

[[proxy]]
name = "ws"
environment = "test"
base_path = "/ws"
upstream = "ws-up"
`, ln.Addr(), caFile),
	})
	backConns := make(chan net.Conn, 1)
	var node nodeConn
	go func() { node = <-conns; backConns <- node.tc }()
	conn, br, _ := openTunnel(t, te, backConns)

	_, err = conn.Write([]byte("bye"))
	require.NoError(t, err)
	shutClientWrite(t, conn)
	got, err := io.ReadAll(node.tc)
	require.NoError(t, err, "close_notify")
	assert.Equal(t, "bye", string(got))
	// Then the FIN, below TLS, while the tunnel is up.
	n, err := node.raw.Read(make([]byte, 1))
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF, "the node's TCP stream ends after the close_notify")
	_, err = node.tc.Write([]byte("reply"))
	require.NoError(t, err)
	_ = node.tc.Close() // its close_notify fails on a tunnel that ended
	got, _ = io.ReadAll(br)
	assert.Equal(t, "reply", string(got), "the tunnel was still up when the node read the FIN")
}

// A tunnel holds no copy of its request's body: the first 64 KiB edged
// keeps to send a body again (replayMax) are for a request in a worker,
// and a WebSocket upgrade with a body, switched, is no longer one. Kept,
// each tunnel opened with a 60 KiB body held 73 KiB more heap for its
// life than one opened without (40 tunnels: 4.55 MB, 1.6 MB), outside
// every bound on bodies (workers, the read-ahead budget).
func TestTunnelKeepsNoCopyOfItsRequestBody(t *testing.T) {
	testCertDir(t)
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		io.Copy(c, br) // echo, until the client closes
	})
	// The plain listener: TLS's buffers grow with the records' timing,
	// which would blur what is measured.
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \"serve\""),
		"env.toml":    tunnelEnvTOML(addr, "30s"),
	})
	_, plain, _ := te.srv.Addrs()
	const tunnels = 40
	open := func(tunnels, bodyLen int) int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		for range tunnels {
			conn, err := net.Dial("tcp", plain.String())
			require.NoError(t, err)
			upTunnel(t, conn, fmt.Sprintf("GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: %d\r\n\r\n%s", bodyLen, bytes.Repeat([]byte("b"), bodyLen)))
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc) - int64(before)
	}
	open(5, 0) // the pools' first buffers
	without := open(tunnels, 0)
	with := open(tunnels, 60<<10)
	require.Equal(t, 2*tunnels+5, tunnelCount(te.srv.Snapshot().Env("test")))
	assert.Less(t, with-without, int64(tunnels*16<<10), "heap the tunnels opened with a 60 KiB body hold beyond those opened without (%d each without)", without/tunnels)
}

// upTunnel sends the upgrade request req on conn, a connection to edged
// (closed at the test's end), and checks that the tunnel is up: a 101,
// then a byte there and back (the node echoes it).
func upTunnel(t *testing.T, conn net.Conn, req string) {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := io.WriteString(conn, req)
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	_, err = conn.Write([]byte("x"))
	require.NoError(t, err)
	_, err = br.ReadByte()
	require.NoError(t, err)
}

// The node's 101 is the answer to the upgrade request: it is written
// within write_timeout of the request's head, as any answer is. A client
// whose socket is full of an earlier answer it stopped reading (a GET
// pipelined before the upgrade) used to hold that write with no bound at
// all, the server's deadlines being cleared for the tunnel before the 101
// went: its worker and the node's connection with it, unseen by the
// environment's drain, which cuts tunnels only once they are up.
func TestTunnelSwitchToAClientThatStoppedReadingIsBounded(t *testing.T) {
	testCertDir(t)
	const writeTimeout = 4 * time.Second
	const big = 6 << 20
	asked, stopped, nodeDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(big))
			w.Write(bytes.Repeat([]byte("b"), big))
			return
		}
		close(asked)
		<-stopped
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer close(nodeDone)
		defer conn.Close()
		// A head of 800 KiB (under the 1 MiB edged reads of one), more
		// than the client's socket still has room for.
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
		for i := range 100 {
			fmt.Fprintf(brw, "X-Pad-%d: %s\r\n", i, bytes.Repeat([]byte("p"), 8<<10))
		}
		fmt.Fprint(brw, "\r\n")
		brw.Flush()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, conn) // until edged ends the tunnel
	}))
	// The tunnel's idle limit is short: should the 101 find room after
	// all (the client read more of the GET's answer than meant before it
	// stopped), the tunnel it opens ends soon too.
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), fmt.Sprintf("write_timeout = %q", writeTimeout)),
		"env.toml":    tunnelEnvTOML(be.addr, "1s"),
	})
	pool := te.srv.Snapshot().Env("test").pool

	raw, err := net.Dial("tcp", te.addr)
	require.NoError(t, err)
	// A fixed receive buffer: the kernel does not grow it as the client
	// reads, so what edged's socket holds past it is bounded.
	require.NoError(t, raw.(*net.TCPConn).SetReadBuffer(64<<10))
	conn := tls.Client(raw, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = fmt.Fprint(conn, "GET /ws/big HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"+
		"GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	require.NoError(t, err)
	// Read the GET's answer steadily (8 KiB a millisecond at most), so
	// that it ends well within write_timeout, and stop once the upgrade
	// has reached the node: the rest of the answer, what edged's socket
	// held when it was written whole, then waits in the socket buffers.
	buf := make([]byte, 8<<10)
	read := 0
reading:
	for {
		select {
		case <-asked:
			break reading
		default:
		}
		n, err := conn.Read(buf)
		read += n
		require.NoError(t, err, "the GET's answer, %d bytes of it read", read)
		require.Less(t, read, big, "the upgrade reached the node only once the GET's answer was read whole")
		time.Sleep(time.Millisecond)
	}
	close(stopped)

	select {
	case <-nodeDone:
	case <-time.After(3 * writeTimeout):
		t.Fatalf("the node's 101 is still being written to a client that reads nothing, %s after write_timeout (%s) began", 3*writeTimeout, writeTimeout)
	}
	require.Eventually(t, func() bool { return pool.Stats().InFlight == 0 }, 5*time.Second, time.Millisecond, "the worker is given back")
	assert.Zero(t, tunnelCount(te.srv.Snapshot().Env("test")), "no tunnel")
}
