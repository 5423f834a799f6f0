package config

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnknownKeys(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": `# typos
[[environment]]
name = "uat"
workerz = 4

[environment.rules.access_log]
path = "x.log"
rotate = true

[[upstream]]
name = "u"
environment = "uat"
nodes = [{ url = "http://127.0.0.1:1", Weight = 2 }]

[[env_group]]
name = "g"
hostnames = ["g.example.com"]
environments = ["uat"]
[env_group.tls]
x = 1
`})
	_, errs := loadErrors(t, dir)
	file := filepath.Join(dir, "20-x.toml")
	for _, want := range []struct {
		line  int
		field string
		msg   string
	}{
		{4, "workerz", `unknown key "workerz" (did you mean "workers"?)`},
		{8, "rules.access_log.rotate", `unknown key "rotate"`},
		{13, "nodes[0].Weight", `unknown key "Weight" (did you mean "weight"?)`},
		{19, "tls", `unknown key "tls"`},
	} {
		e, ok := findError(errs, want.msg)
		if assert.True(t, ok, "missing %q in\n%v", want.msg, errs) {
			assert.Equal(t, Pos{file, want.line}, e.Pos, "%v", e)
			assert.Equal(t, want.field, e.Field)
		}
	}
}

func TestTypeErrorsDoNotStopTheObject(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": `[[environment]]
name = "uat"
workers = "many"
queue = true
queue_timeout = 5
labels = "stage"

[[proxy]]
name = "p"
environment = "uat"
base_path = "/p"
target = 5
`})
	_, errs := loadErrors(t, dir)
	require.Len(t, errs, 5, "one error per field, no follow-up errors about the zero values left behind: %v", errs)
	for _, want := range []string{
		`:3: environment "uat": workers: must be an integer, not a string`,
		`:4: environment "uat": queue: must be an integer, not a boolean`,
		`:5: environment "uat": queue_timeout: must be a duration string like "30s", not an integer`,
		`:6: environment "uat": labels: must be a table, not a string`,
		`:12: proxy "p": target: must be a string, not an integer`,
	} {
		_, ok := findError(errs, want)
		assert.True(t, ok, "missing %q in\n%v", want, errs)
	}
}

func TestSyntaxErrorKeepsOtherFiles(t *testing.T) {
	dir := setupDir(t, map[string]string{
		"20-broken.toml": "[[proxy]]\nname = \"x\"\nbase_path = \"/x\n",
		"30-other.toml":  "[[environment]]\nname = \"-bad\"\n",
	})
	_, errs := loadErrors(t, dir)
	e, ok := findError(errs, "20-broken.toml:3:", "invalid TOML")
	assert.True(t, ok, "%v", errs)
	assert.Equal(t, 3, e.Pos.Line)
	_, ok = findError(errs, "30-other.toml:2:", "not a valid name")
	assert.True(t, ok, "errors of other files are reported too: %v", errs)
}

// TestTableErrorsComeInKeyOrder: the errors of one table's entries
// (labels) came in the order of Go's map iteration, different at every
// load: entries written on one line have one position, so sorting by file
// and line left them as they came, and edged check printed them in
// another order each run (20 loads of five labels gave several orders). They
// come in key order now, as the keys of an object do.
func TestTableErrorsComeInKeyOrder(t *testing.T) {
	dir := setupDir(t, map[string]string{"20-x.toml": "[[environment]]\nname = \"uat\"\nlabels = { e = 5, d = 4, c = 3, b = 2, a = 1 }\n"})
	var first string
	for i := range 20 {
		_, errs := loadErrors(t, dir)
		require.Len(t, errs, 5, "%v", errs)
		if i == 0 {
			first = errs.Error()
			for j, k := range []string{"a", "b", "c", "d", "e"} {
				assert.Equal(t, "labels."+k, errs[j].Field, "%v", errs)
			}
			continue
		}
		require.Equal(t, first, errs.Error(), "load %d", i+1)
	}
}
