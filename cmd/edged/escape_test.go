package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A file name is anyone's who may write to an environment's home, and a
// value in a file is its author's: the errors and warnings `edged check`
// and `edged reload` print to an operator's terminal show their control
// characters instead of sending them (an escape sequence could retitle the
// window, hide the lines before it or fake a "valid").
func TestConfigErrorsShowControlCharactersInsteadOfSendingThem(t *testing.T) {
	ex := newExample(t)
	startServe(t, ex.confDir)
	evil := filepath.Join(ex.confDir, "test", "x\x1b]0;owned\x07\x1b[2K.toml")
	require.NoError(t, os.WriteFile(evil, []byte("[[proxy]\nname = \"a\"\n"), 0o644))

	code, _, stderr := runEdged(t, "check", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.NotContains(t, stderr, "\x1b", "an escape sequence reached the terminal")
	assert.NotContains(t, stderr, "\x07")
	assert.Contains(t, stderr, `x\x1b]0;owned\x07\x1b[2K.toml`)

	code, _, stderr = runEdged(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.NotContains(t, stderr, "\x1b", "an escape sequence reached the terminal")
	assert.Contains(t, stderr, `x\x1b]0;owned\x07\x1b[2K.toml`)
}

// TestConfigErrorsAreOneLineEach: each error is one line ("file:line:
// object: field: message"), which editors and grep rely on. A file name
// is anyone's who may write to an environment's home, and a newline in
// it started a line of its own: one that could pass for another file's
// error, or for the closing line of a valid check.
func TestConfigErrorsAreOneLineEach(t *testing.T) {
	ex := newExample(t)
	startServe(t, ex.confDir)
	evil := filepath.Join(ex.confDir, "test", "x\nprod.toml:1: forged.toml")
	require.NoError(t, os.WriteFile(evil, []byte("[[proxy]\nname = \"a\"\n"), 0o644))

	for _, cmd := range []string{"check", "reload"} {
		code, _, stderr := runEdged(t, cmd, "-c", ex.confDir)
		assert.Equal(t, 1, code, stderr)
		assert.NotContains(t, stderr, "\nprod.toml:1", "%s: a file name started a line", cmd)
		assert.Contains(t, stderr, `x\nprod.toml:1: forged.toml:`, cmd)
	}
}

// A home is a directory anyone who may write to an environment's home can
// make and name, declaring an environment of their own in it: `edged
// routes` lists it in the HOME column, and showed its name as it was.
func TestRoutesShowControlCharactersInsteadOfSendingThem(t *testing.T) {
	ex := newExample(t)
	home := filepath.Join(ex.confDir, "test", "x\x1b]0;owned\x07\u202e")
	require.NoError(t, os.MkdirAll(home, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, "odd.toml"), []byte("[[environment]]\nname = \"odd\"\n"), 0o644))

	code, stdout, stderr := runEdged(t, "routes", "-c", ex.confDir)
	require.Equal(t, 0, code, stderr)
	assert.NotContains(t, stdout, "\x1b", "an escape sequence reached the terminal")
	assert.NotContains(t, stdout, "\u202e")
	assert.Contains(t, stdout, `x\x1b]0;owned\x07\u202e`)
}

// edged serve's JSON log (read with journalctl or tail in a terminal)
// names files, whose names are anyone's who may write to a home:
// encoding/json escapes C0 controls, not C1 ones (U+009B is CSI to a
// terminal that takes 8-bit controls) nor the bidirectional ones, which
// reorder the line after them. The log has them as \u escapes.
func TestServeLogShowsC1AndBidiControlsAsEscapes(t *testing.T) {
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	evil := filepath.Join(ex.confDir, "test", "x\u009b2K\u202eevil.toml")
	require.NoError(t, os.WriteFile(evil, []byte("[[proxy]\n"), 0o644))
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), `"msg":"reload failed"`) }, 10*time.Second, 20*time.Millisecond)
	log := p.stderr.String()
	assert.NotContains(t, log, "\u009b", "a C1 control reached the log")
	assert.NotContains(t, log, "\u202e", "a bidirectional control reached the log")
	assert.Contains(t, log, `x\u009b2K\u202eevil.toml`)
}

// state_dir/audit.log and an environment's own audit log (read with tail
// in a terminal) name the files a generation changed: a C1 control or a
// bidirectional one in a file's name is a \u escape there too.
func TestAuditLogsShowC1AndBidiControlsAsEscapes(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	startServe(t, ex.confDir)
	home := filepath.Join(ex.confDir, "x\u009b2K\u202eevil")
	require.NoError(t, os.MkdirAll(home, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(home, "odd.toml"), []byte("[[environment]]\nname = \"odd\"\n[environment.rules.audit_log]\n"), 0o644))
	code, _, stderr := runEdged(t, "reload", "-c", ex.confDir)
	require.Equal(t, 0, code, stderr)

	state := filepath.Join(ex.root, "var", "state")
	for _, p := range []string{filepath.Join(state, "audit.log"), filepath.Join(state, "audit", "odd.log")} {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		log := string(b)
		assert.Contains(t, log, `x\u009b2K\u202eevil/odd.toml`, p)
		assert.NotContains(t, log, "\u009b", "%s: a C1 control", p)
		assert.NotContains(t, log, "\u202e", "%s: a bidirectional control", p)
	}
}

// An error quotes the name of its object in full, each time: an
// environment named with 100,000 unprintable runes (a 400 KB file) and
// four wrong fields made edged check print 6 MB, into the journal when
// it runs as ExecStartPre. check lists every error, each part cut as
// /status cuts it.
func TestCheckCutsALongNameInItsErrors(t *testing.T) {
	ex := newExample(t)
	long := strings.Repeat("\U0010fffe", 100000)
	bad := "[[environment]]\nname = \"" + long + "\"\nworkers = -1\nqueue = -1\nqueue_timeout = \"x\"\nreject_delay = \"x\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(ex.confDir, "zz-bad.toml"), []byte(bad), 0o644))
	code, _, stderr := runEdged(t, "check", "-c", ex.confDir)
	assert.Equal(t, 1, code)
	assert.Less(t, len(stderr), 64<<10, "bounded, whatever the length of a name (the file has %d bytes)", len(bad))
	assert.Regexp(t, `\.\.\. \(\d+ bytes\)`, stderr[:min(len(stderr), 64<<10)])
}

// The routes' table printed a proxy's base path as it was: config refuses
// control characters in one (C0 and C1) but not the bidirectional
// controls, which a terminal acts on (the rest of the line reordered,
// another route shown than the one served). Every column is shown as the
// homes' table shows it.
func TestRoutesShowABasePathsBidiControls(t *testing.T) {
	ex := newExample(t)
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(orderedProxy("/ord\u202eers/café")), 0o644))

	code, stdout, stderr := runEdged(t, "routes", "-c", ex.confDir)
	require.Equal(t, 0, code, stderr)
	assert.NotContains(t, stdout, "\u202e", "a bidirectional control reached the terminal")
	assert.Contains(t, stdout, `/ord\u202eers/café`, "the base path, its control escaped, its é as it is")
}
