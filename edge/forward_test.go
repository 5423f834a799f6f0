package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/loopback"
)

// A 504 (the node did not answer within response_timeout) leaves the same
// trace in edged's log as a 502 (the node failed): a warning with the
// proxy, the node and the request id the client was given.
func TestUpstreamTimeoutIsLoggedLikeAFailure(t *testing.T) {
	testCertDir(t)
	hang := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	refused := loopback.Refused(t)
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hang"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "200ms"
[[proxy]]
name = "hang"
environment = "test"
base_path = "/hang"
upstream = "hang"
[[proxy]]
name = "refused"
environment = "test"
base_path = "/refused"
target = "http://%s"
`, hang.addr, refused),
	})
	for _, c := range []struct {
		path, msg, node string
		status          int
	}{
		{"/hang", "upstream timed out", hang.addr, 504},
		{"/refused", "upstream failed", refused, 502},
	} {
		resp, body := te.get("test.acme.com", c.path)
		require.Equal(t, c.status, resp.StatusCode, body)
		rid := resp.Header.Get("X-Request-Id")
		require.Len(t, rid, 32)
		var line map[string]any
		for l := range strings.Lines(logs.String()) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == rid {
				line = m
			}
		}
		if assert.NotNil(t, line, "%s: a log line with request_id %s:\n%s", c.path, rid, logs.String()) {
			assert.Equal(t, "WARN", line["level"], c.path)
			assert.Equal(t, c.msg, line["msg"], c.path)
			assert.Equal(t, strings.TrimPrefix(c.path, "/"), line["proxy"], c.path)
			assert.Equal(t, c.node, line["node"], c.path)
			assert.NotEmpty(t, line["error"], c.path)
		}
	}
}

// The client's own X-Forwarded-*, Forwarded and X-Request-Id never reach
// the node beside edged's (edged writes its values apart from the
// client's header, upstream.Request.Fields): each arrives once, over
// HTTP/1.1 and HTTP/2, with the client's X-Forwarded-For and Forwarded
// kept in front of edged's entries.
func TestForwardedFieldsReplaceTheClients(t *testing.T) {
	testCertDir(t)
	names := []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Request-Id"}
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range names {
			w.Header()["Seen-"+k] = []string{strings.Join(r.Header[k], "|")}
		}
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/p", back.addr),
	})
	for _, c := range []struct {
		proto  string
		major  int
		client *http.Client
	}{{"HTTP/1.1", 1, te.client("test.acme.com", nil)}, {"HTTP/2", 2, te.h2client(nil)}} {
		req := mustReq(t, "GET", "https://test.acme.com/p/x", nil)
		req.Header.Set("X-Forwarded-For", "10.9.8.7")
		req.Header.Set("X-Forwarded-Proto", "http")
		req.Header.Set("X-Forwarded-Host", "evil.example")
		req.Header.Set("Forwarded", "for=10.9.8.7")
		req.Header.Set("X-Request-Id", "not valid!")
		resp, body := do(t, c.client, req)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, c.major, resp.ProtoMajor, c.proto)
		assert.Equal(t, "10.9.8.7, 127.0.0.1", resp.Header.Get("Seen-X-Forwarded-For"), c.proto)
		assert.Equal(t, "https", resp.Header.Get("Seen-X-Forwarded-Proto"), c.proto)
		assert.Equal(t, "test.acme.com", resp.Header.Get("Seen-X-Forwarded-Host"), c.proto)
		assert.Equal(t, "for=10.9.8.7, for=127.0.0.1;host=test.acme.com;proto=https", resp.Header.Get("Seen-Forwarded"), c.proto)
		rid := resp.Header.Get("Seen-X-Request-Id")
		assert.Len(t, rid, 32, "%s: an invalid id is replaced, not sent beside edged's", c.proto)
		assert.Equal(t, resp.Header.Get("X-Request-Id"), rid, c.proto)
	}
}

// An upstream that hashes on one of the fields edged sets (hash_on =
// "header:X-Forwarded-For") hashes on edged's value: the requests of one
// client address all go to one node, none by the round robin of requests
// without a key.
func TestHashOnAForwardedField(t *testing.T) {
	requireOneNode(t, "header:X-Forwarded-For", func(resp *http.Response) {
		assert.Equal(t, "127.0.0.1", resp.Header.Get("X-Seen-Xff"), "sent once, edged's value")
	})
}

// hash_on = "header:Host" hashes on the request's Host (nginx's hash
// $host), which neither HTTP/1.1 nor HTTP/2 requests carry in their
// header map: the requests of one Host all go to one node.
func TestHashOnHost(t *testing.T) {
	requireOneNode(t, "header:host", nil)
}

// requireOneNode sends six requests of one client and one Host over each
// protocol to an upstream of two nodes hashing on hashOn, checks each
// answer with check (when not nil), and requires that they all went to
// one node.
func requireOneNode(t *testing.T, hashOn string, check func(*http.Response)) {
	te := startHashEdge(t, hashOn)
	for _, c := range []*http.Client{te.client("test.acme.com", nil), te.h2client(nil)} {
		seen := map[string]int{}
		for range 6 {
			resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/h/x", nil))
			require.Equal(t, 200, resp.StatusCode, body)
			seen[resp.Header.Get("X-Backend")]++
			if check != nil {
				check(resp)
			}
		}
		assert.Len(t, seen, 1, "%s: one key, one node: %v", hashOn, seen)
	}
}

// startHashEdge serves /h on test.acme.com from two named backends,
// balanced by hash_on.
func startHashEdge(t *testing.T, hashOn string) *testEdge {
	testCertDir(t)
	b1, b2 := nameBackend(t, "b1"), nameBackend(t, "b2")
	return startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "h"
environment = "test"
nodes = [{ url = "http://%s" }, { url = "http://%s" }]
balance = "hash"
hash_on = %q
[[proxy]]
name = "h"
environment = "test"
base_path = "/h"
upstream = "h"
`, b1.addr, b2.addr, hashOn),
	})
}

