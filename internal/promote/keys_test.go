package promote

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/devcert"
)

// everyKey sets every key a [[proxy]] and an [[upstream]] take, each to
// something other than its default. TestEveryKeyIsInTheFixture keeps it
// complete when a key is added.
const everyKey = `
[[upstream]]
name = "full"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9101", weight = 3 }]
balance = "hash"
hash_on = "header:X-User"
pass_host = "rewrite"
upstream_host = "users.internal:8080"
connect_timeout = "1500ms"
response_timeout = "45s"
retries = 3
max_idle_per_node = 17
idle_timeout = "20s"
tls_ca_file = "ca.pem"
tls_server_name = "users.internal"
tls_cert_file = "edge-client.pem"
tls_key_file = "edge-client.key"
[upstream.health.active]
path = "/healthz"
interval = "7s"
timeout = "1500ms"
healthy = 4
unhealthy = 5
[upstream.health.passive]
failures = 9
eject = "45s"

[[proxy]]
name = "full"
environment = "test"
base_path = "/full"
upstream = "full"
target_path = "/v2"
max_in_flight = 7

[[proxy]]
name = "full-fixed"
environment = "test"
base_path = "/full-fixed"
target = "http://127.0.0.1:9101/v3"
max_in_flight = 5
`

// keysOf lists the dotted keys of a TOML type, as its tags name them.
func keysOf(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(config.Duration{}) {
			out = append(out, keysOf(ft, prefix+tag+".")...)
			continue
		}
		out = append(out, prefix+tag)
	}
	return out
}

// keysIn lists the dotted keys set in a decoded table.
func keysIn(v any, prefix string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			out = append(out, keysIn(sub, prefix+k+".")...)
		}
	case []map[string]any:
		for _, m := range v {
			out = append(out, keysIn(m, prefix)...)
		}
	case []any:
		for _, m := range v {
			out = append(out, keysIn(m, prefix)...)
		}
	default:
		out = append(out, strings.TrimSuffix(prefix, "."))
	}
	return out
}

func TestEveryKeyIsInTheFixture(t *testing.T) {
	var doc struct {
		Upstream []map[string]any `toml:"upstream"`
		Proxy    []map[string]any `toml:"proxy"`
	}
	_, err := toml.Decode(everyKey, &doc)
	require.NoError(t, err)
	have := map[string]bool{}
	for _, k := range keysIn(doc.Upstream[0], "upstream.") {
		have[k] = true
	}
	for _, p := range doc.Proxy {
		for _, k := range keysIn(p, "proxy.") {
			have[k] = true
		}
	}
	want := append(keysOf(reflect.TypeOf(config.Upstream{}), "upstream."), keysOf(reflect.TypeOf(config.Proxy{}), "proxy.")...)
	var missing []string
	for _, k := range want {
		if !have[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	assert.Empty(t, missing, "keys a promotion must carry over that everyKey does not set")
}

// TestPromoteCarriesEveryKey: the copy decodes to the source's settings,
// but for what promotion is meant to change (the environment; the
// upstream or target it forwards to; an upstream's nodes).
func TestPromoteCarriesEveryKey(t *testing.T) {
	for _, c := range []struct {
		name string
		req  Request
	}{
		{"upstream, --with-upstream", Request{Proxy: "full", Upstream: "full-prod", WithUpstream: true, Nodes: []string{"http://127.0.0.1:9301"}}},
		{"upstream, --target", Request{Proxy: "full", Target: "http://127.0.0.1:9301"}},
		{"fixed target, --target", Request{Proxy: "full-fixed", Target: "http://127.0.0.1:9301"}},
		{"fixed target, --with-upstream", Request{Proxy: "full-fixed", Upstream: "user-backend"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := setupProd(t)
			require.NoError(t, devcert.Generate(dir, nil)) // ca.pem, everyKey's tls_ca_file
			require.NoError(t, devcert.ClientCert(dir, "edge"))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile+everyKey), 0o644))
			prod := prodFile + `
[[upstream]]
name = "user-backend"
environment = "prod"
nodes = [{ url = "http://127.0.0.1:9302" }]
`
			require.NoError(t, os.WriteFile(filepath.Join(dir, "prod.toml"), []byte(prod), 0o644))
			req := c.req
			req.Dir, req.From, req.To, req.Now = dir, "test", "prod", fixedNow
			plan, err := Prepare(req)
			require.NoError(t, err)
			_, err = plan.Apply()
			require.NoError(t, err)

			src, got := *proxyIn(t, dir, "test", req.Proxy), *proxyIn(t, dir, "prod", req.Proxy)
			assert.Equal(t, src.ForwardPath(), got.ForwardPath())
			// What promotion changes, made equal: the rest must be.
			got.Environment, got.Pos = src.Environment, src.Pos
			got.Upstream, got.Target, got.TargetPath = src.Upstream, src.Target, src.TargetPath
			assert.Equal(t, src, got, "the copy:\n%s", plan.Block)

			if req.WithUpstream {
				from, copied := *upstreamIn(t, dir, "test", "full"), *upstreamIn(t, dir, "prod", "full-prod")
				assert.Equal(t, []config.Node{{URL: "http://127.0.0.1:9301", Weight: 1}}, copied.Nodes)
				copied.Name, copied.Environment, copied.Nodes, copied.Pos = from.Name, from.Environment, from.Nodes, from.Pos
				assert.Equal(t, from, copied, "the copy:\n%s", plan.Upstream)
			}
		})
	}
}

// TestPromoteReadsTheSourceHoweverItIsWritten: TOML lets a table header
// carry spaces, quotes and a comment, and a table's keys be written
// dotted or inline. The copy has the same settings whichever way.
func TestPromoteReadsTheSourceHoweverItIsWritten(t *testing.T) {
	const spelled = `
[[ upstream ]]   # the orders backend
name = "tuned"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9101" }]
balance = "least_request"
[ upstream.health.active ]
path = "/healthz"
[ "upstream" . health . passive ]  # ejections
failures = 9

[[ "proxy" ]]  # the orders API
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "tuned"
max_in_flight = 7
`
	dir := setupProd(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile+spelled), 0o644))
	plan, err := Prepare(Request{Dir: dir, Proxy: "orders", From: "test", To: "prod", WithUpstream: true, Nodes: []string{"http://127.0.0.1:9301"}, Now: fixedNow})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.NoError(t, err)
	p := proxyIn(t, dir, "prod", "orders")
	require.NotNil(t, p)
	require.NotNil(t, p.MaxInFlight, "%s", plan.Block)
	assert.Equal(t, 7, *p.MaxInFlight)
	u := upstreamIn(t, dir, "prod", "tuned")
	require.NotNil(t, u)
	assert.Equal(t, "least_request", u.Balance)
	require.NotNil(t, u.Health.Active, "%s", plan.Upstream)
	assert.Equal(t, "/healthz", u.Health.Active.Path)
	require.NotNil(t, u.Health.Passive, "%s", plan.Upstream)
	assert.Equal(t, 9, u.Health.Passive.Failures)

	// An array of inline tables is a [[proxy]] too.
	const inline = `
proxy = [{ name = "inline", environment = "test", base_path = "/inline", upstream = "user-backend", max_in_flight = 3 }]
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "inline.toml"), []byte(inline), 0o644))
	plan, err = Prepare(Request{Dir: dir, Proxy: "inline", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	assert.Contains(t, plan.Block, "max_in_flight = 3\n")
}
