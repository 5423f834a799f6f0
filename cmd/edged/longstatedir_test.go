package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A Unix socket's path has at most 107 bytes: a state_dir so long that
// its control socket's path (or the temporary name edged binds it under
// first) is longer leaves edged without a control socket, so `edged
// reload` (systemctl reload), promote and rollback could never reach it.
// edged check (the unit's ExecStartPre) and edged serve refuse it, saying
// so, rather than pass it and start with a warning of "bind: invalid
// argument".
func TestStateDirTooLongForTheControlSocket(t *testing.T) {
	ex := newExample(t)
	long := filepath.Join(ex.root, "var", strings.Repeat("s", 120-len(ex.root)))
	ex.setServer(t, "state_dir", strconv.Quote(long))

	for _, cmd := range []string{"check", "serve"} {
		code, _, stderr := runBounded(t, cmd, "-c", ex.confDir)
		assert.Equal(t, 1, code, "edged %s: %s", cmd, stderr)
		assert.Contains(t, stderr, "a Unix socket path may have", cmd)
		assert.Contains(t, stderr, "shorter state_dir", cmd)
	}
}
