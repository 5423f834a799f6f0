package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"edged/internal/config"
)

// Plan is a compiled config before anything runs: the routing table and,
// per environment, the objects it serves with a content hash. It is what
// `edged check` and `edged routes` look at, and what a reload compares.
type Plan struct {
	Config *config.Config
	Envs   map[string]*EnvPlan
	Groups map[string]*GroupPlan
	hosts  hostTable[*GroupPlan]
	// stateDir is where the environments' audit logs are: the state_dir
	// of the first plan, kept by every later one (see compile).
	stateDir string
}

// EnvPlan is everything one environment serves. Hash covers exactly what
// its runtime is built from, so equal hashes mean the running environment
// can be kept as it is.
type EnvPlan struct {
	Env          *config.Environment
	Proxies      []*config.Proxy    // sorted by name
	Upstreams    []*config.Upstream // sorted by name; includes one per proxy target
	MaxBodyBytes int64
	WriteTimeout time.Duration // the server's write_timeout, extended per write on streams
	AuditPath    string        // state_dir/audit/<env>.log when rules.audit_log is on
	// stateDir is the plan's: no access log may write into what edged
	// keeps there (StateFileProblem).
	stateDir string
	// logDir is [server] access_log_dir where the environment writes
	// its access log to a file: the file must be in it (logPlace).
	logDir string
	// CAs and Certs are the CA bundles and client certificates its
	// upstreams name, as config.Config holds them.
	CAs   map[string]*config.CABundle
	Certs map[string]*config.ClientCert
	Hash  string

	// in and the configured upstreams and proxies in file order are what
	// the plan was made from; kept says it was taken over from the
	// previous plan (see compile).
	in           envInputs
	srcUpstreams []*config.Upstream
	srcProxies   []*config.Proxy
	upstreams    map[string]*config.Upstream // Upstreams by name
	kept         bool
}

// envInputs is what an environment's plan takes from outside its proxies
// and upstreams.
type envInputs struct {
	Env     config.Environment // Pos cleared
	MaxBody int64
	WriteTO time.Duration
	Audit   string
	LogDir  string // access_log_dir, for an access log to a file: rebuilt when it changes
	// TLSSums are the SHA-256 of the CA bundles and client certificates
	// its upstreams name: one rewritten under unchanged config files
	// rebuilds the environment's upstreams.
	TLSSums map[string]string
}

// GroupPlan is one env group with its virtual host and base-path table.
type GroupPlan struct {
	Group       *config.EnvGroup
	VirtualHost *config.VirtualHost
	Routes      []RoutePlan // sorted by base path
	kept        bool        // Routes are the previous plan's (see compile)
}

// RoutePlan maps a base path of a group to a proxy of an environment.
type RoutePlan struct {
	BasePath string
	Env      string
	Proxy    *config.Proxy
	Upstream *config.Upstream
}

// targetUpstreamName names the one-node upstream a proxy's `target` makes.
// The "~" cannot appear in a configured name, so it never collides.
func targetUpstreamName(proxy string) string { return "~target:" + proxy }

// Compile turns a validated config into a plan. It fails only on what
// validation cannot see; a config from config.Load compiles.
func Compile(cfg *config.Config) (*Plan, error) { return compile(cfg, nil) }

