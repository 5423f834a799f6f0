package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// smallReadBufferListener accepts connections whose receive buffer is
// small: a node that stops reading stops its sender soon.
type smallReadBufferListener struct{ net.Listener }

func (l smallReadBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(8 << 10)
	}
	return c, err
}

// TestH2SlowNodeUploadsLeaveTheConnectionWindowToOthers: uploads that
// edged forwards to a node that does not read them (yet) must not take
// the connection's window from the other streams of the connection: an
// upload to another node, on the same connection, goes through meanwhile,
// as it would on a connection of its own over HTTP/1.1. (Each stalled
// upload holds what its stream window let the client send, 256 KiB
// unread in edged: five of them held the whole 1 MiB connection window,
// and the sixth upload could not send a byte of its 200 KiB until they
// ended, answered 400 at read_timeout as if its client were slow.)
func TestH2SlowNodeUploadsLeaveTheConnectionWindowToOthers(t *testing.T) {
	gate := make(chan struct{})
	var gateOnce bool
	t.Cleanup(func() {
		if !gateOnce {
			close(gate)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})}
	go slow.Serve(smallReadBufferListener{ln})
	t.Cleanup(func() { slow.Close() })
	fast := startBackend(t, flowBackend(nil))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `read_timeout = "20s"`),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "slow", "/slow", ln.Addr().String()) + proxyTOML("test", "up", "/up", fast.addr),
	})
	fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	fc.waitSettings()
	const size = 8 << 20
	ids := []uint32{1, 3, 5, 7, 9}
	sent := map[uint32]int{}
	body := flowPattern(size, 1)
	for _, id := range ids {
		fc.headers(id, false, h2get("POST", "test.acme.com", "/slow/up", "content-length", fmt.Sprint(size))...)
	}
	room := func(id uint32, size int) int64 {
		return min(fc.window(0), fc.window(id), int64(size-sent[id]), 16<<10)
	}
	// The four stalled uploads send what the windows let go until they
	// stop moving: the node's socket buffers full, edged holds the rest.
	still := 0
	for round := 0; round < 400 && still < 5; round++ {
		moved := false
		for _, id := range ids {
			for k := room(id, size); k > 0; k = room(id, size) {
				fc.data(id, false, body[sent[id]:sent[id]+int(k)])
				sent[id] += int(k)
				moved = true
			}
		}
		fc.waitFor(50*time.Millisecond, func() bool { return false })
		if moved {
			still = 0
		} else {
			still++
		}
	}
	t.Logf("stalled uploads sent %v; connection window left %d", sent, fc.window(0))
	for _, id := range ids {
		require.False(t, fc.over(id), "stream %d still uploading", id)
		require.Less(t, sent[id], size, "stream %d is stalled", id)
	}

	// A small upload to the fast node, on the same connection.
	const small = 200 << 10
	up := flowPattern(small, 9)
	fc.headers(11, false, h2get("POST", "test.acme.com", "/up/sum", "content-length", fmt.Sprint(small))...)
	for deadline := time.Now().Add(5 * time.Second); sent[11] < small && time.Now().Before(deadline); {
		for k := room(11, small); k > 0; k = room(11, small) {
			fc.data(11, sent[11]+int(k) == small, up[sent[11]:sent[11]+int(k)])
			sent[11] += int(k)
		}
		fc.waitFor(20*time.Millisecond, func() bool { return false })
	}
	require.Equal(t, small, sent[11], "the small upload got the window to send its body while the others are stalled (connection window %d)", fc.window(0))
	s := fc.result(11, 5*time.Second)
	assert.Equal(t, http.StatusOK, s.status, "%v", s)
	assert.Equal(t, flowSum(up), string(s.body))

	// The stalled ones go on once their node reads.
	gateOnce = true
	close(gate)
	for _, id := range ids {
		require.NoError(t, fc.write(func() error { return fc.fr.WriteRSTStream(id, http2.ErrCodeCancel) }))
	}
}
