package edge

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// An answer the client is still reading when the connection ends (here
// the shutdown's GOAWAY, its handler done, the rest of it in the socket's
// buffers) reaches the client whole, though the client goes on sending
// as it reads (a WINDOW_UPDATE, a PING): closed at once, the socket
// answered those with a reset, which drops what it had not sent yet.
func TestH2ClosedConnectionLingersForTheClientsLastFrames(t *testing.T) {
	h2LingerAfter(t, "shutdown", 1, 0)
}

// So does a connection error's: the answers before it, and its GOAWAY
// naming the last stream processed, reach the client.
func TestH2ConnectionErrorLingersForTheClientsLastFrames(t *testing.T) {
	h2LingerAfter(t, "error", 1, 0)
}

// A SETTINGS frame the client sends meanwhile is read and dropped too,
// not taken for the end of the connection (its ACK cannot be written).
func TestH2LingerTakesTheClientsSettings(t *testing.T) {
	h2LingerAfter(t, "shutdown+settings", 3, 100*time.Millisecond)
}

// A client that reads the last answer slowly goes on giving window back
// for longer than the linger's 500 ms: each frame it sends extends it.
func TestH2LingerLastsWhileTheClientSends(t *testing.T) {
	h2LingerAfter(t, "shutdown", 8, 200*time.Millisecond)
}

// h2LingerAfter has the connection end (how: "shutdown", or "error", a
// client's PUSH_PROMISE; "+settings": the client sends SETTINGS too) while a 1 MiB answer whose handler is done waits
// in the sockets' buffers; the client sends frames gap apart, then
// reads: the answer must be whole, then the GOAWAY.
func h2LingerAfter(t *testing.T, how string, sends int, gap time.Duration) {
	how, settings := strings.CutSuffix(how, "+settings")
	const size = 1 << 20
	big := make([]byte, size)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(big)
	}), "")
	h := dialH2(t, te.addr, "test.acme.com")
	require.NoError(t, h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}))
	require.NoError(t, h.fr.WriteWindowUpdate(0, 1<<30))
	h.headers(1, true, h2get("GET", "test.acme.com", "/big")...)

	// Not reading: the answer waits in the sockets' buffers once its
	// handler is done.
	var c *h2sConn
	require.Eventually(t, func() bool {
		te.srv.h2mu.Lock()
		defer te.srv.h2mu.Unlock()
		for c = range te.srv.h2conns {
		}
		if c == nil {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.maxID == 1 && len(c.streams) == 0
	}, 5*time.Second, 5*time.Millisecond, "stream 1's handler is done")

	shut := make(chan error, 1)
	if how == "error" {
		require.NoError(t, h.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true}))
		shut <- nil
	} else {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shut <- te.srv.Shutdown(ctx)
		}()
	}
	time.Sleep(100 * time.Millisecond) // the GOAWAY, then the close
	// What a client sends as it reads: given back window, a ping.
	var werr error
	for i := 0; i < sends && werr == nil; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		werr = h.fr.WriteWindowUpdate(0, 16<<10)
		if werr == nil && settings {
			werr = h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		}
		if werr == nil {
			werr = h.fr.WritePing(false, [8]byte{byte(i)})
		}
	}
	assert.NoError(t, werr, "the client's frames are taken")
	time.Sleep(100 * time.Millisecond)

	got, ended, goaway := 0, false, false
	var rerr error
	var code http2.ErrCode
	for !ended {
		f, err := h.fr.ReadFrame()
		if err != nil {
			rerr = err
			break
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			got += len(f.Data())
			ended = f.StreamEnded()
		case *http2.GoAwayFrame:
			goaway, code = true, f.ErrCode
		}
	}
	assert.Equal(t, size, got, "the whole answer (read error: %v)", rerr)
	assert.True(t, ended, "END_STREAM")
	if rerr == nil {
		for !goaway {
			f, err := h.fr.ReadFrame()
			if err != nil {
				break
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goaway, code = true, ga.ErrCode
			}
		}
		assert.True(t, goaway, "then the GOAWAY")
		if how == "error" {
			assert.Equal(t, http2.ErrCodeProtocol, code)
		}
		_, err := io.Copy(io.Discard, h.c)
		assert.NoError(t, err, "then the server's close, not a reset")
	}
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// A connection that ends lingering shuts edged's side of the socket as
// the README says, TLS close_notify then FIN, while it goes on reading what
// the client sends: the FIN did not go, since the TLS connection's socket
// is wrapped (the handshake's helloConn) and the half-close looked for it
// on the wrapper; the client saw its end only once the linger was over.
// Here the client, which reads the close_notify, keeps sending PINGs
// (each extends the linger) and reads its socket: the FIN, not a timeout
// after 2 s.
func TestH2LingeringCloseSendsFIN(t *testing.T) {
	gb := newGuardBackend(t)
	te := guardEdge(t, gb, `idle_timeout = "300ms"`)
	raw, err := net.DialTimeout("tcp", te.addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	c := tls.Client(raw, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"h2"}})
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.Handshake())
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	var mu sync.Mutex // the framer's writes: the test's and the pinger's
	fr := http2.NewFramer(c, c)
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, fr.WriteSettings())

	// idle_timeout passes: GOAWAY, then the close_notify (the TLS
	// connection's end of reading).
	goaway := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			require.ErrorIs(t, err, io.EOF, "the close_notify")
			break
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			goaway = true
		case *http2.SettingsFrame:
			if !f.IsAck() {
				mu.Lock()
				require.NoError(t, fr.WriteSettingsAck())
				mu.Unlock()
			}
		}
	}
	require.True(t, goaway, "GOAWAY before the close")

	stop := make(chan struct{})
	pinged := make(chan int, 1)
	go func() {
		n := 0
		defer func() { pinged <- n }()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			err := fr.WritePing(false, [8]byte{byte(n)})
			mu.Unlock()
			if err != nil {
				return
			}
			n++
		}
	}()
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(2*time.Second)))
	var b [1]byte
	k, rerr := raw.Read(b[:])
	close(stop)
	n := <-pinged
	t.Logf("socket read: %d bytes, %v; %d PINGs sent meanwhile", k, rerr, n)
	assert.Zero(t, k)
	assert.ErrorIs(t, rerr, io.EOF, "the FIN came while the client still sent")
}
