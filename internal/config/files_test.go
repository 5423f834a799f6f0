package config

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"b.toml": "", "a/a.toml": "", ".x.toml": "", "c.yaml": ""})
	paths, err := Files(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{"a/a.toml", "b.toml"}, relPaths(t, dir, paths))

	_, err = Files(filepath.Join(dir, "missing"))
	var errs Errors
	require.ErrorAs(t, err, &errs)
}
