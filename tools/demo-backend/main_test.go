package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseListen(t *testing.T) {
	bs, err := parseListen(defaultListen)
	require.NoError(t, err)
	require.Len(t, bs, 5)
	assert.Equal(t, "127.0.0.1:9202", bs[2].addr)
	assert.Equal(t, "uat-b", bs[2].name)

	for _, ok := range []string{"[::1]:1=a", "localhost:1=a", "127.0.0.2:1=a, 127.0.0.1:2=b"} {
		_, err := parseListen(ok)
		assert.NoError(t, err, ok)
	}
	for _, bad := range []string{"", "0.0.0.0:1=a", ":1=a", "10.0.0.1:1=a", "[::]:1=a", "example.com:1=a",
		"127.0.0.1:1", "127.0.0.1:1=", "127.0.0.1=a", "127.0.0.1:1=a,127.0.0.1:1=b", "127.0.0.1:1=a,127.0.0.1:2=a"} {
		_, err := parseListen(bad)
		assert.Error(t, err, bad)
	}
}

func TestEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("uat-a"))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/users/7?x=1&y=2", strings.NewReader("hello"))
	require.NoError(t, err)
	req.Host = "api.uat.acme.com"
	req.Header.Set("X-Forwarded-For", "192.0.2.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "api.uat.acme.com")
	req.Header.Set("X-Request-Id", "abc")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "uat-a", resp.Header.Get("X-Backend"))
	var e echo
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Equal(t, echo{
		Backend: "uat-a", Method: "POST", Path: "/users/7", Query: "x=1&y=2", Host: "api.uat.acme.com",
		XForwardedFor: "192.0.2.1", XForwardedProto: "https", XForwardedHost: "api.uat.acme.com",
		XRequestID: "abc", RemoteAddr: e.RemoteAddr, BodyBytes: 5,
	}, e)

	for path, want := range map[string]int{"/healthz": 200, "/status/503": 503, "/status/99": 400, "/delay?d=1ms": 200, "/delay?d=1h": 400} {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
		if path == "/healthz" {
			assert.Equal(t, "ok", string(body))
		}
	}
}

func TestSSEStreamsFlushedEvents(t *testing.T) {
	srv := httptest.NewServer(newHandler("test"))
	defer srv.Close()
	start := time.Now()
	resp, err := srv.Client().Get(srv.URL + "/sse?n=3")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	var arrivals []time.Duration
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			arrivals = append(arrivals, time.Since(start))
			assert.Contains(t, sc.Text(), `"backend":"test"`)
		}
	}
	require.Len(t, arrivals, 3)
	// Flushed one by one: the first arrives long before the last.
	assert.Less(t, arrivals[0], 150*time.Millisecond)
	assert.GreaterOrEqual(t, arrivals[2], 2*sseInterval)
}

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newHandler("test"))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept")) // RFC 6455 §1.3

	send := func(op byte, payload string) {
		mask := [4]byte{1, 2, 3, 4}
		f := []byte{0x80 | op, 0x80 | byte(len(payload))}
		f = append(f, mask[:]...)
		for i := range len(payload) {
			f = append(f, payload[i]^mask[i%4])
		}
		_, err := conn.Write(f)
		require.NoError(t, err)
	}
	recv := func() (byte, string) {
		var h [2]byte
		_, err := io.ReadFull(br, h[:])
		require.NoError(t, err)
		p := make([]byte, h[1]&0x7f)
		_, err = io.ReadFull(br, p)
		require.NoError(t, err)
		return h[0] & 0x0f, string(p)
	}
	send(opText, "hello")
	op, p := recv()
	assert.Equal(t, byte(opText), op)
	assert.Equal(t, "hello", p)
	send(opPing, "p")
	op, p = recv()
	assert.Equal(t, byte(opPong), op)
	assert.Equal(t, "p", p)
	send(opClose, string(binary.BigEndian.AppendUint16(nil, 1000)))
	op, _ = recv()
	assert.Equal(t, byte(opClose), op)

	resp2, err := srv.Client().Get(srv.URL + "/ws")
	require.NoError(t, err)
	resp2.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp2.StatusCode)
}

func TestServeStopsStreamsOnCancel(t *testing.T) {
	bs, err := parseListen("127.0.0.1:0=a,127.0.0.1:0=b")
	require.Error(t, err, "the same address twice")
	bs, err = parseListen("127.0.0.1:0=a")
	require.NoError(t, err)
	require.NoError(t, listenAll(bs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, bs, slog.New(slog.DiscardHandler)) }()

	resp, err := http.Get("http://" + bs[0].ln.Addr().String() + "/sse?n=1000")
	require.NoError(t, err)
	defer resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("serve did not stop: a stream held the shutdown")
	}
	_, err = io.ReadAll(resp.Body)
	assert.NoError(t, err, "the stream ends cleanly")
}
