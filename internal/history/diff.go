package history

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"sort"

	"edged/internal/config"
)

type objectKey struct{ env, kind, name string }

// sum is an object's hash, positions left out: moving a block to another
// file is no change.
type sum = [32]byte

// Tracker follows the configs a process applies, one after another, and
// tells what each one added, removed and changed against the one before.
//
// A config.Loader hands out the same upstream and proxy objects for files
// that did not change, and nothing writes to them: the Tracker hashes
// those once and only compares the ones it has not seen, so what a reload
// costs here follows the change, not the fleet. It keeps the objects of
// the last config (and with them their addresses, which no new object can
// take while it does).
type Tracker struct {
	plain     map[objectKey]sum // server, environments, env groups, virtual hosts
	upstreams map[*config.Upstream]*sharedSum
	proxies   map[*config.Proxy]*sharedSum
	round     uint64 // of Changes calls
}

type sharedSum struct {
	key   objectKey
	sum   sum
	round uint64 // the last call whose config held the object
}

// Changes takes c as the new current config and lists what changed since
// the last one (on the first call, everything is added), sorted by
// environment, kind and name.
func (t *Tracker) Changes(c *config.Config) []Change {
	var out []Change
	note := func(k objectKey, action string) {
		out = append(out, Change{Env: k.env, Kind: k.kind, Name: k.name, Action: action})
	}

	plain := plainSums(c)
	for k, h := range plain {
		switch old, ok := t.plain[k]; {
		case !ok:
			note(k, "added")
		case old != h:
			note(k, "changed")
		}
	}
	for k := range t.plain {
		if _, ok := plain[k]; !ok {
			note(k, "removed")
		}
	}
	t.plain = plain
	t.round++
	if t.upstreams == nil {
		t.upstreams, t.proxies = map[*config.Upstream]*sharedSum{}, map[*config.Proxy]*sharedSum{}
	}
	diffShared(t.upstreams, c.Upstreams, t.round, note, func(u *config.Upstream) *sharedSum {
		v := *u
		v.Pos = config.Pos{}
		return &sharedSum{key: objectKey{u.Environment, "upstream", u.Name}, sum: hashOf(v)}
	})
	diffShared(t.proxies, c.Proxies, t.round, note, func(p *config.Proxy) *sharedSum {
		v := *p
		v.Pos = config.Pos{}
		return &sharedSum{key: objectKey{p.Environment, "proxy", p.Name}, sum: hashOf(v)}
	})

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

// diffShared notes what objs, of one kind, changed against the objects of
// the last config in known, and makes known hold objs. Only the objects
// not in known are hashed. An object in known is the same object with the
// same key, so only the objects gone and the ones new can differ: a key in
// both was changed (or written anew as it was), a key in one was removed
// or added.
func diffShared[T comparable](known map[T]*sharedSum, objs []T, round uint64, note func(objectKey, string), sumOf func(T) *sharedSum) {
	var fresh []*sharedSum
	for _, o := range objs {
		s := known[o]
		if s == nil {
			s = sumOf(o)
			known[o] = s
			fresh = append(fresh, s)
		}
		s.round = round
	}
	gone := map[objectKey]sum{}
	for o, s := range known {
		if s.round != round {
			gone[s.key] = s.sum
			delete(known, o)
		}
	}
	for _, s := range fresh {
		old, ok := gone[s.key]
		switch {
		case !ok:
			note(s.key, "added")
		case old != s.sum:
			note(s.key, "changed")
		}
		delete(gone, s.key)
	}
	for k := range gone {
		note(k, "removed")
	}
}

// plainSums hashes the objects of c that each load makes anew.
func plainSums(c *config.Config) map[objectKey]sum {
	m := make(map[objectKey]sum, 1+len(c.Environments)+len(c.EnvGroups)+len(c.VirtualHosts))
	srv := c.Server
	srv.Pos = config.Pos{}
	m[objectKey{"", "server", "server"}] = hashOf(srv)
	for _, e := range c.Environments {
		v := *e
		v.Pos = config.Pos{}
		m[objectKey{e.Name, "environment", e.Name}] = hashOf(v)
	}
	for _, g := range c.EnvGroups {
		v := *g
		v.Pos = config.Pos{}
		m[objectKey{"", "env_group", g.Name}] = hashOf(v)
	}
	for _, vh := range c.VirtualHosts {
		// The certificate chain counts (a renewal is a change); the
		// private key never enters the hash input.
		v := *vh
		v.Pos, v.Certificate, v.ClientCAs = config.Pos{}, tls.Certificate{}, nil
		m[objectKey{"", "virtual_host", vh.Name}] = hashOf(struct {
			V    config.VirtualHost
			Cert [][]byte
		}{v, vh.Certificate.Certificate})
	}
	return m
}

// hashOf hashes the JSON of a schema value, whose fields all marshal.
func hashOf(v any) sum {
	b, _ := json.Marshal(v)
	return sha256.Sum256(b)
}
