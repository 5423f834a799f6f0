package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// source is one configuration file: its path as found under the
// configuration directory (joined with the directory as given) and its
// content.
type source struct {
	path string
	data []byte
	// sum is data's SHA-256 when a Loader knows it from an earlier load of
	// the same bytes; nil otherwise.
	sum *[32]byte
}

// loader holds the state of one Load.
type loader struct {
	dir string
	cfg *Config
	// readFile reads a file a virtual host names (certificate, key, CA).
	readFile func(string) ([]byte, error)
	now      func() time.Time

	errs  []Error
	warns []Error

	meta       map[any]*objMeta // of environments, env groups and virtual hosts
	serverMeta *objMeta
	// upstreamMeta and proxyMeta are the metas of cfg.Upstreams and
	// cfg.Proxies, index for index.
	upstreamMeta, proxyMeta []*objMeta

	// prevEnvs and prevGroups are what the last Load's checks of
	// environment contents found (see checkContents); envs and groups
	// collect this load's, for the next one.
	prevEnvs, envs     map[string]*envContents
	prevGroups, groups map[string]*groupCheck

	// cache holds the files an earlier Load decoded; decoded collects this
	// load's, for the next one.
	cache, decoded map[string]*decodedFile
	pairs          keyPairs
}

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
// found (checked, errs); later Loads share the object as it is. Nothing
// writes to it after that.
type decodedObj struct {
	obj     any // *Environment, *EnvGroup, ... or *Server
	meta    *objMeta
	checked bool
	errs    []Error
}

// Load reads every *.toml file under dir, merges them into one Config,
// applies the defaults and validates the result, TLS material included.
//
// When anything is wrong, the error is an Errors holding every problem found,
// sorted by file and line; the returned Config is then incomplete and must
// not be served. Warnings never make Load fail; they are in Config.Warnings.
func Load(dir string) (*Config, error) {
	return (&Loader{Dir: dir}).Load()
}

// Loader loads one configuration directory again and again, as a running
// process does on every reload. It keeps what it decoded from each file by
// the file's content hash, so a reload decodes only the files that changed:
// with thousands of proxies, parsing TOML is most of a reload's cost.
// It stats rather than reads the files that have not changed (see
// readDirSince). What it returns is always a fresh Config; it shares with
// earlier ones (which the running snapshot may still be reading) only what
// nothing writes to any more: the bytes of unchanged files, and their
// upstreams and proxies (see decodedObj).
// A Loader is not safe for concurrent use.
type Loader struct {
	Dir   string
	read  map[string]readEntry    // by path, from the last Load
	cache map[string]*decodedFile // by path, from the last Load
	pairs map[pairKey]tls.Certificate
	// envs and groups are what the last Load's checks of environment
	// contents found.
	envs   map[string]*envContents
	groups map[string]*groupCheck
}

// Load is the package's Load with the decode cache of earlier calls.
func (ld *Loader) Load() (*Config, error) {
	if ld.read == nil {
		ld.read = map[string]readEntry{} // stamp from the first load on
	}
	srcs, errs, warns, read := readDirSince(ld.Dir, ld.read)
	ld.read = read
	l := newLoader(ld.Dir, errs, warns, readTLSFile)
	l.cache, l.pairs.prev = ld.cache, ld.pairs
	l.prevEnvs, l.prevGroups = ld.envs, ld.groups
	cfg, err := l.finish(srcs)
	ld.cache, ld.pairs = l.decoded, l.pairs.cur
	ld.envs, ld.groups = l.envs, l.groups
	return cfg, err
}

// loadSources is Load after the directory was read: srcs sorted by path,
// with the problems met while reading. readFile reads the files virtual
// hosts name; the fuzz test passes one that reads nothing.
func loadSources(dir string, srcs []source, errs, warns []Error, readFile func(string) ([]byte, error)) (*Config, error) {
	return newLoader(dir, errs, warns, readFile).finish(srcs)
}

func newLoader(dir string, errs, warns []Error, readFile func(string) ([]byte, error)) *loader {
	return &loader{
		dir:      dir,
		cfg:      &Config{Dir: dir},
		readFile: readFile,
		now:      time.Now,
		meta:     make(map[any]*objMeta),
		errs:     errs,
		warns:    warns,
		decoded:  make(map[string]*decodedFile),
	}
}

