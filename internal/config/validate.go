package config

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"edged/internal/httpsyntax"
	"edged/internal/realpath"
	"edged/internal/termsafe"
)

var labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// validName reports whether name matches ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$.
// Written out because a reload checks every name of the fleet: the regexp
// was a tenth of a 10,000-proxy reload.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// Ranges of the numbers a file may set.
const (
	maxWorkers = 100000
	maxQueue   = 1000000
	// A longer hold only keeps connections open: a client retrying after
	// a minute throttles nothing more.
	maxRejectDelay    = time.Minute
	maxRetries        = 10
	maxIdlePerNode    = 100000
	maxWeight         = 1000
	maxHistoryKeep    = 10000
	minHeaderBytes    = 1 << 10
	maxHeaderBytes    = 1 << 20
	maxH2Streams      = 10000
	maxConnections    = 10000000
	maxHealthRequired = 100
	// An environment's labels are written into every series it has on
	// /metrics (a few dozen per proxy) and into each of its log lines:
	// unbounded, one file's labels table would be copied into every line
	// of every scrape. Kubernetes allows 63-character label values; these
	// are above it and what dashboards use.
	maxLabels          = 16
	maxLabelValueBytes = 128
	// A rescan reads and hashes every file of the configuration; it is a
	// safety net for missed events, not a way to poll.
	minRescanInterval = 100 * time.Millisecond
	// Each probe is a new connection to the node; a tighter loop only
	// loads the backends it watches.
	minHealthInterval = 10 * time.Millisecond
)

// MaxEnvironments bounds the environments of a configuration. Each is a
// runtime of its own (worker pool, metrics, log writers) whether or not a
// group serves it, about 14 KiB before any request: 63,704 empty
// [[environment]] tables, one 1.9 MB file, took edged serve to 906 MB.
// Apigee allows 85 environments per organization.
const MaxEnvironments = 1000

// MaxNodes bounds the nodes of all [[upstream]] tables together, a
// proxy's target counted as one (a one-node upstream). Each
// node is a runtime of its own in the environment listing it, however
// many other upstreams list the same address: its idle pool, and with
// active health checks a checker and a new connection to it every
// interval, about 6 KiB before any request. 260,000 nodes with 10 ms
// checks, within the 8 MiB of all files, took 1.2 GB and ran the process
// out of file descriptors. AWS allows 1,000 targets per load balancer.
const MaxNodes = 10000

// MaxRoutes bounds the routes of a configuration: for each env group,
// the proxies of each environment it serves. Each env group routes them
// in a table of its own, built and checked at every load (about 100 bytes
// a route), so one environment's proxies count once per group serving
// it: 1,600 groups serving one environment of 20,000 proxies, 1.7 MB of
// files, took edged check 22 s and 3.4 GB. A 10,000-proxy environment
// still fits in 100 groups.
const MaxRoutes = 1000000

// maxRoutes is MaxRoutes; a test lowers it.
var maxRoutes = MaxRoutes

// validate checks the merged configuration and normalises what it checks
// (hostnames, paths, URLs). Every problem is recorded; nothing stops early.
func (l *loader) validate() {
	l.validateServer()
	envs := l.validateEnvironments()
	l.checkHomes(envs)
	groups := l.validateGroups(envs)
	vhosts := l.validateVirtualHosts(groups)
	l.checkContents(envs, groups)
	l.checkNodeCount()
	l.checkUpstreamTLS()

	s := &l.cfg.Server
	if s.DefaultVirtualHost != "" {
		if _, ok := vhosts[s.DefaultVirtualHost]; !ok {
			l.errAt(l.serverMeta, "default_virtual_host",
				"%q is not a virtual_host; name one of the [[virtual_host]] tables, or remove it to reject clients without a known SNI",
				s.DefaultVirtualHost)
		}
	}
	attached := make(map[string]bool)
	for _, g := range l.cfg.EnvGroups {
		for _, e := range g.Environments {
			attached[e] = true
		}
	}
	for _, e := range l.cfg.Environments {
		if e.Name != "" && !attached[e.Name] {
			l.warnAt(l.meta[e], "", "attached to no env_group: none of its proxies can be reached; list it in the environments of an env_group")
		}
	}
}

// nameKey is what must be unique about a name: upstreams and proxies are
// scoped to their environment (env set), the other kinds to the whole
// configuration (env empty).
type nameKey struct{ env, name string }

// checkName checks the name of an object and that it is unique in seen.
func (l *loader) checkName(m *objMeta, name string, seen map[nameKey]*objMeta) bool {
	return l.checkNameValid(m, name) && l.checkUnique(m, nameKey{name: name}, seen)
}

// checkNameValid reports a name that is missing or not a valid name.
func (l *loader) checkNameValid(m *objMeta, name string) bool {
	if name == "" {
		l.errAt(m, "name", "required")
		return false
	}
	if !validName(name) {
		l.errAt(m, "name", "%q is not a valid name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters", name)
		return false
	}
	return true
}

// checkUnique records the object named key in seen, which maps a key to
// the first object of that name, or reports the object that came first.
func (l *loader) checkUnique(m *objMeta, key nameKey, seen map[nameKey]*objMeta) bool {
	if prev, ok := seen[key]; ok {
		scope := ""
		if key.env != "" {
			scope = fmt.Sprintf(" in environment %q", key.env)
		}
		l.errAt(m, "name", "%q is already defined%s at %s; %s", key.name, scope, prev.pos, uniqueHint(m.kind))
		return false
	}
	seen[key] = m
	return true
}