// connectionTokenKey names the field http.CanonicalHeaderKey names, for
// the spellings it makes up front and for any other token.
func TestConnectionTokenKey(t *testing.T) {
	for _, tok := range []string{"keep-alive", "Keep-Alive", "KEEP-ALIVE", "close", "Close", "cLoSe", "upgrade", "Upgrade", "x-hop", "X-Hop", "te", "bad token", "\u212aeep-alive"} {
		assert.Equal(t, http.CanonicalHeaderKey(tok), connectionTokenKey(tok), tok)
	}
	h := http.Header{"Connection": {" keep-alive ,X-Hop,, close"}, "Keep-Alive": {"timeout=5"}, "X-Hop": {"1"}, "X-Kept": {"1"}}
	removeConnectionTokens(h)
	assert.Equal(t, http.Header{"Connection": {" keep-alive ,X-Hop,, close"}, "X-Kept": {"1"}}, h)
}

// max_idle_per_node = 0 keeps no idle connection: every request opens its
// own to the node (the upstream package's 0 would mean its default, 256).
// Left out, the key keeps them, and sequential requests share one.
func TestMaxIdlePerNodeZeroKeepsNone(t *testing.T) {
	testCertDir(t)
	none := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	kept := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			strings.Replace(proxyTOML("test", "none", "/none", none.addr), "\n[[proxy]]", "max_idle_per_node = 0\n\n[[proxy]]", 1) +
			proxyTOML("test", "kept", "/kept", kept.addr),
	})
	for i := 0; i < 3; i++ {
		for _, path := range []string{"/none/x", "/kept/x"} {
			resp, body := te.get("test.acme.com", path)
			require.Equal(t, http.StatusOK, resp.StatusCode, path)
			require.Equal(t, "ok", body)
		}
	}
	assert.Equal(t, int64(3), none.conns.load(), "max_idle_per_node = 0: a connection per request")
	assert.Equal(t, int64(1), kept.conns.load(), "the default keeps the connection for the next request")
}

