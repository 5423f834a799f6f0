// Package devcert makes the certificates of a local development setup: one
// certificate authority, and a server certificate per virtual host (or a
// client certificate for mutual TLS), all ECDSA P-256 in PEM files.
//
// It exists so that the example in conf.d/ and the integration tests run
// over real TLS without anyone buying or copying certificates. Re-running it
// is cheap and safe: the CA is kept while it is valid, so clients that were
// told to trust ca.pem keep trusting the new leaves, and a leaf is only
// reissued when it is missing, broken, about to expire, or names other hosts
// than asked.
//
// It must never be used for production certificates: the CA key lies
// unencrypted next to the leaves, and nothing revokes what it signed.
package devcert
