// Command devcerts makes the development certificates of the example in
// conf.d/: a local CA, one server certificate per environment group of
// acme.com, and a client certificate for mutual-TLS demos.
//
//	go run ./tools/devcerts -dir certs
//
// Re-running it keeps the CA (so clients that trust certs/ca.pem keep
// working) and every certificate that is still good for 30 days.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"edged/internal/devcert"
)

// hosts are the virtual hosts of conf.d/: file name → SANs.
var hosts = map[string][]string{
	"test.acme.com": {"test.acme.com", "*.test.acme.com"},
	"uat.acme.com":  {"uat.acme.com", "*.uat.acme.com"},
	"prod.acme.com": {"prod.acme.com", "*.prod.acme.com"},
}

// clientName gives certs/demo-client.pem and certs/demo-client.key.
const clientName = "demo"

func main() {
	dir := flag.String("dir", "certs", "directory to write the certificates to")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "devcerts: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	seen := map[string]bool{} // ClientCert looks at the CA again
	report := func(path, action string) {
		if !seen[path] {
			seen[path] = true
			fmt.Printf("%-40s %s\n", path, action)
		}
	}
	if err := devcert.GenerateReport(*dir, hosts, report); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
	if err := devcert.ClientCertReport(*dir, clientName, report); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
	ca := filepath.Join(*dir, devcert.CACertFile)
	fmt.Printf("\nTrust %s in clients, for example:\n", ca)
	fmt.Printf("  curl --cacert %s --resolve test.acme.com:8443:127.0.0.1 https://test.acme.com:8443/users/7\n", ca)
	fmt.Printf("Mutual TLS: --cert %s --key %s\n",
		filepath.Join(*dir, clientName+"-client.pem"), filepath.Join(*dir, clientName+"-client.key"))
}
