package edge

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// writeFleet writes a config of envs environments sharing proxies proxies
// (one upstream each, five environments per env group) into dir.
func writeFleet(tb testing.TB, dir, certs string, envs, proxies int) {
	tb.Helper()
	var g strings.Builder
	g.WriteString(serverTOML(filepath.Join(dir, "..", "state"), ""))
	for k := 0; k*5 < envs; k++ {
		var names []string
		for e := k * 5; e < (k+1)*5 && e < envs; e++ {
			names = append(names, fmt.Sprintf("%q", fmt.Sprintf("e%d", e)))
		}
		fmt.Fprintf(&g, "[[env_group]]\nname = \"g%d\"\nhostnames = [\"g%d.test.acme.com\"]\nenvironments = [%s]\n\n", k, k, strings.Join(names, ", "))
		fmt.Fprintf(&g, "[[virtual_host]]\nname = \"g%d\"\ncert_file = %q\nkey_file = %q\n\n", k,
			filepath.Join(certs, "test.acme.com.pem"), filepath.Join(certs, "test.acme.com.key"))
	}
	require.NoError(tb, os.WriteFile(filepath.Join(dir, "groups.toml"), []byte(g.String()), 0o644))
	for e := 0; e < envs; e++ {
		writeFleetEnv(tb, dir, e, proxies/envs, "")
	}
}

func writeFleetEnv(tb testing.TB, dir string, e, proxies int, extra string) {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[[environment]]\nname = \"e%d\"\n[environment.rules.prometheus]\n\n", e)
	fmt.Fprintf(&b, "[[upstream]]\nname = \"backend\"\nenvironment = \"e%d\"\nnodes = [{ url = \"http://127.0.0.1:9\" }]\n\n", e)
	for j := 0; j < proxies; j++ {
		fmt.Fprintf(&b, "[[proxy]]\nname = \"p%d\"\nenvironment = \"e%d\"\nbase_path = \"/e%d/p%d\"\nupstream = \"backend\"\n\n", j, e, e, j)
	}
	if extra != "" {
		fmt.Fprintf(&b, "[[proxy]]\nname = \"new-%s\"\nenvironment = \"e%d\"\nbase_path = \"/e%d/new-%s\"\nupstream = \"backend\"\n", extra, e, e, extra)
	}
	require.NoError(tb, os.WriteFile(filepath.Join(dir, fmt.Sprintf("env%03d.toml", e)), []byte(b.String()), 0o644))
}

// BenchmarkReloadOneEnv is a reload (load, validate, compile, apply) after
// one environment's file changed, by the size of the whole configuration.
// The changed environment always has 10 proxies: the cost should follow
// the change, not the fleet.
func BenchmarkReloadOneEnv(b *testing.B) {
	for _, size := range []struct{ envs, proxies int }{{1, 10}, {100, 1000}, {1000, 10000}} {
		b.Run(fmt.Sprintf("%dproxies_%denvs", size.proxies, size.envs), func(b *testing.B) {
			root := b.TempDir()
			dir := filepath.Join(root, "conf.d")
			require.NoError(b, os.Mkdir(dir, 0o755))
			writeFleet(b, dir, testCertDir(b), size.envs, size.proxies)
			srv := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
			rl := &Reloader{Dir: dir, Server: srv, Log: srv.log}
			require.True(b, rl.Reload("start").OK)
			// Files changed in the last 2 s are read again rather than
			// trusted by their stamp (config.readDirSince); a fleet's
			// files are older than that.
			time.Sleep(2100 * time.Millisecond)
			require.True(b, rl.Reload("stamps").OK)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				writeFleetEnv(b, dir, 0, size.proxies/size.envs, fmt.Sprint(i))
				b.StartTimer()
				rec := rl.Reload("bench")
				if !rec.OK {
					b.Fatal(rec.Errors)
				}
			}
			b.StopTimer()
			require.NoError(b, srv.Shutdown(b.Context()))
		})
	}
}

// BenchmarkNewEnv builds (and closes) the runtime of one environment with
// rules.prometheus on, by its number of proxies: what a reload that
// changes that environment pays besides loading.
func BenchmarkNewEnv(b *testing.B) {
	for _, proxies := range []int{10, 1000} {
		b.Run(fmt.Sprintf("%dproxies", proxies), func(b *testing.B) {
			root := b.TempDir()
			dir := filepath.Join(root, "conf.d")
			require.NoError(b, os.Mkdir(dir, 0o755))
			writeFleet(b, dir, testCertDir(b), 1, proxies)
			cfg, err := config.Load(dir)
			require.NoError(b, err)
			plan, err := Compile(cfg)
			require.NoError(b, err)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			b.ReportAllocs()
			for b.Loop() {
				e, err := newEnv(plan.Envs["e0"], nil, log)
				require.NoError(b, err)
				e.Close()
			}
		})
	}
}
