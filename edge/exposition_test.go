package edge

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exposition is a /metrics page parsed by parseExposition.
type exposition struct {
	types   map[string]string  // family → TYPE
	help    map[string]string  // family → HELP text
	samples map[string]float64 // series (name and sorted labels) → value
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

var validTypes = map[string]bool{"counter": true, "gauge": true, "histogram": true, "summary": true, "untyped": true}

// parseExposition parses text by Prometheus' text format rules, strictly:
// every sample's family has a HELP and then a TYPE line before its first
// sample, each once; a family's samples are contiguous; names and label
// names are valid (blanks may separate the tokens); label values are quoted with only \\, \" and \n
// escapes; no series appears twice; counters end in _total and gauges do
// not; a histogram's buckets are cumulative, end in +Inf and agree with
// its _count (edged's own). Any violation fails t.
func parseExposition(t *testing.T, text string) exposition {
	t.Helper()
	ex := exposition{types: map[string]string{}, help: map[string]string{}, samples: map[string]float64{}}
	done := map[string]bool{} // families whose samples are over
	current := ""
	type bucket struct {
		le float64
		n  float64
	}
	buckets := map[string][]bucket{} // histogram series without le → its buckets
	require.True(t, strings.HasSuffix(text, "\n"), "the page ends with a newline")
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		at := fmt.Sprintf("line %d %q", i+1, line)
		require.NotEmpty(t, line, at)
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			require.GreaterOrEqual(t, len(f), 3, at)
			require.Equal(t, "#", f[0], at)
			fam := f[2]
			require.Regexp(t, metricNameRE, fam, at)
			require.False(t, done[fam], "%s: metadata after the family's samples ended", at)
			switch f[1] {
			case "HELP":
				_, dup := ex.help[fam]
				require.False(t, dup, "%s: second HELP", at)
				require.Len(t, f, 4, "%s: HELP without text", at)
				ex.help[fam] = f[3]
			case "TYPE":
				_, dup := ex.types[fam]
				require.False(t, dup, "%s: second TYPE", at)
				require.Len(t, f, 4, at)
				require.True(t, validTypes[f[3]], "%s: unknown type", at)
				_, hasHelp := ex.help[fam]
				require.True(t, hasHelp, "%s: TYPE without a HELP before it", at)
				ex.types[fam] = f[3]
				switch f[3] {
				case "counter":
					require.True(t, strings.HasSuffix(fam, "_total"), "%s: a counter's name ends in _total", at)
				case "gauge":
					require.False(t, strings.HasSuffix(fam, "_total"), "%s: a gauge's name does not end in _total", at)
				}
			default:
				t.Fatalf("%s: a comment other than HELP or TYPE", at)
			}
			if current != "" && current != fam {
				done[current] = true
			}
			current = fam
			continue
		}
		name, labels, value := splitSample(t, line, at)
		fam := sampleFamily(name, ex.types)
		require.NotEmpty(t, fam, "%s: no TYPE line for this sample's family", at)
		require.Equal(t, current, fam, "%s: sample outside its family's block", at)
		typ := ex.types[fam]
		if typ == "histogram" {
			require.NotEqual(t, fam, name, "%s: a histogram has only _bucket, _sum and _count samples", at)
		}
		key := name + "{" + strings.Join(sortedLabels(labels), ",") + "}"
		_, dup := ex.samples[key]
		require.False(t, dup, "%s: duplicate series", at)
		ex.samples[key] = value
		if typ == "histogram" && strings.HasSuffix(name, "_bucket") {
			le, ok := labels["le"]
			require.True(t, ok, "%s: a bucket has an le label", at)
			bound, err := strconv.ParseFloat(le, 64)
			require.NoError(t, err, at)
			delete(labels, "le")
			series := fam + "{" + strings.Join(sortedLabels(labels), ",") + "}"
			bs := buckets[series]
			if len(bs) > 0 {
				require.Greater(t, bound, bs[len(bs)-1].le, "%s: buckets in increasing le", at)
				require.GreaterOrEqual(t, value, bs[len(bs)-1].n, "%s: buckets are cumulative", at)
			}
			buckets[series] = append(bs, bucket{bound, value})
		}
	}
	for series, bs := range buckets {
		last := bs[len(bs)-1]
		require.True(t, last.le > 1e308, "%s: the last bucket is +Inf", series)
		if !strings.HasPrefix(series, "edged_") {
			continue // the Go runtime's, from VictoriaMetrics, have no _count
		}
		count := strings.Replace(series, "{", "_count{", 1)
		n, ok := ex.samples[count]
		require.True(t, ok, "%s has a _count", series)
		assert.Equal(t, last.n, n, "%s: the +Inf bucket is the count", series)
	}
	return ex
}

