package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPromoteSaysTheDirectoryIsAlreadyInvalid: a directory that does not
// load as it is (a certificate gone, a broken file of another team) was
// reported as though the promotion broke it ("the configuration would be
// invalid"): the operator looked for the fault in the proxy promoted. The
// errors are the directory's own, and promote says so.
func TestPromoteSaysTheDirectoryIsAlreadyInvalid(t *testing.T) {
	ex := newExample(t)
	require.NoError(t, os.Remove(filepath.Join(ex.certDir, "prod.acme.com.pem")))
	b, err := os.ReadFile(ex.home("uat", "uat.toml"))
	require.NoError(t, err)

	code, out, errOut := runEdged(t, "promote", "user-service", "--from", "test", "--to", "uat", "--no-wait", "-c", ex.confDir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, errOut, filepath.Join(ex.certDir, "prod.acme.com.pem"))
	assert.NotContains(t, errOut, "would be invalid")
	assert.Contains(t, errOut, "edged promote: the configuration in "+ex.confDir+" is invalid as it is, before the promotion; nothing written (fix it first: edged check -c "+ex.confDir+")")
	after, err := os.ReadFile(ex.home("uat", "uat.toml"))
	require.NoError(t, err)
	assert.Equal(t, string(b), string(after))
}
