package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/history"
)

// Reloads reuse what did not change: the config.Loader the decoded
// upstreams and proxies of unchanged files and the checks of unchanged
// environments and groups, compile an environment's sorted lists, hash and
// a group's routes, build the running environment of an unchanged hash,
// and the history Tracker an object's hash by its address. All of it rests
// on one rule: an object is never written after its first check. These
// tests apply random edits to a real conf.d and compare every reload with a
// from-scratch load and compile of the same files, and the running
// snapshot (kept environments and groups included) with one built from
// scratch.

// incModel is a conf.d as objects, each rendered as a block into a file.
type incModel struct {
	server  incServer
	envs    map[string]*incEnv
	groups  map[string]*incGroup
	ups     map[string]*incUpstream // by env/name
	proxies map[string]*incProxy    // by env/name
	broken  map[string]bool         // files with a syntax error this step
	renames int
	// certSrc: the certificate and key files of a group's host hold the
	// pair made for another host (a renewal, or the wrong files copied).
	certSrc map[string]string
}

type incServer struct {
	file        string
	maxBody     int
	writeTO     string
	hasTable    bool
	defaultVH   string // a group's name, or ""
	underscores bool
}

type incEnv struct {
	file     string
	workers  int
	maxBody  int // 0: the server's
	prom     bool
	promOff  bool // the prometheus table says enabled = false
	labelled bool
	// accessLog: 0 none, 1 its own file, 2 the same in combined format,
	// 3 a file shared with the other environments.
	accessLog int
	audit     bool
}

type incGroup struct {
	file      string
	envs      []string
	cert      string
	wildcard  bool
	vhostFile string
	minTLS    string
	// moreHosts: the group also serves www.<cert>; takeHost: it serves
	// the hostname of another group's certificate, as a migration does.
	moreHosts bool
	takeHost  string
	clientCA  bool
}

type incUpstream struct {
	file, env, name string
	ports           []int
	balance         string
	retries         int // -1: default
	health, rewrite bool
}

type incProxy struct {
	file, env, name string
	basePath        string
	upstream        string // "" with target
	target          string
	targetPath      string
	maxInFlight     int
	dup             string // a file holding a second copy of the block: an error
}

var (
	incEnvNames   = []string{"inc-a", "inc-b", "inc-c", "inc-d"}
	incGroupCerts = map[string]string{"incg-test": "test.acme.com", "incg-uat": "uat.acme.com", "incg-prod": "prod.acme.com"}
	incGroupNames = []string{"incg-prod", "incg-test", "incg-uat"}
	incUpNames    = []string{"u1", "u2", "u3"}
	incProxyNames = []string{"p1", "p2", "p3", "p4", "p5"}
	// "/g/" is cleaned to "/g" when checked; "/h//x" is refused.
	incBasePaths = []string{"/a", "/b", "/c", "/d", "/e", "/f", "/a/x", "/", "/g/", "/h//x"}
	incFiles     = []string{"10-a.toml", "20-b.toml", "30-c.toml", "sub/40-d.toml"}
)

// incChooser picks a number below n; ok false when it cannot.
type incChooser func(n int) (int, bool)

func newIncModel() *incModel {
	m := &incModel{
		server:  incServer{file: "00-server.toml", maxBody: 1 << 20, writeTO: "30s", hasTable: true},
		envs:    map[string]*incEnv{},
		groups:  map[string]*incGroup{},
		ups:     map[string]*incUpstream{},
		proxies: map[string]*incProxy{},
		broken:  map[string]bool{},
		certSrc: map[string]string{},
	}
	for _, h := range incGroupCerts {
		m.certSrc[h] = h
	}
	m.envs["inc-a"] = &incEnv{file: "10-a.toml", workers: 4}
	m.envs["inc-b"] = &incEnv{file: "20-b.toml", workers: 2}
	m.groups["incg-test"] = &incGroup{file: "10-a.toml", vhostFile: "10-a.toml", envs: []string{"inc-a"}, cert: "test.acme.com"}
	m.groups["incg-uat"] = &incGroup{file: "20-b.toml", vhostFile: "30-c.toml", envs: []string{"inc-b"}, cert: "uat.acme.com"}
	m.ups["inc-a/u1"] = &incUpstream{file: "10-a.toml", env: "inc-a", name: "u1", ports: []int{9001}, balance: "round_robin", retries: -1}
	m.ups["inc-b/u1"] = &incUpstream{file: "20-b.toml", env: "inc-b", name: "u1", ports: []int{9002, 9003}, balance: "least_request", retries: 2}
	m.proxies["inc-a/p1"] = &incProxy{file: "10-a.toml", env: "inc-a", name: "p1", basePath: "/a", upstream: "u1"}
	m.proxies["inc-a/p2"] = &incProxy{file: "30-c.toml", env: "inc-a", name: "p2", basePath: "/b", target: "http://127.0.0.1:9009/v1"}
	m.proxies["inc-b/p1"] = &incProxy{file: "20-b.toml", env: "inc-b", name: "p1", basePath: "/a", upstream: "u1", targetPath: "/x"}
	return m
}

