package history

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// TestIndexHoldsEachContentsNameOnce: the running edged keeps, for as
// long as it runs, an index of the contents each kept generation names,
// so that a reload's record costs its own files only. Each generation's
// list held its own copy of every file's SHA-256 (a reload computes them
// anew, a start reads them from each record), so the index held
// history_keep × files × 82 bytes: 200 generations of 2,000 files, 33 MB
// (1,000 of them would be 164 MB), beside the proxy. A SHA-256 is now
// held once, however many generations name it: 17 bytes a file named.
func TestIndexHoldsEachContentsNameOnce(t *testing.T) {
	const gens, nfiles = 200, 2000
	st, err := Open(t.TempDir(), gens)
	require.NoError(t, err)
	for g := 1; g <= gens; g++ {
		// What a reload records: every file's SHA-256, computed anew;
		// one file changed since the generation before.
		files := make([]File, nfiles)
		for i := range files {
			content := fmt.Sprintf("# file %d\n", i)
			if i == 0 {
				content = fmt.Sprintf("# file 0, generation %d\n", g)
			}
			files[i] = File{Path: fmt.Sprintf("team-%03d/proxy-%04d.toml", i/20, i), SHA256: config.SHA256Hex([]byte(content)), Content: content}
		}
		require.NoError(t, st.Save(Record{Generation: uint64(g), Time: time.Now(), Trigger: "test", Files: files}))
	}
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	with := heap()
	require.Len(t, st.index.gens, gens)
	st.index = nil
	held := with - heap()
	perName := float64(held) / float64(gens*nfiles)
	t.Logf("the index of %d generations of %d files: %d bytes, %.1f per file named", gens, nfiles, held, perName)
	assert.Less(t, perName, 24.0, "a generation's list costs a reference per file, not a copy of its SHA-256")
}