// A backend that refuses an upload before reading it (413 and close) has
// its answer passed on: the client gets the 413, not a 502 of edged's, and
// the node is not ejected for the client's oversized body.
func TestEarlyAnswerToAnUploadIsPassedOn(t *testing.T) {
	testCertDir(t)
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "backend: too large")
	}))
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "max_body_bytes = 134217728") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "up"
environment = "test"
nodes = [{ url = "http://%s" }]
[upstream.health.passive]
failures = 1
eject = "1m"
[[proxy]]
name = "up"
environment = "test"
base_path = "/up"
upstream = "up"
`, be.addr),
	})
	// Larger than the socket buffers between edged and the backend, so
	// that edged is still writing it when the backend closes. rawH1 reads
	// the answer while it writes: edged closes the client's connection,
	// its body unread, once answered.
	const size = 64 << 20
	resp, body := rawH1(t, te.addr, "test.acme.com", fmt.Sprintf("POST /up HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: %d\r\n\r\n", size)+strings.Repeat("x", size), false)
	require.NotNil(t, resp, "an answer")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, body)
	assert.Equal(t, "backend: too large", body)
	node := te.srv.Snapshot().Env("test").upstreams["up"].Nodes()[0]
	assert.Zero(t, node.Stats().Failures)
	assert.True(t, node.Healthy(), "not ejected")
	assert.NotContains(t, logs.String(), "upstream failed")
}

// A node that answers an upload early with a body of unknown length (a
// 401, chunked, then a close that resets the rest of the upload) has its
// answer streamed to the client. What the client still owes of its body
// (at most 256 KiB) is then read and dropped within the request's
// read_timeout, as any body a handler left unread is: a stream gives the
// server's read deadline up while it lasts, and a client that stops
// sending once answered must not hold its connection with no bound.
func TestBodyLeftAfterAStreamedEarlyAnswerKeepsReadTimeout(t *testing.T) {
	testCertDir(t)
	const readTimeout = time.Second
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndenied\r\n0\r\n\r\n")
		// Returning closes the connection with the upload unread: a reset.
	})
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), fmt.Sprintf("read_timeout = %q\nidle_timeout = %q", readTimeout, readTimeout)),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", addr),
	})
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	// 64 KiB and a little at once (what edged reads before the request
	// takes its worker), then 1 KiB every 10 ms until answered: the
	// writes to the node go on until the node's reset fails one.
	const size = 64<<10 + 200<<10
	chunk := strings.Repeat("x", 1<<10)
	_, err = io.WriteString(c, fmt.Sprintf("POST /up HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: %d\r\n\r\n", size)+strings.Repeat("x", 64<<10)+chunk)
	require.NoError(t, err)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for sent := 65 << 10; sent+len(chunk) < size; sent += len(chunk) {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	close(stop)
	<-stopped
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, "denied", string(body))

	// The client sends no more of its body. Within read_timeout of the
	// request's start (and a lingering close's moment) edged gives up on
	// it and closes; 5 s is five times that.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*readTimeout)))
	_, err = br.ReadByte()
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection is still open 5 s after its answer, waiting for the rest of a body read_timeout (%s) should have ended: %v", readTimeout, err)
}

// When the passive check has ejected every node of an upstream, edged
// balances over all of them again (Envoy's panic threshold, nginx's reset
// of max_fails) instead of answering 503 to every request until an
// ejection ends: the backends may well be back, and only a request can
// tell.
func TestEveryNodeEjectedIsBalancedOverAll(t *testing.T) {
	testCertDir(t)
	var failing atomic.Bool
	failing.Store(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	})
	a, b := startBackend(t, h), startBackend(t, h)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "p", "/", a.addr, b.addr) +
			"\n[upstream.health.passive]\nfailures = 1\neject = \"1m\"\n",
	})
	nodes := te.srv.Snapshot().Env("test").upstreams["p-up"].Nodes()
	// A GET goes to one node, then (retries = 1) the other: both answer
	// 502 and are ejected for a minute.
	resp, _ := te.get("test.acme.com", "/x")
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	for _, n := range nodes {
		require.False(t, n.Healthy(), "%s ejected", n)
	}

	failing.Store(false)
	for range 6 {
		resp, body := te.get("test.acme.com", "/x")
		assert.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, "ok", body)
	}
	for _, n := range nodes {
		assert.GreaterOrEqual(t, n.Stats().Requests, uint64(3), "%s: round robin over both ejected nodes", n)
		assert.True(t, n.Stats().Ejected, "%s: its ejection runs its course", n)
	}
}

// A client on IPv6 is bracketed and quoted in Forwarded (RFC 7239 6:
// for="[::1]"), bare in X-Forwarded-For, over HTTP/1.1 (twice: the
// connection's forwardedCache answers the second) and HTTP/2.
func TestForwardedForAnIPv6Client(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": strings.Replace(serverTOML(t.TempDir(), ""), `"127.0.0.1:0"`, `"[::1]:0"`, 1),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", b.addr),
	})
	require.True(t, strings.HasPrefix(te.addr, "[::1]:"), te.addr)
	for _, c := range []*http.Client{te.client("test.acme.com", nil), te.h2client(nil)} {
		for range 2 {
			resp, body := do(t, c, mustReq(t, "GET", "https://test.acme.com/x", nil))
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, "::1", resp.Header.Get("X-Seen-Xff"), resp.Proto)
			assert.Equal(t, `for="[::1]";host=test.acme.com;proto=https`, resp.Header.Get("X-Seen-Forwarded"), resp.Proto)
		}
	}
}

// A client's Forwarded is kept in front of edged's element only when it
// parses as RFC 7239's syntax. One that does not would take edged's
// element into it as the backend reads the field: behind
// `for=6.6.6.6;x="` (a quoted string never closed) the element edged
// appends is part of that string, and the last (only) element names
// for=6.6.6.6, the client's choice, where README promises edged's
// address. Such a value is replaced by edged's element, as nginx's
// documented $proxy_add_forwarded does; a valid one is kept.
func TestForwardedThatDoesNotParseIsReplaced(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", b.addr),
	})
	const own = "for=127.0.0.1;host=test.acme.com;proto=https"
	cases := []struct{ sent, want string }{
		{`for=6.6.6.6;x="`, own},
		{`for="6.6.6.6\`, own},
		{`for="6.6.6.6\"`, own},
		{`for=6.6.6.6 ;by=x`, own},
		{`for=6.6.6.6, "x"`, own},
		{`for=6.6.6.6;=x`, own},
		{`for=`, own},
		{`for=6.6.6.6;x="a, b`, own},
		{`for="[2001:db8::1]:4711";proto=http, for=192.0.2.1`, `for="[2001:db8::1]:4711";proto=http, for=192.0.2.1, ` + own},
		{`for="a\"b, c";by=x;;, ,for=_hidden`, `for="a\"b, c";by=x;;, ,for=_hidden, ` + own},
	}
	for _, c := range []*http.Client{te.client("test.acme.com", nil), te.h2client(nil)} {
		for _, tc := range cases {
			req := mustReq(t, "GET", "https://test.acme.com/x", nil)
			req.Header.Set("Forwarded", tc.sent)
			resp, body := do(t, c, req)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, tc.want, resp.Header.Get("X-Seen-Forwarded"), "%s: Forwarded: %s", resp.Proto, tc.sent)
		}
	}
}

// validForwardedLine agrees with the regular expression nginx documents
// for $proxy_add_forwarded (append to a client's Forwarded only when it
// matches) on every string of a small alphabet up to 6 bytes (5 under
// the race detector, which slows the walk tenfold), spaces at either end
// left out (field values arrive trimmed) and ASCII only (Go's regexp
// reads runes, nginx's bytes).
func TestValidForwardedIsNginxsSyntax(t *testing.T) {
	const tok = "[!#$%&'*+.^_`|~0-9A-Za-z-]"
	const quoted = `"([\t \x21\x23-\x5B\x5D-\x7E]|\\[\t \x21-\x7E])*"`
	const pair = tok + "+=(" + tok + "+|" + quoted + ")"
	const elem = "(" + pair + ")?(;(" + pair + ")?)*"
	nginx := regexp.MustCompile("^(,[ \t]*)*" + elem + "([ \t]*,([ \t]*" + elem + ")?)*$")
	alphabet := []byte{'f', '1', '=', ';', ',', '"', '\\', ' ', '\t', '[', ':', '\x7f'}
	depth, want := 6, 1000000
	if raceEnabled {
		depth, want = 5, 100000
	}
	n := 0
	var walk func(b []byte)
	walk = func(b []byte) {
		v := string(b)
		if v == strings.Trim(v, " \t") {
			n++
			if got, want := validForwardedLine(v), nginx.MatchString(v); got != want {
				t.Errorf("%q: validForwardedLine %v, nginx %v", v, got, want)
			}
		}
		if len(b) == depth || t.Failed() {
			return
		}
		for _, c := range alphabet {
			walk(append(b, c))
		}
	}
	walk(nil)
	assert.Greater(t, n, want, "strings checked")
}