// splitSample splits `name{a="b",...} value [timestamp]`.
func splitSample(t *testing.T, line, at string) (string, map[string]string, float64) {
	t.Helper()
	labels := map[string]string{}
	i := strings.IndexAny(line, "{ ")
	require.Positive(t, i, "%s: no name", at)
	name, rest := line[:i], line[i:]
	require.Regexp(t, metricNameRE, name, at)
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			// Blanks may separate the tokens inside the braces.
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			require.Positive(t, eq, "%s: label without '='", at)
			ln := rest[:eq]
			require.Regexp(t, labelNameRE, ln, at)
			require.False(t, strings.HasPrefix(ln, "__"), "%s: label names beginning with __ are reserved for Prometheus' internal use", at)
			_, dup := labels[ln]
			require.False(t, dup, "%s: label %s twice", at, ln)
			rest = rest[eq+1:]
			require.True(t, strings.HasPrefix(rest, `"`), "%s: unquoted label value", at)
			var v strings.Builder
			j := 1
			for ; j < len(rest) && rest[j] != '"'; j++ {
				c := rest[j]
				if c == '\\' {
					j++
					require.Less(t, j, len(rest), at)
					switch rest[j] {
					case '\\', '"':
						v.WriteByte(rest[j])
					case 'n':
						v.WriteByte('\n')
					default:
						t.Fatalf("%s: invalid escape \\%c", at, rest[j])
					}
					continue
				}
				require.NotEqual(t, byte('\n'), c, at)
				v.WriteByte(c)
			}
			require.Less(t, j, len(rest), "%s: unterminated label value", at)
			labels[ln] = v.String()
			rest = strings.TrimLeft(rest[j+1:], " \t")
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
				continue
			}
			require.True(t, strings.HasPrefix(rest, "}"), "%s: labels not closed", at)
		}
	}
	require.True(t, strings.HasPrefix(rest, " "), "%s: no space before the value", at)
	f := strings.Fields(rest)
	require.True(t, len(f) == 1 || len(f) == 2, "%s: value [timestamp]", at)
	v, err := strconv.ParseFloat(f[0], 64)
	require.NoError(t, err, "%s: value", at)
	if len(f) == 2 {
		_, err := strconv.ParseInt(f[1], 10, 64)
		require.NoError(t, err, "%s: timestamp", at)
	}
	return name, labels, v
}

// sampleFamily is the family a sample belongs to by the TYPE lines so
// far: its own name, or a histogram's or summary's for its suffixes.
func sampleFamily(name string, types map[string]string) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, sfx := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, sfx); ok {
			if t := types[base]; t == "histogram" || (t == "summary" && sfx != "_bucket") {
				return base
			}
		}
	}
	return ""
}

// canonical is series as parseExposition keys it: labels sorted.
func canonical(t *testing.T, series string) string {
	name, labels, _ := splitSample(t, series+" 0", series)
	return name + "{" + strings.Join(sortedLabels(labels), ",") + "}"
}

func sortedLabels(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+strconv.Quote(v))
	}
	sort.Strings(out)
	return out
}

// scrape reads and strictly parses the edge's /metrics.
func scrape(t *testing.T, te *testEdge) exposition {
	t.Helper()
	code, body := adminGet(t, te, "/metrics")
	require.Equal(t, 200, code)
	return parseExposition(t, body)
}

func refusedSeries(reason, vhost string) string {
	return `edged_requests_refused_total{reason="` + reason + `",virtual_host="` + vhost + `"}`
}

func handshakeSeries(outcome, vhost string) string {
	return `edged_tls_handshakes_total{outcome="` + outcome + `",virtual_host="` + vhost + `"}`
}

// rawTLS sends req on a new TLS connection for sni and returns the status
// line of the answer.
func rawTLS(t *testing.T, addr, sni, req string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line)
}

