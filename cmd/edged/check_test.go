package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCheckPassesWithWarnings: warnings do not fail check; each is one
// line "file:line: warning: object: message", and the summary counts them.
func TestCheckPassesWithWarnings(t *testing.T) {
	ex := newExample(t)
	file := filepath.Join(ex.confDir, "lonely.toml")
	require.NoError(t, os.WriteFile(file, []byte("\n[[environment]]\nname = \"lonely\"\n\n[[environment]]\nname = \"alone\"\n"), 0o644))

	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	require.Len(t, lines, 2, errOut)
	assert.Equal(t, file+`:2: warning: environment "lonely": attached to no env_group: none of its proxies can be reached; list it in the environments of an env_group`, lines[0])
	assert.True(t, strings.HasPrefix(lines[1], file+`:5: warning: environment "alone": attached to no env_group`), lines[1])
	assert.Contains(t, out, "configuration in "+ex.confDir+" is valid: 5 environments, 3 env groups, 6 hostnames, 3 proxies, 3 upstreams, 3 virtual hosts (5 files, 2 warnings)")
}

func TestCheckSummaryCountsInTheSingular(t *testing.T) {
	ex := newExample(t)
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "lonely.toml"), []byte("[[environment]]\nname = \"lonely\"\n"), 0o644))
	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "(5 files, 1 warning)\n")
}