// The rest of the X-Forwarded-* family and X-Real-Ip are not edged's to
// set, and a client's are forged as far as a backend can tell: Spring's
// X-Forwarded-Prefix and X-Forwarded-Port build its redirects, a backend
// behind nginx takes X-Real-Ip for the client. So a client's never reach
// the backend, over either protocol (Traefik's default for untrusted
// clients); X-Forwarded-For keeps leading edged's entry. Nor does Proxy
// (httpoxy, CVE-2016-5385): a backend that maps fields to CGI variables
// (PHP-FPM behind its nginx, CGI) reads it as HTTP_PROXY, the outbound
// proxy of its own HTTP clients; no standard defines the field.
func TestClientsForwardingFieldsAreNotPassedOn(t *testing.T) {
	testCertDir(t)
	seen := make(chan http.Header, 4)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", b.addr),
	})
	forged := map[string]string{
		"X-Real-Ip":          "10.9.9.9",
		"X-Forwarded-Port":   "8443",
		"X-Forwarded-Prefix": "//evil.example",
		"X-Forwarded-Ssl":    "on",
		"X-Forwarded-Server": "evil",
		"x-forwarded-scheme": "https",
		"Proxy":              "http://evil.example:8080",
	}
	for _, c := range []*http.Client{te.client("test.acme.com", nil), te.h2client(nil)} {
		req := mustReq(t, "GET", "https://test.acme.com/x", nil)
		for k, v := range forged {
			req.Header.Set(k, v)
		}
		req.Header.Set("X-Forwarded-For", "192.0.2.1")
		req.Header.Set("X-Custom", "kept")
		resp, body := do(t, c, req)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		h := <-seen
		for k := range forged {
			assert.Empty(t, h.Values(k), "%s: the client's %s reached the backend", resp.Proto, k)
		}
		assert.Equal(t, "192.0.2.1, 127.0.0.1", h.Get("X-Forwarded-For"), resp.Proto)
		assert.Equal(t, "https", h.Get("X-Forwarded-Proto"), resp.Proto)
		assert.Equal(t, "kept", h.Get("X-Custom"), resp.Proto)
	}
}

// config refuses hash_on = "header:NAME" for the fields prepareHeader
// takes away before the balancer reads the request
// (config.HashHeaderReachesNode): the two must agree, or a hash would
// silently go round robin, or a good name be refused.
func TestHashHeaderReachesNodeIsPrepareHeaders(t *testing.T) {
	for _, name := range []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
		"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Request-Id",
		"X-User", "Cookie", "Authorization", "User-Agent", "X-Forwardedfor", "Proxy", "Proxy-Id",
		"Client-Cert", "Client-Cert-Chain", "Client-Certs",
	} {
		r := &http.Request{Method: "GET", RequestURI: "/", Host: "a.example", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{name: {"v"}}}
		var v forwardedValues
		prepareHeader(r, "127.0.0.1", nil, "rid", &v, []byte("/"))
		reaches := len(r.Header[name]) > 0
		for _, f := range v.fields {
			reaches = reaches || f.Name == name && f.Value != ""
		}
		assert.Equal(t, reaches, config.HashHeaderReachesNode(name), "%s reaches the balancer: %v", name, reaches)
	}
}

// config.UnderscoreAlias, which dropUnderscoreAliases and hash_on follow,
// names with '_' for '-' exactly the fields prepareHeader removes or sets
// itself, and Content-Length, which the upstream client writes.
func TestUnderscoreAliasIsPrepareHeaders(t *testing.T) {
	for _, name := range []string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect", "Content-Length",
		"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl",
		"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Request-Id",
		"X-User", "Cookie", "Authorization", "User-Agent", "X-Forwardedfor", "Proxy-Id",
		"Client-Cert", "Client-Cert-Chain", "Client-Certs", "Content-Type", "Host-Name",
	} {
		r := &http.Request{Method: "GET", RequestURI: "/", Host: "a.example", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{name: {"v"}}}
		var v forwardedValues
		prepareHeader(r, "127.0.0.1", nil, "rid", &v, []byte("/"))
		guarded := len(r.Header[name]) == 0 || name == "Content-Length"
		for _, f := range v.fields {
			guarded = guarded || f.Name == name
		}
		alias := strings.ReplaceAll(name, "-", "_")
		if !strings.Contains(alias, "_") {
			alias += "_"
			guarded = false // "Te_" reads as "Te-", no field edged knows
		}
		assert.Equal(t, guarded, config.UnderscoreAlias(alias), "%s: removed or set by edged: %v", alias, guarded)
	}
}

