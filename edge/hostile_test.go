package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"edged/internal/loopback"
)

// recorder is a backend that records every request it gets.
type recorder struct {
	*backend
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, uri, host string
	header            http.Header
	bodyErr           error
}

func recordingBackend(t *testing.T) *recorder {
	rec := &recorder{}
	rec.backend = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.Method, r.RequestURI, r.Host, r.Header.Clone(), err})
		rec.mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	return rec
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.reqs)
}

func (rec *recorder) last(t *testing.T) recorded {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.NotEmpty(t, rec.reqs, "the backend got the request")
	return rec.reqs[len(rec.reqs)-1]
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEdgeLogged is startEdge with edged's own log kept.
func startEdgeLogged(t *testing.T, files map[string]string) (*testEdge, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	return startEdgeOn(t, files, slog.NewJSONHandler(logs, nil)), logs
}

// oneEnv is an edge whose group test.acme.com (and *.test.acme.com) routes
// every path to rec.
func oneEnv(t *testing.T, rec *recorder, serverExtra, upstreamExtra string) (*testEdge, *syncBuffer) {
	testCertDir(t)
	return startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), serverExtra),
		"env.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com", "*.test.acme.com") +
			proxyTOML("test", "p", "/", rec.addr) + upstreamExtra,
	})
}

// rawH1 sends raw bytes over a TLS connection made for sni and reads one
// answer; resp is nil when the connection closed without one. The bytes
// are written while the answer is read: a server may answer (413) and
// close before a large body is all sent, which resets the writer.
func rawH1(t *testing.T, addr, sni, raw string, closeWrite bool) (*http.Response, string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, raw)
		if err == nil && closeWrite {
			err = c.CloseWrite()
		}
		wrote <- err
	}()
	defer func() {
		c.Close()
		<-wrote
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		require.NoError(t, <-wrote, "sending the request")
		wrote <- nil
		return nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// h2raw is a client speaking HTTP/2 frame by frame over TLS.
type h2raw struct {
	t   *testing.T
	c   *tls.Conn
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
}

func dialH2(t *testing.T, addr, sni string) *h2raw {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: caPool(t), NextProtos: []string{"h2"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	h := &h2raw{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.buf)
	require.NoError(t, h.fr.WriteSettings())
	return h
}

// headers sends one HEADERS frame with fields as written (name, value
// pairs, in order; nothing is checked).
func (h *h2raw) headers(id uint32, endStream bool, fields ...string) {
	h.t.Helper()
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		require.NoError(h.t, h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}))
	}
	require.NoError(h.t, h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: endStream, EndHeaders: true}))
}

// get is a well-formed GET's fields for host and path, plus extra ones.
func h2get(method, host, path string, extra ...string) []string {
	return append([]string{":method", method, ":scheme", "https", ":authority", host, ":path", path}, extra...)
}

// h2result is how the server ended one stream.
type h2result struct {
	status int
	rst    bool
	code   http2.ErrCode
	goaway bool
	body   string
}

// result reads frames until stream id ends (response with END_STREAM,
// RST_STREAM, GOAWAY), acknowledging the server's SETTINGS on the way.
func (h *h2raw) result(id uint32) h2result {
	h.t.Helper()
	var r h2result
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("reading the answer to stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				require.NoError(h.t, h.fr.WriteSettingsAck())
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				continue
			}
			if s := f.PseudoValue("status"); s != "" {
				r.status, _ = strconv.Atoi(s)
			}
			if f.StreamEnded() {
				return r
			}
		case *http2.DataFrame:
			if f.StreamID != id {
				continue
			}
			r.body += string(f.Data())
			if f.StreamEnded() {
				return r
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				r.rst, r.code = true, f.ErrCode
				return r
			}
		case *http2.GoAwayFrame:
			r.goaway, r.code = true, f.ErrCode
			return r
		}
	}
}

