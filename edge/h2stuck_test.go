package edge

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// With write_timeout "0s", a client that stops reading is still caught
// by the silent-peer check: its ping cannot even leave, and the
// connection closes within the check's times, rather than hold its
// streams (and their workers) for as long as the client keeps the
// socket open.
func TestH2SilentPeerCheckCatchesAStuckWireWithoutWriteTimeout(t *testing.T) {
	setH2Liveness(t, 300*time.Millisecond, 300*time.Millisecond)
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		rc := http.NewResponseController(w)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}), `write_timeout = "0s"`)
	h := dialH2(t, te.addr, "test.acme.com")
	require.NoError(t, h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}))
	require.NoError(t, h.fr.WriteWindowUpdate(0, 1<<30))
	h.headers(1, true, h2get("GET", "test.acme.com", "/big")...)
	time.Sleep(3 * time.Second) // not reading
	require.NoError(t, h.c.SetReadDeadline(time.Now().Add(5*time.Second)))
	start := time.Now()
	n, err := io.Copy(io.Discard, h.c)
	t.Logf("read %d bytes in %s: %v", n, time.Since(start), err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was closed, not still streaming after %d bytes: %v", n, err)
	assert.Less(t, n, int64(32<<20), "closed while the client did not read: only what the socket buffers held")
}
