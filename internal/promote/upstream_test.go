package promote

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/devcert"
)

// The source's upstream has settings worth keeping; prod has no upstream.
const tunedUpstream = `
[[upstream]]
name = "tuned"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9101", weight = 3 }]
balance = "least_request"
connect_timeout = "1500ms"
[upstream.health.active]
path = "/healthz"
interval = "7s"

[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "tuned"
`

const prodFile = `[[environment]]
name = "prod"
`

func setupProd(t *testing.T) string {
	dir := setup(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile+tunedUpstream), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prod.toml"), []byte(prodFile), 0o644))
	return dir
}

func upstreamIn(t *testing.T, dir, env, name string) *config.Upstream {
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	for _, u := range cfg.Upstreams {
		if u.Environment == env && u.Name == name {
			return u
		}
	}
	return nil
}

func TestPromoteWithUpstreamCopiesItWithTheNewNodes(t *testing.T) {
	dir := setupProd(t)
	req := Request{Dir: dir, Proxy: "orders", From: "test", To: "prod", Now: fixedNow}
	_, err := Prepare(req)
	var errs config.Errors
	require.True(t, errors.As(err, &errs), "without it prod lacks the upstream: %v", err)

	req.WithUpstream, req.Nodes = true, []string{"http://127.0.0.1:9301", "http://127.0.0.1:9302"}
	plan, err := Prepare(req)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "prod.toml"), plan.File)
	assert.Equal(t, prodFile, string(plan.Old))
	assert.Contains(t, plan.Upstream, "nodes = [{ url = \"http://127.0.0.1:9301\" }, { url = \"http://127.0.0.1:9302\" }]\n")
	assert.NotContains(t, plan.Upstream, "9101", "the source's nodes are not carried over")
	_, err = plan.Apply()
	require.NoError(t, err)

	u := upstreamIn(t, dir, "prod", "tuned")
	require.NotNil(t, u, "%s", plan.Content)
	require.Len(t, u.Nodes, 2)
	assert.Equal(t, "http://127.0.0.1:9301", u.Nodes[0].URL)
	assert.Equal(t, "least_request", u.Balance)
	assert.Equal(t, "1.5s", u.ConnectTimeout.String())
	require.NotNil(t, u.Health.Active)
	assert.Equal(t, "/healthz", u.Health.Active.Path)
	assert.Equal(t, "7s", u.Health.Active.Interval.String())
	p := proxyIn(t, dir, "prod", "orders")
	require.NotNil(t, p)
	assert.Equal(t, "tuned", p.Upstream)
	src := upstreamIn(t, dir, "test", "tuned")
	assert.Equal(t, "http://127.0.0.1:9101", src.Nodes[0].URL, "the source is untouched")

	// Now prod has it: asking again to copy it is refused, and says so.
	_, err = Prepare(req)
	assert.ErrorContains(t, err, `environment "prod" already has upstream "tuned" (`+filepath.Join(dir, "prod.toml")+":")
}

func TestPromoteWithUpstreamRenamesItWithUpstreamFlag(t *testing.T) {
	dir := setupProd(t)
	plan, err := Prepare(Request{Dir: dir, Proxy: "orders", From: "test", To: "prod", Upstream: "orders-prod", WithUpstream: true, Nodes: []string{"http://127.0.0.1:9301"}})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.NoError(t, err)
	assert.NotNil(t, upstreamIn(t, dir, "prod", "orders-prod"))
	assert.Equal(t, "orders-prod", proxyIn(t, dir, "prod", "orders").Upstream)
}