func TestHostMustBeHostPort(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "", "")
	bad := []string{
		"evil.com:x.test.acme.com:443", // two colons: was routed to *.test.acme.com by its tail
		"evil.com:x.test.acme.com",
		"x.test.acme.com:",
		"x.test.acme.com:0",
		"x.test.acme.com:65536",
		"x.test.acme.com:44a",
		"x.test.acme.com:-1",
		"a..test.acme.com",
		".test.acme.com",
		"a!b.test.acme.com",
		"a%2eb.test.acme.com",
		"a*b.test.acme.com",
		"[::1",
		"[::1]x",
		"[not-v6]",
		"[127.0.0.1]",
	}
	good := []string{"test.acme.com", "x.test.acme.com:443", "X.Test.ACME.com", "test.acme.com.", "test.acme.com.:8443", "a_b.test.acme.com"}
	t.Run("http1", func(t *testing.T) {
		for _, h := range bad {
			before := rec.count()
			resp, _ := rawH1(t, te.addr, "test.acme.com", "GET /x HTTP/1.1\r\nHost: "+h+"\r\n\r\n", false)
			require.NotNil(t, resp, "Host %q: an answer", h)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "Host %q", h)
			assert.Equal(t, before, rec.count(), "Host %q: nothing forwarded", h)
		}
		for _, h := range good {
			resp, body := rawH1(t, te.addr, "test.acme.com", "GET /x HTTP/1.1\r\nHost: "+h+"\r\n\r\n", false)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "Host %q: %s", h, body)
			assert.Equal(t, h, rec.last(t).host, "forwarded as sent")
		}
		// HTTP/1.1 without a Host, and HTTP/1.0 without one: no Host to route.
		resp, _ := rawH1(t, te.addr, "test.acme.com", "GET /x HTTP/1.0\r\n\r\n", false)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
	t.Run("http2", func(t *testing.T) {
		h := dialH2(t, te.addr, "test.acme.com")
		id := uint32(1)
		for _, host := range bad {
			before := rec.count()
			h.headers(id, true, h2get("GET", host, "/x")...)
			r := h.result(id)
			require.False(t, r.goaway, ":authority %q", host)
			assert.True(t, r.rst || r.status == http.StatusBadRequest, ":authority %q: refused, got %+v", host, r)
			assert.Equal(t, before, rec.count(), ":authority %q: nothing forwarded", host)
			id += 2
		}
		for _, host := range good {
			h.headers(id, true, h2get("GET", host, "/x")...)
			r := h.result(id)
			assert.Equal(t, http.StatusOK, r.status, ":authority %q: %+v", host, r)
			id += 2
		}
	})
}

// clientHello captures the first TLS record a Go client sends for sni.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
		_ = tc.Handshake()
	}()
	c, err := ln.Accept()
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	head := make([]byte, 5)
	_, err = io.ReadFull(c, head)
	require.NoError(t, err)
	rec := make([]byte, int(head[3])<<8|int(head[4]))
	_, err = io.ReadFull(c, rec)
	require.NoError(t, err)
	return append(head, rec...)
}

// firstRecordType sends hello to addr and returns the type of the first
// record that comes back: 22 (handshake: accepted) or 21 (alert).
func firstRecordType(t *testing.T, addr string, hello []byte) byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write(hello)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	return b[0]
}

func TestTrailingDotInHostAndSNI(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "", "")
	// A client strips the dot from SNI (Go, curl, browsers) and keeps it
	// in Host: the Host routes to the group its name without the dot has.
	c := te.client("test.acme.com.", nil)
	resp, err := c.Get("https://test.acme.com./x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "test.acme.com.", rec.last(t).host)

	// A ClientHello whose SNI keeps the dot is refused by crypto/tls (RFC
	// 6066 forbids it): same length as the control, so only the dot differs.
	control := clientHello(t, "ab.test.acme.com")
	dotted := bytes.Replace(control, []byte("ab.test.acme.com"), []byte("b.test.acme.com."), 1)
	require.NotEqual(t, control, dotted)
	assert.Equal(t, byte(22), firstRecordType(t, te.addr, control), "the control handshake goes on")
	assert.Equal(t, byte(21), firstRecordType(t, te.addr, dotted), "a trailing dot in SNI is an alert")
}

