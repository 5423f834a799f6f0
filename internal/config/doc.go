// Package config reads an edged configuration directory (conf.d) into one
// validated Config.
//
// Load walks the directory (only files named *.toml, sorted by path, dotfiles
// and dot-directories skipped, symlinks followed, each read once per load so
// that the files of one load, and the TLS files they name, are of one
// release: see resolver), decodes every file on its
// own, merges the objects of all files, applies the defaults, loads the TLS
// material each virtual host names, and checks everything, including that
// each environment's upstreams and proxies are declared in its home (the
// directory of the file declaring it, or below; see home.go). All problems are
// returned at once as Errors, each naming the file, the line where known, the
// object and the field; findings that do not stop a config from serving are
// returned in Config.Warnings.
//
// After a successful Load, every default has been applied: pointer fields
// with a default (Environment.Queue, Environment.MaxBodyBytes,
// Upstream.Retries) are non-nil, hostnames are normalised, relative file
// paths are absolute, node URLs are written as scheme://host:port.
//
// The package is plain data and plain functions. It never serves, never
// listens, never writes a file (edged promote and rollback write through
// internal/atomicfile), never signals or otherwise touches the running
// process, and keeps no state between calls: whoever calls Load decides what
// to do with the result (edge compiles it into a snapshot; edged check prints
// it).
package config
