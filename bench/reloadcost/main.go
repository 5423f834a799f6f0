// Command reloadcost generates large edged configurations and measures how
// long a change takes from the file write to the new route serving.
//
//	reloadcost gen    -dir CONF -envs 10 -proxies 1000 ...
//	reloadcost change -dir CONF -envs 10 -proxies 1000 -mode one|all -round N ...
//
// Layout written into CONF: server.toml, groups.toml (env groups and their
// virtual hosts: one group per 5 environments, hostname gK.test.acme.com,
// all under the *.test.acme.com certificate) and one file per environment
// (envNNN.toml: the environment with rules.prometheus, one upstream, its
// proxies, each on its own base path /eI/pJ). "change" rewrites one
// environment's file (-mode one) or every environment's file (-mode all)
// with one more proxy /eI/new-N (temp file + rename), then polls that route
// on the last changed environment until it answers 200 and prints the
// milliseconds elapsed since the first write.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type params struct {
	dir, backend, cert, key, https, admin, state string
	envs, proxies                                int
	debounce                                     string
}

const envsPerGroup = 5

func groupOf(env int) int { return env / envsPerGroup }

func host(group int) string { return fmt.Sprintf("g%d.test.acme.com", group) }

func writeAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func envFile(p params, e int, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[environment]]\nname = \"e%d\"\nworkers = 512\nqueue = 1024\nqueue_timeout = \"1s\"\n[environment.rules.prometheus]\n\n", e)
	fmt.Fprintf(&b, "[[upstream]]\nname = \"backend\"\nenvironment = \"e%d\"\nnodes = [{ url = %q }]\n\n", e, p.backend)
	per := p.proxies / p.envs
	if e < p.proxies%p.envs {
		per++
	}
	for j := 0; j < per; j++ {
		fmt.Fprintf(&b, "[[proxy]]\nname = \"p%d\"\nenvironment = \"e%d\"\nbase_path = \"/e%d/p%d\"\nupstream = \"backend\"\n\n", j, e, e, j)
	}
	if extra != "" {
		fmt.Fprintf(&b, "[[proxy]]\nname = \"new-%s\"\nenvironment = \"e%d\"\nbase_path = \"/e%d/new-%s\"\nupstream = \"backend\"\n", extra, e, e, extra)
	}
	return b.String()
}

func gen(p params) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	server := fmt.Sprintf("[server]\nhttps = %q\nadmin = %q\nstate_dir = %q\nreload_debounce = %q\nrescan_interval = \"0s\"\ndrain_timeout = \"5s\"\n",
		p.https, p.admin, p.state, p.debounce)
	if err := writeAtomic(filepath.Join(p.dir, "server.toml"), server); err != nil {
		return err
	}
	var g strings.Builder
	groups := (p.envs + envsPerGroup - 1) / envsPerGroup
	for k := 0; k < groups; k++ {
		var envs []string
		for e := k * envsPerGroup; e < (k+1)*envsPerGroup && e < p.envs; e++ {
			envs = append(envs, fmt.Sprintf("%q", fmt.Sprintf("e%d", e)))
		}
		fmt.Fprintf(&g, "[[env_group]]\nname = \"g%d\"\nhostnames = [%q]\nenvironments = [%s]\n\n", k, host(k), strings.Join(envs, ", "))
		fmt.Fprintf(&g, "[[virtual_host]]\nname = \"g%d\"\ncert_file = %q\nkey_file = %q\n\n", k, p.cert, p.key)
	}
	if err := writeAtomic(filepath.Join(p.dir, "groups.toml"), g.String()); err != nil {
		return err
	}
	for e := 0; e < p.envs; e++ {
		if err := writeAtomic(filepath.Join(p.dir, fmt.Sprintf("env%03d.toml", e)), envFile(p, e, "")); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: reloadcost gen|change [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var p params
	fs.StringVar(&p.dir, "dir", "", "config directory")
	fs.IntVar(&p.envs, "envs", 10, "environments")
	fs.IntVar(&p.proxies, "proxies", 10, "proxies in all")
	fs.StringVar(&p.backend, "backend", "http://127.0.0.1:19000", "backend URL")
	fs.StringVar(&p.cert, "cert", "", "certificate PEM (covers *.test.acme.com)")
	fs.StringVar(&p.key, "key", "", "key PEM")
	fs.StringVar(&p.https, "https", "127.0.0.1:18443", "edged TLS listener")
	fs.StringVar(&p.admin, "admin", "127.0.0.1:18901", "edged admin listener")
	fs.StringVar(&p.state, "state", "", "edged state_dir")
	fs.StringVar(&p.debounce, "debounce", "50ms", "reload_debounce")
	mode := fs.String("mode", "one", "change: one environment or all")
	round := fs.String("round", "1", "change: a tag making the new route unique")
	ca := fs.String("ca", "", "change: CA to trust")
	timeout := fs.Duration("timeout", 60*time.Second, "change: give up after")
	fs.Parse(os.Args[2:])
	if p.dir == "" || p.envs < 1 || p.proxies < p.envs {
		fmt.Fprintln(os.Stderr, "reloadcost: need -dir, envs >= 1, proxies >= envs")
		os.Exit(2)
	}
	switch cmd {
	case "gen":
		if err := gen(p); err != nil {
			fmt.Fprintln(os.Stderr, "reloadcost:", err)
			os.Exit(1)
		}
	case "change":
		ms, err := change(p, *mode, *round, *ca, *timeout)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reloadcost:", err)
			os.Exit(1)
		}
		fmt.Printf("%.1f\n", ms)
	default:
		fmt.Fprintln(os.Stderr, "reloadcost: unknown command", cmd)
		os.Exit(2)
	}
}

func change(p params, mode, round, caFile string, timeout time.Duration) (float64, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return 0, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	_, port, _ := net.SplitHostPort(p.https)
	var d net.Dialer
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port)) // loopback only
			},
			MaxIdleConnsPerHost: 4,
		},
	}
	last := 0
	targets := []int{0}
	if mode == "all" {
		targets = targets[:0]
		for e := 0; e < p.envs; e++ {
			targets = append(targets, e)
		}
	}
	// Render first, so that the clock measures edged, not this program.
	contents := make([]string, len(targets))
	for i, e := range targets {
		contents[i] = envFile(p, e, round)
		last = e
	}
	url := fmt.Sprintf("https://%s/e%d/new-%s/x", host(groupOf(last)), last, round)
	start := time.Now()
	for i, e := range targets {
		if err := writeAtomic(filepath.Join(p.dir, fmt.Sprintf("env%03d.toml", e)), contents[i]); err != nil {
			return 0, err
		}
	}
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return float64(time.Since(start).Microseconds()) / 1000, nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s not serving 200 after %s", url, timeout)
}
