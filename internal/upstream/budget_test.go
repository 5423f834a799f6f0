package upstream

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The retry budget of an upstream that a reload rebuilt counts the retries
// of the instance it replaced, still draining, as its requests in flight
// on the nodes they share count in its size: the two instances together
// retry within one budget, not two.
func TestRetryBudgetIsSharedWithTheUpstreamReplaced(t *testing.T) {
	old := newUpstream(t, Config{Env: "e", Name: "u"}, "127.0.0.1:1", "127.0.0.1:2")
	cur := newUpstream(t, Config{Env: "e", Name: "u"}, "127.0.0.1:1", "127.0.0.1:3")
	cur.InheritHealth(old)
	// Nothing in flight: the budget is its minimum, retryBudgetMin.
	for range retryBudgetMin {
		require.True(t, old.TryRetry())
	}
	assert.False(t, cur.TryRetry(), "the draining instance's retries take the shared budget")
	old.EndRetry()
	assert.True(t, cur.TryRetry(), "a place the draining instance gave back")

	// An upstream that shares no node with the one it replaced has a
	// budget of its own.
	other := newUpstream(t, Config{Env: "e", Name: "u"}, "127.0.0.1:4")
	other.InheritHealth(old)
	assert.True(t, other.TryRetry())
}
