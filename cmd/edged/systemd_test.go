package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSystemdUnit checks the unit's contract with the design, and has
// systemd-analyze verify it where systemd is installed.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../systemd/edged.service")
	require.NoError(t, err)
	unit := string(b)
	for _, line := range []string{
		"Type=notify",
		"ExecStartPre=/usr/local/bin/edged check -c /etc/edged/conf.d",
		"ExecStart=/usr/local/bin/edged serve -c /etc/edged/conf.d",
		"ExecReload=/usr/local/bin/edged reload -c /etc/edged/conf.d",
		"User=edged",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"StateDirectory=edged",
		"ConfigurationDirectory=edged",
		"LimitNOFILE=",
	} {
		assert.Contains(t, unit, "\n"+line, "unit has %s", line)
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: verified the unit's lines only")
		return
	}
	// verify wants the executables to exist: point them at this binary.
	exe, err := os.Executable()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "edged.service")
	require.NoError(t, os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/edged", exe)), 0o644))
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify:\n%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "no warnings")
}
