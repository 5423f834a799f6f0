package edge

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// With write_timeout "0s", a client that stops reading is still caught
// by the silent-peer check: its ping cannot even leave, and the
// connection closes within the check's times, rather than hold its
// streams (and their workers) for as long as the client keeps the
// socket open.
func TestH2SilentPeerCheckCatchesAStuckWireWithoutWriteTimeout(t *testing.T) {
	setH2Liveness(t, 300*time.Millisecond, 300*time.Millisecond)
	n, err := stallH2Reader(t, `write_timeout = "0s"`)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was closed, not still streaming after %d bytes: %v", n, err)
	assert.Less(t, n, int64(32<<20), "closed while the client did not read: only what the socket buffers held")
}