// An answer of known length whose node sends its head and the body's
// first bytes, then stalls (a slow dependency mid-body), reaches the
// client as far as it came at once, on both protocols, and is cut once
// response_timeout passes (HTTP/1.1: the connection closed; HTTP/2: the
// stream reset), logged with the status the client got and the node's
// timeout. Over HTTP/1.1 the head and the ten bytes used to wait in the
// connection's 4 KiB write buffer until response_timeout, and left with
// the cut: time to first byte was the node's whole timeout, where an
// HTTP/2 client had them at once.
func TestAnswerSoFarLeavesWhileTheNodeStalls(t *testing.T) {
	testCertDir(t)
	const timeout = 5 * time.Second
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := readRequestHead(c); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Node: yes\r\n\r\n0123456789")
			_, _ = io.Copy(io.Discard, c) // until edged gives up and closes
		}
	})
	access := filepath.Join(t.TempDir(), "access.log")
	files := cutNodeFiles(t, addr, access)
	files["env.toml"] = strings.Replace(files["env.toml"], `response_timeout = "300ms"`, fmt.Sprintf("response_timeout = %q", timeout), 1)
	te := startEdge(t, files)

	t.Run("HTTP/1.1", func(t *testing.T) {
		t.Parallel()
		c, br := dialH1(t, te)
		require.NoError(t, c.SetDeadline(time.Now().Add(3*timeout)))
		start := time.Now()
		_, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		head := time.Since(start)
		assert.Less(t, head, time.Second, "the head waited in edged while the node stalled (response_timeout %s)", timeout)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "yes", resp.Header.Get("X-Node"))
		got := make([]byte, 10)
		_, err = io.ReadFull(resp.Body, got)
		require.NoError(t, err)
		assert.Less(t, time.Since(start), time.Second, "the body's first bytes waited in edged while the node stalled")
		assert.Equal(t, "0123456789", string(got))
		rest, err := io.ReadAll(resp.Body)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the cut body ends cut, not whole")
		assert.Empty(t, rest)
		assert.Greater(t, time.Since(start), timeout/2, "cut by response_timeout, not before")
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "the connection is closed after the cut")
	})
	t.Run("HTTP/2", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		resp, err := te.h2client(nil).Get("https://test.acme.com/x")
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Less(t, time.Since(start), time.Second, "the head waited in edged while the node stalled")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		got := make([]byte, 10)
		_, err = io.ReadFull(resp.Body, got)
		require.NoError(t, err)
		assert.Equal(t, "0123456789", string(got))
		rest, err := io.ReadAll(resp.Body)
		assert.Error(t, err, "the cut body ends cut (the stream reset), not whole")
		assert.Empty(t, rest)
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, te.srv.Shutdown(ctx)) // flushes the log
		lines := readJSONLines(t, access)
		require.Len(t, lines, 2)
		for _, l := range lines {
			assert.EqualValues(t, 200, l["status"], "logged with the status the client got")
			assert.Equal(t, "upstream.timeout", l["fault"])
		}
	})
}

// A node that breaks its body before edged sent the answer's head to the
// client (a chunked body cut before its first chunk, a chunk size that is
// no number, a body of known length cut before its first byte, whose head
// leaves with it) has given no answer the client could use: the client
// gets 502 upstream.failed (504 upstream.timeout for a body that never
// began), and the access log says so, not an empty reply or a head and
// nothing (HTTP/1.1: the connection closed; HTTP/2: the stream reset)
// logged 200. Over HTTP/1.1 a head of known length used to be kept in
// the connection's write buffer beyond recall: it reached the client with
// the cut, 200 and a body cut short, where HTTP/2 answered 502 or 504.
func TestBodyCutBeforeTheHeadLeftIs502(t *testing.T) {
	testCertDir(t)
	const chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Node: yes\r\n\r\n"
	for _, tc := range []struct {
		name, answer string
		h2, stall    bool
		status       int
		fault        string
	}{
		{"chunked, closed", chunked, false, false, 502, "upstream.failed"},
		{"chunked, closed, HTTP/2", chunked, true, false, 502, "upstream.failed"},
		{"chunk size not hex", chunked + "zz\r\nhello\r\n0\r\n\r\n", false, false, 502, "upstream.failed"},
		{"chunk size not hex, HTTP/2", chunked + "zz\r\nhello\r\n0\r\n\r\n", true, false, 502, "upstream.failed"},
		{"content-length, closed", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Node: yes\r\n\r\n", false, false, 502, "upstream.failed"},
		{"content-length, closed, HTTP/2", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Node: yes\r\n\r\n", true, false, 502, "upstream.failed"},
		{"chunked, stalled", chunked, false, true, 504, "upstream.timeout"},
		{"content-length, stalled", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Node: yes\r\n\r\n", false, true, 504, "upstream.timeout"},
		{"content-length, stalled, HTTP/2", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Node: yes\r\n\r\n", true, true, 504, "upstream.timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				if _, err := readRequestHead(c); err == nil {
					io.WriteString(c, tc.answer)
					if tc.stall {
						_, _ = io.Copy(io.Discard, c) // until edged gives up and closes
					}
				}
			})
			access := filepath.Join(t.TempDir(), "access.log")
			te := startEdge(t, cutNodeFiles(t, addr, access))
			c := te.client("test.acme.com", nil)
			if tc.h2 {
				c = te.h2client(nil)
			}
			a := <-getAsync(c, "https://test.acme.com/x")
			require.NoError(t, a.err, "an answer, not an empty reply")
			assert.Equal(t, tc.status, a.status)
			assert.Contains(t, a.body, `"code":"`+tc.fault+`"`)

			lines := accessLinesAtShutdown(t, te, access, 1)
			assert.EqualValues(t, tc.status, lines[0]["status"])
			assert.Equal(t, tc.fault, lines[0]["fault"])
		})
	}
}

// A head of known length larger than the HTTP/1.1 connection's 4 KiB
// write buffer has left in part when its body stalls before its first
// byte: it is not taken back for a 504, which would follow the part that
// left and make the answer garbage. The client gets the head whole and a
// cut body; the access log says 200 and the node's timeout.
func TestLargeHeadThatLeftInPartIsNotTakenBack(t *testing.T) {
	testCertDir(t)
	big := strings.Repeat("b", 6<<10)
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		if _, err := readRequestHead(c); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Big: "+big+"\r\n\r\n")
			_, _ = io.Copy(io.Discard, c) // until edged gives up and closes
		}
	})
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, cutNodeFiles(t, addr, access))
	c, br := dialH1(t, te)
	_, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err, "a head whole, not a part of one and another")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, big, resp.Header.Get("X-Big"))
	_, err = io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the cut body ends cut")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes the log
	lines := readJSONLines(t, access)
	require.Len(t, lines, 1)
	assert.EqualValues(t, 200, lines[0]["status"])
	assert.Equal(t, "upstream.timeout", lines[0]["fault"])
}

