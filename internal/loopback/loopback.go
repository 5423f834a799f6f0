// Package loopback is the tests' raw backend: a listener on 127.0.0.1:0
// that hands every accepted connection to a function of the test's; and
// an address that refuses connections. It is imported by tests only
// (edge, upstream).
package loopback

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// Backend accepts TCP connections on 127.0.0.1:0 and runs serve on each
// in a goroutine of its own, closing the connection when serve returns;
// accepted counts the connections. At the test's end it closes the
// listener and every connection still open, and waits for its
// goroutines.
func Backend(tb testing.TB, serve func(net.Conn)) (addr string, accepted *atomic.Int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open = map[net.Conn]bool{}
	)
	accepted = new(atomic.Int64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), accepted
}

// Refused returns a loopback address that refuses connections until the
// test ends: a socket bound to it that does not listen, so the port is
// nobody else's meanwhile. A listener closed at once would free it for
// the tests of the other packages that make test runs beside this one
// (a demo backend once answered an edge test's "refused" node).
func Refused(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
