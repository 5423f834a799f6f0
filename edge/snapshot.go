package edge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync/atomic"
	"time"

	"edged/internal/config"
)

// Snapshot is what serves traffic: an immutable routing table over the
// environments' runtimes. A request loads the current snapshot once and
// finishes on it, whatever reloads happen meanwhile.
type Snapshot struct {
	Generation uint64
	Plan       *Plan
	Applied    time.Time

	envs         map[string]*Env
	groups       map[string]*groupRuntime
	hosts        hostTable[*groupRuntime]
	defaultGroup *groupRuntime // serves unknown or missing SNI; nil = refuse
	underscores  bool          // [server] underscores_in_headers: keep such header fields
}

// groupRuntime is one env group as the request path sees it.
type groupRuntime struct {
	name string
	tls  *tls.Config
	// tlsLegacy is tls without "h2", for the handshakes that land on TLS
	// 1.0 or 1.1 (tlsFor); nil when the virtual host allows neither.
	tlsLegacy *tls.Config
	// notAfter is when the virtual host's chain stops verifying
	// (config.ChainNotAfter); zero without a virtual host.
	notAfter time.Time
	// clientCAFile is the virtual host's client_ca_file ("" without
	// one), and clientCANotAfter the earliest end of its CAs
	// (config.VirtualHost.ClientCANotAfter).
	clientCAFile     string
	clientCANotAfter time.Time
	paths            pathTable[*proxyRuntime]
	// clientCerts: the virtual host requires client certificates, so
	// the plain listener never serves the group.
	clientCerts bool
	// forwardClientCert: the virtual host has forward_client_cert (with
	// client_ca_file, clientCerts): its requests carry Client-Cert and
	// Client-Cert-Chain to the node.
	forwardClientCert bool
	// trustedRoot is the last client CA trustsClient found in tls's
	// ClientCAs: most clients share one, which then costs a compare.
	trustedRoot atomic.Pointer[x509.Certificate]
	// counters count the refusals and handshakes of the group's virtual
	// host (of the same name).
	counters *vhostCounters
}

// groupForSNI finds the group whose virtual host a handshake for name
// used: the same lookup as for Host, falling back to the default. A name
// longer than a hostname may be (a ClientHello carries up to 64 KiB of
// it; validHost bounds a Host so) is no group's, and is not looked up:
// each wildcard probe hashes the rest of the name, and this runs at the
// handshake and again for every request of the connection.
func (s *Snapshot) groupForSNI(name string) *groupRuntime {
	if len(name) > maxHostLen {
		return s.defaultGroup
	}
	if g, ok := s.hosts.lookup(hostOnly(name)); ok {
		return g
	}
	return s.defaultGroup
}

// Env returns the runtime of an environment (nil when none).
func (s *Snapshot) Env(name string) *Env { return s.envs[name] }

// Change says what a reload did to the environments.
type Change struct {
	Added   []string `json:"added,omitempty"`
	Changed []string `json:"changed,omitempty"`
	Removed []string `json:"removed,omitempty"`
	Kept    []string `json:"kept,omitempty"`
}

