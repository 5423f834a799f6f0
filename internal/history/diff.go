package history

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"sort"

	"edged/internal/config"
)

type objectKey struct{ env, kind, name string }

// Objects is a digest of a config: a hash of every object, positions left
// out. A running process keeps the last one, so that a reload hashes only
// the new config.
type Objects map[objectKey][32]byte

// Diff lists what after adds, removes and changes against before (which
// may be nil: everything is added), sorted by environment, kind and name.
// Positions do not count: moving a block to another file is no change.
func (before Objects) Diff(after Objects) []Change {
	var out []Change
	for k, h := range after {
		switch oh, ok := before[k]; {
		case !ok:
			out = append(out, Change{Env: k.env, Kind: k.kind, Name: k.name, Action: "added"})
		case oh != h:
			out = append(out, Change{Env: k.env, Kind: k.kind, Name: k.name, Action: "changed"})
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, Change{Env: k.env, Kind: k.kind, Name: k.name, Action: "removed"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Env != b.Env {
			return a.Env < b.Env
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	return out
}

// Summarize hashes every object of c (nil: none).
func Summarize(c *config.Config) Objects {
	m := Objects{}
	if c == nil {
		return m
	}
	add := func(env, kind, name string, v any) {
		b, _ := json.Marshal(v)
		m[objectKey{env, kind, name}] = sha256.Sum256(b)
	}
	srv := c.Server
	srv.Pos = config.Pos{}
	add("", "server", "server", srv)
	for _, e := range c.Environments {
		v := *e
		v.Pos = config.Pos{}
		add(e.Name, "environment", e.Name, v)
	}
	for _, g := range c.EnvGroups {
		v := *g
		v.Pos = config.Pos{}
		add("", "env_group", g.Name, v)
	}
	for _, vh := range c.VirtualHosts {
		// The certificate chain counts (a renewal is a change); the
		// private key never enters the hash input.
		v := *vh
		v.Pos, v.Certificate, v.ClientCAs = config.Pos{}, tls.Certificate{}, nil
		add("", "virtual_host", vh.Name, struct {
			V    config.VirtualHost
			Cert [][]byte
		}{v, vh.Certificate.Certificate})
	}
	for _, u := range c.Upstreams {
		v := *u
		v.Pos = config.Pos{}
		add(u.Environment, "upstream", u.Name, v)
	}
	for _, p := range c.Proxies {
		v := *p
		v.Pos = config.Pos{}
		add(p.Environment, "proxy", p.Name, v)
	}
	return m
}
