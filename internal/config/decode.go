package config

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// The TOML library decodes a document into plain values (map[string]any,
// []any, string, int64, ...). Turning those into the schema types is done
// here, field by field, rather than by the library's struct decoder: that
// one stops at the first mismatch of a file, matches keys case-insensitively
// and silently drops a table where a map was expected. Here every unknown key
// and every wrong type is its own error with its own line, and the rest of
// the object still decodes.

// objMeta is what the loader remembers about one decoded object: where it
// was written and which of its fields the file set.
type objMeta struct {
	kind    string
	object  string     // `proxy "user-service"`, "server"
	pos     Pos        // the header of the object
	prefix  string     // key path of the object in its file: "proxy[2]", "server"
	lines   *lineIndex // of its file
	baseDir string     // absolute directory of its file, for relative paths
	set     map[string]bool
	// bad are the fields that failed to decode; validation stays quiet
	// about them, their decode error says it all.
	bad map[string]bool
}

// at is the position of a field of the object ("nodes[1].url"); the
// object's own line when the field was not written.
func (m *objMeta) at(field string) Pos {
	if field == "" {
		return m.pos
	}
	if n := m.lines.lookup(joinPath(m.prefix, field)); n > 0 {
		return Pos{File: m.pos.File, Line: n}
	}
	return m.pos
}

// near is the position of field when the file wrote it, else of the field
// other: a setting that requires a missing one is reported on the line of
// the setting.
func (m *objMeta) near(field, other string) Pos {
	if m.isSet(field) {
		return m.at(field)
	}
	return m.at(other)
}

// quiet reports whether validation stays quiet about field: it, or the
// field holding it ("nodes[0]" for "nodes[0].url"), failed to decode.
func (m *objMeta) quiet(field string) bool {
	if m == nil {
		return false
	}
	for f := field; f != ""; {
		if m.bad[f] {
			return true
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return false
}

// isSet reports whether the file wrote the field.
func (m *objMeta) isSet(field string) bool { return m.set[field] }

var durationType = reflect.TypeFor[Duration]()
var nodeType = reflect.TypeFor[Node]()

// decodeTable fills the struct rv from a TOML table. rel is the key path of
// the table within its object ("" for the object itself).
func (l *loader) decodeTable(raw map[string]any, rv reflect.Value, m *objMeta, rel string) {
	fields, names := tomlFields(rv.Type())
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		frel := joinPath(rel, k)
		idx, ok := fields[k]
		if !ok {
			l.errAt(m, frel, "unknown key %q%s", k, suggest(k, names))
			continue
		}
		m.set[frel] = true
		l.decodeValue(raw[k], rv.Field(idx), m, frel)
	}
}

// decodeValue stores v into fv, reporting a type mismatch against rel. It
// reports whether fv was set.
func (l *loader) decodeValue(v any, fv reflect.Value, m *objMeta, rel string) bool {
	t := fv.Type()
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			l.typeErr(m, rel, `a duration string like "30s"`, v)
			return false
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			l.decodeErr(m, rel, "%v", err)
			return false
		}
		fv.Set(reflect.ValueOf(d))
		return true
	}
	switch t.Kind() {
	case reflect.Pointer:
		nv := reflect.New(t.Elem())
		if !l.decodeValue(v, nv.Elem(), m, rel) {
			return false
		}
		fv.Set(nv)
		return true
	case reflect.Struct:
		tab, ok := v.(map[string]any)
		if !ok {
			want := "a table"
			if t == nodeType {
				// Most likely nodes = ["http://..."]. The value is not
				// shown: a URL may hold a password.
				want = `a table like { url = "http://10.0.0.5:8080" }`
			}
			l.typeErr(m, rel, want, v)
			return false
		}
		l.decodeTable(tab, fv, m, rel)
		return true
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			l.typeErr(m, rel, "a string", v)
			return false
		}
		fv.SetString(s)
		return true
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			l.typeErr(m, rel, "true or false", v)
			return false
		}
		fv.SetBool(b)
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			l.typeErr(m, rel, "an integer", v)
			return false
		}
		if fv.OverflowInt(n) {
			l.decodeErr(m, rel, "%d is out of range", n)
			return false
		}
		fv.SetInt(n)
		return true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok {
			l.typeErr(m, rel, "an integer", v)
			return false
		}
		if n < 0 || fv.OverflowUint(uint64(n)) {
			l.decodeErr(m, rel, "%d is out of range", n)
			return false
		}
		fv.SetUint(uint64(n))
		return true
	case reflect.Slice:
		items, ok := asArray(v)
		if !ok {
			want := "an array"
			if t.Elem().Kind() == reflect.Struct {
				want = "an array of tables"
			}
			l.typeErr(m, rel, want, v)
			return false
		}
		sl := reflect.MakeSlice(t, len(items), len(items))
		for i, it := range items {
			l.decodeValue(it, sl.Index(i), m, indexPath(rel, i))
		}
		fv.Set(sl)
		return true
	case reflect.Map:
		tab, ok := v.(map[string]any)
		if !ok {
			l.typeErr(m, rel, "a table", v)
			return false
		}
		mp := reflect.MakeMapWithSize(t, len(tab))
		// In key order, as decodeTable goes: entries written on one line
		// have one position, and their errors would come in the map's
		// order, another at every load.
		for _, k := range slices.Sorted(maps.Keys(tab)) {
			ev := reflect.New(t.Elem()).Elem()
			if l.decodeValue(tab[k], ev, m, joinPath(rel, k)) {
				mp.SetMapIndex(reflect.ValueOf(k), ev)
			}
		}
		fv.Set(mp)
		return true
	}
	// The schema holds no other kinds; a new field of another kind needs a
	// case above.
	l.decodeErr(m, rel, "cannot decode into %s (bug in edged)", t)
	return false
}

// asArray accepts both inline arrays and arrays of tables.
func asArray(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	return nil, false
}

// decodeErr reports a field that could not be decoded.
func (l *loader) decodeErr(m *objMeta, rel, format string, args ...any) {
	l.errs = append(l.errs, l.finding(m, rel, format, args...))
	m.bad[rel] = true
}

func (l *loader) typeErr(m *objMeta, rel, want string, got any) {
	l.decodeErr(m, rel, "must be %s, not %s", want, describe(got))
}

// describe names the TOML type of a decoded value.
func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date/time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	if _, ok := v.(fmt.Stringer); ok {
		return "a date/time"
	}
	return fmt.Sprintf("a %T", v)
}

// tomlFields maps the toml keys of a struct type to field indexes.
func tomlFields(t reflect.Type) (map[string]int, []string) {
	fields := make(map[string]int, t.NumField())
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	return fields, names
}

// suggest offers the closest known key for a typo.
func suggest(k string, known []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(k)
	for _, n := range known {
		if d := editDistance(lk, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		// Plurals and other endings: "proxies", "upstreams".
		for _, n := range known {
			if p := commonPrefix(lk, n); p >= 4 && p >= len(n)-1 {
				best = n
				break
			}
		}
	}
	if best == "" {
		return fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