func TestMethodAndTargetAreChecked(t *testing.T) {
	rec := recordingBackend(t)
	te, logs := oneEnv(t, rec, "", "")
	t.Run("http2", func(t *testing.T) {
		h := dialH2(t, te.addr, "test.acme.com")
		for i, tc := range []struct{ method, path string }{
			{"GET X", "/x"},
			{"GET", "/a b"},
			{"GET", "/a\tb"},
			{"GE\x7fT", "/x"},
		} {
			id := uint32(2*i + 1)
			h.headers(id, true, h2get(tc.method, "test.acme.com", tc.path)...)
			r := h.result(id)
			assert.True(t, r.rst || r.status == http.StatusBadRequest, "%q %q: got %+v", tc.method, tc.path, r)
			assert.NotEqual(t, http.StatusBadGateway, r.status)
		}
		assert.Zero(t, rec.count(), "nothing forwarded")
		assert.NotContains(t, logs.String(), "upstream failed")
	})
	t.Run("trace", func(t *testing.T) {
		resp, body := rawH1(t, te.addr, "test.acme.com", "TRACE /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", false)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, body)
		assert.NotEmpty(t, resp.Header.Get("Allow"))
		assert.Contains(t, body, "method.not_allowed")
		h := dialH2(t, te.addr, "test.acme.com")
		h.headers(1, true, h2get("TRACE", "test.acme.com", "/x")...)
		assert.Equal(t, http.StatusMethodNotAllowed, h.result(1).status)
		assert.Zero(t, rec.count(), "TRACE is never forwarded")
	})
}

// Header fields whose name holds '_' are dropped by default. With
// underscores_in_headers = true a client's own such fields (X_Api_Key)
// are kept, but never one a backend mapping '_' to '-' would read as a
// field edged sets, removes or frames by: X_Forwarded_For, X_Real_Ip,
// Client_Cert, Content_Length, Transfer_Encoding, Proxy_Connection,
// written in any case.
func TestUnderscoreHeadersDropped(t *testing.T) {
	aliases := []string{"X_Forwarded_For", "x_real_ip", "Client_Cert", "CLIENT_CERT_CHAIN", "Content_Length", "Transfer_Encoding", "Proxy_Connection", "X_forwarded-Host"}
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("underscores_in_headers=%v", keep), func(t *testing.T) {
			rec := recordingBackend(t)
			te, _ := oneEnv(t, rec, fmt.Sprintf("underscores_in_headers = %v", keep), "")
			check := func(proto string) {
				hdr := rec.last(t).header
				assert.Equal(t, "1", hdr.Get("X-Ok"), proto)
				var under []string
				for k := range hdr {
					if strings.Contains(k, "_") {
						under = append(under, k)
					}
				}
				if keep {
					assert.Equal(t, []string{"X_api_key"}, under, "%s: only the client's own field is kept", proto)
					assert.Equal(t, "k", hdr.Get("X_Api_Key"), proto)
				} else {
					assert.Empty(t, under, proto)
				}
				assert.NotContains(t, hdr.Get("X-Forwarded-For"), "6.6.6.6", proto)
				assert.Empty(t, hdr.Values("Client-Cert"), proto)
			}
			head := "GET /x HTTP/1.1\r\nHost: test.acme.com\r\nX-Ok: 1\r\nX_Api_Key: k\r\n"
			fields := []string{"x-ok", "1", "x_api_key", "k"}
			for _, a := range aliases {
				v := "6.6.6.6"
				if a == "Content_Length" {
					v = "5"
				}
				head += a + ": " + v + "\r\n"
				fields = append(fields, strings.ToLower(a), v)
			}
			resp, _ := rawH1(t, te.addr, "test.acme.com", head+"\r\n", false)
			require.NotNil(t, resp)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			check("http1")
			h := dialH2(t, te.addr, "test.acme.com")
			h.headers(1, true, h2get("GET", "test.acme.com", "/x", fields...)...)
			require.Equal(t, http.StatusOK, h.result(1).status)
			check("http2")
		})
	}
}

// upgradeEverythingBackend answers 101 to every request, like a lenient
// backend, switching to the protocol asked for (h2c when none was), and
// records the Upgrade header it got.
func upgradeEverythingBackend(t *testing.T) (addr string, upgrades <-chan string) {
	seen := make(chan string, 16)
	addr, _ = loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		up := req.Header.Get("Upgrade")
		seen <- up
		if up == "" {
			up = "h2c"
		}
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
		io.Copy(c, c)
	})
	return addr, seen
}

