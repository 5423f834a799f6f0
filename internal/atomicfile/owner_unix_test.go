//go:build unix

package atomicfile

import (
	"edged/internal/asnobody"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReplaceFileKeepsModeAndOwner: the replacement has the mode and owner
// of the file it replaces; a new file, its directory's mode less x and
// group (and, as root, its user).
func TestReplaceFileKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o600))
	require.NoError(t, os.Chmod(p, 0o604))
	root := os.Geteuid() == 0
	if root {
		require.NoError(t, os.Chown(p, 65534, 65533))
		require.NoError(t, os.Chown(dir, 65532, 65531))
	}
	require.NoError(t, os.Chmod(dir, 0o751))
	require.NoError(t, ReplaceFile(p, []byte("new")))
	require.NoError(t, ReplaceFile(filepath.Join(dir, "b.toml"), []byte("b")))

	for _, c := range []struct {
		name     string
		mode     os.FileMode
		uid, gid uint32
	}{{"a.toml", 0o604, 65534, 65533}, {"b.toml", 0o640, 65532, 65531}} {
		fi, err := os.Stat(filepath.Join(dir, c.name))
		require.NoError(t, err)
		assert.Equal(t, c.mode, fi.Mode().Perm(), c.name)
		if root {
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, []uint32{c.uid, c.gid}, []uint32{st.Uid, st.Gid}, c.name)
		}
	}
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
}

// TestReplaceFileRefusesAnOwnerItCannotGive: a user who may write the
// directory but not give the file back to its owner leaves it as it was,
// rather than replace it with a file the owner's service may not read.
func TestReplaceFileRefusesAnOwnerItCannotGive(t *testing.T) {
	if p := os.Getenv("EDGED_REPLACE_AS_NOBODY"); p != "" {
		err := ReplaceFile(p, []byte("new"))
		if err == nil {
			t.Fatal("replaced a file it could not give back to its owner")
		}
		t.Log(err)
		return
	}
	dir := asnobody.Dir(t, 0o777)
	sub := filepath.Join(dir, "conf.d")
	require.NoError(t, os.Mkdir(sub, 0o777))
	require.NoError(t, os.Chmod(sub, 0o777))
	p := filepath.Join(sub, "a.toml")
	require.NoError(t, os.WriteFile(p, []byte("old"), 0o644))
	out := asnobody.Run(t, dir, "TestReplaceFileRefusesAnOwnerItCannotGive", "EDGED_REPLACE_AS_NOBODY="+p)
	assert.Contains(t, out, p+": cannot give it the owner of "+p+": uid 0 gid 0")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "old", string(b), "left as it was")
	left, err := filepath.Glob(filepath.Join(sub, ".*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temp file left")
}

// TestReplaceFileIgnoresASwappedTempName: someone who may write to the
// directory swaps the temp file's name for a symbolic link to another
// file while edged writes. The mode and owner go to the file edged
// opened, never to the link's target (as root, that would hand any file
// on the machine to the directory's writers).
func TestReplaceFileIgnoresASwappedTempName(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("secret\n"), 0o600))
	path := filepath.Join(dir, "x.toml")
	require.NoError(t, os.WriteFile(path, []byte("old\n"), 0o644))
	require.NoError(t, os.Chmod(path, 0o664))

	testHookWritten = func(tmp string) {
		require.NoError(t, os.Remove(tmp))
		require.NoError(t, os.Symlink(victim, tmp))
	}
	defer func() { testHookWritten = nil }()
	_ = ReplaceFile(path, []byte("new\n"))

	fi, err := os.Stat(victim)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the link's target keeps its mode")
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "secret\n", string(b))
}

// TestMkdirAllTakesItsParentsModeAndOwner: directories a rollback brings
// back get the mode (setgid included) and owner of the one they are made
// in, not the caller's umask and uid; one that exists is left alone.
func TestMkdirAllTakesItsParentsModeAndOwner(t *testing.T) {
	base := t.TempDir()
	root := os.Geteuid() == 0
	if root {
		require.NoError(t, os.Chown(base, 65532, 65531))
	}
	require.NoError(t, os.Chmod(base, 0o750|os.ModeSetgid))
	kept := filepath.Join(base, "kept")
	require.NoError(t, os.Mkdir(kept, 0o700))
	if root {
		require.NoError(t, os.Chown(kept, 0, 0))
	}

	require.NoError(t, MkdirAll(filepath.Join(base, "prod", "orders")))
	require.NoError(t, MkdirAll(kept))
	for _, name := range []string{"prod", "prod/orders"} {
		fi, err := os.Stat(filepath.Join(base, name))
		require.NoError(t, err)
		assert.Equal(t, 0o750|os.ModeSetgid, fi.Mode()&(os.ModePerm|os.ModeSetgid), name)
		if root {
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, [2]uint32{65532, 65531}, [2]uint32{st.Uid, st.Gid}, name)
		}
	}
	fi, err := os.Stat(kept)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "an existing directory is not changed")

	f := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	assert.Error(t, MkdirAll(filepath.Join(f, "x")), "a file where a directory should be")
	assert.Error(t, MkdirAll(f))
}

// TestMkdirAllAsAnotherUser: a user who may write the directory makes a
// new one in it (a rollback run without sudo): the directory takes the
// parent's mode and group, stays the user's own (only root gives one
// away), and no error stops the rollback halfway.
func TestMkdirAllAsAnotherUser(t *testing.T) {
	if p := os.Getenv("EDGED_MKDIR_AS_NOBODY"); p != "" {
		if err := MkdirAll(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	dir := asnobody.Dir(t, 0o755)
	home := filepath.Join(dir, "prod")
	require.NoError(t, os.Mkdir(home, 0o700))
	require.NoError(t, os.Chown(home, 0, 65534))
	require.NoError(t, os.Chmod(home, 0o775|os.ModeSetgid))
	target := filepath.Join(home, "orders", "v2")

	asnobody.Run(t, dir, "TestMkdirAllAsAnotherUser", "EDGED_MKDIR_AS_NOBODY="+target)
	for _, d := range []string{filepath.Join(home, "orders"), target} {
		fi, err := os.Stat(d)
		require.NoError(t, err)
		assert.Equal(t, 0o775|os.ModeSetgid, fi.Mode()&(os.ModePerm|os.ModeSetgid), d)
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, [2]uint32{65534, 65534}, [2]uint32{st.Uid, st.Gid}, d)
	}
}