func pick[T any](c incChooser, xs []T) (T, bool) {
	var zero T
	if len(xs) == 0 {
		return zero, false
	}
	i, ok := c(len(xs))
	if !ok {
		return zero, false
	}
	return xs[i], true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// files lists the files objects live in now (before renames).
func (m *incModel) files() []string {
	seen := map[string]bool{m.server.file: true}
	for _, e := range m.envs {
		seen[e.file] = true
	}
	for _, g := range m.groups {
		seen[g.file], seen[g.vhostFile] = true, true
	}
	for _, u := range m.ups {
		seen[u.file] = true
	}
	for _, p := range m.proxies {
		seen[p.file] = true
		if p.dup != "" {
			seen[p.dup] = true
		}
	}
	return sortedKeys(seen)
}

func (m *incModel) anyFile(c incChooser) (string, bool) {
	fs := append(slices.Clone(incFiles), m.files()...)
	slices.Sort(fs)
	return pick(c, slices.Compact(fs))
}

// someEnv is mostly a defined environment, sometimes any name (an
// object of an undefined environment is an error to report).
func (m *incModel) someEnv(c incChooser) string {
	if i, _ := c(8); i > 0 && len(m.envs) > 0 {
		e, _ := pick(c, sortedKeys(m.envs))
		return e
	}
	e, _ := pick(c, incEnvNames)
	return e
}

// someBasePath is mostly one no proxy serves yet, sometimes any (served
// twice is an error to report).
func (m *incModel) someBasePath(c incChooser) string {
	used := map[string]bool{}
	for _, p := range m.proxies {
		used[p.basePath] = true
	}
	var free []string
	for _, bp := range incBasePaths {
		if !used[bp] {
			free = append(free, bp)
		}
	}
	if i, _ := c(8); i > 0 && len(free) > 0 {
		bp, _ := pick(c, free)
		return bp
	}
	bp, _ := pick(c, incBasePaths)
	return bp
}

// someUpstream is mostly an upstream of env; "" when it has none.
func (m *incModel) someUpstream(c incChooser, env string) string {
	var names []string
	for _, k := range sortedKeys(m.ups) {
		if u := m.ups[k]; u.env == env {
			names = append(names, u.name)
		}
	}
	if i, _ := c(8); i == 0 || len(names) == 0 {
		if len(names) == 0 {
			return ""
		}
		u, _ := pick(c, incUpNames)
		return u
	}
	u, _ := pick(c, names)
	return u
}

// repair drops what makes the model invalid: objects of undefined
// environments, proxies of undefined upstreams, base paths served twice,
// groups' undefined environments and groups left without one.
func (m *incModel) repair() {
	used := map[string]bool{}
	for _, k := range sortedKeys(m.proxies) {
		p := m.proxies[k]
		p.dup = ""
		if m.envs[p.env] == nil || used[strings.TrimSuffix(p.basePath, "/")] || strings.Contains(p.basePath, "//") ||
			p.upstream != "" && m.ups[p.env+"/"+p.upstream] == nil {
			delete(m.proxies, k)
			continue
		}
		used[strings.TrimSuffix(p.basePath, "/")] = true
	}
	for k, u := range m.ups {
		if m.envs[u.env] == nil {
			delete(m.ups, k)
		}
	}
	for k, g := range m.groups {
		g.envs = slices.DeleteFunc(slices.Clone(g.envs), func(e string) bool { return m.envs[e] == nil })
		if len(g.envs) == 0 {
			delete(m.groups, k)
		}
	}
	// A hostname is served by one group only.
	taken := map[string]bool{}
	for _, g := range m.groups {
		if !g.wildcard {
			taken[g.cert] = true
		}
	}
	for _, k := range sortedKeys(m.groups) {
		if g := m.groups[k]; taken[g.takeHost] {
			g.takeHost = ""
		} else if g.takeHost != "" {
			taken[g.takeHost] = true
		}
	}
	if m.groups[m.server.defaultVH] == nil {
		m.server.defaultVH = ""
	}
}

// edit applies one random edit and says which; ok false when the input is
// used up.
func (m *incModel) edit(c incChooser) (string, bool) {
	clear(m.broken)
	op, ok := c(20)
	if !ok {
		return "", false
	}
	env := m.someEnv(c)
	file, ok := m.anyFile(c)
	if !ok {
		return "", false
	}
	switch op {
	case 0: // add or replace a proxy
		name, _ := pick(c, incProxyNames)
		p := &incProxy{file: file, env: env, name: name, basePath: m.someBasePath(c)}
		if i, _ := c(3); i == 0 {
			p.target = "http://LOCALHOST/t" // normalised when checked
		} else if p.upstream = m.someUpstream(c, env); p.upstream == "" {
			p.target = "http://127.0.0.1:9101"
		}
		m.proxies[env+"/"+name] = p
		return "add proxy " + env + "/" + name + " in " + file, true
	case 1:
		k, ok := pick(c, sortedKeys(m.proxies))
		if ok {
			delete(m.proxies, k)
		}
		return "remove proxy " + k, true
	case 2:
		k, ok := pick(c, sortedKeys(m.proxies))
		if !ok {
			return "no proxy to change", true
		}
		p := m.proxies[k]
		switch i, _ := c(6); i {
		case 5:
			if p.dup == "" {
				p.dup, _ = m.anyFile(c)
			} else {
				p.dup = ""
			}
		case 0:
			p.basePath = m.someBasePath(c)
		case 1:
			if u := m.someUpstream(c, p.env); p.upstream != "" && u != "" {
				p.upstream = u
			} else if p.target != "" {
				p.target = strings.Replace(p.target, "/t", "/t2", 1)
			}
		case 2:
			if p.targetPath == "" {
				p.targetPath = "/inner"
			} else {
				p.targetPath = ""
			}
		case 3:
			p.maxInFlight = (p.maxInFlight + 1) % 3
		case 4:
			if p.upstream != "" {
				p.upstream, p.target = "", "http://127.0.0.1:9200"
			} else if u := m.someUpstream(c, p.env); u != "" {
				p.upstream, p.target = u, ""
			}
		}
		return "change proxy " + k, true
	case 3:
		name, _ := pick(c, incUpNames)
		port, _ := c(4)
		m.ups[env+"/"+name] = &incUpstream{file: file, env: env, name: name, ports: []int{9300 + port}, balance: "round_robin", retries: -1}
		return "add upstream " + env + "/" + name, true
	case 4:
		k, ok := pick(c, sortedKeys(m.ups))
		if ok {
			delete(m.ups, k)
		}
		if i, _ := c(4); i > 0 {
			m.repair()
		}
		return "remove upstream " + k, true
	case 5:
		k, ok := pick(c, sortedKeys(m.ups))
		if !ok {
			return "no upstream to change", true
		}
		u := m.ups[k]
		switch i, _ := c(6); i {
		case 4:
			u.health = !u.health
		case 5:
			u.rewrite = !u.rewrite
		case 0:
			u.ports = append(slices.Clone(u.ports), 9400+len(u.ports))
		case 1:
			if len(u.ports) > 1 {
				u.ports = slices.Clone(u.ports[1:])
			}
		case 2:
			u.balance, _ = pick(c, []string{"round_robin", "least_request"})
		case 3:
			u.retries = (u.retries+2)%4 - 1
		}
		return "change upstream " + k, true
	case 6:
		if m.envs[env] == nil {
			m.envs[env] = &incEnv{file: file, workers: 3}
		}
		return "add environment " + env, true
	case 7:
		delete(m.envs, env)
		if i, _ := c(4); i > 0 {
			m.repair()
		}
		return "remove environment " + env, true
	case 8:
		e := m.envs[env]
		if e == nil {
			return "no environment " + env, true
		}
		switch i, _ := c(4); i {
		case 0:
			e.workers = e.workers%5 + 1
		case 1:
			e.maxBody = (e.maxBody + 1000) % 3000
		case 2:
			e.prom = !e.prom
		case 3:
			e.labelled = !e.labelled
		}
		return "change environment " + env, true
	case 17: // an environment's rules
		e := m.envs[env]
		if e == nil {
			return "no environment " + env, true
		}
		switch i, _ := c(3); i {
		case 0:
			e.accessLog = (e.accessLog + 1) % 4
		case 1:
			if e.prom {
				e.promOff = !e.promOff
			} else {
				e.prom = true
			}
		case 2:
			e.audit = !e.audit
		}
		return "change rules of " + env, true
	case 9:
		g, _ := pick(c, incGroupNames)
		if m.groups[g] != nil {
			delete(m.groups, g)
			return "remove group " + g, true
		}
		vf, _ := m.anyFile(c)
		m.groups[g] = &incGroup{file: file, vhostFile: vf, envs: []string{env}, cert: incGroupCerts[g]}
		return "add group " + g, true
	case 10:
		k, ok := pick(c, sortedKeys(m.groups))
		if !ok {
			return "no group to change", true
		}
		g := m.groups[k]
		switch i, _ := c(4); i {
		case 0:
			if !slices.Contains(g.envs, env) {
				g.envs = append(slices.Clone(g.envs), env)
			}
		case 1:
			if len(g.envs) > 0 {
				g.envs = slices.Clone(g.envs[1:])
			}
		case 2:
			g.wildcard = !g.wildcard
		case 3:
			if g.minTLS == "" {
				g.minTLS = "1.3"
			} else {
				g.minTLS = ""
			}
		}
		return "change group " + k, true
	case 18: // a group's hostnames and client certificates
		k, ok := pick(c, sortedKeys(m.groups))
		if !ok {
			return "no group to change", true
		}
		g := m.groups[k]
		switch i, _ := c(3); i {
		case 0:
			g.moreHosts = !g.moreHosts
		case 1:
			// Another group's hostname; two groups serving it is
			// refused until the other one gives it up.
			h, _ := pick(c, sortedKeys(m.certSrc))
			if g.takeHost != "" || h == g.cert {
				h = ""
			}
			g.takeHost = h
		case 2:
			g.clientCA = !g.clientCA
		}
		return "change hostnames of " + k, true
	case 19:
		if i, _ := c(2); i == 0 {
			m.server.underscores = !m.server.underscores
			return "change server underscores", true
		}
		g, _ := pick(c, append([]string{""}, sortedKeys(m.groups)...))
		m.server.defaultVH = g
		return "default virtual host " + g, true
	case 11: // move a block to another file
		var blocks []*string
		blocks = append(blocks, &m.server.file)
		for _, k := range sortedKeys(m.envs) {
			blocks = append(blocks, &m.envs[k].file)
		}
		for _, k := range sortedKeys(m.groups) {
			blocks = append(blocks, &m.groups[k].file, &m.groups[k].vhostFile)
		}
		for _, k := range sortedKeys(m.ups) {
			blocks = append(blocks, &m.ups[k].file)
		}
		for _, k := range sortedKeys(m.proxies) {
			blocks = append(blocks, &m.proxies[k].file)
		}
		b, _ := pick(c, blocks)
		from := *b
		*b = file
		return "move a block from " + from + " to " + file, true
	case 12: // rename a file
		from, ok := pick(c, m.files())
		if !ok {
			return "no file to rename", true
		}
		m.renames++
		to := fmt.Sprintf("r%02d-%s", m.renames, filepath.Base(from))
		if i, _ := c(2); i == 0 {
			to = "sub/" + to
		}
		m.rename(from, to)
		return "rename " + from + " to " + to, true
	case 13: // break a file; the next edit fixes it
		f, ok := pick(c, m.files())
		if ok {
			m.broken[f] = true
		}
		return "break " + f, true
	case 14:
		switch i, _ := c(3); i {
		case 0:
			m.server.maxBody = 3<<20 - m.server.maxBody
		case 1:
			if m.server.writeTO == "30s" {
				m.server.writeTO = "40s"
			} else {
				m.server.writeTO = "30s"
			}
		case 2:
			m.server.hasTable = !m.server.hasTable
		}
		return "change server", true
	case 15: // a virtual host's certificate and key files change
		h, _ := pick(c, sortedKeys(m.certSrc))
		src, _ := pick(c, sortedKeys(m.certSrc))
		m.certSrc[h] = src
		return "certificate of " + h + " from " + src, true
	}
	return "reload without a change", true
}

func (m *incModel) rename(from, to string) {
	for _, p := range []*string{&m.server.file} {
		if *p == from {
			*p = to
		}
	}
	for _, e := range m.envs {
		if e.file == from {
			e.file = to
		}
	}
	for _, g := range m.groups {
		if g.file == from {
			g.file = to
		}
		if g.vhostFile == from {
			g.vhostFile = to
		}
	}
	for _, u := range m.ups {
		if u.file == from {
			u.file = to
		}
	}
	for _, p := range m.proxies {
		if p.file == from {
			p.file = to
		}
		if p.dup == from {
			p.dup = to
		}
	}
}

// render returns every file's content, blocks in a fixed order.
func (m *incModel) render(stateDir, certs string) map[string]string {
	out := map[string]*strings.Builder{}
	w := func(file, format string, args ...any) {
		b := out[file]
		if b == nil {
			b = &strings.Builder{}
			out[file] = b
		}
		fmt.Fprintf(b, format, args...)
	}
	if m.server.hasTable {
		w(m.server.file, "[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"1ms\"\nmax_body_bytes = %d\nwrite_timeout = %q\n",
			stateDir, m.server.maxBody, m.server.writeTO)
		if m.server.defaultVH != "" {
			w(m.server.file, "default_virtual_host = %q\n", m.server.defaultVH)
		}
		if m.server.underscores {
			w(m.server.file, "underscores_in_headers = true\n")
		}
		w(m.server.file, "\n")
	} else {
		w(m.server.file, "# no [server] table: the defaults, but state_dir\nserver.state_dir = %q\n\n", stateDir)
	}
	for _, name := range sortedKeys(m.envs) {
		e := m.envs[name]
		w(e.file, "[[environment]]\nname = %q\nworkers = %d\n", name, e.workers)
		if e.maxBody > 0 {
			w(e.file, "max_body_bytes = %d\n", e.maxBody)
		}
		if e.labelled {
			w(e.file, "labels = { stage = %q }\n", name)
		}
		if e.prom {
			w(e.file, "[environment.rules.prometheus]\n")
			if e.promOff {
				w(e.file, "enabled = false\n")
			}
		}
		switch e.accessLog {
		case 1:
			w(e.file, "[environment.rules.access_log]\npath = %q\n", filepath.Join(stateDir, "access-"+name+".log"))
		case 2:
			w(e.file, "[environment.rules.access_log]\npath = %q\nformat = \"combined\"\n", filepath.Join(stateDir, "access-"+name+".log"))
		case 3:
			w(e.file, "[environment.rules.access_log]\npath = %q\n", filepath.Join(stateDir, "access.log"))
		}
		if e.audit {
			w(e.file, "[environment.rules.audit_log]\n")
		}
		w(e.file, "\n")
	}
	for _, name := range sortedKeys(m.groups) {
		g := m.groups[name]
		host := g.cert
		if g.wildcard {
			host = "*." + g.cert
		}
		envs := make([]string, len(g.envs))
		for i, e := range g.envs {
			envs[i] = fmt.Sprintf("%q", e)
		}
		hosts := []string{fmt.Sprintf("%q", host)}
		if g.moreHosts {
			hosts = append(hosts, fmt.Sprintf("%q", "www."+g.cert))
		}
		if g.takeHost != "" {
			hosts = append(hosts, fmt.Sprintf("%q", g.takeHost))
		}
		w(g.file, "[[env_group]]\nname = %q\nhostnames = [%s]\nenvironments = [%s]\n\n", name, strings.Join(hosts, ", "), strings.Join(envs, ", "))
		w(g.vhostFile, "[[virtual_host]]\nname = %q\ncert_file = %q\nkey_file = %q\n", name,
			filepath.Join(certs, g.cert+".pem"), filepath.Join(certs, g.cert+".key"))
		if g.clientCA {
			// Another host's certificate, as the CA of its clients: it
			// changes when that host's does.
			w(g.vhostFile, "client_ca_file = %q\n", filepath.Join(certs, "prod.acme.com.pem"))
		}
		if g.minTLS != "" {
			w(g.vhostFile, "min_tls = %q\n", g.minTLS)
		}
		w(g.vhostFile, "\n")
	}
	for _, k := range sortedKeys(m.ups) {
		u := m.ups[k]
		nodes := make([]string, len(u.ports))
		for i, p := range u.ports {
			nodes[i] = fmt.Sprintf("{ url = \"http://127.0.0.1:%d\" }", p)
		}
		w(u.file, "[[upstream]]\nname = %q\nenvironment = %q\nnodes = [%s]\nbalance = %q\n", u.name, u.env, strings.Join(nodes, ", "), u.balance)
		if u.retries >= 0 {
			w(u.file, "retries = %d\n", u.retries)
		}
		if u.rewrite {
			w(u.file, "pass_host = \"rewrite\"\nupstream_host = \"Users.Internal:8080\"\n") // normalised when checked
		}
		if u.health {
			w(u.file, "[upstream.health.active]\npath = \"/healthz\"\ninterval = \"1h\"\n") // defaults filled in when checked
		}
		w(u.file, "\n")
	}
	for _, k := range sortedKeys(m.proxies) {
		p := m.proxies[k]
		for _, f := range []string{p.file, p.dup} {
			if f == "" {
				continue
			}
			w(f, "[[proxy]]\nname = %q\nenvironment = %q\nbase_path = %q\n", p.name, p.env, p.basePath)
			if p.upstream != "" {
				w(f, "upstream = %q\n", p.upstream)
			} else {
				w(f, "target = %q\n", p.target)
			}
			if p.targetPath != "" {
				w(f, "target_path = %q\n", p.targetPath)
			}
			if p.maxInFlight > 0 {
				w(f, "max_in_flight = %d\n", p.maxInFlight)
			}
			w(f, "\n")
		}
	}
	files := make(map[string]string, len(out))
	for f, b := range out {
		files[f] = b.String()
		if m.broken[f] {
			files[f] += "this line = = is not TOML\n"
		}
	}
	return files
}

// writeConfDir makes dir hold exactly files: changed ones rewritten,
// others left alone, the rest removed.
func writeConfDir(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	paths, err := config.Files(dir)
	require.NoError(t, err)
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		if _, ok := files[rel]; !ok {
			require.NoError(t, os.Remove(p))
		}
	}
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if b, err := os.ReadFile(p); err == nil && string(b) == content {
			continue
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

// comparableConfig is c with the TLS material reduced to what was read
// (a CertPool holds functions, which never compare equal).
func comparableConfig(c *config.Config) *config.Config {
	if c == nil {
		return nil
	}
	out := *c
	out.VirtualHosts = make([]*config.VirtualHost, len(c.VirtualHosts))
	for i, vh := range c.VirtualHosts {
		v := *vh
		v.Certificate = tls.Certificate{Certificate: vh.Certificate.Certificate}
		v.ClientCAs = nil
		out.VirtualHosts[i] = &v
	}
	return &out
}

// incRun drives one sequence of edits through a Reloader (its Loader
// and Server carry over from reload to reload, as in a running edged) and
// checks each reload against a from-scratch load and compile.
type incRun struct {
	t        testing.TB
	dir      string
	stateDir string
	certs    string
	rl       *Reloader
	tracker  history.Tracker // fed what the Reloader applied, like edged's history
	// freshPrev is the from-scratch load of what was last applied.
	freshPrev *config.Config
	freshPlan *Plan

	applied   *config.Config
	attempted *config.Config
	// counts of reloads by outcome, and of environments kept (not rebuilt)
	ok, failed, unchanged, kept int
	lastOK                      bool
}

func newIncRun(t testing.TB) *incRun {
	t.Helper()
	testCertDir(t)
	r := &incRun{t: t, dir: t.TempDir(), stateDir: t.TempDir(), certs: t.TempDir()}
	srv := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	r.rl = &Reloader{Dir: r.dir, Server: srv, Log: srv.log,
		OnApplied: func(cfg *config.Config, rec ReloadRecord) { r.applied = cfg },
		OnFailed:  func(cfg *config.Config, rec ReloadRecord) { r.attempted = cfg },
	}
	return r
}

// step writes the model out, reloads, and compares.
func (r *incRun) step(m *incModel, what string) {
	t := r.t
	t.Helper()
	writeConfDir(t, r.dir, m.render(r.stateDir, r.certs))
	for h, src := range m.certSrc {
		for _, ext := range []string{".pem", ".key"} {
			b, err := os.ReadFile(filepath.Join(certsDir, src+ext))
			require.NoError(t, err)
			p := filepath.Join(r.certs, h+ext)
			if old, err := os.ReadFile(p); err != nil || string(old) != string(b) {
				require.NoError(t, os.WriteFile(p, b, 0o600))
			}
		}
	}
	r.applied, r.attempted = nil, nil
	prevSnap := r.rl.Server.Snapshot()
	rec := r.rl.Reload(what)
	r.lastOK = rec.OK

	fresh, freshErr := config.Load(r.dir)
	var freshErrs []config.Error
	if freshErr != nil {
		freshErrs = ConfigErrors(freshErr, r.dir)
	}
	var freshPlan *Plan
	if freshErr == nil {
		var err error
		freshPlan, err = Compile(fresh)
		if err != nil {
			freshErrs = ConfigErrors(err, r.dir)
		}
	}
	if !assert.Equal(t, freshErrs, rec.Errors, "%s: the reload's errors are a from-scratch load's", what) {
		t.FailNow()
	}
	if !rec.OK {
		r.failed++
		require.Equal(t, comparableConfig(fresh), comparableConfig(r.attempted), "%s: the failed load is a from-scratch load", what)
		return
	}
	if rec.Unchanged {
		r.unchanged++
		require.Same(t, prevSnap, r.rl.Server.Snapshot(), "%s", what)
		require.Equal(t, comparableConfig(fresh), comparableConfig(prevSnap.Plan.Config), "%s: unchanged, and the serving config is a from-scratch load", what)
		return
	}
	require.NotNil(t, r.applied)
	r.ok++
	r.kept += len(rec.Change.Kept)
	require.Equal(t, comparableConfig(fresh), comparableConfig(r.applied), "%s: the loaded config is a from-scratch load (positions included)", what)

	plan := r.rl.Server.Snapshot().Plan
	require.Equal(t, sortedKeys(freshPlan.Envs), sortedKeys(plan.Envs), what)
	for name, fe := range freshPlan.Envs {
		ie := plan.Envs[name]
		assert.Equal(t, fe.Hash, ie.Hash, "%s: environment %s: hash", what, name)
		assert.Equal(t, fe.Env, ie.Env, "%s: environment %s", what, name)
		assert.Equal(t, fe.Proxies, ie.Proxies, "%s: environment %s: proxies", what, name)
		assert.Equal(t, fe.Upstreams, ie.Upstreams, "%s: environment %s: upstreams", what, name)
		assert.Equal(t, []any{fe.MaxBodyBytes, fe.WriteTimeout, fe.AuditPath}, []any{ie.MaxBodyBytes, ie.WriteTimeout, ie.AuditPath}, "%s: environment %s", what, name)
	}
	require.Equal(t, sortedKeys(freshPlan.Groups), sortedKeys(plan.Groups), what)
	for name, fg := range freshPlan.Groups {
		assert.Equal(t, fg.Routes, plan.Groups[name].Routes, "%s: group %s: routes", what, name)
	}
	assert.Equal(t, routeTable(freshPlan), routeTable(plan), "%s: routes", what)

	r.compareRuntime(freshPlan, r.rl.Server.Snapshot(), what)

	// What edge rebuilt is what the from-scratch hashes say changed.
	var want Change
	if r.freshPlan != nil {
		for _, name := range sortedKeys(freshPlan.Envs) {
			switch old := r.freshPlan.Envs[name]; {
			case old == nil:
				want.Added = append(want.Added, name)
			case old.Hash != freshPlan.Envs[name].Hash:
				want.Changed = append(want.Changed, name)
			default:
				want.Kept = append(want.Kept, name)
			}
		}
		for _, name := range sortedKeys(r.freshPlan.Envs) {
			if freshPlan.Envs[name] == nil {
				want.Removed = append(want.Removed, name)
			}
		}
		got := *rec.Change
		for _, l := range []*[]string{&got.Added, &got.Changed, &got.Removed, &got.Kept} {
			slices.Sort(*l)
		}
		assert.Equal(t, want, got, "%s: environments rebuilt", what)
	}

	// The history's changes: the running Tracker against a fresh one
	// shown the from-scratch loads of before and after.
	var ft history.Tracker
	if r.freshPrev != nil {
		ft.Changes(r.freshPrev)
	}
	assert.Equal(t, ft.Changes(fresh), r.tracker.Changes(r.applied), "%s: history changes", what)
	if t.Failed() {
		t.FailNow()
	}
	r.freshPrev, r.freshPlan = fresh, freshPlan
}

// runIncremental starts from the initial model and applies edits until
// the chooser is used up or steps are done.
func runIncremental(t testing.TB, c incChooser, more func() bool, steps int) *incRun {
	r := newIncRun(t)
	m := newIncModel()
	r.step(m, "start")
	require.NotNil(t, r.applied, "the initial config is valid")
	var log []string
	for range steps {
		if !more() {
			break
		}
		what, ok := m.edit(c)
		if !ok {
			break
		}
		// A refused config is mostly fixed soon, as an operator would.
		if i, _ := c(3); i == 0 && !r.lastOK {
			m.repair()
			what += ", repair"
		}
		log = append(log, what)
		if len(log) > 8 {
			log = log[1:]
		}
		r.step(m, strings.Join(log, " / "))
	}
	return r
}

// TestIncrementalReloadMatchesFromScratch: random edits, a fixed number of
// seeds and steps, each reload compared with a from-scratch load.
func TestIncrementalReloadMatchesFromScratch(t *testing.T) {
	seeds, steps := 6, 60
	var total incRun
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 13))
			r := runIncremental(t, func(n int) (int, bool) { return rng.IntN(n), true }, func() bool { return true }, steps)
			t.Logf("reloads: %d applied (%d environments kept), %d failed, %d unchanged", r.ok, r.kept, r.failed, r.unchanged)
			total.ok, total.kept, total.failed, total.unchanged = total.ok+r.ok, total.kept+r.kept, total.failed+r.failed, total.unchanged+r.unchanged
		})
	}
	// Every path was taken: reloads applied with environments kept,
	// refused, and found unchanged.
	assert.Positive(t, total.ok)
	assert.Positive(t, total.kept)
	assert.Positive(t, total.failed)
	assert.Positive(t, total.unchanged)
}

