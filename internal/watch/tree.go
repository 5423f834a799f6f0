package watch

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The config loader reads every file whose name ends exactly in ".toml",
// recursively, skipping dotfiles and dot-directories and following
// symlinks (how a ConfigMap's top-level links into "..data" are read).
// These rules must match it: a file the loader reads is a file we watch.

// configFile reports whether a file named name is read by the loader.
func configFile(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".toml")
}

// swapLink is the symlink Kubernetes renames over to publish a new version
// of a ConfigMap or Secret volume atomically.
const swapLink = "..data"

// walkTree walks the config tree rooted at root the way the loader does.
// It calls dir for every directory before reading it, so that a caller
// adding a watch there cannot miss a file created during the walk, and
// file for every config file. Symlinked directories are followed once
// each; unreadable entries are skipped: a later event or rescan will look
// again.
func walkTree(root string, dir func(path string), file func(path string)) {
	seen := make(map[string]bool)
	var walk func(path string)
	walk = func(path string) {
		real, err := filepath.EvalSymlinks(path)
		if err != nil || seen[real] {
			return
		}
		seen[real] = true
		if dir != nil {
			dir(path)
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			p := filepath.Join(path, name)
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				fi, err := os.Stat(p)
				if err != nil {
					// A dangling link named *.toml is still a file the
					// loader will trip over; let the rescan see it.
					if configFile(name) && file != nil {
						file(p)
					}
					continue
				}
				typ = fi.Mode().Type()
			}
			switch {
			case typ.IsDir():
				walk(p)
			case typ.IsRegular() && configFile(name) && file != nil:
				file(p)
			}
		}
	}
	walk(root)
}

// extraDir is a directory holding files named in Options.Extra, watched for
// those names only.
type extraDir struct {
	files map[string]bool // base names of the extra files in it
	// links are names in the directory that an extra file resolves
	// through: always "..data", and the first element of a relative
	// symlink target such as "..data/tls.crt" or "current/cert.pem".
	// Replacing one replaces the files behind it.
	links map[string]bool
}

// extraDirs groups extra files by directory.
func extraDirs(files []string) map[string]*extraDir {
	dirs := make(map[string]*extraDir)
	for _, f := range files {
		d, name := filepath.Split(f)
		d = filepath.Clean(d)
		ed := dirs[d]
		if ed == nil {
			ed = &extraDir{files: make(map[string]bool), links: map[string]bool{swapLink: true}}
			dirs[d] = ed
		}
		ed.files[name] = true
		ed.addLink(f)
	}
	return dirs
}

func (ed *extraDir) addLink(file string) {
	target, err := os.Readlink(file)
	if err != nil || filepath.IsAbs(target) {
		return
	}
	first, _, _ := strings.Cut(filepath.Clean(target), string(filepath.Separator))
	if first != "." && first != ".." && first != filepath.Base(file) {
		ed.links[first] = true
	}
}