// compile is Compile taking over from prev what did not change, so that a
// reload's cost follows the change rather than the fleet. An environment
// keeps prev's sorted lists and hash when its own settings are equal and
// its upstreams and proxies are the very objects prev was made from: a
// config.Loader shares those of unchanged files, and nothing writes to
// them after their first check (see config's decodedObj); compile and
// build only read them. An env group whose environments are the same list
// and all kept theirs keeps its routes (routes depend on nothing else of
// the group). TestIncrementalReloadMatchesFromScratch holds this against
// from-scratch compiles.
func compile(cfg *config.Config, prev *Plan) (*Plan, error) {
	p := &Plan{
		Config: cfg,
		Envs:   map[string]*EnvPlan{},
		Groups: map[string]*GroupPlan{},
		hosts:  newHostTable[*GroupPlan](),
		// A state_dir changed by a reload takes effect at the next
		// restart, as the reload warns, for the environments' audit logs
		// as for the history and audit.log beside them: an environment's
		// trail is not split, and no log goes to a directory the start
		// did not check (history.CheckStateDir).
		stateDir: cfg.Server.StateDir,
	}
	if prev != nil {
		p.stateDir = prev.stateDir
	}
	for _, e := range cfg.Environments {
		ep := &EnvPlan{Env: e, MaxBodyBytes: cfg.Server.MaxBodyBytes, WriteTimeout: cfg.Server.WriteTimeout.Duration, stateDir: p.stateDir}
		if e.Rules.AuditLog.On() {
			ep.AuditPath = AuditLogPath(p.stateDir, e.Name)
		}
		if e.MaxBodyBytes != nil {
			ep.MaxBodyBytes = *e.MaxBodyBytes
		}
		if al := e.Rules.AccessLog; al.On() && al.Path != "" {
			ep.logDir = cfg.Server.AccessLogDir
		}
		ep.in = envInputs{Env: *e, MaxBody: ep.MaxBodyBytes, WriteTO: ep.WriteTimeout, Audit: ep.AuditPath, LogDir: ep.logDir}
		ep.in.Env.Pos = config.Pos{}
		p.Envs[e.Name] = ep
	}
	for _, u := range cfg.Upstreams {
		ep, ok := p.Envs[u.Environment]
		if !ok {
			return nil, fmt.Errorf("upstream %q: environment %q is not defined", u.Name, u.Environment)
		}
		ep.srcUpstreams = append(ep.srcUpstreams, u)
		ep.addUpstreamTLS(cfg, u)
	}
	var ep *EnvPlan // proxies of one environment mostly follow each other
	for _, px := range cfg.Proxies {
		if ep == nil || ep.Env.Name != px.Environment {
			if ep = p.Envs[px.Environment]; ep == nil {
				return nil, fmt.Errorf("proxy %q: environment %q is not defined", px.Name, px.Environment)
			}
		}
		ep.srcProxies = append(ep.srcProxies, px)
	}
	for name, ep := range p.Envs {
		var old *EnvPlan
		if prev != nil {
			old = prev.Envs[name]
		}
		if err := ep.complete(old); err != nil {
			return nil, err
		}
	}
	vhosts := map[string]*config.VirtualHost{}
	for _, vh := range cfg.VirtualHosts {
		vhosts[vh.Name] = vh
	}
	for _, g := range cfg.EnvGroups {
		var old *GroupPlan
		if prev != nil {
			old = prev.Groups[g.Name]
		}
		gp, err := p.groupPlan(g, vhosts[g.Name], old)
		if err != nil {
			return nil, err
		}
		p.Groups[g.Name] = gp
		for _, h := range g.Hostnames {
			p.hosts.add(h, gp)
		}
	}
	return p, nil
}

// addUpstreamTLS takes the CA bundle and client certificate u names from
// what cfg's load read.
func (ep *EnvPlan) addUpstreamTLS(cfg *config.Config, u *config.Upstream) {
	b, c := cfg.UpstreamCAs[u.TLSCAFile], cfg.UpstreamCerts[config.ClientCertKey(u)]
	if b == nil && c == nil {
		return
	}
	if ep.in.TLSSums == nil {
		ep.in.TLSSums = make(map[string]string)
	}
	if b != nil {
		if ep.CAs == nil {
			ep.CAs = make(map[string]*config.CABundle)
		}
		ep.CAs[u.TLSCAFile] = b
		ep.in.TLSSums["ca "+u.TLSCAFile] = b.SHA256
	}
	if c != nil {
		if ep.Certs == nil {
			ep.Certs = make(map[string]*config.ClientCert)
		}
		key := config.ClientCertKey(u)
		ep.Certs[key] = c
		ep.in.TLSSums["cert "+key] = c.SHA256
	}
}

// complete sorts the environment's proxies and upstreams, with one
// upstream per proxy target, and hashes them; or takes all that over from
// old when nothing it is made of changed.
func (ep *EnvPlan) complete(old *EnvPlan) error {
	if old != nil && slices.Equal(ep.srcProxies, old.srcProxies) && slices.Equal(ep.srcUpstreams, old.srcUpstreams) &&
		reflect.DeepEqual(ep.in, old.in) {
		ep.Proxies, ep.Upstreams, ep.upstreams, ep.Hash, ep.kept = old.Proxies, old.Upstreams, old.upstreams, old.Hash, true
		return nil
	}
	ep.Proxies = slices.Clone(ep.srcProxies)
	ep.Upstreams = slices.Clone(ep.srcUpstreams)
	for _, px := range ep.Proxies {
		if px.Target != "" {
			u, err := targetUpstream(px)
			if err != nil {
				return err
			}
			ep.Upstreams = append(ep.Upstreams, u)
		}
	}
	sort.Slice(ep.Proxies, func(i, j int) bool { return ep.Proxies[i].Name < ep.Proxies[j].Name })
	sort.Slice(ep.Upstreams, func(i, j int) bool { return ep.Upstreams[i].Name < ep.Upstreams[j].Name })
	ep.upstreams = make(map[string]*config.Upstream, len(ep.Upstreams))
	for _, u := range ep.Upstreams {
		ep.upstreams[u.Name] = u
	}
	h, err := envHash(ep)
	if err != nil {
		return err
	}
	ep.Hash = h
	return nil
}

