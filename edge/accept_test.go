package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failingListener fails its next accepts with err, as the kernel's
// accept4 does, then accepts on the real listener.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	err   error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", l.err)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// A failed accept is the one connection's (Linux's accept passes a new
// socket's pending network error on, EPROTO, ENETUNREACH, ..., and
// accept(2) says to retry) or a moment's shortage (ENOMEM, ENOBUFS under a
// memory limit; EMFILE): the listener waits and accepts again, as nginx
// and HAProxy do, and the failure is logged as a warning. Only a closed
// listener ends the loop. Serve used to return every error that was not
// "temporary" in Go's sense, and edged serve then exited at once
// ("listener failed"), cutting every request in flight.
func TestAcceptErrorsDoNotStopTheListener(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.ENOBUFS, syscall.EPROTO, syscall.EPERM, syscall.EMFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			real, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ln := &failingListener{Listener: real, fails: 3, err: errno}
			logs := &syncBuffer{}
			s := newH1Server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }),
				slog.New(slog.NewTextHandler(logs, nil)), nil, 5*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 8192)
			done := make(chan error, 1)
			go func() { done <- s.Serve(ln) }()
			stopped := false
			defer func() {
				if !stopped {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					_ = s.Shutdown(ctx)
					<-done
				}
			}()

			got := rawExchange(t, real.Addr().String(), "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("Serve returned after a failed accept: %v", err)
			default:
			}
			assert.True(t, strings.HasPrefix(got, "HTTP/1.1 200 "), "%q", got)
			assert.True(t, strings.HasSuffix(got, "served"), "%q", got)
			assert.Contains(t, logs.String(), "level=WARN msg=\"accept failed; retrying\"")
			assert.Contains(t, logs.String(), errno.Error())

			// Shutdown still ends it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			require.NoError(t, s.Shutdown(ctx))
			stopped = true
			assert.True(t, errors.Is(<-done, http.ErrServerClosed))
		})
	}
}

// A listener closed under the accept loop (not by Shutdown) ends it with
// the error, rather than failing every accept forever.
func TestAcceptOnAClosedListenerEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := newH1Server(http.NotFoundHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, time.Second, time.Second, time.Second, time.Second, 8192)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	ln.Close()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve went on accepting on a closed listener")
	}
}

// The admin listener, served by net/http, waits out a failed accept too:
// net/http returns every error Go does not call temporary, and edged
// serve exited on it.
func TestAdminAcceptErrorsDoNotStopTheListener(t *testing.T) {
	real, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := adminListener(&failingListener{Listener: real, fails: 2, err: syscall.ENOMEM})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }),
		ConnState: ln.connState, ErrorLog: slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	got := rawExchange(t, real.Addr().String(), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	select {
	case err := <-done:
		t.Fatalf("the admin listener's Serve returned after a failed accept: %v", err)
	default:
	}
	assert.True(t, strings.HasPrefix(got, "HTTP/1.1 200 "), "%q", got)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, hs.Shutdown(ctx))
	assert.ErrorIs(t, <-done, http.ErrServerClosed)
}