func uniqueHint(kind string) string {
	switch kind {
	case "upstream", "proxy":
		return kind + " names are unique within their environment"
	}
	return kind + " names are unique across all files"
}

func (l *loader) checkRange(m *objMeta, field string, v, lo, hi int64) {
	if v < lo || v > hi {
		l.errAt(m, field, "%d is out of range (%d to %d)", v, lo, hi)
	}
}

func (l *loader) checkPositive(m *objMeta, field string, d Duration) {
	if d.Duration <= 0 {
		l.errAt(m, field, "must be a positive duration like \"30s\", not %q", d.Duration.String())
	}
}

func (l *loader) checkNotNegative(m *objMeta, field string, d Duration) {
	if d.Duration < 0 {
		l.errAt(m, field, "must not be negative (\"0s\" switches it off)")
	}
}

func (l *loader) validateServer() {
	s := &l.cfg.Server
	m := l.serverMeta
	set := func(field string) bool { return m != nil && m.isSet(field) }

	type listener struct{ field, addr string }
	var listeners []listener
	if s.HTTPS == "" {
		l.errAt(m, "https", "required: the address of the TLS listener, e.g. %q", DefaultHTTPS)
	} else if err := checkListenAddr(s.HTTPS); err != nil {
		l.errAt(m, "https", "%v", err)
	} else {
		listeners = append(listeners, listener{"https", s.HTTPS})
	}
	if s.HTTP != "" {
		if err := checkListenAddr(s.HTTP); err != nil {
			l.errAt(m, "http", "%v", err)
		} else {
			listeners = append(listeners, listener{"http", s.HTTP})
		}
		if s.HTTPMode != "redirect" && s.HTTPMode != "serve" {
			l.errAt(m, "http_mode", "%q is not a mode: use \"redirect\" (to https) or \"serve\"", s.HTTPMode)
		}
	} else if set("http_mode") {
		l.errAt(m, "http_mode", "has no effect without http; set http = \"0.0.0.0:80\" or remove http_mode")
	}
	if s.Admin != "" {
		if err := checkListenAddr(s.Admin); err != nil {
			l.errAt(m, "admin", "%v", err)
		} else {
			listeners = append(listeners, listener{"admin", s.Admin})
			if !isLoopback(s.Admin) {
				l.warnAt(m, "admin", "%q is reachable from other machines: /metrics and /status have no authentication; prefer a loopback address like %q", s.Admin, DefaultAdmin)
			}
		}
	}
	for i := range listeners {
		for j := range i {
			if sameListenAddr(listeners[i].addr, listeners[j].addr) {
				l.errAt(m, listeners[i].field, "%q overlaps %s %q; each listener needs its own address",
					listeners[i].addr, listeners[j].field, listeners[j].addr)
			}
		}
	}
	if s.StateDir == "" {
		l.errAt(m, "state_dir", "must not be empty (remove it to use %s)", DefaultStateDir)
	}
	l.checkPositive(m, "drain_timeout", s.DrainTimeout)
	l.checkNotNegative(m, "shutdown_delay", s.ShutdownDelay)
	l.checkPositive(m, "reload_debounce", s.ReloadDebounce)
	l.checkPositive(m, "reload_max_wait", s.ReloadMaxWait)
	if s.ReloadMaxWait.Duration > 0 && s.ReloadMaxWait.Duration < s.ReloadDebounce.Duration {
		l.errAt(m, "reload_max_wait", "%s is shorter than reload_debounce %s; raise it, or remove it for the default (2s, or reload_debounce when longer)", s.ReloadMaxWait.Duration, s.ReloadDebounce.Duration)
	}
	l.checkNotNegative(m, "rescan_interval", s.RescanInterval)
	if d := s.RescanInterval.Duration; d > 0 && d < minRescanInterval {
		l.errAt(m, "rescan_interval", "%q is shorter than %q: each rescan reads and hashes every file; \"0s\" switches it off", d.String(), minRescanInterval.String())
	}
	l.checkPositive(m, "read_header_timeout", s.ReadHeaderTimeout)
	l.checkNotNegative(m, "read_timeout", s.ReadTimeout)
	l.checkNotNegative(m, "write_timeout", s.WriteTimeout)
	l.checkPositive(m, "idle_timeout", s.IdleTimeout)
	if s.MaxBodyBytes <= 0 {
		l.errAt(m, "max_body_bytes", "must be positive, not %d", s.MaxBodyBytes)
	}
	l.checkRange(m, "history_keep", int64(s.HistoryKeep), 1, maxHistoryKeep)
	l.checkRange(m, "max_header_bytes", int64(s.MaxHeaderBytes), minHeaderBytes, maxHeaderBytes)
	l.checkRange(m, "h2_max_concurrent_streams", int64(s.H2MaxConcurrentStreams), 1, maxH2Streams)
	if set("max_connections") {
		l.checkRange(m, "max_connections", int64(s.MaxConnections), 1, maxConnections)
	}
}

// checkListenAddr accepts host:port with a numeric port (0 picks a free
// one, which tests use) and a host that is empty, an IP or a hostname.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \"0.0.0.0:443\", \":443\", \"[::1]:9901\")", a)
	}
	if p, ok := parsePort(port); !ok || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", a, port)
	}
	if addr, zone, ok := strings.Cut(host, "%"); ok && net.ParseIP(addr) != nil {
		return fmt.Errorf("%q: an IPv6 zone %q is not supported; listen on the interface's global or unique local address, or on \"[::]\"", a, "%"+zone)
	}
	if host != "" && net.ParseIP(host) == nil {
		if _, err := NormalizeHostname(host); err != nil || strings.Contains(host, "*") {
			return fmt.Errorf("%q: %q is neither an IP address nor a hostname", a, host)
		}
	}
	return nil
}