// A node's informational answers (1xx) before its final one are
// bounded in count, bytes and time: a sixth one, heads past 1 MiB
// together, or a final answer not in by response_timeout however many
// 1xx came meanwhile (they do not move the head's deadline), make the
// exchange the node's failure (502 upstream.failed, 504
// upstream.timeout), never a wait without end or a head without bound.
// Over both protocols, logged with the status the client got.
func TestInformationalAnswersAreBounded(t *testing.T) {
	testCertDir(t)
	early := "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	big := "HTTP/1.1 103 Early Hints\r\nLink: " + strings.Repeat("a", 250<<10) + "\r\n\r\n"
	final := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	for _, tc := range []struct {
		name    string
		answer  string
		trickle bool // four 1xx answers 100 ms apart, then nothing
		status  int
		fault   string
	}{
		{"five, then the answer", strings.Repeat(early, 5) + final, false, 200, ""},
		{"six", strings.Repeat(early, 6) + final, false, 502, "upstream.failed"},
		{"past 1 MiB together", strings.Repeat(big, 5) + final, false, 502, "upstream.failed"},
		{"1xx past response_timeout", "", true, 504, "upstream.timeout"},
	} {
		for _, h2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, h2=%v", tc.name, h2), func(t *testing.T) {
				addr, _ := loopback.Backend(t, func(c net.Conn) {
					if _, err := readRequestHead(c); err != nil {
						return
					}
					if !tc.trickle {
						io.WriteString(c, tc.answer)
						io.Copy(io.Discard, c)
						return
					}
					for range 4 {
						if _, err := io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
					io.Copy(io.Discard, c) // until edged gives up and closes
				})
				access := filepath.Join(t.TempDir(), "access.log")
				te := startEdge(t, cutNodeFiles(t, addr, access)) // response_timeout 300ms
				c := te.client("test.acme.com", nil)
				if h2 {
					c = te.h2client(nil)
				}
				a := <-getAsync(c, "https://test.acme.com/x") // the client gives up after 10 s
				require.NoError(t, a.err)
				assert.Equal(t, tc.status, a.status, a.body)
				if tc.fault != "" {
					assert.Contains(t, a.body, `"code":"`+tc.fault+`"`)
				} else {
					assert.Equal(t, "ok", a.body)
				}

				lines := accessLinesAtShutdown(t, te, access, 1)
				assert.EqualValues(t, tc.status, lines[0]["status"])
				if tc.fault != "" {
					assert.Equal(t, tc.fault, lines[0]["fault"])
				}
			})
		}
	}
}

// cutNodeFiles are the files of an edge whose test.acme.com sends every
// path to the node at addr (response_timeout 300ms), its access log at
// access.
func cutNodeFiles(t *testing.T, addr, access string) map[string]string {
	return map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(access)+"\"\n") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "cut"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "300ms"
