//go:build linux

package upstream

import (
	"net"
	"reflect"
	"runtime"
	"syscall"
	"testing"

	"edged/internal/rawconn"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The write-and-wait writes as its connection's own writes do: raw system
// calls on a connection rawconn wrapped (one P), syscall.Write on any
// other, so that with two Ps no write keeps its P through a long call.
func TestWriteWaitWritesAsItsConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	fn := func(f func(int, []byte) (int, error)) uintptr { return reflect.ValueOf(f).Pointer() }

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	assert.Equal(t, fn(syscall.Write), fn(writeFunc(rawconn.Wrap(c))), "two Ps: syscall.Write")
	runtime.GOMAXPROCS(1)
	wrapped := rawconn.Wrap(c)
	require.IsType(t, &rawconn.Conn{}, wrapped)
	assert.Equal(t, fn(rawconn.WriteFD), fn(writeFunc(wrapped)), "one P: raw, as the connection")
}
