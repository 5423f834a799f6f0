package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/asnobody"
	"edged/internal/devcert"
)

// bigRoutesConf writes a configuration whose routing table has hosts ×
// proxies rows: one group of hosts hostnames serving one environment of
// proxies proxies, all forwarding to one upstream of nodes nodes. It
// returns its directory.
func bigRoutesConf(tb testing.TB, hosts, proxies, nodes int) string {
	tb.Helper()
	root := tb.TempDir()
	require.NoError(tb, devcert.Generate(filepath.Join(root, "certs"), map[string][]string{"big.example": {"*.big.example"}}))
	dir := filepath.Join(root, "conf.d")
	require.NoError(tb, os.Mkdir(dir, 0o755))
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\nstate_dir = %q\n\n", filepath.Join(root, "state"))
	b.WriteString("[[environment]]\nname = \"big\"\n\n[[env_group]]\nname = \"big\"\nenvironments = [\"big\"]\nhostnames = [\n")
	for i := range hosts {
		fmt.Fprintf(&b, "  \"h%d.big.example\",\n", i)
	}
	b.WriteString("]\n\n[[virtual_host]]\nname = \"big\"\ncert_file = \"../certs/big.example.pem\"\nkey_file = \"../certs/big.example.key\"\n\n")
	b.WriteString("[[upstream]]\nname = \"pool\"\nenvironment = \"big\"\nnodes = [\n")
	for i := range nodes {
		fmt.Fprintf(&b, "  { url = \"http://127.0.0.1:%d\" },\n", 10000+i)
	}
	b.WriteString("]\n")
	for i := range proxies {
		fmt.Fprintf(&b, "\n[[proxy]]\nname = \"p%d\"\nenvironment = \"big\"\nbase_path = \"/p%d\"\nupstream = \"pool\"\n", i, i)
	}
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "big.toml"), []byte(b.String()), 0o644))
	return dir
}

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// headWriter keeps the first bytes written to it and counts them all,
// and their lines.
type headWriter struct {
	head         bytes.Buffer
	bytes, lines int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := 64<<10 - w.head.Len(); room > 0 {
		w.head.Write(p[:min(len(p), room)])
	}
	w.bytes += len(p)
	w.lines += bytes.Count(p, []byte("\n"))
	return len(p), nil
}

// `edged routes` made every row of its table before printing any: each
// hostname of a group × each of its routes, each row with every node of
// its upstream joined, copied as visibleName showed it, and kept again
// in a tabwriter until its flush. 1,000 hostnames × 1,000 proxies × 10
// nodes took 2 GB (44 GB allocated); 1,000 proxies of an upstream of
// 10,000 nodes 0.9 GB, on the machine serving. It now
// writes one row at a time, each listing at most 10 nodes and how many
// more: what it allocates beyond loading the configuration does not grow
// with the rows.
func TestRoutesMemoryIsBoundedByARow(t *testing.T) {
	const hosts, proxies, nodes = 20, 100, 500
	dir := bigRoutesConf(t, hosts, proxies, nodes)
	load := allocated(func() {
		_, err := loadPlan(dir, io.Discard)
		require.NoError(t, err)
	})
	var out headWriter
	var stderr bytes.Buffer
	routes := allocated(func() { require.Equal(t, 0, run([]string{"routes", "-c", dir}, &out, &stderr), stderr.String()) })

	// The header, a row for each hostname and proxy, a blank line, the
	// homes' header and big's home.
	require.Equal(t, 1+hosts*proxies+3, out.lines, "rows")
	first := strings.SplitN(out.head.String(), "\n", 3)[1]
	targets := make([]string, 10)
	for i := range targets {
		targets[i] = fmt.Sprintf("http://127.0.0.1:%d", 10000+i)
	}
	assert.Regexp(t, `^h0\.big\.example\s+/p0\s+big\s+big\s+p0\s+`, first)
	assert.True(t, strings.HasSuffix(first, "  "+strings.Join(targets, " ")+" and 490 more"), "the first 10 nodes, then how many more: %.400s", first)
	extra := int64(routes) - int64(load)
	t.Logf("loading allocated %d bytes, routes %d: %d more for %d bytes of output", load, routes, extra, out.bytes)
	assert.Less(t, extra, int64(4<<20), "routes allocated %d bytes more than loading the configuration, for %d rows of %d nodes (%d bytes of output)",
		extra, hosts*proxies, nodes, out.bytes)
}

