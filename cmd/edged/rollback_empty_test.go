package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRollbackToAGenerationWithAnEmptyFile: a generation that served with
// an empty file (created ahead of its content, or emptied of its objects
// when a comment was all that was left) is one a rollback must restore.
// The running edged refused it: a file that had content and is empty
// now is taken as half written, and edged rollback exited 1 with the
// directory holding the generation's files and the newer generation
// still serving.
func TestRollbackToAGenerationWithAnEmptyFile(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	orders := ex.home("test", "orders.toml")
	require.NoError(t, os.WriteFile(orders, nil, 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	empty := p.generation(t)

	require.NoError(t, os.WriteFile(orders, []byte(ordersProxy), 0o644))
	code, _, errOut = runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	require.Equal(t, empty+1, p.generation(t))

	code, out, errOut := runEdged(t, "rollback", fmt.Sprint(empty), "-c", ex.confDir)
	assert.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Equal(t, empty+2, p.generation(t), "the generation restored serves")
	b, err := os.ReadFile(orders)
	require.NoError(t, err)
	assert.Empty(t, b)
}
