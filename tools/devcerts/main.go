// Command devcerts makes the development certificates of a configuration
// directory: a local CA, one server certificate per virtual host of
// conf.d/ covering the hostnames of its env group, and a client
// certificate for mutual-TLS demos.
//
//	go run ./tools/devcerts -c conf.d -dir certs
//
// Every virtual host must name its files as DIR/NAME.pem and DIR/NAME.key
// (cert_file and key_file, relative to the file naming them), which is
// where devcerts writes them. Re-running it keeps the CA (so clients that
// trust certs/ca.pem keep working) and every certificate that is still
// good for 30 days and covers the same hostnames; a certificate whose
// group's hostnames changed is made again.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"edged/internal/config"
	"edged/internal/devcert"
)

// clientName gives certs/demo-client.pem and certs/demo-client.key.
const clientName = "demo"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devcerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	confDir := fs.String("c", "conf.d", "configuration `DIR`ectory whose virtual hosts get certificates")
	dir := fs.String("dir", "certs", "`directory` to write the certificates to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "devcerts: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, err := config.LoadWithoutTLS(*confDir)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
			fmt.Fprintf(stderr, "devcerts: configuration in %s is invalid: %d error(s)\n", *confDir, len(errs))
			return 1
		}
		fmt.Fprintln(stderr, "devcerts:", err)
		return 1
	}
	hosts, err := certHosts(cfg, *dir)
	if err != nil {
		fmt.Fprintln(stderr, err) // one line per virtual host at fault
		fmt.Fprintln(stderr, "devcerts: nothing written")
		return 1
	}
	seen := map[string]bool{} // ClientCert looks at the CA again
	report := func(path, action string) {
		if !seen[path] {
			seen[path] = true
			fmt.Fprintf(stdout, "%-40s %s\n", path, action)
		}
	}
	if err := devcert.GenerateReport(*dir, hosts, report); err != nil {
		fmt.Fprintln(stderr, "devcerts:", err)
		return 1
	}
	if err := devcert.ClientCertReport(*dir, clientName, report); err != nil {
		fmt.Fprintln(stderr, "devcerts:", err)
		return 1
	}
	ca := filepath.Join(*dir, devcert.CACertFile)
	fmt.Fprintf(stdout, "\nTrust %s in clients, for example:\n", ca)
	if host, port := exampleTarget(cfg); host != "" {
		fmt.Fprintf(stdout, "  curl --cacert %s --resolve %s:%s:127.0.0.1 https://%s:%s/\n", ca, host, port, host, port)
	}
	fmt.Fprintf(stdout, "Mutual TLS: --cert %s --key %s\n",
		filepath.Join(*dir, clientName+"-client.pem"), filepath.Join(*dir, clientName+"-client.key"))
	return 0
}

// certHosts maps the name of each certificate the virtual hosts of cfg
// name (the file name without .pem) to the hostnames it must cover: those
// of the env groups using it. Every cert_file must be dir/NAME.pem and its
// key_file dir/NAME.key, the files devcert writes.
func certHosts(cfg *config.Config, dir string) (map[string][]string, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	hosts := map[string][]string{}
	var errs []error
	for _, vh := range cfg.VirtualHosts {
		name, err := certName(vh, absDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: virtual_host %q: %w", vh.Pos, vh.Name, err))
			continue
		}
		g := cfg.GroupByName(vh.Name)
		if g == nil {
			continue // Load makes sure there is one
		}
		for _, h := range g.Hostnames {
			if !slices.Contains(hosts[name], h) {
				hosts[name] = append(hosts[name], h)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s: no virtual host, so no certificate to make", cfg.Dir)
	}
	return hosts, nil
}

// certName checks that vh names dir/NAME.pem and dir/NAME.key and returns
// NAME.
func certName(vh *config.VirtualHost, dir string) (string, error) {
	certDir, certBase := filepath.Split(vh.CertFile)
	keyDir, keyBase := filepath.Split(vh.KeyFile)
	name, ok := strings.CutSuffix(certBase, ".pem")
	switch {
	case filepath.Clean(certDir) != dir:
		return "", fmt.Errorf("cert_file %s is not in %s, where devcerts writes (set -dir, or move the file)", vh.CertFile, dir)
	case !ok || name == "":
		return "", fmt.Errorf("cert_file %s: devcerts writes NAME.pem", vh.CertFile)
	case filepath.Clean(keyDir) != dir || keyBase != name+".key":
		return "", fmt.Errorf("key_file %s: devcerts writes the key of %s as %s", vh.KeyFile, certBase, filepath.Join(dir, name+".key"))
	}
	return name, nil
}

// exampleTarget is a hostname to try with curl (the first that is not a
// wildcard) and the port of the https listener.
func exampleTarget(cfg *config.Config) (host, port string) {
	_, port, _ = net.SplitHostPort(cfg.Server.HTTPS)
	var names []string
	for _, g := range cfg.EnvGroups {
		for _, h := range g.Hostnames {
			if !strings.HasPrefix(h, "*.") {
				names = append(names, h)
			}
		}
	}
	if len(names) == 0 {
		return "", ""
	}
	sort.Strings(names)
	return names[0], port
}