// TestMetricsExposition provokes every refusal before routing and every
// TLS handshake outcome against a real server, scrapes /metrics, parses
// it by the text format's rules and finds each counted under its reason
// or outcome and virtual host.
func TestMetricsExposition(t *testing.T) {
	dir := testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), "max_header_bytes = 1024"),
		"a.toml": envTOML("expo", "[environment.rules.prometheus]\n") + groupTOML("expo", "expo-a", "test.acme.com", "test.acme.com") +
			proxyTOML("expo", "api", "/api", b.addr),
		"m.toml": envTOML("expo-m", "") + groupTOML("expo-m", "expo-m", "uat.acme.com", "uat.acme.com") +
			`client_ca_file = "` + filepath.ToSlash(filepath.Join(dir, "ca.pem")) + `"` + "\n" +
			proxyTOML("expo-m", "api", "/api", b.addr),
	})
	before := scrape(t, te)

	// A request served: a handshake "ok" of expo-a.
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)
	// Refusals in the handler, on a connection for expo-a.
	c := te.client("test.acme.com", nil)
	for _, r := range []struct {
		method, host, path string
		status             int
	}{
		{"GET", "nope.acme.com", "/api", 404},
		{"GET", "uat.acme.com", "/api", 421},
		{"GET", "test.acme.com", "/nope", 404},
		{"TRACE", "test.acme.com", "/api", 405},
	} {
		req, err := http.NewRequest(r.method, "https://test.acme.com"+r.path, nil)
		require.NoError(t, err)
		req.Host = r.host
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, r.status, resp.StatusCode, "%s %s%s", r.method, r.host, r.path)
	}
	// Refusals of the HTTP/1.1 parser and of the handler's checks.
	assert.Contains(t, rawTLS(t, te.addr, "test.acme.com", "GET /../x HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"), " 400 ")
	assert.Contains(t, rawTLS(t, te.addr, "test.acme.com", "GET / HTTP/1.1\r\nHost: test.acme.com\r\nX: "+strings.Repeat("a", 8192)+"\r\n\r\n"), " 431 ")
	assert.Contains(t, rawTLS(t, te.addr, "test.acme.com", "GET / HTTP/1.2\r\nHost: test.acme.com\r\n\r\n"), " 505 ")
	// A HEADERS frame on an even stream: x/net/http2 ends the connection.
	h2 := dialH2(t, te.addr, "test.acme.com")
	h2.headers(2, true, h2get("GET", "test.acme.com", "/api")...)
	assert.True(t, h2.result(2).goaway, "a protocol error ends the HTTP/2 connection")
	// Handshakes that fail.
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "unknown.example", RootCAs: caPool(t)})
	require.Error(t, err, "unknown SNI, no default virtual host")
	_, err = handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	require.Error(t, err, "TLS 1.1")
	// TLS 1.2, so that the client sees the refusal in its handshake (in
	// TLS 1.3 the server checks the certificate after the client is done).
	_, err = handshake(t, te.addr, &tls.Config{ServerName: "uat.acme.com", RootCAs: caPool(t), MaxVersion: tls.VersionTLS12})
	require.Error(t, err, "no client certificate for expo-m")
	// A TCP connection closed without a ClientHello is no handshake.
	nc, err := net.Dial("tcp", te.addr)
	require.NoError(t, err)
	nc.Close()

	want := map[string]float64{
		handshakeSeries("protocol_version", "expo-a"):              1,
		handshakeSeries("bad_client_certificate", "expo-m"):        1,
		handshakeSeries("ok", "expo-m"):                            0,
		refusedSeries("host.unknown", "expo-a"):                    1,
		refusedSeries("host.misdirected", "expo-a"):                1,
		refusedSeries("proxy.not_found", "expo-a"):                 1,
		refusedSeries("method.not_allowed", "expo-a"):              1,
		refusedSeries("request.invalid", "expo-a"):                 1,
		refusedSeries("request.header_too_large", "expo-a"):        1,
		refusedSeries("request.version", "expo-a"):                 1,
		refusedSeries("h2.protocol", "expo-a"):                     0,
		`edged_requests_total{env="expo",class="2xx"}`:             1,
		`edged_requests_total{env="expo",proxy="api",class="2xx"}`: 1,
	}
	// Process-wide series other tests add to: counted by difference.
	wantMore := map[string]float64{
		handshakeSeries("unknown_sni", ""): 1,
		refusedSeries("h2.protocol", ""):   1,
	}
	var ex exposition
	// Handshake counts land when the server side is done, which may be
	// after the client's: scrape until they agree (bounded).
	for deadline := time.Now().Add(5 * time.Second); ; {
		ex = scrape(t, te)
		grew := func(series string) float64 { return ex.samples[series] - before.samples[series] }
		agree := grew(handshakeSeries("protocol_version", "expo-a")) == 1 &&
			grew(handshakeSeries("bad_client_certificate", "expo-m")) == 1
		if agree || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// te.get's connection, the raw requests', and the client's (one or
	// more: a fault may close its connection).
	okSeries := handshakeSeries("ok", "expo-a")
	assert.GreaterOrEqual(t, ex.samples[okSeries]-before.samples[okSeries], 1.0+3+1)
	// Counted by difference too, as the scrape before.
	for series, n := range want {
		series = canonical(t, series)
		v, ok := ex.samples[series]
		if assert.True(t, ok, "%s is on /metrics", series) {
			assert.Equal(t, n, v-before.samples[series], series)
		}
	}
	for series, n := range wantMore {
		series = canonical(t, series)
		assert.Equal(t, n, ex.samples[series]-before.samples[series], series)
	}
	other := canonical(t, handshakeSeries("other", ""))
	assert.Equal(t, before.samples[other], ex.samples[other],
		"a connection closed before its ClientHello is not a failed handshake")

	for fam, typ := range map[string]string{
		"edged_requests_total":                "counter",
		"edged_request_duration_seconds":      "histogram",
		"edged_requests_refused_total":        "counter",
		"edged_tls_handshakes_total":          "counter",
		"edged_pool_rejected_total":           "counter",
		"edged_pool_in_flight":                "gauge",
		"edged_upstream_node_healthy":         "gauge",
		"edged_certificate_not_after_seconds": "gauge",
		"edged_config_reloads_total":          "counter",
		"go_gc_duration_seconds":              "summary",
		"process_cpu_seconds_total":           "counter",
	} {
		assert.Equal(t, typ, ex.types[fam], fam)
	}
	for fam := range ex.types {
		if strings.HasPrefix(fam, "edged_") {
			_, described := families[fam]
			assert.True(t, described, "%s is described in families", fam)
			assert.NotEmpty(t, ex.help[fam], "%s has HELP text", fam)
		}
	}
}

