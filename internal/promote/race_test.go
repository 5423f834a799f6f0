package promote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPromoteWorksFromTheFilesItValidated: a file edited while Prepare
// runs, after its load and before it worked out the edit (an operator's
// editor, a deploy tool), must not be mixed into the promotion. Prepare
// read the target's file and the source's table again after the load:
// the edit went in at the line the load had found, into a file that no
// longer held the proxy there, and the copy took keys from one version of
// the source and its base path from another.
func TestPromoteWorksFromTheFilesItValidated(t *testing.T) {
	t.Cleanup(func() { testHookLoaded = nil })

	t.Run("the target file", func(t *testing.T) {
		dir := setup(t)
		uat := filepath.Join(dir, "uat.toml")
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		require.NoError(t, err)
		_, err = plan.Apply()
		require.NoError(t, err)
		b, err := os.ReadFile(uat)
		require.NoError(t, err)
		// The hand edit: uat's user-service becomes orders, at the
		// same line.
		edited := strings.Replace(strings.Replace(string(b), `name = "user-service"`, `name = "orders"`, 1), `base_path = "/users"`, `base_path = "/orders"`, 1)
		testHookLoaded = func() { require.NoError(t, os.WriteFile(uat, []byte(edited), 0o640)) }
		plan, err = Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		testHookLoaded = nil
		if err == nil {
			_, err = plan.Apply()
		}
		got, rerr := os.ReadFile(uat)
		require.NoError(t, rerr)
		assert.Equal(t, edited, string(got), "the hand edit stays as it was written")
		require.Error(t, err, "the promotion is refused: the file changed under it")
		assert.ErrorContains(t, err, "changed since")
	})

	t.Run("the source file", func(t *testing.T) {
		dir := setup(t)
		test := filepath.Join(dir, "test.toml")
		edited := strings.Replace(testFile, "base_path = \"/users\"\n", "base_path = \"/people\"\nmax_in_flight = 3\n", 1)
		testHookLoaded = func() { require.NoError(t, os.WriteFile(test, []byte(edited), 0o644)) }
		plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
		testHookLoaded = nil
		if err != nil {
			return // refused: no mix either
		}
		// One version of the source or the other, never parts of both.
		oldCopy := strings.Contains(plan.Block, `base_path = "/users"`) && !strings.Contains(plan.Block, "max_in_flight")
		newCopy := strings.Contains(plan.Block, `base_path = "/people"`) && strings.Contains(plan.Block, "max_in_flight = 3")
		assert.True(t, oldCopy || newCopy, "the block mixes two versions of the source:\n%s", plan.Block)
	})
}
