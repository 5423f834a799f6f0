package rawconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair returns a wrapped client end and the server end of a loopback TCP
// connection.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	srv := <-accepted
	require.NotNil(t, srv)
	t.Cleanup(func() { c.Close(); srv.Close() })
	w, ok := wrap(c).(*Conn)
	require.True(t, ok, "a *net.TCPConn is wrapped")
	return w, srv
}

func TestReadWriteAndEOF(t *testing.T) {
	c, srv := pair(t)
	n, err := c.Write([]byte("ping"))
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	buf := make([]byte, 4)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))

	_, err = srv.Write([]byte("pong"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(buf))

	n, err = c.Read(nil)
	assert.NoError(t, err, "a zero-length read returns at once")
	assert.Zero(t, n)

	require.NoError(t, srv.Close())
	n, err = c.Read(buf)
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err, "the peer's close reads as io.EOF")
}

// A write larger than the socket buffers meets EAGAIN, waits in the poller
// and goes on: every byte arrives, in order.
func TestLargeWriteWaitsForRoom(t *testing.T) {
	c, srv := pair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // let the buffers fill first
		b, _ := io.ReadAll(srv)
		got <- b
	}()
	n, err := c.Write(want)
	require.NoError(t, err)
	assert.Equal(t, len(want), n)
	require.NoError(t, c.CloseWrite(), "the TCPConn's methods are kept")
	assert.True(t, bytes.Equal(want, <-got))
}

// Deadlines and Close reach a raw read waiting in the poller, and the
// errors are those of a net.TCPConn.
func TestDeadlineAndCloseErrors(t *testing.T) {
	c, _ := pair(t)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	start := time.Now()
	_, err := c.Read(make([]byte, 8))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
	var ne net.Error
	require.True(t, errors.As(err, &ne))
	assert.True(t, ne.Timeout())
	var oe *net.OpError
	require.True(t, errors.As(err, &oe))
	assert.Equal(t, "read", oe.Op)
	assert.Less(t, time.Since(start), 5*time.Second)

	require.NoError(t, c.SetReadDeadline(time.Time{}))
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, net.ErrClosed), "%v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	_, err = c.Write([]byte("x"))
	assert.True(t, errors.Is(err, net.ErrClosed), "%v", err)
}

// A write to a peer that reset the connection fails with the system
// call's error, not a hang or a panic.
func TestWriteToResetPeer(t *testing.T) {
	c, srv := pair(t)
	require.NoError(t, srv.(*net.TCPConn).SetLinger(0))
	require.NoError(t, srv.Close()) // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(make([]byte, 64<<10))
		time.Sleep(time.Millisecond)
	}
	require.Error(t, err)
	var se *os.SyscallError
	assert.True(t, errors.As(err, &se), "%v", err)
}

// Concurrent writers never interleave within one Write.
func TestConcurrentWritesStayWhole(t *testing.T) {
	c, srv := pair(t)
	const writers, size = 8, 256 << 10
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(b byte) {
			defer wg.Done()
			_, err := c.Write(bytes.Repeat([]byte{b}, size))
			assert.NoError(t, err)
		}(byte('a' + i))
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(srv)
		got <- b
	}()
	wg.Wait()
	require.NoError(t, c.CloseWrite())
	b := <-got
	require.Len(t, b, writers*size)
	for off := 0; off < len(b); off += size {
		assert.Equal(t, bytes.Repeat(b[off:off+1], size), b[off:off+size], "a write's bytes are contiguous")
	}
}

func TestReadWriteAllocateNothing(t *testing.T) {
	c, srv := pair(t)
	msg := []byte("0123456789")
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(srv, buf); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Equal(t, a, wrap(a))
}

// Wrap makes raw calls only in a process running one P.
func TestWrapOnlyWithOneP(t *testing.T) {
	c, _ := pair(t)
	tc := c.TCPConn
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	assert.Equal(t, net.Conn(tc), Wrap(tc), "two Ps: the TCPConn itself")
	runtime.GOMAXPROCS(1)
	_, ok := Wrap(tc).(*Conn)
	assert.True(t, ok, "one P: raw calls")
}

// WriteFD writes inside the connection's own RawConn, which SyscallConn
// gives back (the one Wrap made), and reports errors as syscall.Write.
func TestWriteFDInsideTheConnsRawConn(t *testing.T) {
	c, srv := pair(t)
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	assert.Same(t, c.rw.rc, rc, "the RawConn Wrap made, not a new one")
	var n int
	var werr error
	require.NoError(t, rc.Write(func(fd uintptr) bool {
		n, werr = WriteFD(int(fd), []byte("raw"))
		return true
	}))
	require.NoError(t, werr)
	assert.Equal(t, 3, n)
	buf := make([]byte, 3)
	_, err = io.ReadFull(srv, buf)
	require.NoError(t, err)
	assert.Equal(t, "raw", string(buf))

	n, werr = WriteFD(-1, []byte("x"))
	assert.Zero(t, n)
	assert.ErrorIs(t, werr, syscall.EBADF, "an error is the call's errno")
	n, werr = WriteFD(-1, nil)
	assert.Zero(t, n)
	assert.NoError(t, werr, "nothing to write: no call")
}