func TestOnlyWebSocketUpgradesAreForwarded(t *testing.T) {
	testCertDir(t)
	addr, seen := upgradeEverythingBackend(t)
	te, _ := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", addr),
	})
	for _, up := range []string{"h2c", "foo", "h2c, foo"} {
		resp, _ := rawH1(t, te.addr, "test.acme.com", "GET /x HTTP/1.1\r\nHost: test.acme.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+up+"\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", false)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "Upgrade: %s: the backend's 101 is not a tunnel", up)
		select {
		case got := <-seen:
			assert.Empty(t, got, "Upgrade: %s is not forwarded", up)
		case <-time.After(5 * time.Second):
			t.Fatal("the backend got nothing")
		}
	}
	// A WebSocket upgrade goes through (the backend's 101 is a tunnel).
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: test.acme.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.Equal(t, "websocket", <-seen)
}

func TestPlainListenerNeverServesClientCertificateGroups(t *testing.T) {
	dir := testCertDir(t)
	for _, mode := range []string{"serve", "redirect"} {
		t.Run(mode, func(t *testing.T) {
			mtls, open := recordingBackend(t), recordingBackend(t)
			te, _ := startEdgeLogged(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), "http = \"127.0.0.1:0\"\nhttp_mode = \""+mode+"\""),
				"test.toml": envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") +
					`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" +
					proxyTOML("test", "p", "/", mtls.addr),
				"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com", "*.uat.acme.com") + proxyTOML("uat", "p", "/", open.addr),
			})
			_, plain, _ := te.srv.Addrs()
			get := func(host string) (*http.Response, string) {
				c, err := net.Dial("tcp", plain.String())
				require.NoError(t, err)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
				fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, err)
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			resp, body := get("test.acme.com")
			if mode == "serve" {
				requireFault(t, resp, body, http.StatusNotFound, "host.unknown")
				resp, _ = get("uat.acme.com")
				assert.Equal(t, http.StatusOK, resp.StatusCode, "a group without client certificates is served")
				assert.Equal(t, 1, open.count())
			} else {
				// The redirect leads to the TLS listener, which asks for the certificate.
				assert.Equal(t, http.StatusPermanentRedirect, resp.StatusCode)
			}
			assert.Zero(t, mtls.count(), "nothing reached the client-certificate group's backend")
			// A Host that only ends like a served one is refused, never
			// redirected or routed.
			resp, _ = get("evil.com:x.uat.acme.com:80")
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Empty(t, resp.Header.Get("Location"))
			assert.Zero(t, open.count()-map[string]int{"serve": 1, "redirect": 0}[mode])
		})
	}
}

func TestClientBodyErrorsAreTheClients(t *testing.T) {
	rec := recordingBackend(t)
	te, logs := oneEnv(t, rec, "", "\n[upstream.health.passive]\nfailures = 1\neject = \"30s\"\n")
	node := te.srv.Snapshot().Env("test").upstreams["p-up"].Nodes()[0]
	check := func(t *testing.T, name string, status int, fault string, r *http.Response, body string) {
		t.Helper()
		if r != nil {
			assert.Equal(t, status, r.StatusCode, "%s: %s", name, body)
			if fault != "" {
				assert.Contains(t, body, fault, name)
			}
		}
		st := node.Stats()
		assert.Zero(t, st.Failures, "%s: no passive failure counted", name)
		assert.True(t, node.Healthy(), name)
		assert.Zero(t, st.Idle, "%s: the half-written connection is not pooled", name)
		assert.NotContains(t, logs.String(), "upstream failed", name)
	}
	t.Run("bad chunk", func(t *testing.T) {
		r, body := rawH1(t, te.addr, "test.acme.com", "POST /x HTTP/1.1\r\nHost: test.acme.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n", false)
		require.NotNil(t, r)
		check(t, "bad chunk", http.StatusBadRequest, "", r, body)
	})
	t.Run("short body", func(t *testing.T) {
		// A client that half-closes after too few bytes went away: no
		// answer, or at least never one that looks like success.
		r, body := rawH1(t, te.addr, "test.acme.com", "POST /x HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 100\r\n\r\n0123456789", true)
		if r != nil {
			assert.GreaterOrEqual(t, r.StatusCode, 400, "half-closed short body: %s", body)
			assert.NotEqual(t, http.StatusBadGateway, r.StatusCode)
		}
		check(t, "short body, half-closed", 0, "", nil, "")
		// One that stays but sends no more is cut by read_timeout: 400.
		rec2 := recordingBackend(t)
		te2, logs2 := oneEnv(t, rec2, `read_timeout = "1s"`, "")
		r, body = rawH1(t, te2.addr, "test.acme.com", "POST /x HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 100\r\n\r\n0123456789", false)
		require.NotNil(t, r)
		assert.Equal(t, http.StatusBadRequest, r.StatusCode, body)
		assert.NotContains(t, logs2.String(), "upstream failed")
	})
	t.Run("http2 short body", func(t *testing.T) {
		h := dialH2(t, te.addr, "test.acme.com")
		h.headers(1, false, h2get("POST", "test.acme.com", "/x", "content-length", "100")...)
		require.NoError(t, h.fr.WriteData(1, false, []byte("0123456789")))
		// Let the request reach the backend with its first bytes.
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, h.fr.WriteData(1, true, nil))
		r := h.result(1)
		if !r.rst {
			assert.Equal(t, http.StatusBadRequest, r.status, "%+v", r)
			assert.Contains(t, r.body, "request.invalid")
		}
		check(t, "http2 short body", 0, "", nil, "")
	})
	t.Run("http2 reset mid-body", func(t *testing.T) {
		h := dialH2(t, te.addr, "test.acme.com")
		h.headers(1, false, h2get("POST", "test.acme.com", "/x", "content-length", "100")...)
		require.NoError(t, h.fr.WriteData(1, false, []byte("0123456789")))
		time.Sleep(100 * time.Millisecond)
		require.NoError(t, h.fr.WriteRSTStream(1, http2.ErrCodeCancel))
		env := te.srv.Snapshot().Env("test")
		require.Eventually(t, func() bool { return env.inflight.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
		check(t, "http2 reset mid-body", 0, "", nil, "")
	})
	t.Run("over the limit", func(t *testing.T) {
		big := strings.Repeat("x", 4096)
		var raw strings.Builder
		raw.WriteString("POST /x HTTP/1.1\r\nHost: test.acme.com\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < 3000; i++ { // 12 MiB > the 10 MiB default
			raw.WriteString("1000\r\n" + big + "\r\n")
		}
		raw.WriteString("0\r\n\r\n")
		r, body := rawH1(t, te.addr, "test.acme.com", raw.String(), false)
		require.NotNil(t, r)
		check(t, "over the limit", http.StatusRequestEntityTooLarge, "request.too_large", r, body)
	})
	// The node serves on: a good request still gets through.
	r, _ := rawH1(t, te.addr, "test.acme.com", "POST /x HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: 2\r\n\r\nok", false)
	require.NotNil(t, r)
	assert.Equal(t, http.StatusOK, r.StatusCode)
}

func TestHTTP2MalformedRequestsAreRefused(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "", "")
	base := func(extra ...string) []string { return h2get("GET", "test.acme.com", "/x", extra...) }
	cases := []struct {
		name   string
		fields []string
	}{
		{"connection", base("connection", "keep-alive")},
		{"keep-alive", base("keep-alive", "timeout=5")},
		{"proxy-connection", base("proxy-connection", "keep-alive")},
		{"transfer-encoding", base("transfer-encoding", "chunked")},
		{"upgrade", base("upgrade", "h2c")},
		{"te other than trailers", base("te", "gzip")},
		{"missing :path", []string{":method", "GET", ":scheme", "https", ":authority", "test.acme.com"}},
		{"empty :path", h2get("GET", "test.acme.com", "")},
		{":path without /", h2get("GET", "test.acme.com", "x")},
		// What HTTP/1.1's parser refuses in a target: '#' went to the node
		// raw in the query ("GET /x?a#b"), a non-ASCII byte too.
		{":path with a fragment", h2get("GET", "test.acme.com", "/x?a#b")},
		{":path with '#' in the path", h2get("GET", "test.acme.com", "/x#b")},
		{":path with a non-ASCII byte", h2get("GET", "test.acme.com", "/x?q=\xff")},
		{":path with a UTF-8 letter", h2get("GET", "test.acme.com", "/b\u00fccher")},
		{"absolute :path with a fragment", h2get("GET", "test.acme.com", "https://test.acme.com/x#b")},
		// RFC 9113 8.3.1: :path is the path and query only. An absolute
		// one was routed by :authority, its host ignored, where HTTP/1.1
		// routes the same target by its host.
		{"absolute :path", h2get("GET", "test.acme.com", "https://test.acme.com/x")},
		{"absolute :path naming another host", h2get("GET", "test.acme.com", "https://other.example/x")},
		// RFC 9113 8.3.1: a Host naming another entity than :authority.
		{"host other than :authority", base("host", "other.test.acme.com")},
		{"host with another port", base("host", "test.acme.com:8443")},
		{"a second host, other", base("host", "test.acme.com", "host", "evil.example")},
		{"no :authority, two hosts", []string{":method", "GET", ":scheme", "https", ":path", "/x", "host", "test.acme.com", "host", "other.test.acme.com"}},
		{":method with a space", h2get("GET X", "test.acme.com", "/x")},
		{"unknown pseudo-header", base(":foo", "bar")},
		{"pseudo-header after a regular one", []string{":method", "GET", ":scheme", "https", "x-a", "1", ":authority", "test.acme.com", ":path", "/x"}},
		{"upper-case name", base("X-Upper", "1")},
		{"content-length not digits", base("content-length", "abc")},
		{"content-length signed", base("content-length", "+0")},
		{"content-length twice", base("content-length", "0", "content-length", "0")},
		{"content-length on a request ended by its headers", base("content-length", "5")},
	}
	h := dialH2(t, te.addr, "test.acme.com")
	id := uint32(1)
	for _, tc := range cases {
		h.headers(id, true, tc.fields...)
		r := h.result(id)
		t.Logf("%s: %+v", tc.name, r)
		if r.goaway {
			// A connection error is allowed too; go on on a fresh one.
			assert.Equal(t, http2.ErrCodeProtocol, r.code, tc.name)
			h, id = dialH2(t, te.addr, "test.acme.com"), 1
			continue
		}
		if r.rst {
			assert.Equal(t, http2.ErrCodeProtocol, r.code, tc.name)
		} else {
			assert.Equal(t, http.StatusBadRequest, r.status, "%s: %+v", tc.name, r)
		}
		id += 2
	}
	assert.Zero(t, rec.count(), "no malformed request was forwarded")
	h.headers(id, true, base("te", "trailers")...)
	assert.Equal(t, http.StatusOK, h.result(id).status, "te: trailers is allowed")
	// The same entity written another way is not a mismatch (RFC 3986
	// 6.2.3: case, the scheme's default port).
	for _, host := range []string{"test.acme.com", "TEST.Acme.com", "test.acme.com:443"} {
		id += 2
		h.headers(id, true, base("host", host)...)
		assert.Equal(t, http.StatusOK, h.result(id).status, "host %q beside :authority test.acme.com", host)
	}
}

// TestHTTP2MalformedContentLengthWithABody: x/net makes an unparseable
// Content-Length 0 and leaves the body open; edged must not forward such a
// request as bodiless (its body unread, beyond read_timeout's reach).
func TestHTTP2MalformedContentLengthWithABody(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, `read_timeout = "1s"`, "")
	h := dialH2(t, te.addr, "test.acme.com")
	// No DATA yet: x/net has nothing to reset the stream for, and the
	// request must not go out as a bodiless one meanwhile.
	h.headers(1, false, h2get("POST", "test.acme.com", "/x", "content-length", "1x")...)
	r := h.result(1)
	assert.Equal(t, http.StatusBadRequest, r.status, "%+v", r)
	assert.Contains(t, r.body, "malformed Content-Length")
	h.headers(3, false, h2get("POST", "test.acme.com", "/x", "content-length", "1")...)
	require.NoError(t, h.fr.WriteData(3, true, []byte("a")))
	assert.Equal(t, http.StatusOK, h.result(3).status, "a well-formed length is forwarded")
	assert.Equal(t, 1, rec.count(), "only the well-formed request reached the backend")
}

// countLines counts the lines of a file that contain s.
func countLines(t *testing.T, path, s string) int {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.Count(string(b), s)
}

func TestHTTP2ResetFloodIsCheap(t *testing.T) {
	testCertDir(t)
	// A slow backend: any request that reaches it is still in flight
	// when its reset arrives.
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(200 * time.Millisecond):
		}
		fmt.Fprint(w, "slow")
	}))
	logDir := t.TempDir()
	accessPath := filepath.Join(logDir, "access.log")
	te, _ := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "h2_max_concurrent_streams = 1000"),
		"env.toml": fmt.Sprintf(`
[[environment]]
name = "test"
workers = 1000
queue = 1000
[environment.rules.access_log]
path = %q
[environment.rules.audit_log]
`, filepath.ToSlash(accessPath)) + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", slow.addr),
	})
	env := te.srv.Snapshot().Env("test")
	const streams = 500
	h := dialH2(t, te.addr, "test.acme.com")
	start := time.Now()
	for i := 0; i < streams; i++ {
		id := uint32(2*i + 1)
		h.headers(id, true, h2get("GET", "test.acme.com", "/x")...)
		require.NoError(t, h.fr.WriteRSTStream(id, http2.ErrCodeCancel))
	}
	// Every stream is finished once the environment has none in flight
	// and the 499s are all counted.
	require.Eventually(t, func() bool {
		return env.inflight.Load() == 0 && env.metrics.byClass[4].Load() >= streams
	}, 10*time.Second, 10*time.Millisecond, "all %d streams recorded as 499 (got %d)", streams, env.metrics.byClass[4].Load())
	elapsed := time.Since(start)
	env.Close() // flushes the logs
	// Before: about half of them (200-300) dialed a connection the reset
	// then cut. The bound leaves room for a loaded machine's scheduling.
	assert.LessOrEqual(t, slow.conns.load(), int64(streams/5), "reset streams open (almost) no backend connection")

	budget := goneLinesBurst + int(elapsed.Seconds()*goneLinesPerSec) + 5
	gone := int(env.metrics.byClass[4].Load())
	written := countLines(t, accessPath, `"status":499`)
	assert.LessOrEqual(t, written, budget, "access lines of reset streams are budgeted")
	// Every line not written is counted (a straggler recorded after gone
	// was read may add one more).
	assert.LessOrEqual(t, uint64(gone-written), env.access.gone.suppressed.Get(), "every suppressed line is counted")
	auditWritten := countLines(t, env.plan.AuditPath, `"status":499`)
	assert.LessOrEqual(t, auditWritten, budget)
	assert.LessOrEqual(t, uint64(gone-auditWritten), env.audit.gone.suppressed.Get())
	assert.Less(t, written, gone, "the budget was used")
	// /metrics shows the counter. A straggler's line may still be counted
	// after the checks above, so the scrape is compared with the counter
	// read on both sides of it, until they agree. (Series of environments
	// of earlier tests in this process may share the name: any line of
	// the scrape may be this one.)
	const series = `edged_log_lines_suppressed_total{env="test",log="access"}`
	agreed := false
	var metricsText string
	for try := 0; try < 50 && !agreed; try++ {
		before := env.access.gone.suppressed.Get()
		_, metricsText = adminGet(t, te, "/metrics")
		agreed = before == env.access.gone.suppressed.Get() && strings.Contains(metricsText, fmt.Sprintf("%s %d\n", series, before))
		if !agreed {
			time.Sleep(20 * time.Millisecond)
		}
	}
	assert.True(t, agreed, "/metrics shows the suppressed count %d as %s", env.access.gone.suppressed.Get(), series)
	t.Logf("%d streams reset at once in %s: %d backend connections, %d requests recorded as 499, %d access lines written, %v suppressed",
		streams, elapsed, slow.conns.load(), gone, written, env.access.gone.suppressed.Get())
}

// BenchmarkRequestChecks is what the handler's hostile-input checks add to
// every request: method, target, Host and the underscore scan of a
// browser-sized header.
func BenchmarkRequestChecks(b *testing.B) {
	h := http.Header{
		"User-Agent": {"Mozilla/5.0"}, "Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Accept-Language": {"en"},
		"Cookie": {"a=b"}, "Referer": {"https://test.acme.com/"}, "Authorization": {"Bearer x"}, "X-Request-Id": {"abc"},
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !validMethod("GET") || !validTarget("GET", "/users/42?x=1&y=2", false) || !validHost("api.test.acme.com:443") {
			b.Fatal("refused")
		}
		dropUnderscoreHeaders(h)
	}
}
