package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SIGTERM starts the lame duck (the example's shutdown_delay = "5s"): the
// admin listener says 503 on /readyz while a new client still gets its
// answer through TLS; after the delay the process drains and exits 0.
func TestSIGTERMLameDuckThenExit(t *testing.T) {
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	caFile := filepath.Join(ex.certDir, "ca.pem")
	code, _, err := try(http.DefaultClient, "http://"+p.admin+"/readyz")
	require.NoError(t, err)
	require.Equal(t, 200, code)

	start := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		code, _, err := try(http.DefaultClient, "http://"+p.admin+"/readyz")
		return err == nil && code == 503
	}, 4*time.Second, 10*time.Millisecond, "/readyz answers 503 during the delay")
	// A client that connects only now: the listener still accepts.
	code, body, err := try(p.client(t, caFile), "https://test.acme.com/users/lame-duck")
	require.NoError(t, err, "a request during the delay is served")
	assert.Equal(t, 200, code, body)
	assert.Equal(t, "/lame-duck", parseEcho(t, body).Path)
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("edged exited %s after SIGTERM, within shutdown_delay: %v", time.Since(start), err)
	default:
	}

	select {
	case err := <-p.done:
		took := time.Since(start)
		require.NoError(t, err, "exit 0 after the delay and the drain")
		p.done <- nil
		assert.GreaterOrEqual(t, took, 4900*time.Millisecond, "the process stays for shutdown_delay")
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not exit after shutdown_delay")
	}
	assert.Contains(t, p.stderr.String(), `"msg":"shutting down","signal":"terminated","shutdown_delay":"5s"`)
	assert.Contains(t, p.stderr.String(), `"msg":"stopped"`)
}

// A second SIGTERM during the delay ends it: the process exits at once.
func TestSecondSIGTERMCutsTheDelayShort(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"60s"`)
	p := startServe(t, ex.confDir)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		code, _, err := try(http.DefaultClient, "http://"+p.admin+"/readyz")
		return err == nil && code == 503
	}, 5*time.Second, 10*time.Millisecond, "/readyz answers 503 during the delay")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit 0")
		p.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("the second SIGTERM did not end the 60 s delay")
	}
	assert.Contains(t, p.stderr.String(), `"msg":"shutdown delay cut short"`)
}

// SIGQUIT is nginx's graceful stop (`nginx -s quit`): an operator who
// sends it expects the lame duck and the drain, not Go's default (a dump
// of every goroutine on stderr and exit 2, cutting requests in flight).
// edged takes it as SIGTERM; SIGABRT still dumps the goroutines.
func TestSIGQUITStopsGracefully(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"0s"`)
	p := startServe(t, ex.confDir)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGQUIT))
	select {
	case err := <-p.done:
		p.done <- nil
		require.NoError(t, err, "exit 0 after draining")
	case <-time.After(20 * time.Second):
		t.Fatal("edged did not exit after SIGQUIT")
	}
	assert.Contains(t, p.stderr.String(), `"msg":"shutting down","signal":"quit"`)
	assert.Contains(t, p.stderr.String(), `"msg":"stopped"`)
	assert.NotContains(t, p.stderr.String(), "goroutine ", "no goroutine dump")
}

// A keep-alive client of a process in its lame duck is told to leave:
// the answers after SIGTERM carry Connection: close, so its next request
// goes on a new connection (one a load balancer that took the instance
// out sends elsewhere), rather than on one the drain closes as idle,
// maybe while that request is on its way.
func TestLameDuckClosesKeepAliveConnections(t *testing.T) {
	ex := newExample(t)
	ex.setServer(t, "shutdown_delay", `"60s"`)
	p := startServe(t, ex.confDir)
	caFile := filepath.Join(ex.certDir, "ca.pem")
	b, err := os.ReadFile(caFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(b))
	var dials atomic.Int64
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, p.https)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := c.Get("https://test.acme.com/users" + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		return resp
	}
	get("/1")
	require.False(t, get("/2").Close)
	require.Equal(t, int64(1), dials.Load(), "keep-alive before SIGTERM")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		code, _, err := try(http.DefaultClient, "http://"+p.admin+"/readyz")
		return err == nil && code == 503
	}, 5*time.Second, 10*time.Millisecond, "/readyz answers 503 during the delay")
	assert.True(t, get("/3").Close, "the answer in the lame duck carries Connection: close")
	assert.True(t, get("/4").Close)
	assert.Equal(t, int64(2), dials.Load(), "the request after it went on a new connection")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "exit 0")
		p.done <- nil
	case <-time.After(20 * time.Second):
		t.Fatal("the second SIGTERM did not end the delay")
	}
}
