package edge

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeMetrics reads the series table of README's Metrics section: each
// family its first cell names, with its row.
func readmeMetrics(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n### Metrics\n")
	require.True(t, ok, "README has a Metrics section")
	section, _, _ = strings.Cut(section, "\n#")
	name := regexp.MustCompile("`(edged_[a-z_]+)`")
	rows := map[string]string{}
	for _, l := range strings.Split(section, "\n") {
		cells := strings.Split(l, "|") // "", series, labels (which may hold "|"), ""
		if !strings.HasPrefix(l, "| `edged_") || len(cells) < 4 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			rows[m[1]] = l
		}
	}
	return rows
}

// TestREADMEMetricsTableIsWhatMetricsExposes: the families README's
// Metrics table names are edged's families, and on the /metrics of a
// real edged that served and refused requests, every edged_ family is in
// the table and every label its series carry is named, in code, in its
// row.
func TestREADMEMetricsTableIsWhatMetricsExposes(t *testing.T) {
	rows := readmeMetrics(t)
	var readme, code []string
	for f := range rows {
		readme = append(readme, f)
	}
	for f := range families {
		code = append(code, f)
	}
	sort.Strings(readme)
	sort.Strings(code)
	assert.Equal(t, code, readme, "README's metric families and edged's")

	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("docs", "[environment.rules.prometheus]\n") +
			groupTOML("docs", "docs", "test.acme.com", "test.acme.com") +
			proxyTOML("docs", "api", "/api", b.addr) + proxyTOML("docs", "web", "/web", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/api/1")
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = te.get("test.acme.com", "/nope")
	require.Equal(t, 404, resp.StatusCode)
	ex := scrape(t, te)

	labels := map[string]map[string]bool{}
	for series := range ex.samples {
		name, rest, _ := strings.Cut(series, "{")
		if !strings.HasPrefix(name, "edged_") {
			continue
		}
		fam := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := strings.CutSuffix(name, suffix); ok && ex.types[f] == "histogram" {
				fam = f
			}
		}
		if labels[fam] == nil {
			labels[fam] = map[string]bool{}
		}
		for _, pair := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			if k, _, ok := strings.Cut(pair, "="); ok {
				labels[fam][k] = true
			}
		}
	}
	for _, f := range []string{"edged_requests_total", "edged_request_duration_seconds", "edged_pool_proxy_in_flight",
		"edged_upstream_node_healthy", "edged_requests_refused_total", "edged_tls_handshakes_total"} {
		require.Contains(t, labels, f, "the scrape has %s", f)
	}
	for fam, ls := range labels {
		row, ok := rows[fam]
		if !assert.True(t, ok, "%s is on /metrics, not in README's table", fam) {
			continue
		}
		for l := range ls {
			assert.Contains(t, row, "`"+l+"`", "%s has the label %s, README's row does not name it", fam, l)
		}
	}
}

// jsonKeys adds every key JSON may give a value of typ, at any depth:
// the json tag's name, else the field's.
func jsonKeys(typ reflect.Type, keys map[string]bool) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map || typ.Kind() == reflect.Array {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || keys[typ.PkgPath()+"."+typ.Name()] {
		return
	}
	keys[typ.PkgPath()+"."+typ.Name()] = true
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case f.Anonymous && name == "":
		case name == "":
			keys[f.Name] = true
		default:
			keys[name] = true
		}
		jsonKeys(f.Type, keys)
	}
}

// TestREADMEStatusFieldsAreWhatStatusAnswers: every field README's
// Operating it section names for /status (the admin listener's item, in
// code: `file_errors`, `Workers`, `out_since`) is a key /status's JSON
// has (some only in a state: a refused reload, a node down).
func TestREADMEStatusFieldsAreWhatStatusAnswers(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, item, ok := strings.Cut(string(raw), "\n- Admin listener (")
	require.True(t, ok, "README's admin listener item")
	item, _, _ = strings.Cut(item, "\n- ")
	_, item, ok = strings.Cut(item, "`/status` (")
	require.True(t, ok, "the item's /status fields")
	keys := map[string]bool{}
	jsonKeys(reflect.TypeFor[Status](), keys)

	field := regexp.MustCompile("^[a-zA-Z_]+$")
	named := 0
	for _, m := range regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(item, -1) {
		if !field.MatchString(m[1]) || m[1] == "promote" || m[1] == "rollback" { // commands the item names
			continue
		}
		named++
		assert.True(t, keys[m[1]], "README names %q among /status's fields; /status has no such key", m[1])
	}
	assert.Greater(t, named, 20, "fields README names")
}