// FuzzIncrementalReload: the input's bytes choose the edits. The seeds run
// with every `go test`.
func FuzzIncrementalReload(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 2, 1, 1, 4})
	f.Add([]byte{11, 0, 3, 0, 2, 12, 1, 0, 1, 12, 2, 1, 1, 13, 0, 0, 0, 5, 0, 0, 0})
	f.Add([]byte{7, 0, 0, 6, 0, 2, 9, 1, 1, 0, 0, 14, 0, 0, 0, 14, 2, 0, 0, 13, 1, 0, 2})
	f.Add([]byte{10, 1, 2, 0, 0, 10, 0, 0, 1, 0, 4, 0, 0, 3, 1, 2, 2, 1, 8, 0, 1, 0, 2, 2, 3, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		// An input used up in the middle of an edit chooses 0 for the
		// rest of it.
		runIncremental(t, func(n int) (int, bool) {
			if len(data) == 0 {
				return 0, true
			}
			b := data[0]
			data = data[1:]
			return int(b) % n, true
		}, func() bool { return len(data) > 0 }, 40)
	})
}

// compareRuntime builds a snapshot from scratch for freshPlan and compares
// what the request path reads in it with the running snapshot got: the
// environments and groups a reload kept must serve as new ones would.
func (r *incRun) compareRuntime(freshPlan *Plan, got *Snapshot, what string) {
	t := r.t
	t.Helper()
	want, _, err := build(freshPlan, nil, got.Generation, slog.New(slog.DiscardHandler))
	require.NoError(t, err, what)
	defer func() {
		for _, e := range want.envs {
			e.Close()
		}
	}()
	assert.Equal(t, describeSnapshot(freshPlan, want), describeSnapshot(freshPlan, got), "%s: the running snapshot serves as a from-scratch one", what)
	for name, g := range got.groups {
		if wg := want.groups[name]; wg != nil && wg.tls != nil && g.tls != nil {
			assert.True(t, wg.tls.ClientCAs.Equal(g.tls.ClientCAs), "%s: group %s: client CAs", what, name)
		}
	}
	// What the groups route to is the snapshot's own environments, not
	// ones a reload replaced.
	for name, g := range got.groups {
		for _, base := range baseRoutes(freshPlan.Groups[name]) {
			px, ok := g.paths.match(base)
			if assert.True(t, ok, "%s: group %s: %s", what, name, base) {
				assert.Same(t, got.envs[px.env.Name], px.env, "%s: group %s: %s routes to a replaced environment", what, name, base)
			}
		}
	}
}

