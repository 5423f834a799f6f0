package config

import "path/filepath"

// decodedFile is what decoding one file gave: the objects in file order,
// and the problems decoding met.
type decodedFile struct {
	sum  [32]byte
	objs []decodedObj
	errs []Error
}

// decodedObj is one object of a file. Environments, env groups, virtual
// hosts and the server stay pristine: each Load merges a deep copy, since
// defaults and validation write into it and depend on other objects (the
// server's max_body_bytes, the certificate files on disk).
//
// Upstreams and proxies, most of a large config, depend on nothing outside
// themselves until names are resolved. The first Load that merges one
// applies its defaults and its own checks in place and keeps what they
// found (checked, errs); later Loads share the object as it is.
//
// The rule all reuse across reloads rests on: an upstream or proxy, and its
// meta, are written only by checkObject, once, before any Load returns
// them. That first check writes defaults (upstreamDefaults), node URLs and
// upstream_host as normalised, the cleaned base_path and target, and
// meta.bad["base_path"]; nothing after it writes to either, here (the
// checks of environment contents only read them) or in whoever holds a
// Config (edge compiles and builds from them; history hashes them). The
// Loader's checks of unchanged environments (contents.go), edge's plan of
// an unchanged environment and history's Tracker reuse by the object's
// address on that rule. edge's TestIncrementalReloadMatchesFromScratch and
// FuzzIncrementalReload compare reloads after random edits with
// from-scratch loads, to keep it so.
type decodedObj struct {
	obj     any // *Environment, *EnvGroup, ... or *Server
	meta    *objMeta
	checked bool
	errs    []Error
}

// merge adds a decoded file to the config with the file's decode
// problems: upstreams and proxies as checked once (see decodedObj), the
// other objects as deep copies.
func (l *loader) merge(df *decodedFile) {
	l.errs = append(l.errs, df.errs...)
	for i := range df.objs {
		d := &df.objs[i]
		switch o := d.obj.(type) {
		case *Server:
			if prev := l.serverMeta; prev != nil {
				l.errAt(d.meta, "", "[server] is already defined at %s; keep a single [server] table in one file", prev.pos)
				continue
			}
			l.serverMeta = d.meta
			l.cfg.Server = deepCopy(o)
			if dir := filepath.Dir(d.meta.pos.File); dir != filepath.Clean(l.dir) {
				// The directories below the top may be environments' homes,
				// writable by their operators; [server] names state_dir,
				// where every edged command finds the history and the
				// control socket, and the listeners of every environment.
				l.errAt(d.meta, "", "[server] must be declared in a file directly in %s, not in %s: it sets the listeners and the state_dir of every environment, and the directories below may be environments' homes, writable by their operators; move it to %s",
					filepath.Clean(l.dir), dir, filepath.Join(filepath.Clean(l.dir), "server.toml"))
			}
		case *Upstream, *Proxy:
			if !d.checked {
				l.checkObject(d)
			}
			l.errs = append(l.errs, d.errs...)
			l.add(d.obj, d.meta)
		default:
			obj := deepCopyAny(d.obj)
			l.meta[obj] = d.meta
			l.add(obj, d.meta)
		}
	}
}

// checkObject defaults and checks an upstream or a proxy on its own, in
// place, and keeps what that found with it.
func (l *loader) checkObject(d *decodedObj) {
	before := len(l.errs)
	switch o := d.obj.(type) {
	case *Upstream:
		l.checkUpstream(o, d.meta)
	case *Proxy:
		l.checkProxy(o, d.meta)
	}
	d.errs = append([]Error(nil), l.errs[before:]...)
	l.errs = l.errs[:before]
	d.checked = true
}

func (l *loader) add(obj any, m *objMeta) {
	switch o := obj.(type) {
	case *Environment:
		l.cfg.Environments = append(l.cfg.Environments, o)
	case *EnvGroup:
		l.cfg.EnvGroups = append(l.cfg.EnvGroups, o)
	case *VirtualHost:
		l.cfg.VirtualHosts = append(l.cfg.VirtualHosts, o)
	case *Upstream:
		l.cfg.Upstreams = append(l.cfg.Upstreams, o)
		l.upstreamMeta = append(l.upstreamMeta, m)
	case *Proxy:
		l.cfg.Proxies = append(l.cfg.Proxies, o)
		l.proxyMeta = append(l.proxyMeta, m)
	}
}
