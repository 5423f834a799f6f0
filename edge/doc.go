// Package edge is edged's runtime: it compiles a validated config into an
// immutable snapshot (host table, base-path routes, environments) and serves
// it — TLS per virtual host, routing, one isolated worker pool per
// environment, forwarding to upstreams, faults, metrics and access logs.
//
// Data flows one way: config → Compile → snapshot → requests. Nothing on
// the request path reads files, takes a process-wide lock, or looks at a
// previous snapshot. A reload builds a new snapshot off to the side and
// swaps it in with one atomic store; environments whose compiled content is
// unchanged are carried over as the very same objects.
//
// It does not talk to the service manager: the Reloader's Starting and Done
// hooks let the daemon (cmd/edged) tell systemd about a reload.
package edge
