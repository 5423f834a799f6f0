package config

import (
	"fmt"
	"slices"
)

// The checks that relate upstreams and proxies to each other (names unique
// in their environment, the upstream a proxy names, base paths served
// once) are made per environment and per env group. A Loader keeps what
// its last Load found, so an environment whose upstreams and proxies are
// the very objects it had then (see decodedObj) and that passed then is
// not checked again: a reload checks what changed, not the fleet. Those
// checks only read the objects and their metas, and depend on nothing but
// the objects of the environment (of the group's environments, for base
// paths served twice): an error that names another environment (the
// hint of upstreamEnv) is only met when the check fails, and a failed
// check is made again.

// objRef is an upstream or proxy of this load with its meta.
type objRef[T any] struct {
	obj  T
	meta *objMeta
}

// envContents is what one environment holds, in file order.
type envContents struct {
	upstreams []objRef[*Upstream]
	proxies   []objRef[*Proxy]
	// same: the objects are those of the last Load; passed: its checks
	// found nothing.
	same, passed bool
	n            int // objects counted, while sortInto runs
}

// sameObjects reports whether c holds exactly the objects of prev.
func (c *envContents) sameObjects(prev *envContents) bool {
	if prev == nil || len(c.upstreams) != len(prev.upstreams) || len(c.proxies) != len(prev.proxies) {
		return false
	}
	for i, u := range c.upstreams {
		if u.obj != prev.upstreams[i].obj {
			return false
		}
	}
	for i, p := range c.proxies {
		if p.obj != prev.proxies[i].obj {
			return false
		}
	}
	return true
}

// groupCheck is what checking one env group's base paths found.
type groupCheck struct {
	envs   []string // distinct, in the group's order
	passed bool
}

// checkContents sorts upstreams and proxies into their environments and
// checks what relates them, environment by environment and group by group,
// and that the groups make at most maxRoutes routes (see MaxRoutes).
func (l *loader) checkContents(envs map[string]*Environment, groups map[string]*EnvGroup) {
	byEnv := make(map[string]*envContents, len(envs))
	for name := range envs {
		byEnv[name] = &envContents{}
	}
	sortInto(l, byEnv, envs, l.cfg.Upstreams, l.upstreamMeta, func(u *Upstream) string { return u.Environment },
		func(c *envContents) *[]objRef[*Upstream] { return &c.upstreams })
	sortInto(l, byEnv, envs, l.cfg.Proxies, l.proxyMeta, func(p *Proxy) string { return p.Environment },
		func(c *envContents) *[]objRef[*Proxy] { return &c.proxies })
	for _, e := range l.cfg.Environments {
		c := byEnv[e.Name]
		if envs[e.Name] != e || c == nil {
			continue
		}
		prev := l.prevEnvs[e.Name]
		c.same = c.sameObjects(prev)
		if c.same && prev.passed {
			c.passed = true
			continue
		}
		before := len(l.errs)
		l.checkEnvContents(e.Name, c, byEnv)
		c.passed = len(l.errs) == before
	}
	l.envs = byEnv

	l.groups = make(map[string]*groupCheck, len(groups))
	total := countRoutes(l.cfg.EnvGroups, groups, byEnv)
	routes := 0
	for _, g := range l.cfg.EnvGroups {
		if groups[g.Name] != g {
			continue
		}
		gc := &groupCheck{}
		done := make(map[string]bool, len(g.Environments))
		same := true
		over := false
		for i, env := range g.Environments {
			if !done[env] {
				done[env] = true
				gc.envs = append(gc.envs, env)
				c := byEnv[env]
				same = same && c != nil && c.same
				if c == nil || over {
					continue
				}
				if routes <= maxRoutes && routes+len(c.proxies) > maxRoutes {
					l.errAt(l.meta[g], indexPath("environments", i),
						"%d routes, more than the %d a configuration may have: an env group routes every proxy of each of its environments in a table of its own, so environment %q's %d proxies count once more for each group serving it; "+
							"serve them from fewer env groups (one group may list many hostnames), or serve some environments from another edged",
						total, maxRoutes, env, len(c.proxies))
				}
				routes += len(c.proxies)
				over = routes > maxRoutes
			}
		}
		if over {
			// Past the limit the checks are not made: their cost is
			// what the limit bounds.
			l.groups[g.Name] = gc
			continue
		}
		if prev := l.prevGroups[g.Name]; same && prev != nil && prev.passed && slices.Equal(prev.envs, gc.envs) {
			gc.passed = true
		} else {
			before := len(l.errs)
			l.checkGroupBasePaths(g, gc.envs, byEnv)
			gc.passed = len(l.errs) == before
		}
		l.groups[g.Name] = gc
	}
}

// countRoutes is the number of routes the env groups of groups make: for
// each group, the proxies of each distinct environment it serves.
func countRoutes(all []*EnvGroup, groups map[string]*EnvGroup, byEnv map[string]*envContents) int {
	n := 0
	done := make(map[string]bool)
	for _, g := range all {
		if groups[g.Name] != g {
			continue
		}
		clear(done)
		for _, env := range g.Environments {
			if c := byEnv[env]; c != nil && !done[env] {
				done[env] = true
				n += len(c.proxies)
			}
		}
	}
	return n
}

