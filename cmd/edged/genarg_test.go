package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestGenerationArgumentThatIsNoNumber: edged history and edged rollback
// given a GEN that is not a number (a typo, a date, the time column of
// edged history) printed their usage and nothing about what was wrong,
// where edged diff names it.
func TestGenerationArgumentThatIsNoNumber(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"history", "rollback", "diff"} {
		for _, gen := range []string{"abc", "-1", "99999999999999999999"} {
			code, out, errOut := runEdged(t, cmd, "-c", dir, "--", gen)
			assert.Equal(t, 2, code, "%s %s: %s%s", cmd, gen, out, errOut)
			assert.Contains(t, errOut, "edged "+cmd+": \""+gen+"\" is not a generation number", "edged %s %s", cmd, gen)
		}
	}
}
