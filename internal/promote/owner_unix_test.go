//go:build unix

package promote

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPromoteKeepsTheOwner: run with sudo, promote must leave the file to
// the user (and group) the service reads it as.
func TestPromoteKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may give a file to another user")
	}
	dir := setup(t)
	uat := filepath.Join(dir, "uat.toml")
	require.NoError(t, os.Chown(uat, 65534, 65533))
	plan, err := Prepare(Request{Dir: dir, Proxy: "user-service", From: "test", To: "uat", Now: fixedNow})
	require.NoError(t, err)
	_, err = plan.Apply()
	require.NoError(t, err)
	fi, err := os.Stat(uat)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	assert.Equal(t, []uint32{65534, 65533}, []uint32{st.Uid, st.Gid})
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}
