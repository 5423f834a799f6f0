// Command demo-backend serves the backends of the example in conf.d/ from
// one process: each -listen address answers as one named backend.
//
//	go run ./tools/demo-backend
//	go run ./tools/demo-backend -listen 127.0.0.1:9101=test
//
// Every request is answered with JSON saying which backend saw it and what
// arrived (method, path, query, Host, X-Forwarded-*, X-Request-Id), so what
// edged forwards can be checked with curl. Also:
//
//	/healthz           200 "ok" (for active health checks)
//	/sse?n=3           n Server-Sent Events, one per 200ms, each flushed
//	/ws                WebSocket echo (text, binary, ping; no extensions)
//	/delay?d=2s        answers after d (shows response_timeout and queueing)
//	/status/503        answers with that status
//
// It listens on loopback addresses only: it is a demo, not a server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

const defaultListen = "127.0.0.1:9101=test,127.0.0.1:9201=uat-a,127.0.0.1:9202=uat-b,127.0.0.1:9301=prod-a,127.0.0.1:9302=prod-b"

// shutdownTimeout bounds the graceful stop; streams end at once on stop,
// so only ordinary requests use it.
const shutdownTimeout = 5 * time.Second

// backend is one named listener.
type backend struct {
	addr string
	name string
	ln   net.Listener
}

func main() {
	listen := flag.String("listen", defaultListen, "comma-separated ADDR=NAME pairs; loopback addresses only")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	backends, err := parseListen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-backend:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := listenAll(backends); err != nil {
		logger.Error("listen", "err", err)
		os.Exit(1)
	}
	if err := serve(ctx, backends, logger); err != nil {
		logger.Error("serve", "err", err)
		os.Exit(1)
	}
}

// parseListen reads "ADDR=NAME,ADDR=NAME" and refuses anything that is not
// loopback, so the demo never answers the network by accident.
func parseListen(s string) ([]*backend, error) {
	var out []*backend
	addrs, names := map[string]bool{}, map[string]bool{}
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		addr, name, ok := strings.Cut(pair, "=")
		if !ok || addr == "" || name == "" {
			return nil, fmt.Errorf("-listen %q: want ADDR=NAME", pair)
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("-listen %q: %w", pair, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("-listen %q: %q is not a loopback address (use 127.0.0.1 or [::1])", pair, host)
		}
		if addrs[addr] || names[name] {
			return nil, fmt.Errorf("-listen %q: address or name used twice", pair)
		}
		addrs[addr], names[name] = true, true
		out = append(out, &backend{addr: addr, name: name})
	}
	if len(out) == 0 {
		return nil, errors.New("-listen: no addresses")
	}
	return out, nil
}

// listenAll opens every listener before any serves, so a port in use
// fails the start instead of leaving half the backends up.
func listenAll(backends []*backend) error {
	for i, b := range backends {
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			for _, prev := range backends[:i] {
				prev.ln.Close()
			}
			return fmt.Errorf("backend %s: %w", b.name, err)
		}
		b.ln = ln
	}
	return nil
}

// serve runs every backend until ctx ends or one fails, then stops them
// all gracefully and waits for them.
func serve(ctx context.Context, backends []*backend, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(backends))
	servers := make([]*http.Server, len(backends))
	for i, b := range backends {
		srv := &http.Server{
			Handler:           newHandler(b.name),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second, // streams extend it per write
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			// Streams and delays watch the request context: they end
			// when the process stops instead of holding the shutdown.
			BaseContext: func(net.Listener) context.Context { return ctx },
			ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		servers[i] = srv
		logger.Info("listening", "backend", b.name, "addr", b.ln.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(b.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("backend %s: %w", b.name, err)
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	logger.Info("stopping")
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
		}
	}
	wg.Wait()
	logger.Info("stopped")
	return err
}
