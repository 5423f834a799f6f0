package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
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

	// upstreamEnvs maps an upstream name to the first environment (in
	// file order) that has one, once a hint needs it (see upstreamEnv).
	upstreamEnvs map[string]string
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
	for attempt := 1; ; attempt++ {
		// The files the configuration names are read through the links
		// its own files were found through, as they led then: of one
		// release (see resolver).
		res := newResolver()
		srcs, errs, warns, read := readDirSince(ld.Dir, ld.read, res)
		ld.read = read
		l := newLoader(ld.Dir, errs, warns, res.readTLS)
		l.cache, l.pairs.prev = ld.cache, ld.pairs
		l.prevEnvs, l.prevGroups = ld.envs, ld.groups
		cfg, err := l.finish(srcs)
		ld.cache, ld.pairs = l.decoded, l.pairs.cur
		ld.envs, ld.groups = l.envs, l.groups
		// The version the load read is being removed (the kubelet
		// removes a volume's old directory as soon as "..data" leads
		// to the new one; a deploy its oldest release): the files it
		// had not read yet are gone. The version the links lead to now
		// is read whole instead.
		if err == nil || !res.vanished || attempt == loadAttempts {
			return cfg, err
		}
	}
}

// loadAttempts bounds the loads one Loader.Load makes when files it met
// are gone by the time it reads them.
const loadAttempts = 3

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
	for _, e := range cfg.Environments {
		cfg.envMetas = append(cfg.envMetas, l.meta[e])
	}
	for _, g := range cfg.EnvGroups {
		cfg.groupMetas = append(cfg.groupMetas, l.meta[g])
	}
	for _, vh := range cfg.VirtualHosts {
		cfg.vhostMetas = append(cfg.vhostMetas, l.meta[vh])
	}
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
	// Sources read from the directory are within these bounds already
	// (listFiles, readDirSince); those given as the directory would be
	// (LoadOverlay, LoadFiles) must be refused as a load would refuse
	// them once written.
	total := 0
	for _, src := range srcs {
		if total += len(src.data); total > MaxTotalSize {
			l.errs = append(l.errs, totalSizeError(l.dir, src.path))
			srcs = nil
			break
		}
	}
	if len(srcs) > maxFiles {
		l.errs = append(l.errs, tooManyFilesError(l.dir, len(srcs)))
		srcs = nil
	}
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
	if m.quiet(field) {
		return
	}
	l.errs = append(l.errs, l.finding(m, field, format, args...))
}

// errNear reports a problem of field on the line of other when the file did
// not write field ("hash_on: required" on the line of balance = "hash").
func (l *loader) errNear(m *objMeta, field, other, format string, args ...any) {
	if m.quiet(field) {
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
