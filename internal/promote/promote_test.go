package promote

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

const testFile = `[[environment]]
name = "test"

[[upstream]]
name = "user-backend"
environment = "test"
nodes = [{ url = "http://127.0.0.1:9101" }]

[[proxy]]
name = "user-service"
environment = "test"
base_path = "/users"
upstream = "user-backend"
target_path = "/v1"

[[proxy]]
name = "fixed"
environment = "test"
base_path = "/fixed"
target = "http://127.0.0.1:9101/api"
`

const uatFile = `# UAT
[[environment]]
name = "uat"

[[upstream]]
name = "user-backend"
environment = "uat"
nodes = [{ url = "http://127.0.0.1:9201" }, { url = "http://127.0.0.1:9202" }]
`

func setup(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "uat.toml"), []byte(uatFile), 0o640))
	return dir
}

var fixedNow = func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) }

func proxyIn(t *testing.T, dir, env, name string) *config.Proxy {
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	for _, p := range cfg.Proxies {
		if p.Environment == env && p.Name == name {
			return p
		}
	}
	return nil
}

func TestPromoteAppendsToTheTargetEnvironmentsFile(t *testing.T) {
	dir := setup(t)
	plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "uat.toml"), plan.File)
	assert.False(t, plan.Replaced)
	assert.Nil(t, proxyIn(t, dir, "uat", "user-service"), "Prepare writes nothing")
	_, err = plan.Apply()
	require.NoError(t, err)

	p := proxyIn(t, dir, "uat", "user-service")
	require.NotNil(t, p)
	assert.Equal(t, "/users", p.BasePath)
	assert.Equal(t, "user-backend", p.Upstream)
	assert.Equal(t, "/v1", p.TargetPath)
	b, err := os.ReadFile(plan.File)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), uatFile), "what was there stays")
	assert.Contains(t, string(b), "# promoted from test by edged promote, 2026-11-22T10:00:00Z\n[[proxy]]\n")
	fi, err := os.Stat(plan.File)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm(), "the file keeps its mode")
}

func TestPromoteTwiceReplacesTheBlock(t *testing.T) {
	dir := setup(t)
	for i := 0; i < 2; i++ {
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		assert.Equal(t, i == 1, plan.Replaced)
		_, err = plan.Apply()
		require.NoError(t, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "uat.toml"))
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(b), "[[proxy]]"))
	assert.Equal(t, 1, strings.Count(string(b), "# promoted from"))
}

// TestPromoteAgainChangesOnlyTheBlock: promoting a proxy again into a
// file where more follows its block (an operator's comment, another
// table) replaces the block and leaves the rest byte for byte. It used to
// add a blank line before what follows on every promotion: the file grew
// with each one, and every diff showed a line nobody changed.
func TestPromoteAgainChangesOnlyTheBlock(t *testing.T) {
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	promote := func() *Plan {
		t.Helper()
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		_, err = plan.Apply()
		require.NoError(t, err)
		return plan
	}
	promote()
	b, err := os.ReadFile(uat)
	require.NoError(t, err)
	const after = "# alice: keep the old pool until OPS-12\n[[upstream]]\nname = \"spare\"\nenvironment = \"uat\"\nnodes = [{ url = \"http://127.0.0.1:9203\" }]\n"
	for _, sep := range []string{"", "\n"} {
		t.Run("separated by "+strconv.Quote(sep), func(t *testing.T) {
			want := string(b) + sep + after
			require.NoError(t, os.WriteFile(uat, []byte(want), 0o640))
			for i := 0; i < 3; i++ {
				plan := promote()
				assert.True(t, plan.Replaced)
				got, err := os.ReadFile(uat)
				require.NoError(t, err)
				if sep == "" && i == 0 {
					// The block and the comment of the next table are
					// set apart once.
					want = string(b) + "\n" + after
				}
				assert.Equal(t, want, string(got), "promotion %d", i+1)
			}
		})
	}
}

func TestPromoteValidatesBeforeWriting(t *testing.T) {
	dir := setup(t)
	_, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Upstream: "missing"})
	var errs config.Errors
	require.True(t, errors.As(err, &errs), "%v", err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "uat.toml"))
	assert.Contains(t, err.Error(), `"missing" is not defined in environment "uat"`)
	b, _ := os.ReadFile(filepath.Join(dir, "uat.toml"))
	assert.Equal(t, uatFile, string(b), "nothing written")
}

