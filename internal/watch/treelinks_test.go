package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Config files that are symlinks into another directory (nginx's
// sites-enabled -> ../available) are watched where they lead. A deploy
// or git checkout that makes thousands of them at once is thousands of
// events, and each must update the watched targets for its own link, not
// rebuild the index of all of them: that made a burst cost the square of
// its size (5,000 links: 4.7 s of the watcher's loop, which takes no
// other event meanwhile). Counted here in allocations per link.
func TestManyLinkedConfigFilesCostLinearly(t *testing.T) {
	root := t.TempDir()
	dir, avail := filepath.Join(root, "conf.d"), filepath.Join(root, "available")
	write(t, filepath.Join(dir, "a.toml"), "a = 1\n")
	const n = 3000
	for i := range n {
		write(t, filepath.Join(avail, fmt.Sprintf("f%05d.toml", i)), "a = 1\n")
	}
	w := start(t, Options{Dir: dir})

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		name := fmt.Sprintf("f%05d.toml", i)
		require.NoError(t, os.Symlink(filepath.Join("..", "available", name), filepath.Join(dir, name)))
	}
	seen := map[string]bool{}
	for len(seen) < n {
		for _, p := range next(t, w).Paths {
			seen[p] = true
		}
	}
	runtime.ReadMemStats(&after)
	perLink := (after.Mallocs - before.Mallocs) / n
	t.Logf("%d allocations per link made", perLink)
	assert.Less(t, perLink, uint64(300), "allocations per link made")

	// Each link is watched where it leads: an edit there is reported.
	settle(w)
	last := filepath.Join(dir, fmt.Sprintf("f%05d.toml", n-1))
	write(t, filepath.Join(avail, fmt.Sprintf("f%05d.toml", n-1)), "a = 2\n")
	assert.Contains(t, await(t, w, last), last)
}