// TestExpositionGroupsInterleavedFamilies: series of one family written
// by several sets (one per environment) come out in one block.
func TestExpositionGroupsInterleavedFamilies(t *testing.T) {
	raw := "# HELP edged_pool_queued\n# TYPE edged_pool_queued gauge\nedged_pool_queued{env=\"a\"} 1\n" +
		"edged_requests_total{env=\"a\",class=\"2xx\"} 3\n" +
		"edged_request_duration_seconds_bucket{env=\"a\",le=\"+Inf\"} 3\nedged_request_duration_seconds_sum{env=\"a\"} 0.1\nedged_request_duration_seconds_count{env=\"a\"} 3\n" +
		"# HELP edged_pool_queued\n# TYPE edged_pool_queued gauge\nedged_pool_queued{env=\"b\"} 2\n" +
		"edged_requests_total{env=\"b\",class=\"2xx\"} 4\n" +
		"# HELP go_cgo_calls_count\n# TYPE go_cgo_calls_count counter\ngo_cgo_calls_count 1\n" +
		"# HELP process_io_read_bytes_total\n# TYPE process_io_read_bytes_total gauge\nprocess_io_read_bytes_total 7\n" +
		"mystery 1\n"
	var out strings.Builder
	writeExposition(&out, []byte(raw))
	ex := parseExposition(t, out.String())
	assert.Equal(t, 2.0, ex.samples[canonical(t, `edged_pool_queued{env="b"}`)])
	assert.Equal(t, 4.0, ex.samples[canonical(t, `edged_requests_total{env="b",class="2xx"}`)])
	assert.Equal(t, "counter", ex.types["edged_requests_total"])
	assert.Equal(t, "histogram", ex.types["edged_request_duration_seconds"])
	assert.Equal(t, "untyped", ex.types["go_cgo_calls_count"], "a counter not named _total")
	assert.Equal(t, "counter", ex.types["process_io_read_bytes_total"], "a total is a counter")
	assert.Equal(t, "untyped", ex.types["mystery"])
}