func TestPromoteFixedTarget(t *testing.T) {
	dir := setup(t)
	_, err := Prepare(Request{Dir: dir, Proxy: "fixed", From: "test", To: "uat"})
	require.ErrorContains(t, err, "give --upstream or --target")

	plan, err := Prepare(Request{Dir: dir, Proxy: "fixed", From: "test", To: "uat", Upstream: "user-backend"})
	require.NoError(t, err)
	assert.Contains(t, plan.Block, "target_path = \"/api\"", "the fixed target's path is kept")
	plan, err = Prepare(Request{Dir: dir, Proxy: "fixed", From: "test", To: "uat", Target: "http://127.0.0.1:9301/api"})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.NoError(t, err)
	p := proxyIn(t, dir, "uat", "fixed")
	require.NotNil(t, p)
	assert.Equal(t, "/api", p.ForwardPath())
}

func TestPromoteUnknownNames(t *testing.T) {
	dir := setup(t)
	_, err := Prepare(Request{Dir: dir, Proxy: "nope", From: "test", To: "uat"})
	assert.ErrorContains(t, err, `proxy "nope" is not defined in environment "test"`)
	_, err = Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "prod"})
	assert.ErrorContains(t, err, `environment "prod" is not defined`)
}

// TestPromoteKeepsTheForwardedPath: whatever the source forwards to
// (upstream with or without target_path, fixed target with or without a
// path) and whatever the copy forwards to (the source's upstream name,
// --upstream, --target with or without a path), the copy forwards the same
// paths: ForwardPath() + (request path − base path) is what goes upstream.
func TestPromoteKeepsTheForwardedPath(t *testing.T) {
	const more = `
[[proxy]]
name = "plain"
environment = "test"
base_path = "/plain"
upstream = "user-backend"

[[proxy]]
name = "fixed-root"
environment = "test"
base_path = "/root"
target = "http://127.0.0.1:9101"

[[proxy]]
name = "users"
environment = "test"
base_path = "/api/users"
upstream = "user-backend"
target_path = "/users"
`
	sources := map[string]string{ // proxy → the path it forwards to
		"user-service": "/v1",    // upstream, target_path
		"plain":        "",       // upstream, no target_path
		"fixed":        "/api",   // target with a path
		"fixed-root":   "",       // target without one
		"users":        "/users", // the case: /api/users/42 goes to /users/42
	}
	type to struct {
		name             string
		upstream, target string
		wantTarget       string // the copy's target; "" for an upstream
		wantErr          string
	}
	for proxy, path := range sources {
		fixed := strings.HasPrefix(proxy, "fixed")
		cases := []to{
			{name: "source-upstream", wantErr: map[bool]string{true: "give --upstream or --target"}[fixed]},
			{name: "--upstream", upstream: "user-backend"},
			{name: "--target-no-path", target: "http://127.0.0.1:9301", wantTarget: "http://127.0.0.1:9301" + path},
			{name: "--target-slash", target: "http://127.0.0.1:9301/", wantTarget: "http://127.0.0.1:9301" + path},
			{name: "--target-same-path", target: "http://127.0.0.1:9301" + path, wantTarget: "http://127.0.0.1:9301" + path},
			{name: "--target-other-path", target: "http://127.0.0.1:9301/other", wantErr: "give the URL without a path"},
			{name: "--upstream-and---target", upstream: "user-backend", target: "http://127.0.0.1:9301", wantErr: "not both"},
		}
		for _, c := range cases {
			t.Run(proxy+"/"+c.name, func(t *testing.T) {
				dir := setup(t)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(testFile+more), 0o644))
				src := proxyIn(t, dir, "test", proxy)
				require.NotNil(t, src)
				require.Equal(t, path, src.ForwardPath())
				plan, err := Prepare(Request{Dir: dir, Proxy: proxy, From: "test", To: "uat", Upstream: c.upstream, Target: c.target, Now: fixedNow})
				if c.wantErr != "" {
					require.ErrorContains(t, err, c.wantErr)
					return
				}
				require.NoError(t, err)
				_, err = plan.Apply()
				require.NoError(t, err)
				p := proxyIn(t, dir, "uat", proxy)
				require.NotNil(t, p)
				assert.Equal(t, src.BasePath, p.BasePath)
				assert.Equal(t, path, p.ForwardPath(), "the same paths are forwarded:\n%s", plan.Block)
				if c.wantTarget != "" {
					assert.Equal(t, c.wantTarget, p.Target)
					assert.Empty(t, p.Upstream)
				} else {
					assert.Equal(t, "user-backend", p.Upstream)
					assert.Empty(t, p.Target)
				}
			})
		}
	}
}