[[proxy]]
name = "cut"
environment = "test"
base_path = "/"
upstream = "cut"
`, addr),
	}
}

// A panic in edged's work on a request after its answer's head has left
// (here from the log handler, as the node's cut body is logged) aborts the
// answer, as net/http does: the HTTP/1.1 connection is cut, the HTTP/2
// stream reset. It used to end the answer cleanly (HTTP/1.1's last chunk,
// HTTP/2's END_STREAM), so that the client took the body cut short for a
// whole one. The access log says 200 (what the client got) with
// internal.error.
func TestPanicAfterTheHeadLeftAbortsTheAnswer(t *testing.T) {
	testCertDir(t)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			addr, _ := loopback.Backend(t, func(c net.Conn) {
				if _, err := readRequestHead(c); err == nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
				}
			})
			access := filepath.Join(t.TempDir(), "access.log")
			logs := &syncBuffer{}
			te := startEdgeOn(t, cutNodeFiles(t, addr, access),
				panicOnLine{slog.NewJSONHandler(logs, nil), "upstream response body cut; client response aborted"})
			c := te.client("test.acme.com", nil)
			if h2 {
				c = te.h2client(nil)
			}
			a := <-getAsync(c, "https://test.acme.com/x")
			assert.Equal(t, http.StatusOK, a.status, "the head left before the panic")
			assert.Equal(t, "hello", a.body, "what left before the panic")
			require.Error(t, a.err, "the body ends in an error, not as a whole one")
			assert.Contains(t, logs.String(), `"msg":"panic while serving"`)

			lines := accessLinesAtShutdown(t, te, access, 1)
			assert.EqualValues(t, 200, lines[0]["status"])
			assert.Equal(t, "internal.error", lines[0]["fault"])
		})
	}
}

// readRequestHead reads one request head (no body) from c, a byte at a
// time: nothing after it is taken from the connection.
func readRequestHead(c net.Conn) (string, error) {
	var head []byte
	var b [1]byte
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := c.Read(b[:]); err != nil {
			return "", err
		}
		head = append(head, b[0])
	}
	return string(head), nil
}

// Round robin goes on across reloads that rebuild the environment: an
// environment rebuilt between requests (a deploy tool rewriting its
// files) still spreads them over every node, rather than sending each
// rebuild's first request to the first node.
func TestRoundRobinGoesOnAcrossRebuilds(t *testing.T) {
	testCertDir(t)
	names := []string{"a", "b", "c"}
	var addrs []string
	for _, n := range names {
		addrs = append(addrs, nameBackend(t, n).addr)
	}
	files := func(i int) map[string]string {
		// max_body_bytes alternates: every reload rebuilds the environment.
		return map[string]string{
			"env.toml": envTOML("test", fmt.Sprintf("max_body_bytes = %d", 1000+i%2)) +
				groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "p", "/", addrs...),
		}
	}
	first := files(0)
	first["server.toml"] = serverTOML(t.TempDir(), "")
	te := startEdge(t, first)
	got := map[string]int{}
	const requests = 30
	for i := range requests {
		if i > 0 {
			prev := te.srv.Snapshot().Env("test").upstreams["p-up"]
			writeFiles(t, te.dir, files(i))
			te.reload()
			require.NotSame(t, prev, te.srv.Snapshot().Env("test").upstreams["p-up"], "request %d: the environment was rebuilt", i)
		}
		resp, body := te.get("test.acme.com", "/x")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		got[resp.Header.Get("X-Backend")]++
	}
	assert.Equal(t, map[string]int{"a": requests / 3, "b": requests / 3, "c": requests / 3}, got,
		"one request per rebuild, round robin over three nodes of weight 1")
}

// A reload that shortens eject shortens the ejections running: a node
// the passive check ejected under eject = "1h" is back once the new
// eject has passed since the reload, not an hour later (edged keeps no
// other way to bring an ejected node back short of a restart).
func TestShorterEjectEndsTheEjectionsRunning(t *testing.T) {
	testCertDir(t)
	var failing atomic.Bool
	failing.Store(true)
	var hitsA atomic.Int64
	a := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hitsA.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, "a")
	}))
	b := nameBackend(t, "b")
	files := func(eject string) map[string]string {
		return map[string]string{
			"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
				proxyTOML("test", "p", "/", a.addr, b.addr) +
				"\n[upstream.health.passive]\nfailures = 1\neject = \"" + eject + "\"\n",
		}
	}
	first := files("1h")
	first["server.toml"] = serverTOML(t.TempDir(), "")
	te := startEdge(t, first)
	// Round robin: the first GET goes to a, which fails it (ejected for
	// an hour), and is retried on b.
	resp, body := te.get("test.acme.com", "/x")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	na := te.srv.Snapshot().Env("test").upstreams["p-up"].Nodes()[0]
	require.True(t, na.Stats().Ejected, "a ejected")
	failing.Store(false)

	writeFiles(t, te.dir, files("100ms"))
	te.reload()
	na = te.srv.Snapshot().Env("test").upstreams["p-up"].Nodes()[0]
	require.Equal(t, a.addr, na.Addr())
	assert.Eventually(t, na.Healthy, 3*time.Second, 20*time.Millisecond, "a back within the new eject of the reload")
	before := hitsA.Load()
	for range 10 {
		resp, body := te.get("test.acme.com", "/x")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	assert.Equal(t, int64(5), hitsA.Load()-before, "a takes its share again")
}

// A node that sends its head and then breaks the body (here: closes
// before its Content-Length) fails the request, as one that answers 502
// does: such failures in a row eject it, and the requests go to the
// nodes that answer whole. A client that reads slowly (longer than
// response_timeout between reads), or leaves mid-body, breaks no body
// of the node's.
func TestNodeBreakingBodiesIsEjectedButNotForSlowClients(t *testing.T) {
	testCertDir(t)
	cutter, cuts := loopback.Backend(t, func(nc net.Conn) {
		buf := make([]byte, 4096)
		nc.Read(buf)
		io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
	})
	good := nameBackend(t, "good")
	big := strings.Repeat("x", 4<<20)
	large := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big/chunked" {
			w.(http.Flusher).Flush() // no Content-Length
		}
		io.WriteString(w, big)
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "cut"
environment = "test"
nodes = [{ url = "http://%s" }, { url = "http://%s" }]
[upstream.health.passive]
failures = 2
eject = "1h"
[[upstream]]
name = "big"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "200ms"
[upstream.health.passive]
failures = 1
eject = "1h"
[[proxy]]
name = "cut"
environment = "test"
base_path = "/cut"
upstream = "cut"
[[proxy]]
name = "big"
environment = "test"
base_path = "/big"
upstream = "big"
`, cutter, good.addr, large.addr),
	})
	c := te.client("test.acme.com", nil)
	whole := 0
	for range 10 {
		resp, err := c.Get("https://test.acme.com/cut/x")
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && string(b) == "good /x" {
			whole++
		}
	}
	assert.EqualValues(t, 2, cuts.Load(), "the node breaking its bodies had 2 requests, then was ejected")
	assert.Equal(t, 8, whole)
	cut := te.srv.Snapshot().Env("test").upstreams["cut"].Nodes()[0]
	assert.False(t, cut.Healthy())
	assert.EqualValues(t, 2, cut.Stats().Failures)

	n := te.srv.Snapshot().Env("test").upstreams["big"].Nodes()[0]
	for _, cl := range []*http.Client{c, te.h2client(nil)} {
		for _, path := range []string{"/big/length", "/big/chunked"} {
			// Slow: nothing read for longer than response_timeout.
			resp, err := cl.Get("https://test.acme.com" + path)
			require.NoError(t, err)
			_, err = io.ReadFull(resp.Body, make([]byte, 1000))
			require.NoError(t, err)
			time.Sleep(500 * time.Millisecond)
			k, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.NoError(t, err, path)
			assert.EqualValues(t, len(big)-1000, k, path)
			// Gone mid-body.
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", "https://test.acme.com"+path, nil)
			resp, err = cl.Do(req)
			require.NoError(t, err)
			_, err = io.ReadFull(resp.Body, make([]byte, 1000))
			require.NoError(t, err)
			cancel()
			resp.Body.Close()
		}
	}
	assert.Eventually(t, func() bool { return n.InFlight() == 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, n.Stats().Failures, "a slow client or one that left is no failure of the node")
	assert.True(t, n.Healthy())
}