// parsePort reads a port written as RFC 3986 and RFC 9110 write one:
// decimal digits only. strconv.Atoi, and net.Listen after it, also take
// a sign ("+8443"), which a Host header must not carry. Leading zeros are
// allowed; the number is what compares.
func parsePort(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// isLoopback reports whether a valid listen address is local to the machine.
func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameListenAddr reports whether two valid listen addresses would collide:
// same port (not 0; "08443" is 8443), and same host, or one of them every
// address (an empty host or [::]: both families), or one of them 0.0.0.0
// (every IPv4 address only, as edge listens on it) and the other no IPv6
// address.
func sameListenAddr(a, b string) bool {
	ha, sa, _ := net.SplitHostPort(a)
	hb, sb, _ := net.SplitHostPort(b)
	pa, _ := parsePort(sa)
	pb, _ := parsePort(sb)
	if pa != pb || pa == 0 {
		return false
	}
	ha, hb = listenHost(ha), listenHost(hb)
	return ha == hb || ha == "" || hb == "" ||
		ha == ipv4Wildcard && !strings.Contains(hb, ":") ||
		hb == ipv4Wildcard && !strings.Contains(ha, ":")
}

const ipv4Wildcard = "0.0.0.0"

// listenHost is the address a listener on host binds, as far as it can
// be told without resolving names: "" for every address of both families
// (an empty host, "::"), "0.0.0.0" for every IPv4 address, an IP in one
// spelling (an IPv4-mapped IPv6 address binds the IPv4 one), localhost as
// 127.0.0.1 (Go listens on a name's first IPv4 address), else the name in
// lower case.
func listenHost(h string) string {
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip.To4() != nil {
			return ip.String() // "0.0.0.0" for ::ffff:0.0.0.0 too
		}
		if ip.IsUnspecified() {
			return ""
		}
		return ip.String()
	}
	return strings.ToLower(h)
}

func (l *loader) validateEnvironments() map[string]*Environment {
	envs := make(map[string]*Environment)
	seen := make(map[nameKey]*objMeta)
	// An environment's name is the name of its audit log file
	// (state_dir/audit/NAME.log): on a case-insensitive file system two
	// names that differ only in case would write one file.
	folded := make(map[string]*Environment)
	if n := len(l.cfg.Environments); n > MaxEnvironments {
		e := l.cfg.Environments[MaxEnvironments]
		l.errAt(l.meta[e], "", "%d environments, more than the %d a configuration may have: each is a runtime of its own (workers, metrics, logs); merge environments, or remove those no env_group serves",
			n, MaxEnvironments)
	}
	for _, e := range l.cfg.Environments {
		m := l.meta[e]
		if l.checkName(m, e.Name, seen) {
			envs[e.Name] = e
			if prev := folded[strings.ToLower(e.Name)]; prev != nil {
				l.errAt(m, "name", "%q differs from environment %q at %s only in case; give it another name (its audit log would be %q's on a case-insensitive file system)",
					e.Name, prev.Name, l.meta[prev].pos, prev.Name)
			} else {
				folded[strings.ToLower(e.Name)] = e
			}
		}
		l.checkRange(m, "workers", int64(e.Workers), 1, maxWorkers)
		l.checkRange(m, "queue", int64(e.QueueLen()), 0, maxQueue)
		l.checkPositive(m, "queue_timeout", e.QueueTimeout)
		// Only a value the file wrote: the default follows queue_timeout,
		// whose own error says what is wrong when it is negative.
		if d := e.RejectDelay.Duration; m.isSet("reject_delay") && (d < 0 || d > maxRejectDelay) {
			l.errAt(m, "reject_delay", "%q is out of range (\"0s\" = answer at once, up to %q)", d.String(), maxRejectDelay.String())
		}
		if al := e.Rules.AccessLog; al != nil && al.Format != AccessLogJSON && al.Format != AccessLogCombined {
			l.errAt(m, "rules.access_log.format", "%q is not an access log format: use \"json\" or \"combined\"", al.Format)
		}
		if al := e.Rules.AccessLog; al.On() && al.Path != "" {
			if dir := l.cfg.Server.AccessLogDir; dir != "" && !InAccessLogDir(al.Path, dir) {
				hint := ""
				if strings.HasPrefix(al.Path, "/dev/") || strings.HasPrefix(al.Path, "/proc/") {
					hint = ` (for stdout, set path = "")`
				}
				l.errAt(m, "rules.access_log.path", "%s is outside [server] access_log_dir %s, where the environments' access logs must be; name a file in it or below%s", al.Path, dir, hint)
			} else if dir == "" && !l.platformDir(m.baseDir) {
				// A home below conf.d/ is made to be given to others
				// (Who may change what): they choose where edged writes.
				l.warnAt(m, "rules.access_log.path", "%s is written with edged's rights wherever the operators of this environment's home name it; set [server] access_log_dir to the directory their logs belong in", al.Path)
			}
		}
		// Only a value the file wrote: the server's, which an environment
		// leaving it out takes, is the server's error.
		if m.isSet("max_body_bytes") && e.MaxBodyBytes != nil && *e.MaxBodyBytes <= 0 {
			l.errAt(m, "max_body_bytes", "must be positive, not %d (remove it to use the server's)", *e.MaxBodyBytes)
		}
		if len(e.Labels) > maxLabels {
			l.errAt(m, "labels", "has %d labels, more than %d: each is added to every series of the environment on /metrics", len(e.Labels), maxLabels)
		}
		keys := make([]string, 0, len(e.Labels))
		for k := range e.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !labelRE.MatchString(k) {
				l.errAt(m, joinPath("labels", k), "label key %q is invalid: use letters, digits and '_', not starting with a digit", k)
			}
			if v := e.Labels[k]; len(v) > maxLabelValueBytes {
				l.errAt(m, joinPath("labels", k), "value is %d bytes long, more than %d: it is added to every series of the environment on /metrics", len(v), maxLabelValueBytes)
			} else if strings.IndexFunc(v, labelControl) >= 0 {
				// Written as it is on /metrics: an escape sequence would
				// reach the terminal of whoever reads it there, and a
				// bidirectional control reorder the line after it.
				l.errAt(m, joinPath("labels", k), "value %q holds a control character: it is added to every series of the environment on /metrics", v)
			}
		}
	}
	return envs
}

