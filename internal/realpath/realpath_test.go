package realpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tree makes, in a new directory, the directories dirs, the empty files
// files and the links links (name → target), and returns the
// directory's real path.
func tree(t *testing.T, dirs, files []string, links map[string]string) string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	for _, d := range dirs {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for _, f := range files {
		require.NoError(t, os.WriteFile(filepath.Join(root, f), nil, 0o644))
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, filepath.Join(root, name)))
	}
	return root
}

// chain makes n links in root, l1 → l2 → ... → ln → last, and returns
// the first one's path.
func chain(t *testing.T, root string, n int, last string) string {
	t.Helper()
	for i := 1; i <= n; i++ {
		target := fmt.Sprintf("l%d", i+1)
		if i == n {
			target = last
		}
		require.NoError(t, os.Symlink(target, filepath.Join(root, fmt.Sprintf("l%d", i))))
	}
	return filepath.Join(root, "l1")
}

// ForCreate follows the links of a path as the kernel does and takes
// what it cannot follow as the file an open would make.
func TestForCreate(t *testing.T) {
	root := tree(t, []string{"state/history", "home"}, []string{"file"}, map[string]string{
		"home/hist":    "../state/history",
		"home/new.log": "hist/../audit/new.log",
		"home/abs":     "/",
	})
	for _, tc := range []struct{ name, path, want string }{
		{"no link", "file", "file"},
		{"a .. after a link is taken from where it leads", "home/hist/../audit.log", "state/audit.log"},
		{"a dangling link, its target's .. after a link", "home/new.log", "state/audit/new.log"},
		{"a name not there, and the names after it", "home/gone/sub/x.log", "home/gone/sub/x.log"},
		{"a file followed by names", "file/x", "file/x"},
		{"not cleaned", "home/./hist//../audit.log", "state/audit.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not filepath.Join: it would cancel a ".." against a link.
			assert.Equal(t, filepath.Join(root, tc.want), ForCreate(root+"/"+tc.path))
		})
	}
	t.Run("an absolute target", func(t *testing.T) {
		assert.Equal(t, filepath.Join("/", "x"), ForCreate(filepath.Join(root, "home/abs/x")))
	})
	t.Run("a relative path is taken from the working directory", func(t *testing.T) {
		t.Chdir(filepath.Join(root, "home"))
		assert.Equal(t, filepath.Join(root, "state/history/x.log"), ForCreate("hist/x.log"))
		assert.Equal(t, filepath.Join(root, "state/x.log"), ForCreate("hist/../x.log"))
	})
	t.Run("40 links, the kernel's bound, are followed", func(t *testing.T) {
		d := tree(t, nil, nil, nil)
		assert.Equal(t, filepath.Join(d, "end"), ForCreate(chain(t, d, 40, "end")))
	})
	t.Run("past 40 links a link is taken as a name", func(t *testing.T) {
		d := tree(t, nil, nil, nil)
		assert.Equal(t, filepath.Join(d, "l41"), ForCreate(chain(t, d, 41, "end")))
	})
}

// A Resolver resolves as filepath.EvalSymlinks does, reading each link
// once, and fails where EvalSymlinks fails.
func TestResolver(t *testing.T) {
	t.Run("each link is read once", func(t *testing.T) {
		root := tree(t, []string{"releases/v1", "releases/v2"}, []string{"releases/v1/a", "releases/v1/b", "releases/v2/a", "releases/v2/b"},
			map[string]string{"current": "releases/v1"})
		r := NewResolver(os.Lstat)
		got, err := r.Eval(filepath.Join(root, "current/a"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "releases/v1/a"), got)
		// ln -sfn: a new link renamed over the old one.
		require.NoError(t, os.Symlink("releases/v2", filepath.Join(root, "current.new")))
		require.NoError(t, os.Rename(filepath.Join(root, "current.new"), filepath.Join(root, "current")))
		got, err = r.Eval(filepath.Join(root, "current/b"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "releases/v1/b"), got, "where the link led when it was read")
		got, err = NewResolver(os.Lstat).Eval(filepath.Join(root, "current/b"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "releases/v2/b"), got, "another resolver reads it anew")
	})
	t.Run("a link's target's .. after a link", func(t *testing.T) {
		root := tree(t, []string{"state/history", "home"}, []string{"state/x"}, map[string]string{
			"home/hist": "../state/history",
			"home/x":    "hist/../x",
		})
		got, err := NewResolver(os.Lstat).Eval(filepath.Join(root, "home/x"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "state/x"), got)
	})
	t.Run("a name not there", func(t *testing.T) {
		root := tree(t, nil, nil, map[string]string{"dangling": "gone"})
		for _, p := range []string{"gone/x", "dangling"} {
			_, err := NewResolver(os.Lstat).Eval(filepath.Join(root, p))
			assert.ErrorIs(t, err, fs.ErrNotExist, p)
		}
	})
	t.Run("a file followed by names", func(t *testing.T) {
		root := tree(t, nil, []string{"file"}, nil)
		_, err := NewResolver(os.Lstat).Eval(filepath.Join(root, "file/x"))
		assert.ErrorIs(t, err, syscall.ENOTDIR)
	})
	t.Run("255 links, EvalSymlinks' bound", func(t *testing.T) {
		root := tree(t, nil, []string{"end"}, nil)
		got, err := NewResolver(os.Lstat).Eval(chain(t, root, 255, "end"))
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, "end"), got)
	})
	t.Run("past 255 links", func(t *testing.T) {
		root := tree(t, nil, []string{"end"}, nil)
		_, err := NewResolver(os.Lstat).Eval(chain(t, root, 256, "end"))
		assert.True(t, errors.Is(err, errTooManyLinks), "%v", err)
	})
	t.Run("names looked up with its lstat", func(t *testing.T) {
		root := tree(t, []string{"a/b"}, nil, nil)
		var looked []string
		r := NewResolver(func(p string) (fs.FileInfo, error) {
			looked = append(looked, p)
			return os.Lstat(p)
		})
		_, err := r.Eval(filepath.Join(root, "a/b"))
		require.NoError(t, err)
		assert.Contains(t, looked, filepath.Join(root, "a/b"))
	})
}