func baseRoutes(gp *GroupPlan) []string {
	var out []string
	if gp != nil {
		for _, r := range gp.Routes {
			out = append(out, r.BasePath)
		}
	}
	return out
}

// describeSnapshot is what a request may read of s, as comparable data.
func describeSnapshot(plan *Plan, s *Snapshot) map[string]any {
	d := map[string]any{"underscores": s.underscores}
	if s.defaultGroup != nil {
		d["default"] = s.defaultGroup.name
	}
	for _, gp := range plan.Groups {
		for _, h := range gp.Group.Hostnames {
			name := strings.Replace(h, "*.", "x.", 1)
			if g, ok := s.hosts.lookup(name); ok {
				d["host "+name] = g.name
			}
		}
	}
	for name, g := range s.groups {
		gd := map[string]any{"clientCerts": g.clientCerts, "notAfter": g.notAfter}
		if g.tls != nil {
			gd["tls"] = []any{g.tls.MinVersion, g.tls.MaxVersion, g.tls.CipherSuites, g.tls.ClientAuth, g.tls.ClientCAs != nil,
				g.tls.Certificates[0].Certificate, g.tls.NextProtos}
		}
		for _, base := range baseRoutes(plan.Groups[name]) {
			if px, ok := g.paths.match(base); ok {
				gd["route "+base] = describeProxy(px)
			}
		}
		d["group "+name] = gd
	}
	for name, e := range s.envs {
		ed := map[string]any{"hash": e.Hash, "maxBody": e.maxBody, "writeTimeout": e.writeTimeout, "labels": e.labels,
			"accessCombined": e.accessCombined, "audit": e.audit != nil, "workers": e.pool.Stats().Workers}
		if e.access != nil {
			ed["access"] = e.access.w.path
		}
		if e.audit != nil {
			ed["auditPath"] = e.audit.w.path
		}
		for n, px := range e.proxies {
			ed["proxy "+n] = describeProxy(px)
		}
		for n, u := range e.upstreams {
			var nodes []string
			for _, nd := range u.Nodes() {
				nodes = append(nodes, fmt.Sprint(nd.URL(), "/", nd.Weight()))
			}
			ed["upstream "+n] = nodes
		}
		d["env "+name] = ed
	}
	return d
}

func describeProxy(px *proxyRuntime) []any {
	return []any{px.env.Name, px.name, px.basePath, px.targetPath, px.upstreamName, px.passHost, px.upstreamHost,
		px.retries, px.tunnelIdle, px.metrics != nil, px.lane != nil}
}

// routeTable is the routing table `edged routes` prints, as rows of
// hostname, group, base path, environment, proxy, forwarded path and
// node URLs.
func routeTable(p *Plan) [][]string {
	var rows [][]string
	for _, h := range p.RouteHosts() {
		for _, r := range h.Group.Routes {
			row := []string{h.Host, h.Group.Group.Name, r.BasePath, r.Env, r.Proxy.Name, r.Proxy.ForwardPath()}
			for _, n := range r.Upstream.Nodes {
				row = append(row, n.URL)
			}
			rows = append(rows, row)
		}
	}
	return rows
}