func (l *loader) validateGroups(envs map[string]*Environment) map[string]*EnvGroup {
	groups := make(map[string]*EnvGroup)
	seen := make(map[nameKey]*objMeta)
	type owner struct {
		group string
		pos   Pos
	}
	hostOwner := make(map[string]owner)
	for _, g := range l.cfg.EnvGroups {
		m := l.meta[g]
		if l.checkName(m, g.Name, seen) {
			groups[g.Name] = g
		}
		if len(g.Hostnames) == 0 {
			l.errAt(m, "hostnames", "needs at least one hostname, e.g. hostnames = [\"api.example.com\"]")
		}
		inGroup := make(map[string]bool)
		for i, h := range g.Hostnames {
			field := indexPath("hostnames", i)
			n, err := NormalizeHostname(h)
			if err != nil {
				l.errAt(m, field, "%v", err)
				continue
			}
			g.Hostnames[i] = n
			if inGroup[n] {
				l.errAt(m, field, "%q is listed twice", n)
				continue
			}
			inGroup[n] = true
			if prev, ok := hostOwner[n]; ok {
				l.errAt(m, field, "%q already belongs to env_group %q at %s; a hostname belongs to one group only", n, prev.group, prev.pos)
				continue
			}
			hostOwner[n] = owner{g.Name, m.at(field)}
			if net.ParseIP(n) != nil && g.Name != l.cfg.Server.DefaultVirtualHost {
				// The handshake picks a virtual host before any Host is
				// known, and a request for another group than the one it
				// picked is answered 421 (see edge's route).
				l.warnAt(m, field, "%q is an IP address, for which clients send no SNI (RFC 6066): its TLS handshakes get default_virtual_host's certificate, or fail without one, "+
					"and its https requests are answered 421 unless this group is default_virtual_host; set default_virtual_host = %q, or reach the group by a hostname", n, g.Name)
			}
		}
		if len(g.Environments) == 0 {
			l.errAt(m, "environments", "needs at least one environment, e.g. environments = [\"test\"]")
		}
		inList := make(map[string]bool)
		for i, e := range g.Environments {
			field := indexPath("environments", i)
			switch {
			case inList[e]:
				l.errAt(m, field, "environment %q is listed twice", e)
			case envs[e] == nil:
				l.errAt(m, field, "environment %q is not defined; add an [[environment]] with name = %q or fix the name", e, e)
			}
			inList[e] = true
		}
	}
	return groups
}

func (l *loader) validateVirtualHosts(groups map[string]*EnvGroup) map[string]*VirtualHost {
	vhosts := make(map[string]*VirtualHost)
	seen := make(map[nameKey]*objMeta)
	files := newVHostFiles(readOnce(l.readFile), &l.pairs)
	keysWarned := make(map[string]bool)
	plainServes := l.cfg.Server.HTTP != "" && l.cfg.Server.HTTPMode == "serve"
	for _, vh := range l.cfg.VirtualHosts {
		m := l.meta[vh]
		if l.checkName(m, vh.Name, seen) {
			vhosts[vh.Name] = vh
		}
		g := groups[vh.Name]
		if g == nil && validName(vh.Name) {
			l.errAt(m, "name", "there is no env_group %q: a virtual_host carries the TLS of the env_group with the same name", vh.Name)
		}
		for _, p := range checkTLSSettings(vh) {
			l.errAt(m, p.field, "%s", p.msg)
		}
		if plainServes && vh.ClientCAFile != "" {
			l.warnAt(m, "client_ca_file", "env_group %q requires client certificates, which plain HTTP cannot carry: "+
				"the http listener (http_mode = \"serve\") answers its hostnames 404 host.unknown; "+
				"set http_mode = \"redirect\" to send its clients to https, or accept that the group is reached over https only", vh.Name)
		}
		if l.readFile == nil {
			for _, p := range checkTLSFilesSet(vh) {
				l.errAt(m, p.field, "%s", p.msg)
			}
			continue
		}
		probs := loadTLS(vh, files)
		for _, p := range probs {
			l.errAt(m, p.field, "%s", p.msg)
		}
		if len(probs) == 0 {
			var hosts []string
			if g != nil {
				hosts = g.Hostnames
			}
			for _, p := range files.certWarnings(vh, hosts, l.now()) {
				l.warnAt(m, p.field, "%s", p.msg)
			}
			for _, msg := range files.caWarnings(vh.ClientCAFile, l.now()) {
				l.warnAt(m, "client_ca_file", "%s", msg)
			}
			if msg, fatal := suitesForKey(vh); fatal {
				l.errAt(m, "cipher_suites", "%s", msg)
			} else if msg != "" {
				l.warnAt(m, "cipher_suites", "%s", msg)
			} else if msg := suitesWithoutHTTP2(vh); msg != "" {
				l.errAt(m, "cipher_suites", "%s", msg)
			}
			if !keysWarned[vh.KeyFile] {
				keysWarned[vh.KeyFile] = true
				if msg := keyFileMode(vh.KeyFile); msg != "" {
					l.warnAt(m, "key_file", "%s", msg)
				}
			}
		}
	}
	for _, g := range l.cfg.EnvGroups {
		if g.Name != "" && vhosts[g.Name] == nil && validName(g.Name) {
			l.errAt(l.meta[g], "", "there is no virtual_host %q: every env_group needs a [[virtual_host]] with the same name holding its certificate and key", g.Name)
		}
	}
	return vhosts
}