func (l *loader) finish(srcs []source) (*Config, error) {
	cfg := l.load(srcs)
	sortErrors(l.errs)
	sortErrors(l.warns)
	cfg.Warnings = l.warns
	if len(l.errs) > 0 {
		return cfg, Errors(l.errs)
	}
	return cfg, nil
}

func sortErrors(es []Error) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Pos.File != es[j].Pos.File {
			return es[i].Pos.File < es[j].Pos.File
		}
		return es[i].Pos.Line < es[j].Pos.Line
	})
}

// load decodes, merges, defaults and validates srcs, which are sorted by
// path. It reads no configuration file itself, so the fuzz test can drive it.
func (l *loader) load(srcs []source) *Config {
	if len(srcs) == 0 && len(l.errs) == 0 {
		l.errs = append(l.errs, Error{Pos: Pos{File: l.dir},
			Msg: "no configuration files: the directory holds no *.toml file (is -c pointing at conf.d?)"})
	}
	for _, src := range srcs {
		var sum [32]byte
		if src.sum != nil {
			sum = *src.sum
		} else {
			sum = sha256.Sum256(src.data)
		}
		l.cfg.Files = append(l.cfg.Files, File{
			Path:   src.path,
			SHA256: hex.EncodeToString(sum[:]),
			Size:   int64(len(src.data)),
			Data:   src.data,
		})
		df := l.cache[src.path]
		if df == nil || df.sum != sum {
			df = l.decodeFile(src)
			df.sum = sum
		}
		l.decoded[src.path] = df
		l.merge(df)
	}
	l.applyDefaults()
	l.validate()
	return l.cfg
}

func (l *loader) errAt(m *objMeta, field, format string, args ...any) {
	if m != nil && m.bad[field] {
		return
	}
	l.errs = append(l.errs, l.finding(m, field, format, args...))
}

// errNear reports a problem of field on the line of other when the file did
// not write field ("hash_on: required" on the line of balance = "hash").
func (l *loader) errNear(m *objMeta, field, other, format string, args ...any) {
	if m != nil && m.bad[field] {
		return
	}
	e := l.finding(m, field, format, args...)
	if m != nil {
		e.Pos = m.near(field, other)
	}
	l.errs = append(l.errs, e)
}

func (l *loader) warnAt(m *objMeta, field, format string, args ...any) {
	l.warns = append(l.warns, l.finding(m, field, format, args...))
}

