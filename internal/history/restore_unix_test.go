//go:build unix

package history

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/asnobody"
	"edged/internal/config"
)

// TestRestoreKeepsModeAndOwner: a rollback run with sudo must leave files
// the service (another user, reading through its group) can read: each
// restored file takes the mode and owner of the file it replaces, a new
// one those of its directory, and a directory it brings back those of the
// one it is made in.
func TestRestoreKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(a, []byte("a1"), 0o644))
	files, err := FilesOf(dir, []config.File{loaded(t, a)})
	require.NoError(t, err)
	files = append(files,
		File{Path: "sub/new.toml", SHA256: strings.Repeat("0", 64), Content: "n1"},
		File{Path: "sub/gone/back.toml", SHA256: strings.Repeat("1", 64), Content: "b1"})
	rec := &Record{Generation: 3, Files: files}

	require.NoError(t, os.WriteFile(a, []byte("a2"), 0o604))
	require.NoError(t, os.Chmod(a, 0o604)) // not what a umask makes
	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o750))
	require.NoError(t, os.Chmod(sub, 0o705))
	// The service's user: only root may give files to it.
	const uid, gid = 65534, 65533
	root := os.Geteuid() == 0
	if root {
		require.NoError(t, os.Chown(a, uid, gid))
		require.NoError(t, os.Chown(sub, uid+1, gid+1))
	}

	done, err := Restore(rec, dir, []string{a}, nil)
	require.NoError(t, err)
	require.Len(t, done.Written, 3)
	check := func(p string, mode os.FileMode, uid, gid int) {
		t.Helper()
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode().Perm(), p)
		if root {
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, []int{uid, gid}, []int{int(st.Uid), int(st.Gid)}, "%s: owner", p)
		}
	}
	check(a, 0o604, uid, gid)
	check(filepath.Join(sub, "new.toml"), 0o604, uid+1, gid+1) // the directory's, less x
	check(filepath.Join(sub, "gone"), 0o705, uid+1, gid+1)
	check(filepath.Join(sub, "gone", "back.toml"), 0o604, uid+1, gid+1)
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	assert.Equal(t, "a1", string(b))
}

// TestRestoreFollowsNoLinkOthersMayHavePut: prod's home is writable by its
// operators' group (the access control edged documents). One of them
// replaces a subdirectory of the home by a symbolic link to a directory
// they may not write (another environment's home, /etc...) and waits for
// a rollback run with sudo: it must neither write the generation's file
// there nor move the files there aside. A link in a directory only the
// caller may write (the operator's own layout) is still followed.
func TestRestoreFollowsNoLinkOthersMayHavePut(t *testing.T) {
	dir := t.TempDir()
	write := func(p, content string) string {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	env := write(filepath.Join(dir, "prod", "prod.toml"), "env v1")
	sub := write(filepath.Join(dir, "prod", "orders", "orders.toml"), "orders v1")
	files, err := FilesOf(dir, []config.File{loaded(t, env), loaded(t, sub)})
	require.NoError(t, err)
	rec := &Record{Generation: 5, Files: files}
	require.NoError(t, os.Chmod(filepath.Join(dir, "prod"), 0o775))

	victim := t.TempDir()
	victimFile := write(filepath.Join(victim, "orders.toml"), "not prod's")
	otherFile := write(filepath.Join(victim, "other.toml"), "not prod's either")
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "prod", "orders")))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, "prod", "orders")))
	write(env, "env v2")

	current, err := config.Files(dir)
	require.NoError(t, err)
	_, err = Restore(rec, dir, current, nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, filepath.Join(dir, "prod", "orders"))
	assert.ErrorContains(t, err, "symbolic link")
	for p, want := range map[string]string{victimFile: "not prod's", otherFile: "not prod's either", env: "env v2"} {
		b, err := os.ReadFile(p)
		require.NoError(t, err, "%s: not moved aside", p)
		assert.Equal(t, want, string(b), "%s: not written", p)
	}

	// The same link where only the caller may put it: followed.
	require.NoError(t, os.Chmod(filepath.Join(dir, "prod"), 0o755))
	done, err := Restore(rec, dir, current, nil)
	require.NoError(t, err)
	assert.Len(t, done.Written, 2)
	assert.Len(t, done.MovedAside, 1)
}

// TestRestoreChecksEveryFileBeforeChangingAny: an operator without sudo
// rolls back a generation in which one file is the service's (another
// user's, which only root may give back). The rollback must fail before
// it moves anything aside or writes any file, not half way, leaving a
// conf.d that is neither generation.
func TestRestoreChecksEveryFileBeforeChangingAny(t *testing.T) {
	if p := os.Getenv("EDGED_RESTORE_AS_NOBODY"); p != "" {
		dir := filepath.Dir(p)
		rec := &Record{Generation: 4, Files: []File{
			{Path: "a.toml", SHA256: strings.Repeat("0", 64), Content: "a1"},
			{Path: "theirs.toml", SHA256: strings.Repeat("1", 64), Content: "t1"},
		}}
		_, err := Restore(rec, dir, []string{filepath.Join(dir, "a.toml"), filepath.Join(dir, "newer.toml"), p}, nil)
		if err == nil {
			t.Fatal("restored a file it could not give back to its owner")
		}
		t.Log(err)
		return
	}
	base := asnobody.Dir(t, 0o755)
	dir := filepath.Join(base, "conf.d")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Chown(dir, 65534, 65534))
	for name, uid := range map[string]int{"a.toml": 65534, "newer.toml": 65534, "theirs.toml": 0} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(name+" now"), 0o644))
		require.NoError(t, os.Chown(p, uid, 65534))
	}
	theirs := filepath.Join(dir, "theirs.toml")

	out := asnobody.Run(t, base, "TestRestoreChecksEveryFileBeforeChangingAny", "EDGED_RESTORE_AS_NOBODY="+theirs)
	assert.Contains(t, out, theirs+": cannot give it the owner of "+theirs+": uid 0")

	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"a.toml", "newer.toml", "theirs.toml"}, names, "nothing moved aside, no temp file")
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, name+" now", string(b), "nothing written")
	}
}