// TestPromoteKeepsTheOldTextIntact: the plan's Old (the diff's "before")
// is the file as it was, even when the file ends in blank lines that the
// new content trims (the new text was once built in Old's own array).
func TestPromoteKeepsTheOldTextIntact(t *testing.T) {
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	was := uatFile + strings.Repeat("\n", 2000) // room for the whole block
	require.NoError(t, os.WriteFile(uat, []byte(was), 0o640))
	plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	assert.Equal(t, was, string(plan.Old))
	assert.True(t, strings.HasPrefix(string(plan.Content), strings.TrimRight(uatFile, "\n")+"\n\n"))
}

// TestApplyRefusesAFileChangedSincePrepare: two promotions into the same
// environment at once (two operators, or a hand edit while the first one
// prints its diff) each prepare the target file's new content from what
// they read. The second to write must not put back the file the first one
// replaced: its Apply fails, and what the first wrote stays.
func TestApplyRefusesAFileChangedSincePrepare(t *testing.T) {
	dir := setup(t)
	first, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	second, err := Prepare(Request{Dir: dir, Proxy: "fixed", From: "test", To: "uat", Target: "http://127.0.0.1:9301", Now: fixedNow})
	require.NoError(t, err)
	require.Equal(t, first.File, second.File)

	_, err = first.Apply()
	require.NoError(t, err)
	_, err = second.Apply()
	require.Error(t, err, "the second promotion would drop the first one's block")
	assert.ErrorContains(t, err, second.File)
	assert.ErrorContains(t, err, "changed since")
	require.NotNil(t, proxyIn(t, dir, "uat", "user-service"), "the first promotion is still there")
	assert.Nil(t, proxyIn(t, dir, "uat", "fixed"))
	left, err := filepath.Glob(filepath.Join(dir, ".*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temp file left")

	// Prepared again, it applies on top of the first.
	second, err = Prepare(Request{Dir: dir, Proxy: "fixed", From: "test", To: "uat", Target: "http://127.0.0.1:9301", Now: fixedNow})
	require.NoError(t, err)
	_, err = second.Apply()
	require.NoError(t, err)
	assert.NotNil(t, proxyIn(t, dir, "uat", "user-service"))
	assert.NotNil(t, proxyIn(t, dir, "uat", "fixed"))
}

// TestPromoteAgainKeepsTrailingComments: comments after the last table of
// the file (an operator's note at its end) stay when the promoted block
// is that table, as comments before a next table do. They were part of
// the block replaced, and promoting again deleted them.
func TestPromoteAgainKeepsTrailingComments(t *testing.T) {
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	promote := func() {
		t.Helper()
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		_, err = plan.Apply()
		require.NoError(t, err)
	}
	promote()
	b, err := os.ReadFile(uat)
	require.NoError(t, err)
	for _, tail := range []string{
		"# alice: uat closes on Friday\n",
		"\n# alice: uat closes on Friday\n# bob: moved to prod on Monday",
	} {
		t.Run(strconv.Quote(tail), func(t *testing.T) {
			want := string(b) + tail
			require.NoError(t, os.WriteFile(uat, []byte(want), 0o640))
			if tail[0] == '#' {
				// The block and the note are set apart once.
				want = string(b) + "\n" + tail
			}
			for i := 0; i < 2; i++ {
				promote()
				got, err := os.ReadFile(uat)
				require.NoError(t, err)
				assert.Equal(t, want, string(got), "promotion %d", i+1)
			}
		})
	}
}

// TestPromoteRefusesALinkedFile: a target environment's file that is a
// symbolic link (conf.d/uat.toml pointing into a checkout) was replaced
// by a file: the file the link names kept the old content and the
// operator's layout was gone. Promote now writes nothing and says so.
func TestPromoteRefusesALinkedFile(t *testing.T) {
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	real := filepath.Join(t.TempDir(), "uat.toml")
	require.NoError(t, os.Rename(uat, real))
	require.NoError(t, os.Symlink(real, uat))

	plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.Error(t, err)
	assert.Contains(t, err.Error(), uat+" is a symbolic link (to "+real+")")
	fi, err := os.Lstat(uat)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is still a link")
	b, err := os.ReadFile(real)
	require.NoError(t, err)
	assert.Equal(t, uatFile, string(b))
}