// checkUpstream applies an upstream's defaults and checks what needs
// nothing but the upstream itself. Its result is kept with the file's
// decode, so a reload checks only the upstreams of the files that changed.
func (l *loader) checkUpstream(u *Upstream, m *objMeta) {
	upstreamDefaults(u, m)
	l.checkNameValid(m, u.Name)
	if len(u.Nodes) == 0 {
		l.errAt(m, "nodes", "needs at least one node, e.g. nodes = [{ url = \"http://10.0.0.5:8080\" }]")
	}
	nodes := make(map[string]int)
	for i := range u.Nodes {
		n := &u.Nodes[i]
		field := indexPath("nodes", i)
		origin, path, err := parseBackendURL(n.URL)
		if err != nil {
			l.errAt(m, field+".url", "%v", err)
		} else if path != "" && path != "/" {
			l.errAt(m, field+".url", "a node URL has no path (got %q); set target_path on the proxy instead", path)
		} else {
			// By host and port, whatever the scheme: a port speaks TLS or
			// not, and a node's series are labelled by its host and port.
			addr := origin[strings.Index(origin, "://")+3:]
			if prev, dup := nodes[addr]; dup {
				if u.Nodes[prev].URL != origin {
					l.errAt(m, field+".url", "%s is nodes[%d] with another scheme; a port speaks TLS or plain HTTP, not both", addr, prev)
				} else {
					l.errAt(m, field+".url", "%s is already nodes[%d]; raise its weight instead of listing it twice", origin, prev)
				}
			}
			nodes[addr] = i
			n.URL = origin
		}
		l.checkRange(m, field+".weight", int64(n.Weight), 1, maxWeight)
	}

	switch u.Balance {
	case "round_robin", "least_request":
		if u.HashOn != "" {
			l.errAt(m, "hash_on", "only applies to balance = \"hash\" (balance is %q)", u.Balance)
		}
	case "hash":
		if u.HashOn == "" {
			l.errNear(m, "hash_on", "balance", "required with balance = \"hash\": \"header:NAME\", \"cookie:NAME\" or \"client_ip\"")
		} else if err := checkHashOn(u.HashOn, l.cfg.Server.UnderscoresInHeaders); err != nil {
			l.errAt(m, "hash_on", "%v", err)
		}
	default:
		l.errAt(m, "balance", "%q is not a balancer: use \"round_robin\", \"least_request\" or \"hash\"", u.Balance)
	}

	switch u.PassHost {
	case "pass", "node":
		if u.UpstreamHost != "" {
			l.errAt(m, "upstream_host", "only applies to pass_host = \"rewrite\" (pass_host is %q)", u.PassHost)
		}
	case "rewrite":
		if u.UpstreamHost == "" {
			l.errNear(m, "upstream_host", "pass_host", "required with pass_host = \"rewrite\": the Host header to send, e.g. \"users.internal\"")
		} else if h, err := normalizeHostHeader(u.UpstreamHost); err != nil {
			l.errAt(m, "upstream_host", "%v", err)
		} else {
			u.UpstreamHost = h
		}
	default:
		l.errAt(m, "pass_host", "%q is not a mode: use \"pass\" (the client's Host), \"node\" (the node's host) or \"rewrite\" (with upstream_host)", u.PassHost)
	}

	l.checkPositive(m, "connect_timeout", u.ConnectTimeout)
	l.checkPositive(m, "response_timeout", u.ResponseTimeout)
	l.checkRange(m, "retries", int64(u.RetryCount()), 0, maxRetries)
	l.checkRange(m, "max_idle_per_node", int64(u.MaxIdlePerNode), 0, maxIdlePerNode)
	l.checkUpstreamConn(u, m)

	if a := u.Health.Active; a != nil {
		// The probe's request line carries the path as written.
		path, query, _ := strings.Cut(a.Path, "?")
		switch {
		case !strings.HasPrefix(a.Path, "/"):
			l.errAt(m, "health.active.path", "must start with \"/\", e.g. \"/healthz\"")
		case strings.Contains(a.Path, "#"):
			l.errAt(m, "health.active.path", "%q must not contain a fragment (\"#...\")", a.Path)
		case !isPathChars(path) || !isPathChars(strings.ReplaceAll(query, "?", "/")):
			l.errAt(m, "health.active.path", "%q holds characters a request line cannot carry (spaces, control characters, non-ASCII); write it percent-encoded: %q",
				a.Path, (&url.URL{Path: path, RawQuery: url.PathEscape(query)}).RequestURI())
		default:
			if err := checkPathSegments(path); err != nil {
				l.errAt(m, "health.active.path", "%v", err)
			}
		}
		l.checkPositive(m, "health.active.interval", a.Interval)
		if d := a.Interval.Duration; d > 0 && d < minHealthInterval {
			l.errAt(m, "health.active.interval", "%q is shorter than %q: each probe opens a new connection to every node", d.String(), minHealthInterval.String())
		}
		l.checkPositive(m, "health.active.timeout", a.Timeout)
		l.checkRange(m, "health.active.healthy", int64(a.Healthy), 1, maxHealthRequired)
		l.checkRange(m, "health.active.unhealthy", int64(a.Unhealthy), 1, maxHealthRequired)
	}
	if p := u.Health.Passive; p != nil {
		l.checkRange(m, "health.passive.failures", int64(p.Failures), 1, maxHealthRequired)
		l.checkPositive(m, "health.passive.eject", p.Eject)
	}
}

