package main

import (
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPollerWakesInReadyOrder checks the runtime this test was built with:
// goroutines parked reading 16 sockets, made readable one after the other
// while they wait, run in that order. make test builds with the overlay
// (-tags netpollfifo); the stock runtime runs them last to first. (Its
// run without -race is the one that checks.)
func TestPollerWakesInReadyOrder(t *testing.T) {
	if !netpollFIFO {
		t.Skip("built without -tags " + Tag + ": the stock runtime poller")
	}
	if raceOn {
		t.Skip("the race detector shuffles the run queue; make test runs this without it")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const n = 16
	var clients, servers []*net.TCPConn
	defer func() {
		for _, c := range append(clients, servers...) {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		s, err := ln.Accept()
		require.NoError(t, err)
		clients = append(clients, c.(*net.TCPConn))
		servers = append(servers, s.(*net.TCPConn))
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	for round := range 5 {
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := make([]byte, 1)
				_, err := s.Read(b)
				assert.NoError(t, err)
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			}()
		}
		time.Sleep(20 * time.Millisecond) // every reader parked in the poller
		// Raw writes, without entering the runtime's system call state:
		// the P stays here, so that no poll runs between two of them and
		// one poll finds all 16 ready.
		for _, c := range clients {
			raw, err := c.SyscallConn()
			require.NoError(t, err)
			b := []byte{byte(round)}
			var errno syscall.Errno
			require.NoError(t, raw.Control(func(fd uintptr) {
				_, _, errno = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), 1)
			}))
			require.Zero(t, errno)
		}
		wg.Wait()
		assert.Equal(t, want, order, "round %d", round)
	}
}
