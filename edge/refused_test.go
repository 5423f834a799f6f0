package edge

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refusalLines are edged's "request refused" log lines of one reason.
func refusalLines(t *testing.T, logs *syncBuffer, reason string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, `"request refused"`) {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if m["reason"] == reason {
			out = append(out, m)
		}
	}
	return out
}

// A flood of refused requests is logged at info within the reason's
// budget; the first line after it says how many were left out, and
// every refusal is counted on /metrics all the same.
func TestRefusalLogIsBudgeted(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("budget", "") + groupTOML("budget", "budget-g", "test.acme.com", "test.acme.com") +
			proxyTOML("budget", "p", "/p", b.addr),
	})
	c := te.client("test.acme.com", nil)
	get := func() {
		req, err := http.NewRequest("GET", "https://test.acme.com/x", nil)
		require.NoError(t, err)
		req.Host = "nobody.acme.com"
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 404, resp.StatusCode)
	}
	// A virtual host's counters outlive the server (go test -count=2):
	// counted from here.
	_, text0 := adminGet(t, te, "/metrics")
	n0, _ := metricValue(text0, refusedSeries("host.unknown", "budget-g"))
	const flood = 300
	start := time.Now()
	for i := 0; i < flood; i++ {
		get()
	}
	elapsed := time.Since(start)
	lines := refusalLines(t, logs, "host.unknown")
	bound := refusedLinesBurst + int(elapsed.Seconds()*refusedLinesPerSec) + 1
	assert.LessOrEqual(t, len(lines), bound, "at most the burst and the rate over %v", elapsed)
	assert.GreaterOrEqual(t, len(lines), refusedLinesBurst, "the burst is logged")
	first := lines[0]
	assert.Equal(t, "INFO", first["level"])
	assert.Equal(t, "budget-g", first["virtual_host"])
	assert.Equal(t, "nobody.acme.com", first["host"])
	assert.EqualValues(t, 404, first["status"])
	assert.EqualValues(t, 0, first["suppressed"])

	// A token comes back after 1/rate: the next line is written, and
	// the lines with what each says was left out before it account for
	// every refusal.
	time.Sleep(time.Second/refusedLinesPerSec + 50*time.Millisecond)
	get()
	after := refusalLines(t, logs, "host.unknown")
	require.Len(t, after, len(lines)+1)
	total := 0
	for _, l := range after {
		total += 1 + int(l["suppressed"].(float64))
	}
	assert.Equal(t, flood+1, total, "lines written + lines they say were left out")
	if elapsed < time.Second/refusedLinesPerSec {
		assert.EqualValues(t, flood-len(lines), after[len(after)-1]["suppressed"])
	}

	_, text := adminGet(t, te, "/metrics")
	n, ok := metricValue(text, refusedSeries("host.unknown", "budget-g"))
	require.True(t, ok)
	assert.EqualValues(t, flood+1, n-n0, "every refusal is counted")
}

// A failed handshake is logged with its outcome and virtual host.
func TestFailedHandshakeIsLogged(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("hs", "") + groupTOML("hs", "hs-g", "test.acme.com", "test.acme.com") +
			proxyTOML("hs", "p", "/p", b.addr),
	})
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	require.Error(t, err)
	var line map[string]any
	for deadline := time.Now().Add(5 * time.Second); line == nil && time.Now().Before(deadline); {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"TLS handshake failed"`) {
				require.NoError(t, json.Unmarshal([]byte(l), &line))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NotNil(t, line, "the failed handshake is logged")
	assert.Equal(t, "INFO", line["level"])
	assert.Equal(t, "protocol_version", line["outcome"])
	assert.Equal(t, "hs-g", line["virtual_host"])
	assert.Equal(t, "test.acme.com", line["server_name"])
	assert.Contains(t, line["error"], "unsupported versions")
}

func TestClassifyHandshake(t *testing.T) {
	mtls := &helloConn{hello: true, vhost: &vhostCounters{name: "classify"}, clientCert: true}
	plain := &helloConn{hello: true, vhost: &vhostCounters{name: "classify"}}
	for _, c := range []struct {
		name string
		hc   *helloConn
		err  error
		want handshakeOutcome
	}{
		{"ok", plain, nil, handshakeOK},
		{"unknown sni", &helloConn{hello: true}, fmt.Errorf("%w %q", errUnknownSNI, "x"), handshakeUnknownSNI},
		{"no common version", &helloConn{hello: true, vhost: plain.vhost, noVersion: true}, errors.New("tls: client offered only unsupported versions: [302]"), handshakeProtocolVersion},
		{"no client certificate", mtls, errors.New("tls: client didn't provide a certificate"), handshakeBadClientCert},
		{"client certificate from another CA", plain, &tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, handshakeBadClientCert},
		{"the client refuses our certificate", mtls, &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, handshakeOther},
		{"certificate words without client_ca_file", plain, errors.New("tls: client didn't provide a certificate"), handshakeOther},
		{"garbage", plain, errors.New("tls: first record does not look like a TLS handshake"), handshakeOther},
		{"client stalled after its ClientHello", plain, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, handshakeTimeout},
		{"no handshake turn in time", plain, fmt.Errorf("no handshake turn: %w", os.ErrDeadlineExceeded), handshakeTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, handshakeNames[c.want], handshakeNames[classifyHandshake(c.hc, c.err)])
		})
	}
}

// BenchmarkRefusedRequest is a flood of requests for a host no group
// serves over one keep-alive TLS connection: what each refusal costs
// (counting, the log budget, the fault), nearly all of them past the
// log budget.
func BenchmarkRefusedRequest(b *testing.B) {
	testCertDir(b)
	back := nameBackend(b, "b")
	te := startEdge(b, map[string]string{
		"server.toml": serverTOML(b.TempDir(), ""),
		"env.toml": envTOML("test", "") +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", back.addr),
	})
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(b), NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /users/42 HTTP/1.1\r\nHost: nobody.acme.com\r\nUser-Agent: bench\r\n\r\n")
	br := bufio.NewReaderSize(c, 16<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			b.Fatal(resp.Status)
		}
	}
}

// The HTTP/2 server's refusals (a stream reset for a malformed request, a
// connection ended with GOAWAY: h2.protocol, h2.flood) are logged with
// the client's address, as the HTTP/1.1 parser's and the handler's are:
// a "request refused" line of a rapid-reset flood that does not say who
// sent it gives the operator nothing to block.
func TestHTTP2RefusalsAreLoggedWithTheClient(t *testing.T) {
	rec := recordingBackend(t)
	te, logs := oneEnv(t, rec, "", "")
	h := dialH2(t, te.addr, "test.acme.com")
	client := h.c.LocalAddr().String()

	// A stream error: a field name in upper case (RFC 9113 8.2.1).
	h.headers(1, true, h2get("GET", "test.acme.com", "/", "X-Upper", "1")...)
	require.True(t, h.result(1).rst, "the malformed stream is reset")
	// A connection error: a stream id of the server's (even) from the client.
	h.headers(2, true, h2get("GET", "test.acme.com", "/")...)
	require.True(t, h.result(2).goaway, "the connection ends with GOAWAY")

	var lines []map[string]any
	require.Eventually(t, func() bool {
		lines = refusalLines(t, logs, "h2.protocol")
		return len(lines) >= 2
	}, 5*time.Second, 10*time.Millisecond, "both refusals logged: %s", logs.String())
	for _, l := range lines {
		assert.Equal(t, client, l["remote"], "the client's address: %v", l)
	}
	assert.Equal(t, 0, rec.count(), "neither request reached the node")
}