// checkNodeCount refuses a configuration whose upstreams list more than
// MaxNodes nodes together, a proxy's target counted as one (it is a
// one-node upstream), with one error at the first node past it. It
// counts every load: checkUpstream's result is kept per file, the sum is
// the whole configuration's.
func (l *loader) checkNodeCount() {
	total := 0
	for _, u := range l.cfg.Upstreams {
		total += len(u.Nodes)
	}
	for _, p := range l.cfg.Proxies {
		if p.Target != "" {
			total++
		}
	}
	if total <= MaxNodes {
		return
	}
	const msg = "%d nodes, more than the %d a configuration may have (all upstreams of all environments, a proxy's target counted as one): each is probed and pooled on its own, in every environment listing it; remove nodes, or serve some of these environments from another edged"
	seen := 0
	for i, u := range l.cfg.Upstreams {
		if seen+len(u.Nodes) > MaxNodes {
			l.errAt(l.upstreamMeta[i], indexPath("nodes", MaxNodes-seen), msg, total, MaxNodes)
			return
		}
		seen += len(u.Nodes)
	}
	for i, p := range l.cfg.Proxies {
		if p.Target == "" {
			continue
		}
		if seen++; seen > MaxNodes {
			l.errAt(l.proxyMeta[i], "target", msg, total, MaxNodes)
			return
		}
	}
}

// checkEnvRef checks the environment an upstream or proxy belongs to.
func (l *loader) checkEnvRef(m *objMeta, env string, envs map[string]*Environment) bool {
	if env == "" {
		l.errAt(m, "environment", "required: the environment this %s belongs to", m.kind)
		return false
	}
	if envs[env] == nil {
		l.errAt(m, "environment", "environment %q is not defined; add an [[environment]] with name = %q or fix the name", env, env)
		return false
	}
	return true
}

// checkHashOn checks an upstream's hash_on; underscores is [server]'s
// underscores_in_headers.
func checkHashOn(v string, underscores bool) error {
	if v == "client_ip" {
		return nil
	}
	kind, name, ok := strings.Cut(v, ":")
	if ok && (kind == "header" || kind == "cookie") {
		if name == "" || !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("%q: %q is not a valid %s name", v, name, kind)
		}
		if kind == "header" && strings.IndexByte(name, '_') >= 0 {
			if !underscores {
				return fmt.Errorf("%q: edged drops request fields whose name holds '_' (underscores_in_headers = false in [server]), so %s never reaches the node and every request would go round robin", v, name)
			}
			if UnderscoreAlias(name) {
				return fmt.Errorf("%q: a backend may read %s as %s, which a client must not set, so edged drops it, it never reaches the node and every request would go round robin", v, name, strings.ReplaceAll(name, "_", "-"))
			}
		}
		if kind == "header" && !HashHeaderReachesNode(http.CanonicalHeaderKey(name)) {
			hint := ""
			switch http.CanonicalHeaderKey(name) {
			case "X-Real-Ip":
				hint = ` (for the client's address: "client_ip")`
			case "Client-Cert", "Client-Cert-Chain":
				hint = ` (a client's is removed; edged sets its own only for the virtual hosts with forward_client_cert, and an upstream may serve others)`
			}
			return fmt.Errorf("%q: edged removes %s before a request is balanced, so it never reaches the node and every request would go round robin%s", v, name, hint)
		}
		return nil
	}
	return fmt.Errorf("%q: use \"header:NAME\", \"cookie:NAME\" or \"client_ip\"", v)
}

// HashHeaderReachesNode reports whether a request field (canonical name)
// is still there when the balancer reads it: hash_on = "header:NAME" on
// one that is not would hash nothing. edge's prepareHeader removes the
// hop-by-hop fields, Expect (answered by edged), Proxy (httpoxy), and a
// client's X-Real-Ip, Client-Cert, Client-Cert-Chain and X-Forwarded-*
// but For, Proto and Host, which it sets.
func HashHeaderReachesNode(canonical string) bool {
	switch canonical {
	case "Expect", "Proxy", "X-Real-Ip", "Client-Cert", "Client-Cert-Chain":
		return false
	case "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host":
		return true
	}
	return !httpsyntax.HopByHop(canonical) && !strings.HasPrefix(canonical, "X-Forwarded-")
}

// platformDir reports whether dir is conf.d/ itself, where [server] is:
// the platform team's directory, not an environment's operators'.
func (l *loader) platformDir(dir string) bool {
	top, err := filepath.Abs(l.dir)
	return err == nil && filepath.Clean(dir) == top
}

