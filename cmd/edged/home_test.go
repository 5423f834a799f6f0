package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// prodOrders is a proxy of the example's prod environment.
const prodOrders = `
[[proxy]]
name = "orders"
environment = "prod"
base_path = "/orders"
upstream = "user-backend"
`

// The case: a prod proxy added to test's file. The running edged
// refuses the reload naming the block and where prod lives, and serves on
// with the last good generation; the same block in prod's directory is
// applied.
func TestMisplacedProxyIsRefusedByTheRunningServer(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	c := p.client(t, filepath.Join(ex.certDir, "ca.pem"))
	gen := p.generation(t)

	testFile := ex.home("test", "test.toml")
	orig, err := os.ReadFile(testFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(testFile, append(append([]byte{}, orig...), prodOrders...), 0o644))
	line := strings.Count(string(orig), "\n") + 2 // prodOrders starts with a newline

	code, out, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 1, code, out)
	prodFile := ex.home("prod", "prod.toml")
	want := fmt.Sprintf(`%s:%d: proxy "orders": environment "prod" has its home in %s, the directory of the file declaring it (%s:`,
		testFile, line, ex.home("prod", ""), prodFile)
	assert.Contains(t, errOut, want)
	assert.Contains(t, errOut, "move this [[proxy]] into "+ex.home("prod", ""))
	assert.Contains(t, errOut, fmt.Sprintf("still serving generation %d", gen))

	assert.Equal(t, gen, p.generation(t), "nothing applied")
	code, body := getBody(t, c, "https://prod.acme.com/orders/1")
	assert.Equal(t, 404, code, body)
	code, body = getBody(t, c, "https://test.acme.com/users/1")
	assert.Equal(t, 200, code, body)
	fileErrs, _ := p.status(t)["file_errors"].(map[string]any)
	assert.Contains(t, fileErrs, testFile, "/status names the file at fault")

	// Where it belongs, the same block is served.
	require.NoError(t, os.WriteFile(testFile, orig, 0o644))
	require.NoError(t, os.WriteFile(ex.home("prod", "orders.toml"), []byte(prodOrders), 0o644))
	code, out, errOut = runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, fmt.Sprintf("generation %d", gen+1))
	code, body = getBody(t, c, "https://prod.acme.com/orders/1")
	assert.Equal(t, 200, code, body)
	assert.Contains(t, body, `"backend":"prod-`)
}

// edged check warns about an environment's home or file that every user
// may write to, with the chmod that fixes it, and passes once fixed.
func TestCheckWarnsAboutWorldWritableHomes(t *testing.T) {
	ex := newExample(t)
	prod, uatFile := ex.home("prod", ""), ex.home("uat", "uat.toml")
	require.NoError(t, os.Chmod(prod, 0o777))
	require.NoError(t, os.Chmod(uatFile, 0o646))

	code, out, errOut := runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, prod+`: warning: the home of environment "prod" is writable by every user: anyone on this machine can add files to it (mode 0777); run: chmod o-w `+prod+"\n"+
		uatFile+`: warning: writable by every user: anyone on this machine can change environment "uat" (mode 0646); run: chmod o-w `+uatFile+"\n", errOut)
	assert.Contains(t, out, "(5 files, 2 warnings)")

	require.NoError(t, os.Chmod(prod, 0o2775)) // group-writable, setgid: what the README has operators run
	require.NoError(t, os.Chmod(uatFile, 0o664))
	code, out, errOut = runEdged(t, "check", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Empty(t, errOut)
	assert.Contains(t, out, "(5 files, 0 warnings)")
}

// edged routes and /status show each environment's home with its owner
// and group: names where the system has them, numbers where not.
func TestRoutesAndStatusShowHomes(t *testing.T) {
	ex := newExample(t)
	self, err := user.Current()
	require.NoError(t, err)
	g, err := user.LookupGroupId(self.Gid)
	require.NoError(t, err)
	owner, group := self.Username, g.Name
	root := os.Geteuid() == 0
	if root {
		nobody, err := user.Lookup("nobody")
		require.NoError(t, err)
		uid, err := strconv.Atoi(nobody.Uid)
		require.NoError(t, err)
		require.NoError(t, os.Chown(ex.home("prod", ""), uid, -1))
		owner = "nobody"
		// A uid and gid that no name stands for, on uat's home.
		require.NoError(t, os.Chown(ex.home("uat", ""), 4242424, 4242425))
	}

	code, out, errOut := runEdged(t, "routes", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	_, homes, ok := strings.Cut(out, "\n\n")
	require.True(t, ok, out)
	row := func(env, owner, group string) string {
		return fmt.Sprintf(`(?m)^%s\s+%s\s+%s\s+%s$`, env, regexp.QuoteMeta(ex.home(env, "")), regexp.QuoteMeta(owner), regexp.QuoteMeta(group))
	}
	assert.Regexp(t, row("prod", owner, group), homes)
	assert.Regexp(t, row("test", self.Username, group), homes)
	if root {
		assert.Regexp(t, row("uat", "4242424", "4242425"), homes)
	}

	p := startServe(t, ex.confDir)
	envs := p.status(t)["environments"].(map[string]any)
	home := func(env string) map[string]any {
		e, ok := envs[env].(map[string]any)
		require.True(t, ok, "environment %s on /status", env)
		h, ok := e["home"].(map[string]any)
		require.True(t, ok, "%s has a home on /status: %v", env, e)
		return h
	}
	assert.Equal(t, map[string]any{"dir": ex.home("prod", ""), "owner": owner, "group": group}, home("prod"))
	assert.Equal(t, map[string]any{"dir": ex.home("test", ""), "owner": self.Username, "group": group}, home("test"))
	if root {
		assert.Equal(t, map[string]any{"dir": ex.home("uat", ""), "owner": "4242424", "group": "4242425"}, home("uat"))
	}
}
