//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// Process tests of hostile files: what a file under conf.d, or a file a
// virtual host names, can do to a running edged and to edged check.

// boundedWait is how long a command may take before it counts as hung.
const boundedWait = 10 * time.Second

// runBounded runs the edged binary with args as its own process and
// fails the test when it has not exited within boundedWait (a process
// dead of a stack overflow, or blocked on a FIFO, would not answer in
// time or would exit 2).
func runBounded(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), boundedWait)
	defer cancel()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), "EDGED_TEST_MAIN=1", "GOTRACEBACK=single")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	require.NoError(t, ctx.Err(), "edged %v did not exit within %s; stderr:\n%.2000s", args, boundedWait, errb.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, out.String(), errb.String()
}

// awaitFailedReload polls /status until the last reload failed, and
// returns the errors it lists.
func awaitFailedReload(t *testing.T, p *proc) []map[string]any {
	t.Helper()
	var errs []map[string]any
	require.Eventually(t, func() bool {
		_, body, err := try(http.DefaultClient, "http://"+p.admin+"/status")
		var st struct {
			LastReload *struct {
				OK     bool             `json:"ok"`
				Errors []map[string]any `json:"errors"`
			} `json:"last_reload"`
		}
		if err != nil || json.Unmarshal([]byte(body), &st) != nil || st.LastReload == nil || st.LastReload.OK {
			return false
		}
		errs = st.LastReload.Errors
		return true
	}, boundedWait, 20*time.Millisecond, "a failed reload on /status")
	return errs
}

// A file that would make the TOML decoder use gigabytes and die of a stack
// overflow, dropped into the watched conf.d: the reload fails naming file
// and line, the last good generation serves on, and edged check refuses
// the directory at once.
func TestBombInConfDKeepsServing(t *testing.T) {
	for _, tc := range []struct {
		name, content, msg string
	}{
		{"deep-arrays", "# dropped in\nx = " + strings.Repeat("[", 300_000) + strings.Repeat("]", 300_000) + "\n",
			fmt.Sprintf(":2: nested deeper than %d levels (arrays and inline tables)", config.MaxNesting)},
		{"long-dotted-key", "# dropped in\n" + strings.Repeat("a.", 3_000) + "b = 1\n",
			fmt.Sprintf(":2: key has 3001 parts, more than %d", config.MaxKeyParts)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := newExample(t)
			ex.fastReloads(t)
			p := startServe(t, ex.confDir)
			c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
			gen := p.generation(t)

			bomb := filepath.Join(ex.confDir, "bomb.toml")
			require.NoError(t, os.WriteFile(bomb, []byte(tc.content), 0o644))
			errs := awaitFailedReload(t, p)
			require.Len(t, errs, 1, "%v", errs)
			pos := errs[0]["pos"].(map[string]any)
			assert.Equal(t, bomb, pos["file"])
			assert.Equal(t, float64(2), pos["line"])
			assert.Contains(t, errs[0]["message"], strings.TrimPrefix(tc.msg, ":2: "))

			// Still the same process, still the last good generation.
			select {
			case err := <-p.done:
				t.Fatalf("edged exited: %v", err)
			default:
			}
			assert.Equal(t, gen, p.generation(t))
			code, body := getBody(t, c, "https://test.acme.com/users/1")
			assert.Equal(t, 200, code, body)
			assert.Contains(t, body, `"backend":"test"`)

			code, _, stderr := runBounded(t, "check", "-c", ex.confDir)
			assert.Equal(t, 1, code, stderr)
			assert.Contains(t, stderr, bomb+tc.msg)
			assert.NotContains(t, stderr, "goroutine ", "no Go crash")
		})
	}
}

// A certificate path that names a FIFO: check fails at once naming it,
// and a running edged's reload fails fast and keeps serving.
func TestFIFOCertificateFailsFast(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	gen := p.generation(t)

	fifo := filepath.Join(ex.certDir, "fifo.pem")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	testFile := filepath.Join(ex.confDir, "groups.toml")
	b, err := os.ReadFile(testFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(testFile, []byte(strings.Replace(string(b),
		`cert_file = "../certs/test.acme.com.pem"`, `cert_file = "../certs/fifo.pem"`, 1)), 0o644))

	// The error points at the cert_file line, wherever the example puts it.
	certLine := 1 + strings.Count(string(b[:strings.Index(string(b), "cert_file = ")]), "\n")
	code, _, stderr := runBounded(t, "check", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, fmt.Sprintf("%s:%d: virtual_host \"test-group\": cert_file: cannot read the certificate: %s is a named pipe, not a regular file", testFile, certLine, fifo))

	// The watcher's reload failed, not hung: `edged reload` gets its turn
	// and its answer at once.
	awaitFailedReload(t, p)
	code, _, stderr = runBounded(t, "reload", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "is a named pipe, not a regular file")
	assert.Contains(t, stderr, fmt.Sprintf("still serving generation %d", gen))
	code, body := getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, 200, code, body)

	// A FIFO named like a config file is refused the same way.
	require.NoError(t, os.WriteFile(testFile, b, 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(ex.confDir, "zz.toml"), 0o644))
	code, _, stderr = runBounded(t, "check", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, filepath.Join(ex.confDir, "zz.toml")+": is a named pipe, not a regular file")
}

// A state_dir others may write to is refused by check and by serve, with
// the command that fixes it.
func TestUnsafeStateDirIsRefused(t *testing.T) {
	ex := newExample(t)
	state := filepath.Join(ex.root, "var", "state")
	require.NoError(t, os.MkdirAll(state, 0o750))
	require.NoError(t, os.Chmod(state, 0o777))
	want := fmt.Sprintf("state_dir %s is writable by group or others (mode 0777); run: chmod go-w %s", state, state)

	code, _, stderr := runBounded(t, "check", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, want)

	code, _, stderr = runBounded(t, "serve", "-c", ex.confDir)
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, strings.ReplaceAll(want, `"`, `\"`))
	_, err := os.Stat(filepath.Join(state, "edged.sock"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was created in it")

	require.NoError(t, os.Chmod(state, 0o755))
	code, stdout, stderr := runBounded(t, "check", "-c", ex.confDir)
	assert.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "is valid")

	// What edged creates itself is private.
	require.NoError(t, os.RemoveAll(state))
	startServe(t, ex.confDir)
	fi, err := os.Stat(state)
	require.NoError(t, err)
	assert.Zero(t, fi.Mode().Perm()&0o027, "state_dir created %v", fi.Mode())
}