// InAccessLogDir reports whether path, an access log's file, is in dir
// ([server] access_log_dir) or below, as the kernel would reach both
// (links followed; a name not there yet taken as the file an open makes).
// A home's operators set their environment's access log, and edged
// appends what clients send to it: run as root, or as a user who owns
// more than the logs, edged would otherwise write wherever they name (a
// shell's start-up file, another environment's log). edge checks it
// again where the open finds the file (a link in a home may turn between
// a load and the open).
func InAccessLogDir(path, dir string) bool {
	rel, err := filepath.Rel(realpath.ForCreate(dir), realpath.ForCreate(path))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// UnderscoreAlias reports whether a field name holding '_' is, read with
// '-' for '_' as a backend mapping one to the other reads it (CGI, PHP),
// a field edged sets, removes or frames a request by: edge drops such a
// field even where underscores_in_headers keeps the others, and so
// hash_on cannot use it. Content-Length is among them (edged writes the
// length of the body it forwards), and the fields edged sets
// (X-Forwarded-For, -Proto, -Host, Forwarded, X-Request-Id), which reach
// the node as edged's, not as the client's.
func UnderscoreAlias(name string) bool {
	if strings.IndexByte(name, '_') < 0 {
		return false
	}
	dash := http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))
	switch dash {
	case "Content-Length", "Forwarded", "X-Request-Id":
		return true
	}
	return strings.HasPrefix(dash, "X-Forwarded-") || !HashHeaderReachesNode(dash)
}

// normalizeHostHeader checks a Host header value: a hostname or IP,
// optionally with a port; an IPv6 address in brackets, with or without
// one ("[::1]", "[::1]:8080").
func normalizeHostHeader(v string) (string, error) {
	host, port := v, ""
	switch {
	case strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"):
		// No port: net.SplitHostPort wants one, and refused "[::1]".
		host = v[1 : len(v)-1]
	case strings.Contains(v, ":"):
		h, p, err := net.SplitHostPort(v)
		if err != nil {
			if net.ParseIP(v) != nil {
				return "", fmt.Errorf("%q: write an IPv6 address in brackets: \"[%s]\"", v, v)
			}
			return "", fmt.Errorf("%q is not a host or host:port", v)
		}
		n, ok := parsePort(p)
		if !ok || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %q is not a number from 1 to 65535", v, p)
		}
		host, port = h, strconv.Itoa(n)
	}
	if addr, zone, ok := strings.Cut(host, "%"); ok && net.ParseIP(addr) != nil {
		return "", fmt.Errorf("%q: an IPv6 zone %q has no place in a Host header; write the address without it", v, "%"+zone)
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	} else {
		n, err := normalizeBackendHost(host)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(n, "*.") {
			return "", fmt.Errorf("%q: a Host header cannot be a wildcard", v)
		}
		host = n
	}
	if port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]", nil
		}
		return host, nil
	}
	return net.JoinHostPort(host, port), nil
}

// parseBackendURL checks the URL of a node or a proxy target: http or https,
// a host, no credentials, query or fragment. A missing port is the scheme's
// default (80, 443), so "http://users.internal" is one backend on port 80.
// It returns the origin as scheme://host:port and the (escaped) path.
// Messages never repeat the URL, which may hold a password.
func parseBackendURL(raw string) (origin, path string, err error) {
	if raw == "" {
		return "", "", fmt.Errorf("required: an absolute URL like \"http://10.0.0.5:8080\"")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("is not a valid URL; write it like \"http://10.0.0.5:8080\"")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", "", fmt.Errorf("must be an absolute http:// or https:// URL like \"http://10.0.0.5:8080\"")
	}
	if u.Opaque != "" || u.Host == "" {
		return "", "", fmt.Errorf("has no host; write it like \"%s://10.0.0.5:8080\"", scheme)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("must not contain credentials (user:password@)")
	}
	if u.RawQuery != "" || u.ForceQuery {
		return "", "", fmt.Errorf("must not have a query (\"?...\")")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", "", fmt.Errorf("must not have a fragment (\"#...\")")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	} else if n, ok := parsePort(port); !ok || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	} else {
		port = strconv.Itoa(n) // "09001" is the node "9001" is
	}
	if addr, zone, ok := strings.Cut(host, "%"); ok && net.ParseIP(addr) != nil {
		return "", "", fmt.Errorf("host %q: an IPv6 zone %q is not supported; use the node's global or unique local address, or a hostname", host, "%"+zone)
	}
	if ip := net.ParseIP(host); ip != nil {
		if err := checkNodeIP(ip); err != nil {
			return "", "", err
		}
		host = ip.String()
	} else {
		n, err := normalizeBackendHost(host)
		if err != nil {
			return "", "", fmt.Errorf("host: %v", err)
		}
		if strings.HasPrefix(n, "*.") {
			return "", "", fmt.Errorf("host %q: a backend cannot be a wildcard", host)
		}
		host = n
	}
	path = u.EscapedPath()
	if err := checkPathSegments(path); err != nil {
		return "", "", err
	}
	return scheme + "://" + net.JoinHostPort(host, port), path, nil
}

// checkNodeIP refuses the addresses no single backend has. Dialled, the
// unspecified address (0.0.0.0, ::), which a listener reads as "every
// interface", reaches this machine on Linux, not the backend meant; a
// multicast or the broadcast address is a group, and TCP does not connect
// to one.
func checkNodeIP(ip net.IP) error {
	switch {
	case ip.IsUnspecified():
		return fmt.Errorf("host %q is the unspecified address (\"every interface\" to a listener); write the backend's own address, e.g. \"127.0.0.1\"", ip.String())
	case ip.IsMulticast():
		return fmt.Errorf("host %q is a multicast address; a node is one backend's address", ip.String())
	case ip.Equal(net.IPv4bcast):
		return fmt.Errorf("host %q is the broadcast address; a node is one backend's address", ip.String())
	}
	return nil
}