// groupPlan maps the base paths of a group's environments to their
// proxies, or takes old's routes when the group and its environments are
// as they were.
func (p *Plan) groupPlan(g *config.EnvGroup, vh *config.VirtualHost, old *GroupPlan) (*GroupPlan, error) {
	gp := &GroupPlan{Group: g, VirtualHost: vh}
	if old != nil && slices.Equal(g.Environments, old.Group.Environments) {
		kept := true
		for _, envName := range g.Environments {
			if ep := p.Envs[envName]; ep == nil || !ep.kept {
				kept = false
				break
			}
		}
		if kept {
			gp.Routes, gp.kept = old.Routes, true
			return gp, nil
		}
	}
	for _, envName := range g.Environments {
		ep := p.Envs[envName]
		if ep == nil {
			return nil, fmt.Errorf("env group %q: environment %q is not defined", g.Name, envName)
		}
		for _, px := range ep.Proxies {
			rp := RoutePlan{BasePath: px.BasePath, Env: envName, Proxy: px}
			if px.Target != "" {
				rp.Upstream = ep.upstreams[targetUpstreamName(px.Name)]
			} else {
				rp.Upstream = ep.upstreams[px.Upstream]
			}
			if rp.Upstream == nil {
				return nil, fmt.Errorf("proxy %q: upstream %q is not defined in environment %q", px.Name, px.Upstream, envName)
			}
			gp.Routes = append(gp.Routes, rp)
		}
	}
	sort.Slice(gp.Routes, func(i, j int) bool { return gp.Routes[i].BasePath < gp.Routes[j].BasePath })
	for i := 1; i < len(gp.Routes); i++ {
		if gp.Routes[i].BasePath == gp.Routes[i-1].BasePath {
			return nil, fmt.Errorf("env group %q: base path %q is served by proxy %q in %q and by proxy %q in %q",
				g.Name, gp.Routes[i].BasePath, gp.Routes[i-1].Proxy.Name, gp.Routes[i-1].Env, gp.Routes[i].Proxy.Name, gp.Routes[i].Env)
		}
	}
	return gp, nil
}

// targetUpstream makes the one-node upstream behind `target = URL`, with
// the defaults any upstream gets.
func targetUpstream(px *config.Proxy) (*config.Upstream, error) {
	origin := px.TargetOrigin()
	if origin == "" {
		return nil, fmt.Errorf("proxy %q: target %q is not an absolute URL", px.Name, px.Target)
	}
	retries := config.DefaultRetries
	return &config.Upstream{
		Name:            targetUpstreamName(px.Name),
		Environment:     px.Environment,
		Nodes:           []config.Node{{URL: origin, Weight: 1}},
		Balance:         config.DefaultBalance,
		PassHost:        config.DefaultPassHost,
		ConnectTimeout:  config.Duration{Duration: config.DefaultConnectTimeout},
		ResponseTimeout: config.Duration{Duration: config.DefaultResponseTimeout},
		Retries:         &retries,
		MaxIdlePerNode:  config.DefaultMaxIdlePerNode,
		Pos:             px.Pos,
	}, nil
}

// AuditLogPath is where an environment with rules.audit_log writes.
func AuditLogPath(stateDir, env string) string {
	return filepath.Join(stateDir, "audit", env+".log")
}

// envHash hashes what an environment's runtime is built from. Positions
// are left out: moving a block within or across files changes nothing.
func envHash(ep *EnvPlan) (string, error) {
	doc := struct {
		envInputs
		Proxies   []config.Proxy
		Upstreams []config.Upstream
	}{envInputs: ep.in}
	for _, px := range ep.Proxies {
		c := *px
		c.Pos = config.Pos{}
		doc.Proxies = append(doc.Proxies, c)
	}
	for _, u := range ep.Upstreams {
		c := *u
		c.Pos = config.Pos{}
		doc.Upstreams = append(doc.Upstreams, c)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("environment %q: hashing its config: %w", ep.Env.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// RouteHost is a hostname of the routing table with the group it
// belongs to.
type RouteHost struct {
	Host  string
	Group *GroupPlan
}

// RouteHosts lists, sorted, the hostnames of the groups that route
// anything. The routing table `edged routes` prints has a row for each of
// them and each of its group's Routes, in their order (by base path): the
// rows are hostnames × routes, a million for a group of 1,000 hostnames
// serving 1,000 proxies, each listing its upstream's nodes, so they are
// walked rather than made (made, 1,000 × 1,000 × 10 nodes took 2 GB).
func (p *Plan) RouteHosts() []RouteHost {
	n := 0
	for _, gp := range p.Groups {
		if len(gp.Routes) > 0 {
			n += len(gp.Group.Hostnames)
		}
	}
	hosts := make([]RouteHost, 0, n)
	for _, gp := range p.Groups {
		if len(gp.Routes) == 0 {
			continue
		}
		for _, h := range gp.Group.Hostnames {
			hosts = append(hosts, RouteHost{Host: h, Group: gp})
		}
	}
	// A hostname belongs to one group only: the order is total.
	slices.SortFunc(hosts, func(a, b RouteHost) int { return strings.Compare(a.Host, b.Host) })
	return hosts
}

// Lookup resolves a host and path like a request would (for tests).
func (p *Plan) Lookup(host, path string) (*GroupPlan, *RoutePlan) {
	gp, ok := p.hosts.lookup(hostOnly(host))
	if !ok {
		return nil, nil
	}
	t := newPathTable[*RoutePlan]()
	for i := range gp.Routes {
		t.add(gp.Routes[i].BasePath, &gp.Routes[i])
	}
	r, _ := t.match(path)
	return gp, r
}