// The table is aligned as text/tabwriter, which printed it, aligned it:
// each column as wide as its widest cell, in runes as visibleName shows
// them, and two spaces. The example's output is unchanged.
func TestRoutesAreAlignedAsTabwriterAlignedThem(t *testing.T) {
	ex := newExample(t)
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(orderedProxy("/ord\u202eers/café")), 0o644))
	require.NoError(t, os.WriteFile(ex.home("test", "long.toml"), []byte(`
[[upstream]]
name = "many"
environment = "test"
nodes = [`+func() string {
		var s []string
		for i := range 12 {
			s = append(s, fmt.Sprintf(`{ url = "http://127.0.0.1:%d/" }`, 20000+i))
		}
		return strings.Join(s, ", ")
	}()+`]

[[proxy]]
name = "a-proxy-with-a-rather-long-name"
environment = "test"
base_path = "/many"
upstream = "many"
target_path = "/v1/"

[[proxy]]
name = "ten"
environment = "test"
base_path = "/é"
target = "http://127.0.0.1:20100/x"
`), 0o644))

	plan, err := loadPlan(ex.confDir, io.Discard)
	require.NoError(t, err)
	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSTNAME\tBASE PATH\tGROUP\tENVIRONMENT\tPROXY\tTARGETS")
	type row struct{ host, group string }
	var hosts []row
	for _, gp := range plan.Groups {
		for _, h := range gp.Group.Hostnames {
			hosts = append(hosts, row{h, gp.Group.Name})
		}
	}
	slices.SortFunc(hosts, func(a, b row) int { return strings.Compare(a.host, b.host) })
	rows := 0
	for _, h := range hosts {
		for _, r := range plan.Groups[h.group].Routes {
			var targets []string
			for _, n := range r.Upstream.Nodes {
				targets = append(targets, strings.TrimSuffix(n.URL, "/")+r.Proxy.ForwardPath())
			}
			all := strings.Join(targets[:min(len(targets), 10)], " ")
			if len(targets) > 10 {
				all += fmt.Sprintf(" and %d more", len(targets)-10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", visibleName(h.host), visibleName(r.BasePath), visibleName(h.group),
				visibleName(r.Env), visibleName(r.Proxy.Name), visibleName(all))
			rows++
		}
	}
	require.NoError(t, tw.Flush())
	require.Equal(t, 6+2*3, rows, "the example's rows, and the test group's two hostnames × three proxies more")

	code, stdout, stderr := runEdged(t, "routes", "-c", ex.confDir)
	require.Equal(t, 0, code, stderr)
	table, _, ok := strings.Cut(stdout, "\n\n")
	require.True(t, ok, stdout)
	assert.Equal(t, want.String(), table+"\n")
	assert.Contains(t, table, "http://127.0.0.1:20009/v1 and 2 more\n")
	assert.Contains(t, table, `/ord\u202eers/café`)
}

// BenchmarkRoutes is `edged routes` on tables of hostnames × proxies
// rows, each proxy forwarding to the same upstream of nodes nodes: the
// configuration's loading included.
func BenchmarkRoutes(b *testing.B) {
	for _, size := range []struct{ hosts, proxies, nodes int }{{1000, 1000, 10}, {10, 1000, 1000}} {
		b.Run(fmt.Sprintf("hosts=%d,proxies=%d,nodes=%d", size.hosts, size.proxies, size.nodes), func(b *testing.B) {
			dir := bigRoutesConf(b, size.hosts, size.proxies, size.nodes)
			b.ReportAllocs()
			for b.Loop() {
				if code := run([]string{"routes", "-c", dir}, io.Discard, io.Discard); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}

// `edged routes` on a configuration it cannot take prints no table: a
// broken one gives each error with its file, line, object and field; a
// directory below DIR that the user cannot read (routes run as another
// user than the files') is an error naming it, not a table without its
// routes. Exit 1 both.
func TestRoutesOnABrokenOrUnreadableConfiguration(t *testing.T) {
	base := asnobody.Dir(t, 0o755)
	dir := filepath.Join(base, "conf.d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	file := filepath.Join(dir, "server.toml")
	require.NoError(t, os.WriteFile(file, []byte("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\n\n[[environment]]\nname = \"test\"\n\n"+
		"[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\nupstream = \"missing-pool\"\n"), 0o644))
	as := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		cmd := asnobody.Command(base, args, "EDGED_TEST_MAIN=1")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	code, stdout, stderr := as("routes", "-c", dir)
	assert.Equal(t, 1, code, stderr)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, file+`:12: proxy "orders": upstream: "missing-pool" is not defined in environment "test"`)

	require.NoError(t, os.WriteFile(file, []byte("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"\"\n"), 0o644))
	private := filepath.Join(dir, "private")
	require.NoError(t, os.Mkdir(private, 0o700)) // root's
	require.NoError(t, os.WriteFile(filepath.Join(private, "env.toml"), []byte("[[environment]]\nname = \"test\"\n"), 0o644))
	code, stdout, stderr = as("routes", "-c", dir)
	assert.Equal(t, 1, code, stderr)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, private+": cannot read directory: open "+private+": permission denied")

	require.NoError(t, os.Chmod(dir, 0o700))
	code, stdout, stderr = as("routes", "-c", dir)
	assert.Equal(t, 1, code, stderr)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, dir+": cannot read directory: open "+dir+": permission denied\n")
}