// cleanBasePath checks a base path and returns it without a trailing "/"
// ("/" itself stays). Requests are matched on their decoded path, so a base
// path is written decoded too: "/a b" or "/bücher" can match, "/a%20b"
// never could; and without their segments' parameters, "\" a "/", so
// "/a;b" and "/a\b" never could either.
func cleanBasePath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("required: the path prefix the proxy serves, e.g. \"/users\"")
	}
	if p[0] != '/' {
		return "", fmt.Errorf("%q must start with \"/\"", p)
	}
	if strings.ContainsAny(p, "?#") {
		return "", fmt.Errorf("%q must not contain a query or fragment (\"?\", \"#\")", p)
	}
	if strings.Contains(p, "%") {
		return "", fmt.Errorf("%q contains \"%%\": base paths are matched against the decoded request path: write the character itself, not its %%-encoding", p)
	}
	if strings.Contains(p, ";") {
		return "", fmt.Errorf("%q contains \";\": requests are matched without the parameters of their path segments (\"/users;v=2\" is \"/users\", as Java servers read it), so this base path could never match", p)
	}
	if strings.Contains(p, "\\") {
		return "", fmt.Errorf("%q contains a backslash: requests are matched with it separating segments as \"/\" does (as IIS and ASP.NET read it), so this base path could never match", p)
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "", fmt.Errorf("%q contains a control character", p)
		}
	}
	if strings.Contains(p, "//") {
		return "", fmt.Errorf("%q contains \"//\"", p)
	}
	if err := checkPathSegments(p); err != nil {
		return "", err
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p, nil
}

// isPathChars reports whether p holds only httpsyntax.PathChar bytes.
func isPathChars(p string) bool {
	for i := 0; i < len(p); i++ {
		if !httpsyntax.PathChar[p[i]] {
			return false
		}
	}
	return true
}

// checkPathSegments rejects "." and ".." segments, written plainly or
// percent-encoded, which clients and backends resolve differently.
func checkPathSegments(p string) error {
	for seg := range strings.SplitSeq(p, "/") {
		dec := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if dec, err = url.PathUnescape(seg); err != nil {
				return fmt.Errorf("path %q has an invalid percent-encoding", p)
			}
		}
		if dec == "." || dec == ".." {
			return fmt.Errorf("path %q must not contain \".\" or \"..\" segments", p)
		}
	}
	return nil
}

// checkProxy checks what needs nothing but the proxy itself, and cleans
// its base path and target. Like checkUpstream, its result is kept with
// the file's decode. A base path that fails is marked bad, so the check
// for base paths served twice leaves it out.
func (l *loader) checkProxy(p *Proxy, m *objMeta) {
	l.checkNameValid(m, p.Name)
	if bp, err := cleanBasePath(p.BasePath); err != nil {
		l.errAt(m, "base_path", "%v", err)
		m.bad["base_path"] = true
	} else {
		p.BasePath = bp
	}

	switch {
	case p.Upstream != "" && p.Target != "":
		l.errAt(m, "target", "set upstream or target, not both")
	case p.Upstream == "" && p.Target == "":
		if m.bad["upstream"] || m.bad["target"] {
			break
		}
		l.errAt(m, "", "needs upstream = \"NAME\" (an [[upstream]] of environment %q) or target = \"http://host:port/path\"", p.Environment)
	case p.Target != "":
		origin, path, err := parseBackendURL(p.Target)
		if err != nil {
			l.errAt(m, "target", "%v", err)
		} else {
			p.Target = origin + path
		}
	}
	if p.MaxInFlight != nil {
		l.checkRange(m, "max_in_flight", int64(*p.MaxInFlight), 1, maxWorkers)
	}
	if p.TargetPath != "" {
		switch {
		case p.Upstream == "":
			l.errAt(m, "target_path", "only applies with upstream; with target, put the path into the target URL")
		case !strings.HasPrefix(p.TargetPath, "/"):
			l.errAt(m, "target_path", "%q must start with \"/\"", p.TargetPath)
		case strings.ContainsAny(p.TargetPath, "?#"):
			l.errAt(m, "target_path", "%q must not contain a query or fragment", p.TargetPath)
		case !isPathChars(p.TargetPath):
			// It is written into the request line as it is (a target's
			// path is escaped when its URL is parsed; target_path is
			// already the escaped form, as edged promote writes it).
			l.errAt(m, "target_path", "%q holds characters a request line cannot carry (spaces, control characters, non-ASCII); write it percent-encoded: %q",
				p.TargetPath, (&url.URL{Path: p.TargetPath}).EscapedPath())
		default:
			if err := checkPathSegments(p.TargetPath); err != nil {
				l.errAt(m, "target_path", "%v", err)
			}
		}
	}
}

func posLess(a, b Pos) bool {
	if a.File != b.File {
		return a.File < b.File
	}
	return a.Line < b.Line
}

// labelControl reports the runes a label value may not hold: the C0 and
// C1 controls, DEL, and Unicode's bidirectional controls (a terminal that
// lays out right-to-left text shows the line after one reordered; /metrics
// writes the value as it is, and the metrics' readers use curl too).
func labelControl(r rune) bool { return unicode.IsControl(r) || termsafe.Bidi(r) }