// sortInto puts each of objs (with its meta, index for index) into the
// list of its environment in byEnv, reporting those whose environment is
// not defined. Lists are cut from one array; objects of one environment
// mostly follow each other, so the last environment found is tried first.
func sortInto[T interface{ *Upstream | *Proxy }](l *loader, byEnv map[string]*envContents, envs map[string]*Environment,
	objs []T, metas []*objMeta, envOf func(T) string, list func(*envContents) *[]objRef[T]) {
	owner := make([]*envContents, len(objs))
	lastName, last := "", (*envContents)(nil)
	for i, o := range objs {
		name := envOf(o)
		if last == nil || name != lastName {
			lastName, last = name, byEnv[name]
		}
		if last == nil {
			l.checkEnvRef(metas[i], name, envs)
			continue
		}
		owner[i] = last
		last.n++
	}
	all := make([]objRef[T], 0, len(objs))
	for i, c := range owner {
		if c == nil {
			continue
		}
		lst := list(c)
		if c.n > 0 {
			n := len(all)
			all = all[:n+c.n]
			*lst = all[n:n:len(all)]
			c.n = 0
		}
		*lst = append(*lst, objRef[T]{objs[i], metas[i]})
	}
}

// checkEnvContents checks one environment: upstream and proxy names
// unique, the upstreams its proxies name defined, and base paths served
// once. Apigee lets the first deployment of a base path win; a directory
// of files has no first, so both places are named.
func (l *loader) checkEnvContents(env string, c *envContents, byEnv map[string]*envContents) {
	ups := make(map[string]*Upstream, len(c.upstreams))
	seen := make(map[nameKey]*objMeta, len(c.upstreams))
	for _, r := range c.upstreams {
		if validName(r.obj.Name) && l.checkUnique(r.meta, nameKey{env, r.obj.Name}, seen) {
			ups[r.obj.Name] = r.obj
		}
	}
	clear(seen)
	first := make(map[string]objRef[*Proxy], len(c.proxies))
	for _, r := range c.proxies {
		p := r.obj
		if validName(p.Name) {
			l.checkUnique(r.meta, nameKey{env, p.Name}, seen)
		}
		if p.Upstream != "" && p.Target == "" && ups[p.Upstream] == nil {
			hint := ""
			if other := l.upstreamEnv(p.Upstream, byEnv); other != "" {
				hint = fmt.Sprintf(" (it is defined in environment %q; an upstream serves only its own environment)", other)
			}
			l.errAt(r.meta, "upstream", "%q is not defined in environment %q%s", p.Upstream, env, hint)
		}
		if r.meta.bad["base_path"] {
			continue
		}
		if prev, ok := first[p.BasePath]; ok {
			l.errAt(r.meta, "base_path", "%q is already served by proxy %q in environment %q at %s",
				p.BasePath, prev.obj.Name, env, prev.meta.at("base_path"))
			continue
		}
		first[p.BasePath] = r
	}
}

// upstreamEnv is the first environment (in file order) with an upstream
// called name, for the hint of a proxy that names an upstream of another
// environment; "" when there is none. The first such proxy of a load
// indexes every upstream by name, which only a load with a proxy in error
// pays for; walking them once per such proxy was quadratic (30,000 of
// each took seconds).
func (l *loader) upstreamEnv(name string, byEnv map[string]*envContents) string {
	if l.upstreamEnvs == nil {
		l.upstreamEnvs = make(map[string]string)
		for _, u := range l.cfg.Upstreams {
			if _, ok := l.upstreamEnvs[u.Name]; !ok && byEnv[u.Environment] != nil {
				l.upstreamEnvs[u.Name] = u.Environment
			}
		}
	}
	return l.upstreamEnvs[name]
}

// checkGroupBasePaths finds base paths that two environments of one group
// both serve.
func (l *loader) checkGroupBasePaths(g *EnvGroup, envs []string, byEnv map[string]*envContents) {
	first := make(map[string]objRef[*Proxy])
	for _, env := range envs {
		c := byEnv[env]
		if c == nil {
			continue
		}
		for _, r := range c.proxies {
			if r.meta.bad["base_path"] {
				continue
			}
			prev, ok := first[r.obj.BasePath]
			if !ok {
				first[r.obj.BasePath] = r
				continue
			}
			if prev.obj.Environment == r.obj.Environment {
				continue // reported by checkEnvContents
			}
			// Report at the later of the two, so the message does not
			// depend on the order of the group's environment list.
			a, b := prev, r
			if posLess(b.meta.at("base_path"), a.meta.at("base_path")) {
				a, b = b, a
			}
			l.errAt(b.meta, "base_path",
				"%q is also served by proxy %q of environment %q (%s), and env_group %q serves both environments; give one a different base_path or move one environment to another group",
				b.obj.BasePath, a.obj.Name, a.obj.Environment, a.meta.at("base_path"), g.Name)
		}
	}
}