// A download over HTTP/1.1 that keeps going is never cut by
// write_timeout, whatever its framing: each write of a proxied body
// gets write_timeout afresh, as nginx's send_timeout bounds each write
// and as HTTP/2 and streams already had it. A body of known length used
// to be bound by write_timeout as a whole, from the request's head: a
// node sending 300 KiB with its Content-Length over 2 s, a client
// reading all of it as it came, and write_timeout 1 s cut the answer at
// 1 s (the client read half of it, then a broken TLS record), while the
// same body sent chunked, or to an HTTP/2 client, went through whole. A
// client that stops reading is still cut once a write has waited
// write_timeout.
func TestLongDownloadIsNotCutByWriteTimeout(t *testing.T) {
	testCertDir(t)
	const pieces = 10
	piece := strings.Repeat("d", 30<<10)
	const stuck = 64 << 20 // more than any socket buffers hold
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		head, err := readRequestHead(c)
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(head, "GET /stuck "):
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", stuck)
			block := strings.Repeat("s", 1<<20)
			for i := 0; i < stuck>>20; i++ {
				if _, err := io.WriteString(c, block); err != nil {
					return // edged cut the client, then this connection
				}
			}
			return
		case strings.HasPrefix(head, "GET /length "):
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", pieces*len(piece))
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		}
		for range pieces {
			time.Sleep(200 * time.Millisecond)
			if strings.HasPrefix(head, "GET /length ") {
				io.WriteString(c, piece)
			} else {
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(piece), piece)
			}
		}
		io.WriteString(c, "0\r\n\r\n") // the chunked body's end; after the other, never read
	})
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `write_timeout = "1s"`),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "all", "/", addr),
	})
	answers := map[string]<-chan answer{}
	for _, path := range []string{"/length", "/chunked"} {
		for proto, c := range map[string]*http.Client{"HTTP/1.1": te.client("test.acme.com", nil), "HTTP/2": te.h2client(nil)} {
			answers[path+" over "+proto] = getAsync(c, "https://test.acme.com"+path)
		}
	}
	for what, ch := range answers {
		a := <-ch
		assert.NoError(t, a.err, "%s: the download was cut after %d of %d bytes", what, len(a.body), pieces*len(piece))
		assert.Equal(t, http.StatusOK, a.status, what)
		assert.Equal(t, pieces*len(piece), len(a.body), what)
	}

	// A client that reads nothing of a long answer is cut: the write
	// waiting for it fails after write_timeout and the connection closes.
	c, br := dialH1(t, te)
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err := io.WriteString(c, "GET /stuck HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	env := te.srv.Snapshot().Env("test")
	require.Eventually(t, func() bool { return env.inflight.Load() == 0 }, 15*time.Second, 10*time.Millisecond,
		"a client that reads nothing holds its request")
	n, err := io.Copy(io.Discard, resp.Body)
	assert.Error(t, err, "the answer to a client that stopped reading ends cut, not whole")
	assert.Less(t, n, int64(stuck))
}

// The time a node takes to answer is edged's wait, not the client's, as
// its wait for a worker is: an HTTP/1.1 answer gets write_timeout afresh
// when the node's head comes, or its failure. Counted from the request's
// head, a node answering within its response_timeout but after
// write_timeout (an upstream given response_timeout = "120s" for its
// slow reports, under the default write_timeout of 60 s) had its
// answer's writes fail at once: the client got a broken TLS record and
// no answer at all, while the access log said 200 with its bytes, and an
// HTTP/2 client got the answer. So did the 504 of a node that did not
// answer within its response_timeout.
func TestSlowNodeAnswerIsNotCutByWriteTimeout(t *testing.T) {
	testCertDir(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			time.Sleep(4 * time.Second)
		}
		time.Sleep(1500 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `write_timeout = "1s"`),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "slow"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "2500ms"
[[proxy]]
name = "slow"
environment = "test"
base_path = "/"
upstream = "slow"
`, b.addr),
	})
	answers := map[string]<-chan answer{}
	for proto, c := range map[string]*http.Client{"HTTP/1.1": te.client("test.acme.com", nil), "HTTP/2": te.h2client(nil)} {
		answers["/report over "+proto] = getAsync(c, "https://test.acme.com/report")
		answers["/hang over "+proto] = getAsync(c, "https://test.acme.com/hang")
	}
	for what, ch := range answers {
		a := <-ch
		if !assert.NoError(t, a.err, "%s: the answer, after write_timeout, never reached the client", what) {
			continue
		}
		if strings.HasPrefix(what, "/hang") {
			assert.Equal(t, http.StatusGatewayTimeout, a.status, what)
			assert.Contains(t, a.body, `"code":"upstream.timeout"`, what)
		} else {
			assert.Equal(t, http.StatusOK, a.status, what)
			assert.Equal(t, "ok", a.body, what)
		}
	}
}

// A client may shut its sending side once its request is out (HTTP/1.0
// style clients, nc -N) and go on reading: edged's watch sees the end of
// its input and cancels the request's context, which stops the node's
// body. The answer the client is still reading must then be cut (no last
// chunk), as for any body the node did not finish: ended cleanly, a
// truncated body looked complete, and the access log said 499 for an
// answer the client took for a whole 200.
func TestHalfClosedClientNeverGetsACutBodyEndedCleanly(t *testing.T) {
	testCertDir(t)
	release := make(chan struct{})
	defer close(release)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush() // chunked: no length
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "second")
	}))
	logPath := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("half", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(logPath)+"\"\n") +
			groupTOML("half", "half", "test.acme.com", "test.acme.com") + proxyTOML("half", "p", "/p", b.addr),
	})

	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "GET /p/s HTTP/1.1\r\nHost: test.acme.com\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	first := make([]byte, len("first"))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	require.Equal(t, "first", string(first))

	require.NoError(t, c.CloseWrite()) // still reading
	rest, err := io.ReadAll(resp.Body)
	assert.Error(t, err, "the body the node did not finish ends cut, not with a last chunk (read %q after it)", rest)

	lines := accessLinesAtShutdown(t, te, logPath, 1)
	assert.EqualValues(t, 499, lines[0]["status"], "recorded as the client's leaving, as its context says")
	assert.EqualValues(t, len("first"), lines[0]["bytes_out"])
}
