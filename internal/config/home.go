package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"edged/internal/owner"
)

// Environments own directories. The directory of the file that declares an
// [[environment]] is the environment's home, and its upstreams and proxies
// must be declared in files in that directory or below it. When homes nest
// (test declared in conf.d/, prod in conf.d/prod/), the deepest home
// holding a file's directory is the one that owns it: a file under
// conf.d/prod/ declares upstreams and proxies of prod only, never of test.
// Env groups and virtual hosts may live anywhere; [server] lives in a file
// directly in conf.d/ (merge.go). Unix ownership
// of the homes is then the access control: whoever may write to
// conf.d/prod/ may change prod, and nothing else.
//
// Paths are compared as the loader found them (joined with the directory
// as given, symlinks not resolved), which is what an operator sees with ls.

// Home is the environment's home: the directory of the file declaring it.
func (e *Environment) Home() string { return filepath.Dir(e.Pos.File) }

// checkHomes reports every upstream and proxy declared outside the home of
// its environment. envs are the environments that are validly and uniquely
// named; an object of another environment has its own error already.
// Whether an object is in place depends on where every environment is
// declared, which any file may change, so nothing is kept from an earlier
// Load (unlike checkContents): a reload finds exactly what a first load
// would. The check is made in full every time; it costs a few string
// comparisons per object and a walk up per file (BenchmarkCheckHomes).
func (l *loader) checkHomes(envs map[string]*Environment) {
	if len(envs) == 0 {
		return
	}
	homeOf := make(map[string]string, len(envs)) // environment → its home
	isHome := make(map[string]bool, len(envs))
	for name, e := range envs {
		h := e.Home()
		homeOf[name] = h
		isHome[h] = true
	}
	// The objects of one file follow each other, and mostly belong to one
	// environment: the owner of the last file and the home of the last
	// environment are kept.
	lastFile, lastOwner := "", ""
	lastEnv, lastHome, known := "", "", false
	var inHome map[string][]*Environment // home → its environments, once an error needs them
	check := func(m *objMeta, env string) {
		if env != lastEnv || lastHome == "" {
			lastEnv = env
			lastHome, known = homeOf[env]
		}
		if !known {
			return // an undefined environment has its own error
		}
		if m.pos.File != lastFile {
			lastFile, lastOwner = m.pos.File, owningHome(filepath.Dir(m.pos.File), isHome)
		}
		if lastOwner != lastHome {
			if inHome == nil {
				inHome = l.homeEnvs(envs)
			}
			l.errs = append(l.errs, homeError(m, envs[env], lastOwner, inHome[lastOwner]))
		}
	}
	for i, u := range l.cfg.Upstreams {
		check(l.upstreamMeta[i], u.Environment)
	}
	for i, p := range l.cfg.Proxies {
		check(l.proxyMeta[i], p.Environment)
	}
}

// homeEnvs maps each home to its environments, in file order: made once
// per load that has a misplaced object, not once per such object.
func (l *loader) homeEnvs(envs map[string]*Environment) map[string][]*Environment {
	in := make(map[string][]*Environment)
	for _, e := range l.cfg.Environments {
		if envs[e.Name] == e {
			in[e.Home()] = append(in[e.Home()], e)
		}
	}
	return in
}

// owningHome is the deepest home that dir is, or is below; "" when none.
func owningHome(dir string, isHome map[string]bool) string {
	for d := dir; ; {
		if isHome[d] {
			return d
		}
		up := filepath.Dir(d)
		if up == d {
			return ""
		}
		d = up
	}
}

// homeError is the error of object m, of environment e, declared in a
// directory whose owning home (see owningHome) is owner, where the
// environments ownerEnvs live, instead of e's.
func homeError(m *objMeta, e *Environment, owner string, ownerEnvs []*Environment) Error {
	dir := filepath.Dir(m.pos.File)
	home := e.Home()
	var msg string
	if owner == "" || !inDir(dir, home) {
		msg = fmt.Sprintf("environment %q has its home in %s, the directory of the file declaring it (%s): "+
			"its upstreams and proxies must be declared in files in that directory or below it, not in %s; "+
			"move this [[%s]] into %s",
			e.Name, home, e.Pos, dir, m.kind, home)
	} else {
		msg = fmt.Sprintf("%s is the home of %s: a file in it or below it declares upstreams and proxies of %s only, "+
			"while environment %q has its home in %s (%s); "+
			"move this [[%s]] into %s, or into a directory below it that no other environment has as its home",
			owner, describeEnvs(ownerEnvs), plural(len(ownerEnvs), "that environment", "those environments"),
			e.Name, home, e.Pos, m.kind, home)
	}
	return Error{Pos: m.pos, Object: m.object, Msg: msg}
}

// inDir reports whether dir is base or below it; both as the loader
// found them.
func inDir(dir, base string) bool {
	rel, err := filepath.Rel(base, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// describeEnvs names environments with where each is declared:
// `environment "prod" (conf.d/prod/prod.toml:1)`; past maxEnvsNamed, it
// counts the rest, since every misplaced object's message names them.
func describeEnvs(envs []*Environment) string {
	return nameEnvs(envs, func(e *Environment) string { return fmt.Sprintf("%q (%s)", e.Name, e.Pos) })
}

// nameEnvs renders "environment X" or "environments X, Y" with each
// environment as name renders it, the first maxEnvsNamed of them, then
// how many more.
func nameEnvs(envs []*Environment, name func(*Environment) string) string {
	shown := envs[:min(len(envs), maxEnvsNamed)]
	parts := make([]string, len(shown))
	for i, e := range shown {
		parts[i] = name(e)
	}
	more := ""
	if len(envs) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(envs)-len(shown))
	}
	return plural(len(envs), "environment ", "environments ") + strings.Join(parts, ", ") + more
}

