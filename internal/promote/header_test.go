package promote

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// TestPromoteReplacesHoweverTheHeaderIsWritten: the target's block to
// replace may have its [[proxy]] header written any way TOML allows (a
// comment after it, spaces inside the brackets, the name quoted), which
// the loader reads as any other. Promote refused all of them ("line 10
// is not a [[proxy]] header; edit the file by hand").
func TestPromoteReplacesHoweverTheHeaderIsWritten(t *testing.T) {
	for _, h := range []string{
		"[[proxy]] # owned by uat-ops",
		"[[proxy]]\t#",
		"[[ proxy ]]",
		`[["proxy"]]`,
		`[[ 'proxy' ]]  # quoted`,
	} {
		t.Run(strconv.Quote(h), func(t *testing.T) {
			dir := setup(t)
			uat := filepath.Join(dir, "uat.toml")
			block := h + "\nname = \"user-service\"\nenvironment = \"uat\"\nbase_path = \"/old\"\nupstream = \"user-backend\"\n"
			require.NoError(t, os.WriteFile(uat, []byte(uatFile+"\n"+block), 0o640))
			plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
			require.NoError(t, err)
			assert.True(t, plan.Replaced)
			_, err = plan.Apply()
			require.NoError(t, err)
			b, err := os.ReadFile(uat)
			require.NoError(t, err)
			assert.NotContains(t, string(b), "/old")
			assert.True(t, strings.HasPrefix(string(b), uatFile), "what was before the block stays")
			cfg, err := config.Load(dir)
			require.NoError(t, err)
			n := 0
			for _, p := range cfg.Proxies {
				if p.Environment == "uat" {
					n++
					assert.Equal(t, "/users", p.BasePath)
				}
			}
			assert.Equal(t, 1, n)
		})
	}

	t.Run("first line of a file with a BOM", func(t *testing.T) {
		dir := setup(t)
		apis := filepath.Join(dir, "uat-apis.toml")
		was := "\ufeff[[proxy]] # uat's own\nname = \"user-service\"\nenvironment = \"uat\"\nbase_path = \"/old\"\nupstream = \"user-backend\"\n"
		require.NoError(t, os.WriteFile(apis, []byte(was), 0o640))
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		assert.Equal(t, apis, plan.File)
		_, err = plan.Apply()
		require.NoError(t, err)
		p := proxyIn(t, dir, "uat", "user-service")
		require.NotNil(t, p)
		assert.Equal(t, "/users", p.BasePath)
	})
}

// TestPromoteKeepsCRLFLineEnds: a file whose lines end in CRLF (written
// on Windows, or by a tool that does) got the promoted block with bare LF
// line ends, a file of mixed line ends that every diff and editor shows
// as changed throughout the block. The block takes the file's line ends,
// whether it is appended or replaces one.
func TestPromoteKeepsCRLFLineEnds(t *testing.T) {
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	was := strings.ReplaceAll(uatFile, "\n", "\r\n")
	require.NoError(t, os.WriteFile(uat, []byte(was), 0o640))
	for i := 0; i < 2; i++ {
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		assert.Equal(t, i == 1, plan.Replaced)
		_, err = plan.Apply()
		require.NoError(t, err)
		b, err := os.ReadFile(uat)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(b), was), "what was there stays")
		bare := strings.Count(string(b), "\n") - strings.Count(string(b), "\r\n")
		assert.Zero(t, bare, "promotion %d: lines ending in a bare LF:\n%q", i+1, b)
		assert.NotNil(t, proxyIn(t, dir, "uat", "user-service"))
	}
}
