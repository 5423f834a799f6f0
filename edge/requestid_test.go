package edge

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ids cut from the per-64 blocks are unique across goroutines and
// blocks, and well formed.
func TestNewRequestIDsAreUnique(t *testing.T) {
	const workers, each = 4, 1000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], newRequestID())
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, list := range ids {
		for _, id := range list {
			require.Len(t, id, 32)
			require.True(t, validRequestID(id), id)
			assert.False(t, seen[id], "duplicate %s", id)
			seen[id] = true
		}
	}
	assert.Len(t, seen, workers*each)
	// Less than one allocation per id (AllocsPerRun rounds down): one
	// per 64 ids, more under the race detector, whose sync.Pool drops
	// some arenas.
	assert.Zero(t, testing.AllocsPerRun(1000, func() { newRequestID() }))
}
