package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README is the users' reference for the configuration: these tests
// hold its tables to the keys, defaults and ranges the loader has.

const readmeFile = "../../README.md"

// readmeSection is the README's text from the heading line that begins
// with head to the next heading of the same or a higher level.
func readmeSection(t *testing.T, head string) string {
	t.Helper()
	raw, err := os.ReadFile(readmeFile)
	require.NoError(t, err)
	lines := strings.Split(string(raw), "\n")
	start, level := -1, 0
	for i, l := range lines {
		if start < 0 {
			if strings.HasPrefix(l, head) {
				start, level = i, strings.IndexByte(l, ' ')
			}
			continue
		}
		if n := strings.IndexByte(l, ' '); n > 0 && n <= level && strings.Trim(l[:n], "#") == "" {
			return strings.Join(lines[start:i], "\n")
		}
	}
	require.GreaterOrEqual(t, start, 0, "README has a heading %q", head)
	return strings.Join(lines[start:], "\n")
}

// readmeRow is one row of a README key table.
type readmeRow struct {
	def, meaning string
}

var backticked = regexp.MustCompile("`([^`]*)`")

// readmeTable reads the "| key | default | meaning |" rows of section:
// each key of the first cell (`a`, `b` gives two; `[upstream.health.active]`
// is health.active) with its row.
func readmeTable(t *testing.T, section, kind string) map[string]readmeRow {
	t.Helper()
	rows := map[string]readmeRow{}
	for _, l := range strings.Split(section, "\n") {
		cells := strings.Split(l, "|") // "", key, default, meaning (which may hold "|"), ""
		if !strings.HasPrefix(l, "| `") || len(cells) < 4 {
			continue
		}
		row := readmeRow{def: strings.TrimSpace(cells[2]), meaning: strings.Join(cells[3:], "|")}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			key := m[1]
			if strings.HasPrefix(key, "[") {
				key = strings.TrimPrefix(strings.Trim(key, "[]"), kind+".")
			}
			rows[key] = row
		}
	}
	require.NotEmpty(t, rows, "a key table")
	return rows
}

// readmeTOMLKeys are the keys a section's TOML example sets, by the table
// header ([[env_group]]) they follow, comments included ("only with
// allow_legacy_tls = true" names a key).
func readmeTOMLKeys(section string) map[string]map[string]bool {
	keys := map[string]map[string]bool{}
	kind := ""
	for _, l := range strings.Split(section, "\n") {
		if m := regexp.MustCompile(`^\[\[(\w+)\]\]`).FindStringSubmatch(l); m != nil {
			kind = m[1]
			keys[kind] = map[string]bool{}
			continue
		}
		if kind == "" {
			continue
		}
		for _, m := range regexp.MustCompile(`(?:^|\s)([a-z_]+) = (?:"|\d|true|false|\[)`).FindAllStringSubmatch(l, -1) {
			keys[kind][m[1]] = true
		}
	}
	return keys
}

// tomlKeys are the keys typ decodes, nested ones as "health.active.path"
// ("nodes.url" for the tables of an array).
func tomlKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			keys = append(keys, tomlKeys(ft, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// documented says whether key is documented by rows (a table) and
// section: a key of the table, or a nested key named in code (`path`,
// `GET path`, `[{ url = ... }]`) in its parent's row, or else in the
// section.
func documented(key string, rows map[string]readmeRow, section string) bool {
	if _, ok := rows[key]; ok {
		return true
	}
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return false
	}
	leaf := key[i+1:]
	named := regexp.MustCompile("`([^`]*[^a-z_`])?" + leaf + "([^a-z_`][^`]*)?`") // `leaf`, `leaf = 1`, `GET leaf`
	for parent := key[:i]; ; {
		if r, ok := rows[parent]; ok {
			if named.MatchString(r.meaning) || named.MatchString(r.def) {
				return true
			}
			break
		}
		j := strings.LastIndexByte(parent, '.')
		if j < 0 {
			break
		}
		parent = parent[:j]
	}
	return named.MatchString(section)
}

// TestREADMEConfigTablesNameEveryKey: every key of README's tables and
// examples is one the loader knows, and every key the loader takes is in
// README.
func TestREADMEConfigTablesNameEveryKey(t *testing.T) {
	for _, tc := range []struct {
		head, kind string
		typ        reflect.Type
	}{
		{"### `[server]`", "server", reflect.TypeOf(Server{})},
		{"### `[[environment]]`", "environment", reflect.TypeOf(Environment{})},
		{"### `[[upstream]]`", "upstream", reflect.TypeOf(Upstream{})},
	} {
		section := readmeSection(t, tc.head)
		rows := readmeTable(t, section, tc.kind)
		code := tomlKeys(tc.typ, "")
		known := map[string]bool{}
		for _, k := range code {
			known[k] = true
			assert.True(t, documented(k, rows, section), "[%s] %s: the loader takes it, README does not say it", tc.kind, k)
		}
		for k := range rows {
			isParent := false
			for c := range known {
				isParent = isParent || strings.HasPrefix(c, k+".")
			}
			assert.True(t, known[k] || isParent, "[%s] %s: in README's table, unknown to the loader", tc.kind, k)
		}
	}
	section := readmeSection(t, "### `[[env_group]]` and `[[virtual_host]]`")
	proxy := readmeSection(t, "### `[[proxy]]`")
	examples := readmeTOMLKeys(section)
	examples["proxy"] = readmeTOMLKeys(proxy)["proxy"]
	for kind, typ := range map[string]reflect.Type{
		"env_group":    reflect.TypeOf(EnvGroup{}),
		"virtual_host": reflect.TypeOf(VirtualHost{}),
		"proxy":        reflect.TypeOf(Proxy{}),
	} {
		code := tomlKeys(typ, "")
		sort.Strings(code)
		var readme []string
		for k := range examples[kind] {
			readme = append(readme, k)
		}
		sort.Strings(readme)
		assert.Equal(t, code, readme, "[[%s]]: the keys of README's example and the loader's", kind)
	}
}

// readmeDefaultsConfig leaves every key of the tables out (but those that
// need another: http for http_mode, the health tables for their keys).
const readmeDefaultsConfig = `
[server]
http = "127.0.0.1:8080"

[[environment]]
name = "test"

[[upstream]]
name = "u"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9001" }]
[upstream.health.active]
[upstream.health.passive]

[[proxy]]
name = "p"
environment = "test"
base_path = "/p"
upstream = "u"
`

// field is the value of key (a toml path) in v, pointers followed.
func field(t *testing.T, v reflect.Value, key string) reflect.Value {
	t.Helper()
	for _, part := range strings.Split(key, ".") {
		for v.Kind() == reflect.Pointer {
			require.False(t, v.IsNil(), "%s is set", key)
			v = v.Elem()
		}
		found := false
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("toml") == part {
				v, found = v.Field(i), true
				break
			}
		}
		require.True(t, found, "%s is a key", key)
	}
	for v.Kind() == reflect.Pointer {
		require.False(t, v.IsNil(), "%s is set", key)
		v = v.Elem()
	}
	return v
}