// TestRestoreChangesNothingWhereAFileIsNoFile: where a file of the
// generation should go there is now a directory, or a symbolic link (the
// operator's layout: conf.d/uat.toml pointing into a checkout). A rename
// cannot replace a directory, so the rollback stopped half way, with
// files before it written; and it replaced a link by a file, leaving the
// file the link names as it was and the operator's layout broken. Both
// are now refused before anything changes.
func TestRestoreChangesNothingWhereAFileIsNoFile(t *testing.T) {
	for _, kind := range []string{"directory", "link"} {
		t.Run(kind, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "conf.d")
			require.NoError(t, os.Mkdir(dir, 0o755))
			a := filepath.Join(dir, "a.toml")
			newer := filepath.Join(dir, "newer.toml")
			z := filepath.Join(dir, "z.toml")
			target := filepath.Join(root, "checkout", "z.toml")
			require.NoError(t, os.WriteFile(a, []byte("a2"), 0o644))
			require.NoError(t, os.WriteFile(newer, []byte("n2"), 0o644))
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.WriteFile(target, []byte("z2"), 0o644))
			if kind == "directory" {
				require.NoError(t, os.Mkdir(z, 0o755))
			} else {
				require.NoError(t, os.Symlink(target, z))
			}
			rec := &Record{Generation: 5, Files: []File{
				{Path: "a.toml", SHA256: strings.Repeat("0", 64), Content: "a1"},
				{Path: "z.toml", SHA256: strings.Repeat("1", 64), Content: "z1"},
			}}

			done, err := Restore(rec, dir, []string{a, newer, z}, func(string) bool { return true })
			require.Error(t, err)
			assert.Contains(t, err.Error(), z)
			assert.Contains(t, err.Error(), "is a "+map[string]string{"directory": "directory", "link": "symbolic link"}[kind])
			assert.Empty(t, done.Written)
			assert.Empty(t, done.MovedAside)
			for p, want := range map[string]string{a: "a2", newer: "n2", target: "z2"} {
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				assert.Equal(t, want, string(b), "%s unchanged", p)
			}
			fi, err := os.Lstat(z)
			require.NoError(t, err)
			if kind == "directory" {
				assert.True(t, fi.IsDir())
			} else {
				assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link is still a link")
			}
			ents, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, ents, 3, "nothing moved aside, no temp file")
		})
	}
}

// TestRestoreKeepsAnEditMadeWhileItWrites: a rollback reads each file it
// replaces, to keep what it holds when the history does not, then writes
// the generation's content to a temp file, syncs it and renames it over
// the file. An editor's save in between (a new file renamed over the
// name, as vim and most editors save) was replaced and lost, kept
// nowhere, where the same edit saved a moment earlier was kept: the
// rename now replaces the file only if it still holds what was read (or
// is still missing), and otherwise reads it again.
func TestRestoreKeepsAnEditMadeWhileItWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before string // what a.toml holds before the rollback; "" = no a.toml
		held   bool   // the history holds that content
	}{
		{"a content no generation has", "a2", false},
		{"a content the history holds", "a2", true},
		{"no file yet", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := filepath.Join(dir, "a.toml")
			rec := &Record{Generation: 4, Files: []File{{Path: "a.toml", SHA256: config.SHA256Hex([]byte("a1")), Content: "a1"}}}
			var current []string
			if tc.before != "" {
				require.NoError(t, os.WriteFile(a, []byte(tc.before), 0o644))
				current = []string{a}
			}
			held := func(sum string) bool { return tc.held && sum == config.SHA256Hex([]byte(tc.before)) }
			saves := 0
			testHookRead = func(p string) {
				if p != a || saves > 0 {
					return
				}
				saves++
				swp := filepath.Join(dir, ".a.toml.swp")
				require.NoError(t, os.WriteFile(swp, []byte("edited"), 0o644))
				require.NoError(t, os.Rename(swp, a))
			}
			t.Cleanup(func() { testHookRead = nil })

			done, err := Restore(rec, dir, current, held)
			require.NoError(t, err)
			require.Equal(t, 1, saves, "the editor saved while the rollback wrote")
			b, err := os.ReadFile(a)
			require.NoError(t, err)
			assert.Equal(t, "a1", string(b), "the generation's content is restored")
			var kept []string
			for _, c := range done.Kept {
				assert.Equal(t, a, c.File)
				b, err := os.ReadFile(c.Copy)
				require.NoError(t, err)
				kept = append(kept, string(b))
			}
			assert.Contains(t, kept, "edited", "the edit saved while the rollback wrote is kept")
		})
	}
}
