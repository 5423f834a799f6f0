package history

import (
	"os"
	"path/filepath"
	"sort"

	"edged/internal/owner"
)

// ChangedFiles compares the files of a generation (now, paths relative to
// dir) with those of the one before (prev: path → SHA-256) and describes
// each one added, changed or removed, with the owner and modification
// time of the file in dir.
func ChangedFiles(dir string, prev map[string]string, now []File) []FileChange {
	var out []FileChange
	seen := make(map[string]bool, len(now))
	names := owner.NewNames()
	for _, f := range now {
		seen[f.Path] = true
		old, had := prev[f.Path]
		if had && old == f.SHA256 {
			continue
		}
		fc := FileChange{Path: f.Path, Action: "changed"}
		if !had {
			fc.Action = "added"
		}
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path))); err == nil {
			if uid, _, ok := owner.IDs(fi); ok {
				fc.Owner = names.User(uid)
			}
			fc.ModTime = fi.ModTime().UTC()
		}
		out = append(out, fc)
	}
	for p := range prev {
		if !seen[p] {
			out = append(out, FileChange{Path: p, Action: "removed"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Sums maps the paths of files to their SHA-256.
func Sums(files []File) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		m[f.Path] = f.SHA256
	}
	return m
}