func TestPromoteWithUpstreamRefusals(t *testing.T) {
	dir := setupProd(t)
	base := Request{Dir: dir, Proxy: "orders", From: "test", To: "prod"}
	cases := []struct {
		name string
		edit func(*Request)
		want string
	}{
		{"no --node", func(r *Request) { r.WithUpstream = true }, "--with-upstream needs --node URL"},
		{"--node alone", func(r *Request) { r.Nodes = []string{"http://127.0.0.1:9301"} }, "--node is for --with-upstream"},
		{"with --target", func(r *Request) {
			r.WithUpstream, r.Nodes, r.Target = true, []string{"http://127.0.0.1:9301"}, "http://127.0.0.1:9301"
		}, "--target forwards to a fixed URL instead"},
		{"fixed source", func(r *Request) {
			r.Proxy, r.WithUpstream, r.Nodes, r.Upstream = "fixed", true, []string{"http://127.0.0.1:9301"}, "x"
		}, `proxy "fixed" forwards to a fixed target in "test"`},
		{"target has it", func(r *Request) {
			r.Proxy, r.To, r.WithUpstream, r.Nodes = "user-service", "uat", true, []string{"http://127.0.0.1:9301"}
		}, `environment "uat" already has upstream "user-backend"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base
			c.edit(&r)
			_, err := Prepare(r)
			assert.ErrorContains(t, err, c.want)
		})
	}
	b, _ := os.ReadFile(filepath.Join(dir, "prod.toml"))
	assert.Equal(t, prodFile, string(b), "nothing written")
}

// The copy is validated with everything else before anything is written.
func TestPromoteWithUpstreamValidatesTheNodes(t *testing.T) {
	dir := setupProd(t)
	_, err := Prepare(Request{Dir: dir, Proxy: "orders", From: "test", To: "prod", WithUpstream: true, Nodes: []string{"ftp://127.0.0.1:21"}})
	var errs config.Errors
	require.True(t, errors.As(err, &errs), "%v", err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "prod.toml"))
	b, _ := os.ReadFile(filepath.Join(dir, "prod.toml"))
	assert.Equal(t, prodFile, string(b), "nothing written")
}

// TestPromoteWithUpstreamKeepsWhatRelativeTLSPathsName: a relative
// tls_ca_file, tls_cert_file or tls_key_file is relative to the file
// naming it. The copy goes into another directory, so it must name the
// same files from there, not the files of that name beside the target.
func TestPromoteWithUpstreamKeepsWhatRelativeTLSPathsName(t *testing.T) {
	dir := t.TempDir()
	testDir, prodDir := filepath.Join(dir, "test"), filepath.Join(dir, "prod", "eu")
	for _, d := range []string{testDir, prodDir} {
		require.NoError(t, os.MkdirAll(d, 0o755))
		// Each directory has its own CA and client certificate, under
		// the same names: a path read from the wrong directory loads.
		require.NoError(t, devcert.Generate(d, nil))
		require.NoError(t, devcert.ClientCert(d, "edge"))
	}
	const secure = `
[[upstream]]
name = "secure"
environment = "test"
nodes = [{ url = "https://127.0.0.1:9101" }]
tls_ca_file = "ca.pem"
tls_cert_file = "./edge-client.pem"
tls_key_file = "../test/edge-client.key"

[[proxy]]
name = "orders"
environment = "test"
base_path = "/orders"
upstream = "secure"
`
	require.NoError(t, os.WriteFile(filepath.Join(testDir, "test.toml"), []byte("[[environment]]\nname = \"test\"\n"+secure), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(prodDir, "prod.toml"), []byte(prodFile), 0o644))

	plan, err := Prepare(Request{Dir: dir, Proxy: "orders", From: "test", To: "prod", WithUpstream: true,
		Nodes: []string{"https://127.0.0.1:9301"}, Now: fixedNow})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.NoError(t, err)
	from, copied := upstreamIn(t, dir, "test", "secure"), upstreamIn(t, dir, "prod", "secure")
	require.NotNil(t, copied, "%s", plan.Upstream)
	assert.Equal(t, filepath.Join(testDir, "ca.pem"), copied.TLSCAFile, "the copy:\n%s", plan.Upstream)
	assert.Equal(t, from.TLSCAFile, copied.TLSCAFile)
	assert.Equal(t, from.TLSCertFile, copied.TLSCertFile)
	assert.Equal(t, from.TLSKeyFile, copied.TLSKeyFile)
	// Still relative, so that the directory can move as a whole.
	assert.Contains(t, plan.Upstream, `tls_ca_file = "../../test/ca.pem"`)
}

// TestOtherKeysReadsTheSourceWithinTheLimits: the source file is decoded
// again to copy its table, after the load that checked it; it is decoded
// within the loader's limits (config.MaxNesting) too, or a deep enough
// one overflows the decoder's stack, which kills the process.
func TestOtherKeysReadsTheSourceWithinTheLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.toml")
	deep := strings.Repeat("[", config.MaxNesting+1) + strings.Repeat("]", config.MaxNesting+1)
	content := "[[upstream]]\nname = \"tuned\"\nenvironment = \"test\"\nx = " + deep + "\n"
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	_, err := otherKeys("upstream", "tuned", "test", config.Pos{File: path, Line: 1}, []byte(content), "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nested deeper than")
	assert.Contains(t, err.Error(), path+":4")
}