// TestREADMEConfigDefaultsAreTheLoaders: every default README's tables
// give as one value (`"30s"`, `64`, `false`) is what the loader sets
// when the key is left out.
func TestREADMEConfigDefaultsAreTheLoaders(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.toml"), []byte(readmeDefaultsConfig), 0o644))
	cfg, err := LoadWithoutTLS(dir)
	require.NoError(t, err)
	one := regexp.MustCompile("^`([^`]+)`$")
	checked := 0
	for _, tc := range []struct {
		head, kind string
		obj        any
	}{
		{"### `[server]`", "server", &cfg.Server},
		{"### `[[environment]]`", "environment", cfg.Environments[0]},
		{"### `[[upstream]]`", "upstream", cfg.Upstreams[0]},
	} {
		for key, row := range readmeTable(t, readmeSection(t, tc.head), tc.kind) {
			m := one.FindStringSubmatch(row.def)
			if m == nil || key == "http" { // http: set for http_mode's default
				continue
			}
			v := field(t, reflect.ValueOf(tc.obj), key)
			lit := m[1]
			switch {
			case v.Type() == durationType:
				s, err := strconv.Unquote(lit)
				require.NoError(t, err, "[%s] %s: %s", tc.kind, key, lit)
				d, err := time.ParseDuration(s)
				require.NoError(t, err, "[%s] %s: %s", tc.kind, key, lit)
				assert.Equal(t, d, v.Interface().(Duration).Duration, "[%s] %s: README's default %s", tc.kind, key, lit)
			case v.Kind() == reflect.String:
				s, err := strconv.Unquote(lit)
				require.NoError(t, err, "[%s] %s: %s", tc.kind, key, lit)
				assert.Equal(t, s, v.String(), "[%s] %s: README's default %s", tc.kind, key, lit)
			case v.Kind() == reflect.Bool:
				assert.Equal(t, lit, strconv.FormatBool(v.Bool()), "[%s] %s: README's default", tc.kind, key)
			case v.CanInt():
				assert.Equal(t, lit, strconv.FormatInt(v.Int(), 10), "[%s] %s: README's default", tc.kind, key)
			default:
				continue
			}
			checked++
		}
	}
	assert.Greater(t, checked, 25, "defaults compared")
}

