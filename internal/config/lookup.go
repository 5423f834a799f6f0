package config

import (
	"net/url"
	"sort"
	"strings"
)

// EnvironmentByName returns the environment called name, or nil.
func (c *Config) EnvironmentByName(name string) *Environment {
	for _, e := range c.Environments {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// GroupByName returns the env group called name, or nil.
func (c *Config) GroupByName(name string) *EnvGroup {
	for _, g := range c.EnvGroups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// VirtualHostByName returns the virtual host called name (the TLS of the
// env group of that name), or nil.
func (c *Config) VirtualHostByName(name string) *VirtualHost {
	for _, vh := range c.VirtualHosts {
		if vh.Name == name {
			return vh
		}
	}
	return nil
}

// UpstreamByName returns the upstream called name in environment env, or nil.
func (c *Config) UpstreamByName(env, name string) *Upstream {
	for _, u := range c.Upstreams {
		if u.Environment == env && u.Name == name {
			return u
		}
	}
	return nil
}

// ProxiesOf returns the proxies of environment env, sorted by name.
func (c *Config) ProxiesOf(env string) []*Proxy {
	var out []*Proxy
	for _, p := range c.Proxies {
		if p.Environment == env {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// UpstreamsOf returns the upstreams of environment env, sorted by name.
func (c *Config) UpstreamsOf(env string) []*Upstream {
	var out []*Upstream
	for _, u := range c.Upstreams {
		if u.Environment == env {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GroupsOf returns the env groups that serve environment env, in file order.
func (c *Config) GroupsOf(env string) []*EnvGroup {
	var out []*EnvGroup
	for _, g := range c.EnvGroups {
		for _, e := range g.Environments {
			if e == env {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TargetOrigin returns scheme://host:port of a proxy written with target
// (its one-node upstream), or "" for a proxy that uses an upstream.
func (p *Proxy) TargetOrigin() string {
	if p.Target == "" {
		return ""
	}
	u, err := url.Parse(p.Target)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// ForwardPath returns the path prefix forwarded requests get: the path of
// target, or target_path. It never ends in "/" ("" when there is none), so
// ForwardPath() + (request path − base path) is the path sent upstream.
func (p *Proxy) ForwardPath() string {
	path := p.TargetPath
	if p.Target != "" {
		u, err := url.Parse(p.Target)
		if err != nil {
			return ""
		}
		path = u.EscapedPath()
	}
	return strings.TrimRight(path, "/")
}
