package edge

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dashboardFile is the Grafana dashboard shipped beside the systemd unit.
const dashboardFile = "../systemd/edged-grafana.json"

// promqlWords are the PromQL functions, aggregations and keywords the
// dashboard may use; any other identifier outside braces, brackets,
// strings and grouping clauses is a metric name.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "rate": true, "irate": true,
	"increase": true, "histogram_quantile": true, "time": true, "by": true, "without": true,
	"label_values": true, "on": true, "ignoring": true, "and": true, "or": true, "unless": true,
	"offset": true, "clamp_min": true, "topk": true,
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlBraces   = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`\$?[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// promqlMetrics returns the metric names expr selects.
func promqlMetrics(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlBraces.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, id := range promqlIdent.FindAllString(s, -1) {
		if strings.HasPrefix(id, "$") || promqlWords[id] {
			continue
		}
		out = append(out, id)
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	assert.Equal(t, []string{"edged_request_duration_seconds_bucket"},
		promqlMetrics(`histogram_quantile(0.99, sum by (le) (rate(edged_request_duration_seconds_bucket{env="$env",proxy=""}[$__rate_interval])))`))
	assert.Equal(t, []string{"edged_certificate_not_after_seconds"},
		promqlMetrics(`min by (virtual_host) ((edged_certificate_not_after_seconds{instance=~"$instance"} - time()) / 86400)`))
	assert.Equal(t, []string{"edged_pool_workers"}, promqlMetrics(`label_values(edged_pool_workers{instance=~"$instance"}, env)`)[:1])
	assert.Equal(t, []string{"a", "b"}, promqlMetrics(`sum(rate(a{x="sum(b)"}[5m])) / sum(b)`))
}

// dashboardExprs collects every PromQL expression of the dashboard: the
// panels' targets and the template variables' queries.
func dashboardExprs(t *testing.T, d map[string]any) []string {
	t.Helper()
	var exprs []string
	panels, _ := d["panels"].([]any)
	for _, p := range panels {
		pm := p.(map[string]any)
		targets, _ := pm["targets"].([]any)
		for _, tg := range targets {
			e, _ := tg.(map[string]any)["expr"].(string)
			require.NotEmpty(t, e, "panel %q has a target without expr", pm["title"])
			exprs = append(exprs, e)
		}
	}
	templating := d["templating"].(map[string]any)["list"].([]any)
	for _, v := range templating {
		vm := v.(map[string]any)
		if vm["type"] != "query" {
			continue
		}
		q := vm["query"].(map[string]any)["query"].(string)
		// label_values(selector, label): the label is not a metric.
		q = regexp.MustCompile(`,\s*[a-zA-Z_]+\)\s*$`).ReplaceAllString(q, ")")
		exprs = append(exprs, q)
	}
	return exprs
}

// TestGrafanaDashboardQueriesExistingMetrics reads the dashboard shipped
// with the unit, checks its shape (a row repeated per environment from
// the env variable), and finds every metric its queries name on the
// /metrics of a real edged that served a request.
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal(raw, &d))

	var env map[string]any
	for _, v := range d["templating"].(map[string]any)["list"].([]any) {
		if vm := v.(map[string]any); vm["name"] == "env" {
			env = vm
		}
	}
	require.NotNil(t, env, "an env template variable")
	assert.Contains(t, env["definition"], "label_values(")
	repeated := 0
	for _, p := range d["panels"].([]any) {
		if pm := p.(map[string]any); pm["type"] == "row" && pm["repeat"] == "env" {
			repeated++
		}
	}
	assert.Equal(t, 1, repeated, "one row, repeated per environment")

	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("dash", "[environment.rules.prometheus]\n") +
			groupTOML("dash", "dash", "test.acme.com", "test.acme.com") + proxyTOML("dash", "api", "/api", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)
	ex := scrape(t, te)
	names := map[string]bool{}
	for series := range ex.samples {
		names[series[:strings.IndexByte(series, '{')]] = true
	}

	used := map[string]bool{}
	for _, e := range dashboardExprs(t, d) {
		ms := promqlMetrics(e)
		require.NotEmpty(t, ms, "%s names a metric", e)
		for _, m := range ms {
			used[m] = true
		}
	}
	var missing []string
	for m := range used {
		if !names[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "metrics the dashboard queries that /metrics does not have")
	for _, m := range []string{"edged_requests_total", "edged_request_duration_seconds_bucket", "edged_pool_in_flight",
		"edged_upstream_node_healthy", "edged_certificate_not_after_seconds", "edged_requests_refused_total", "edged_tls_handshakes_total"} {
		assert.True(t, used[m], "the dashboard shows %s", m)
	}
}

// TestGrafanaDashboardMatchesMultiValueVariablesByRegex: Grafana writes
// the value of a variable that is multi-value or has "All" as a regex,
// each value regex-escaped, even in a row repeated for one value: an
// environment named api.v2 becomes env="api\\.v2", which an equality
// matcher never matches (its panels say "No data"). Such a variable
// must be matched with =~ (or !~).
func TestGrafanaDashboardMatchesMultiValueVariablesByRegex(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal(raw, &d))
	var multi []string
	for _, v := range d["templating"].(map[string]any)["list"].([]any) {
		vm := v.(map[string]any)
		if vm["multi"] == true || vm["includeAll"] == true {
			multi = append(multi, vm["name"].(string))
		}
	}
	require.Contains(t, multi, "env")
	for _, e := range dashboardExprs(t, d) {
		for _, name := range multi {
			equal := regexp.MustCompile(`[^=!~]!?=\s*"\$\{?` + name + `\b`)
			assert.NotRegexp(t, equal, e, "$%s is a regex: match it with =~", name)
		}
	}
}