// TestREADMEConfigRangesAreTheLoaders: a whole number key whose README
// row gives its range ("1 to 10000") takes both ends and is refused one
// past either, with an error naming that range.
func TestREADMEConfigRangesAreTheLoaders(t *testing.T) {
	span := regexp.MustCompile(`\b(\d+) to (\d+)\b`)
	// where a key of each table goes in readmeDefaultsConfig
	anchors := map[string]string{"server": "[server]\n", "environment": "name = \"test\"\n", "upstream": "name = \"u\"\n"}
	checked := 0
	for _, tc := range []struct {
		head, kind string
		typ        reflect.Type
	}{
		{"### `[server]`", "server", reflect.TypeOf(Server{})},
		{"### `[[environment]]`", "environment", reflect.TypeOf(Environment{})},
		{"### `[[upstream]]`", "upstream", reflect.TypeOf(Upstream{})},
	} {
		for key, row := range readmeTable(t, readmeSection(t, tc.head), tc.kind) {
			m := span.FindStringSubmatch(row.meaning)
			if m == nil || strings.Contains(key, ".") {
				continue
			}
			f, ok := tc.typ.FieldByNameFunc(func(n string) bool {
				sf, _ := tc.typ.FieldByName(n)
				return sf.Tag.Get("toml") == key
			})
			require.True(t, ok, "%s is a key", key)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if !ft.ConvertibleTo(reflect.TypeOf(0)) || ft.Kind() == reflect.Struct {
				continue
			}
			lo, _ := strconv.ParseInt(m[1], 10, 64)
			hi, _ := strconv.ParseInt(m[2], 10, 64)
			for _, v := range []int64{lo - 1, lo, hi, hi + 1} {
				dir := t.TempDir()
				conf := strings.Replace(readmeDefaultsConfig, anchors[tc.kind], anchors[tc.kind]+key+" = "+strconv.FormatInt(v, 10)+"\n", 1)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "a.toml"), []byte(conf), 0o644))
				_, err := LoadWithoutTLS(dir)
				if v < lo || v > hi {
					require.Error(t, err, "[%s] %s = %d: README's range is %s", tc.kind, key, v, m[0])
					assert.Contains(t, err.Error(), key+": ", "[%s] %s = %d", tc.kind, key, v)
					assert.Contains(t, err.Error(), "out of range ("+m[0]+")", "[%s] %s = %d", tc.kind, key, v)
				} else {
					assert.NoError(t, err, "[%s] %s = %d: README's range is %s", tc.kind, key, v, m[0])
				}
			}
			t.Logf("[%s] %s: %s", tc.kind, key, m[0])
			checked++
		}
	}
	assert.GreaterOrEqual(t, checked, 7, "ranges tried")
}

// TestREADMELayoutNamesEveryPackage: README's Layout lists every
// directory of internal/, and every directory it lists exists.
func TestREADMELayoutNamesEveryPackage(t *testing.T) {
	section := readmeSection(t, "## Layout")
	listed := map[string]bool{}
	for _, l := range strings.Split(section, "\n") {
		if dir, _, ok := strings.Cut(l, "/ "); ok && !strings.ContainsAny(dir, " `#") && dir != "" {
			listed[dir] = true
		}
	}
	require.Contains(t, listed, "internal/config")
	entries, err := os.ReadDir("..")
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			assert.True(t, listed["internal/"+e.Name()], "internal/%s is not in README's Layout", e.Name())
		}
	}
	for dir := range listed {
		fi, err := os.Stat(filepath.Join("../..", dir))
		if assert.NoError(t, err, "README's Layout lists %s", dir) {
			assert.True(t, fi.IsDir(), "%s is a directory", dir)
		}
	}
}

// TestREADMEConfigZeroDurationsAreTheLoaders: a duration README calls
// positive refuses "0s"; one whose row gives "0s" a meaning ("= off",
// "= none", "answers at once") takes it.
func TestREADMEConfigZeroDurationsAreTheLoaders(t *testing.T) {
	anchors := map[string]string{"server": "[server]\n", "environment": "name = \"test\"\n", "upstream": "name = \"u\"\n"}
	positive := regexp.MustCompile(`\bpositive\b`)
	checked := 0
	for _, tc := range []struct {
		head, kind string
		typ        reflect.Type
	}{
		{"### `[server]`", "server", reflect.TypeOf(Server{})},
		{"### `[[environment]]`", "environment", reflect.TypeOf(Environment{})},
		{"### `[[upstream]]`", "upstream", reflect.TypeOf(Upstream{})},
	} {
		for key, row := range readmeTable(t, readmeSection(t, tc.head), tc.kind) {
			if strings.Contains(key, ".") {
				continue
			}
			f, ok := tc.typ.FieldByNameFunc(func(n string) bool {
				sf, _ := tc.typ.FieldByName(n)
				return sf.Tag.Get("toml") == key
			})
			if !ok || f.Type != durationType {
				continue
			}
			zeroOK := strings.Contains(row.meaning, "`\"0s\"`") && !strings.Contains(row.meaning, "`\"0s\"` is an error")
			if !zeroOK && !positive.MatchString(row.meaning) {
				continue
			}
			dir := t.TempDir()
			conf := strings.Replace(readmeDefaultsConfig, anchors[tc.kind], anchors[tc.kind]+key+" = \"0s\"\n", 1)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "a.toml"), []byte(conf), 0o644))
			_, err := LoadWithoutTLS(dir)
			if zeroOK {
				assert.NoError(t, err, "[%s] %s = \"0s\": README gives it a meaning", tc.kind, key)
			} else if assert.Error(t, err, "[%s] %s = \"0s\": README says positive", tc.kind, key) {
				assert.Contains(t, err.Error(), key+": ", "[%s] %s", tc.kind, key)
			}
			checked++
		}
	}
	assert.GreaterOrEqual(t, checked, 10, "durations tried")
}