// build makes the snapshot for plan. Environments whose hash matches one
// in prev are taken over as they are; the others are built new, taking
// over the health of the upstream nodes prev's runtime has too. On error
// whatever was built is closed again and prev is untouched.
func build(plan *Plan, prev *Snapshot, gen uint64, log *slog.Logger) (*Snapshot, Change, error) {
	s := &Snapshot{
		Generation: gen,
		Plan:       plan,
		Applied:    time.Now(),
		envs:       map[string]*Env{},
		groups:     map[string]*groupRuntime{},
		hosts:      newHostTable[*groupRuntime](),
	}
	var ch Change
	var built []*Env
	fail := func(err error) (*Snapshot, Change, error) {
		for _, e := range built {
			e.Close()
		}
		return nil, Change{}, err
	}
	names := make([]string, 0, len(plan.Envs))
	for name := range plan.Envs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ep := plan.Envs[name]
		var old *Env
		if prev != nil {
			old = prev.envs[name]
		}
		if old != nil && old.Hash == ep.Hash {
			s.envs[name] = old
			ch.Kept = append(ch.Kept, name)
			continue
		}
		e, err := newEnv(ep, old, log)
		if err != nil {
			// Where the environment is written: /status and edged reload
			// name the file and line of what failed to build.
			return fail(config.Errors{{Pos: ep.Env.Pos, Msg: err.Error()}})
		}
		built = append(built, e)
		s.envs[name] = e
		if old != nil {
			ch.Changed = append(ch.Changed, name)
		} else {
			ch.Added = append(ch.Added, name)
		}
	}
	if prev != nil {
		for name := range prev.envs {
			if _, ok := s.envs[name]; !ok {
				ch.Removed = append(ch.Removed, name)
			}
		}
		sort.Strings(ch.Removed)
	}
	for name, gp := range plan.Groups {
		if g := keptGroup(s, prev, gp); g != nil {
			s.groups[name] = g
			for _, h := range gp.Group.Hostnames {
				s.hosts.add(h, g)
			}
			continue
		}
		g := &groupRuntime{name: name, paths: newPathTable[*proxyRuntime](), counters: &vhostCounters{name: name}}
		if prev != nil && prev.groups[name] != nil {
			// The virtual host's counts go on: a group rebuilt for a new
			// route or hostname is the same virtual host to its scrapers.
			g.counters = prev.groups[name].counters
		}
		if gp.VirtualHost != nil {
			c, err := virtualHostTLS(gp.VirtualHost)
			if err != nil {
				return fail(config.Errors{{Pos: gp.VirtualHost.Pos, Msg: err.Error()}})
			}
			g.tls, g.tlsLegacy = c, withoutH2(c)
			g.clientCerts = gp.VirtualHost.ClientCAFile != ""
			g.forwardClientCert = g.clientCerts && gp.VirtualHost.ForwardClientCert
			// The chain's end: an intermediate that expires before the
			// leaf ends every handshake then.
			g.notAfter = config.ChainNotAfter(gp.VirtualHost.Certificate)
			if !gp.VirtualHost.ClientCANotAfter.IsZero() {
				g.clientCAFile, g.clientCANotAfter = gp.VirtualHost.ClientCAFile, gp.VirtualHost.ClientCANotAfter
			}
		}
		for _, r := range gp.Routes {
			px := s.envs[r.Env].proxies[r.Proxy.Name]
			if px == nil {
				return fail(fmt.Errorf("env group %q: proxy %q of environment %q has no runtime", name, r.Proxy.Name, r.Env))
			}
			g.paths.add(r.BasePath, px)
		}
		s.groups[name] = g
		for _, h := range gp.Group.Hostnames {
			s.hosts.add(h, g)
		}
	}
	s.underscores = plan.Config.Server.UnderscoresInHeaders
	if dv := plan.Config.Server.DefaultVirtualHost; dv != "" {
		s.defaultGroup = s.groups[dv]
	}
	return s, ch, nil
}

// keptGroup is prev's runtime of gp's group when it can serve s as it is:
// the plan kept the group's routes, every environment of the group kept
// its runtime, and the virtual host is the same. Otherwise nil.
func keptGroup(s, prev *Snapshot, gp *GroupPlan) *groupRuntime {
	if prev == nil || !gp.kept {
		return nil
	}
	old := prev.groups[gp.Group.Name]
	oldPlan := prev.Plan.Groups[gp.Group.Name]
	if old == nil || oldPlan == nil || !sameVirtualHost(gp.VirtualHost, oldPlan.VirtualHost) {
		return nil
	}
	for _, env := range gp.Group.Environments {
		if s.envs[env] == nil || s.envs[env] != prev.envs[env] {
			return nil
		}
	}
	return old
}

// sameVirtualHost reports whether two virtual hosts make the same TLS
// configuration. The loader hands out the same certificate pair for
// unchanged files, so this compares pointers rather than certificates.
// It makes a new client CA pool on every load, though, and a pool holds
// funcs, which reflect.DeepEqual never finds equal: pools are compared
// by their content.
func sameVirtualHost(a, b *config.VirtualHost) bool {
	if a == nil || b == nil {
		return a == b
	}
	if (a.ClientCAs == nil) != (b.ClientCAs == nil) || a.ClientCAs != nil && !a.ClientCAs.Equal(b.ClientCAs) {
		return false
	}
	x, y := *a, *b
	x.Pos, y.Pos = config.Pos{}, config.Pos{}
	x.ClientCAs, y.ClientCAs = nil, nil
	return reflect.DeepEqual(x, y)
}
