package owner

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNamesFallBackToNumbers(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no uids")
	}
	assert.Equal(t, "root", User(0))
	assert.Equal(t, "root", Group(0))
	// No system names these ids: the number stands in.
	assert.Equal(t, "4242424", User(4242424))
	assert.Equal(t, "4242425", Group(4242425))

	n := NewNames()
	assert.Equal(t, "4242424", n.User(4242424))
	assert.Equal(t, "4242425", n.Group(4242425))
	assert.Equal(t, "root", n.User(0))
	assert.Len(t, n.users, 2, "each uid looked up once and kept")
}

func TestIDsOfAFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no uids")
	}
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(p, 4242424, 4242425))
	}
	fi, err := os.Stat(p)
	require.NoError(t, err)
	uid, gid, ok := IDs(fi)
	require.True(t, ok)
	if os.Geteuid() == 0 {
		assert.Equal(t, uint32(4242424), uid)
		assert.Equal(t, uint32(4242425), gid)
	} else {
		assert.Equal(t, uint32(os.Geteuid()), uid)
	}
}