func (l *loader) finding(m *objMeta, field, format string, args ...any) Error {
	if m == nil {
		// Only the server can be without a table; its defaults are valid,
		// so this is a safety net rather than a path taken.
		return Error{Pos: Pos{File: l.dir}, Object: "server", Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	return Error{Pos: m.at(field), Object: m.object, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// fileErr is a problem of a file or of its top level.
func (l *loader) fileErr(file string, line int, format string, args ...any) {
	l.errs = append(l.errs, Error{Pos: Pos{File: file, Line: line}, Msg: fmt.Sprintf(format, args...)})
}

// kinds are the top-level keys a file may hold, besides [server].
var kinds = map[string]reflect.Type{
	"environment":  reflect.TypeFor[Environment](),
	"env_group":    reflect.TypeFor[EnvGroup](),
	"virtual_host": reflect.TypeFor[VirtualHost](),
	"upstream":     reflect.TypeFor[Upstream](),
	"proxy":        reflect.TypeFor[Proxy](),
}

var topLevelKeys = []string{"server", "environment", "env_group", "virtual_host", "upstream", "proxy"}

// decodeFile decodes one file on its own. The problems it meets go into
// the result, not into l.errs: merge adds them, every time the file is used.
func (l *loader) decodeFile(src source) *decodedFile {
	df := &decodedFile{}
	before := len(l.errs)
	defer func() {
		df.errs = append([]Error(nil), l.errs[before:]...)
		l.errs = l.errs[:before]
	}()
	var raw map[string]any
	if err := decodeTOML(src.data, &raw); err != nil {
		var pe toml.ParseError
		var le *limitError
		switch {
		case errors.As(err, &le):
			l.fileErr(src.path, le.line, "%s", le.msg)
		case errors.As(err, &pe):
			l.fileErr(src.path, pe.Position.Line, "invalid TOML: %s", pe.Message)
		default:
			l.fileErr(src.path, 0, "invalid TOML: %v", err)
		}
		return df
	}
	lines := scanLines(src.data)
	baseDir, err := filepath.Abs(filepath.Dir(src.path))
	if err != nil {
		baseDir = filepath.Dir(src.path)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := raw[k]
		if k == "server" {
			l.decodeServer(df, src.path, v, lines, baseDir)
			continue
		}
		t, ok := kinds[k]
		if !ok {
			l.fileErr(src.path, lines.lookup(k), "unknown key %q at the top level%s", k, suggest(k, topLevelKeys))
			continue
		}
		items, ok := v.([]map[string]any)
		if !ok {
			if arr, isArr := v.([]any); isArr {
				items = make([]map[string]any, 0, len(arr))
				for _, it := range arr {
					tab, isTab := it.(map[string]any)
					if !isTab {
						items = nil
						break
					}
					items = append(items, tab)
				}
				ok = items != nil || len(arr) == 0
			}
		}
		if !ok {
			l.fileErr(src.path, lines.lookup(k), "%s must be an array of tables: write [[%s]], not [%s]", k, k, k)
			continue
		}
		for i, tab := range items {
			l.decodeObject(df, src.path, k, t, i, tab, lines, baseDir)
		}
	}
	return df
}

func (l *loader) decodeObject(df *decodedFile, file, kind string, t reflect.Type, i int, tab map[string]any, lines *lineIndex, baseDir string) {
	prefix := indexPath(kind, i)
	name, _ := tab["name"].(string)
	m := &objMeta{
		kind:    kind,
		object:  objectName(kind, name),
		pos:     Pos{File: file, Line: lines.lookup(prefix)},
		prefix:  prefix,
		lines:   lines,
		baseDir: baseDir,
		set:     make(map[string]bool),
		bad:     make(map[string]bool),
	}
	pv := reflect.New(t)
	l.decodeTable(tab, pv.Elem(), m, "")
	pv.Elem().FieldByName("Pos").Set(reflect.ValueOf(m.pos))
	df.objs = append(df.objs, decodedObj{obj: pv.Interface(), meta: m})
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

func (l *loader) decodeServer(df *decodedFile, file string, v any, lines *lineIndex, baseDir string) {
	tab, ok := v.(map[string]any)
	if !ok {
		l.fileErr(file, lines.lookup("server"), "server must be a table: write [server], not [[server]]")
		return
	}
	m := &objMeta{
		kind:    "server",
		object:  "server",
		pos:     Pos{File: file, Line: lines.lookup("server")},
		prefix:  "server",
		lines:   lines,
		baseDir: baseDir,
		set:     make(map[string]bool),
		bad:     make(map[string]bool),
	}
	srv := &Server{}
	l.decodeTable(tab, reflect.ValueOf(srv).Elem(), m, "")
	srv.Pos = m.pos
	df.objs = append(df.objs, decodedObj{obj: srv, meta: m})
}

// readDir lists the configuration files under dir and reads them.
func readDir(dir string) (srcs []source, errs, warns []Error) {
	srcs, errs, warns, _ = readDirSince(dir, nil)
	return srcs, errs, warns
}

// readDirSince is readDir that takes a file's contents from the previous
// read (prev) instead of reading it again when stat says the file has not
// changed since: same size, inode, device, modification and change time,
// and that change time older than the previous read by stampSlack. The
// slack covers the coarse clock that file times are stamped with (a write
// in the same tick as the read would leave the stamp as it was); any later
// write moves the change time, which no one can set. A reload of a large
// conf.d thus stats the files it did not change instead of reading them.
// With prev nil (a load that will not be repeated) nothing is stat'ed and
// next is nil.
func readDirSince(dir string, prev map[string]readEntry) (srcs []source, errs, warns []Error, next map[string]readEntry) {
	paths, errs, warns := listFiles(dir)
	var local map[uint64]bool // by device: a local filesystem?
	if prev != nil {
		next = make(map[string]readEntry, len(paths))
		local = make(map[uint64]bool)
	}
	total := 0
	for _, p := range paths {
		var stamp fileStamp
		stamped := false
		if prev != nil {
			stamp, stamped = stampOf(p, local)
		}
		if e, ok := prev[p]; ok && stamped && e.stamp == stamp && e.stamp.ctime < e.readAt.Add(-stampSlack).UnixNano() {
			srcs = append(srcs, source{path: p, data: e.data, sum: e.sum})
			next[p] = e
			total += len(e.data)
			continue
		}
		readAt := time.Now()
		data, err := ReadFile(p)
		if err != nil {
			errs = append(errs, Error{Pos: Pos{File: p}, Msg: readProblem(err)})
			continue
		}
		if total += len(data); total > MaxTotalSize {
			return nil, append(errs, Error{Pos: Pos{File: dir}, Msg: fmt.Sprintf(
				"configuration files add up to more than the %d bytes (%d MiB) allowed, at %s; remove files that are not configuration",
				MaxTotalSize, MaxTotalSize>>20, p)}), warns, next
		}
		src := source{path: p, data: data}
		if stamped {
			sum := sha256.Sum256(data)
			src.sum = &sum
			// Taken before the read: a change in between shows next time.
			next[p] = readEntry{stamp: stamp, readAt: readAt, data: data, sum: &sum}
		}
		srcs = append(srcs, src)
	}
	return srcs, errs, warns, next
}

// readProblem says why a configuration file could not be read; the
// path is the finding's, not repeated.
func readProblem(err error) string {
	var nr *notRegularError
	var tl *tooLargeError
	switch {
	case errors.As(err, &nr):
		return fmt.Sprintf("is %s, not a regular file", fileKind(nr.mode))
	case errors.As(err, &tl):
		return fmt.Sprintf("file is larger than the %d bytes (%s) allowed; split it into several files", tl.limit, sizeName(tl.limit))
	}
	return fmt.Sprintf("cannot read: %v", err)
}

// stampSlack is how long before a read a file must have last changed for
// its stamp to stand for its contents.
var stampSlack = 2 * time.Second

// fileStamp is what stat says of a file.
type fileStamp struct {
	size         int64
	mtime, ctime int64 // ns since the epoch
	ino, dev     uint64
}

// readEntry is a file as one load read it.
type readEntry struct {
	stamp  fileStamp
	readAt time.Time
	data   []byte // shared with that load's sources: never written to
	sum    *[32]byte
}

// StateDir returns the state_dir the configuration in dir asks for, even
// when parts of it are broken: each file is decoded on its own; the first
// [server] table (in path order) that sets state_dir wins, a relative value
// resolved against the directory of its file. A file that does not parse
// is read line by line for state_dir in its [server] table, since the
// operator's broken edit is most often the one being reloaded. Without one
// it is DefaultStateDir. edged reload uses it to find the control socket of
// the running process.
func StateDir(dir string) string {
	paths, _, _ := listFiles(dir)
	for _, p := range paths {
		data, err := ReadFile(p)
		if err != nil {
			continue
		}
		var doc struct {
			Server *struct {
				StateDir *string `toml:"state_dir"`
			} `toml:"server"`
		}
		v := ""
		if err := decodeTOML(data, &doc); err != nil {
			v = scanStateDir(string(data))
		} else if doc.Server != nil && doc.Server.StateDir != nil {
			v = *doc.Server.StateDir
		}
		if v != "" {
			return resolvePath(filepath.Dir(p), v)
		}
	}
	return DefaultStateDir
}

// scanStateDir finds state_dir in a file that does not parse as a whole:
// `state_dir = "..."` in its [server] table, or `server.state_dir = "..."`
// ahead of any table; "" when there is none or its value does not parse.
func scanStateDir(data string) string {
	table, top := "", true
	for line := range strings.Lines(data) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			head, _, _ := strings.Cut(t, "#")
			table, top = strings.TrimSpace(head), false
			continue
		}
		key, val, ok := strings.Cut(t, "=")
		key = strings.TrimSpace(key)
		if !ok || !(table == "[server]" && key == "state_dir" || top && key == "server.state_dir") {
			continue
		}
		var v struct {
			V string `toml:"v"`
		}
		if err := decodeTOML([]byte("v = "+strings.TrimSpace(val)), &v); err == nil {
			return v.V
		}
	}
	return ""
}

// resolvePath makes a path named in a file under base absolute.
func resolvePath(base, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}