// maxEnvsNamed is how many environments of a home a message names.
const maxEnvsNamed = 3

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Home is an environment's home directory with its owner and group, as
// edged routes and /status show them.
type Home struct {
	Dir   string `json:"dir"`
	Owner string `json:"owner"` // user name, or the uid when it has none; "" when the directory cannot be stat'ed
	Group string `json:"group"` // group name, or the gid
}

// Homes stats the home of each environment of cfg and names its owner and
// group, by environment name. Each uid and gid is looked up once.
func Homes(cfg *Config) map[string]Home {
	names := owner.NewNames()
	homes := make(map[string]Home, len(cfg.Environments))
	for _, e := range cfg.Environments {
		h := Home{Dir: e.Home()}
		if fi, err := os.Stat(h.Dir); err == nil {
			if uid, gid, ok := owner.IDs(fi); ok {
				h.Owner, h.Group = names.User(uid), names.Group(gid)
			}
		}
		homes[e.Name] = h
	}
	return homes
}

// WorldWritable warns about every file of cfg, and every directory from
// cfg.Dir down to them, that every user may write to (the o+w bit): with
// Unix ownership as the access control of environments, such a path lets
// anyone change what the environments that live there serve. A sticky
// directory is warned about too, since anyone may still add files to it.
// It stats what it names; edged check calls it, a reload does not.
func WorldWritable(cfg *Config) []Error {
	homes := make(map[string][]*Environment)
	isHome := make(map[string]bool)
	for _, e := range cfg.Environments {
		homes[e.Home()] = append(homes[e.Home()], e)
		isHome[e.Home()] = true
	}
	root := filepath.Clean(cfg.Dir)
	seen := make(map[string]bool)
	var paths []string
	for _, f := range cfg.Files {
		paths = append(paths, f.Path)
		for d := filepath.Dir(f.Path); !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
			paths = append(paths, d)
			if d == root || filepath.Dir(d) == d {
				break
			}
		}
	}
	sort.Strings(paths)
	var warns []Error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o002 == 0 {
			continue
		}
		fix := fmt.Sprintf("(mode %04o); run: chmod o-w %s", fi.Mode().Perm(), p)
		var msg string
		switch envs := envsIn(p, fi.IsDir(), homes, isHome); {
		case fi.IsDir() && len(homes[p]) > 0:
			msg = fmt.Sprintf("the home of %s is writable by every user: anyone on this machine can add files to it %s", names(homes[p]), fix)
		case len(envs) > 0:
			msg = fmt.Sprintf("writable by every user: anyone on this machine can change %s %s", names(envs), fix)
		default:
			msg = fmt.Sprintf("writable by every user: anyone on this machine can change the configuration %s", fix)
		}
		warns = append(warns, Error{Pos: Pos{File: p}, Msg: msg})
	}
	return append(warns, worldWritableTLS(cfg, seen)...)
}

// worldWritableTLS warns about the certificate, key and CA files cfg
// names, and their directories, that every user may write to (those in
// seen were looked at already): anyone could put a CA of theirs in a
// client_ca_file (and let themselves in) or a tls_ca_file (and stand in
// for a node), or rename a certificate and key over a virtual host's. A
// sticky directory is fine: nobody may replace another's file in it.
func worldWritableTLS(cfg *Config, seen map[string]bool) []Error {
	var paths []string
	add := func(files ...string) {
		for _, f := range files {
			if f == "" {
				continue
			}
			for _, p := range []string{filepath.Clean(f), filepath.Dir(f)} {
				if !seen[p] {
					seen[p] = true
					paths = append(paths, p)
				}
			}
		}
	}
	for _, vh := range cfg.VirtualHosts {
		add(vh.CertFile, vh.KeyFile, vh.ClientCAFile)
	}
	for _, u := range cfg.Upstreams {
		add(u.TLSCAFile, u.TLSCertFile, u.TLSKeyFile)
	}
	sort.Strings(paths)
	var warns []Error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o002 == 0 || fi.IsDir() && fi.Mode()&os.ModeSticky != 0 {
			continue
		}
		warns = append(warns, Error{Pos: Pos{File: p}, Msg: fmt.Sprintf(
			"writable by every user: anyone on this machine can replace a certificate, key or CA file edged loads (mode %04o); run: chmod o-w %s", fi.Mode().Perm(), p)})
	}
	return warns
}

// envsIn are the environments whose objects a file may declare (those of
// its owning home); for a directory, those too and the environments whose
// homes are below it; sorted by name.
func envsIn(p string, dir bool, homes map[string][]*Environment, isHome map[string]bool) []*Environment {
	if !dir {
		p = filepath.Dir(p)
	}
	owner := owningHome(p, isHome)
	envs := append([]*Environment(nil), homes[owner]...)
	if dir {
		for h, es := range homes {
			if h != owner && inDir(h, p) {
				envs = append(envs, es...)
			}
		}
	}
	sort.Slice(envs, func(i, j int) bool { return envs[i].Name < envs[j].Name })
	return envs
}

// names renders `environment "prod"` or `environments "test", "uat"`;
// past maxEnvsNamed, it counts the rest (a warning per world-writable
// file of a home would otherwise name all of the home's environments).
func names(envs []*Environment) string {
	return nameEnvs(envs, func(e *Environment) string { return fmt.Sprintf("%q", e.Name) })
}
