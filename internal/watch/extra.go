package watch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// swapLink is the symlink Kubernetes renames over to publish a new version
// of a ConfigMap or Secret volume atomically.
const swapLink = "..data"

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

// viaLinks finds the symlinks and the missing directories on the way to
// dirs (the extra files' directories and the config directory): for each
// directory holding one, the names in it whose replacement or creation
// re-points or makes one of dirs, mapped to those. A name is the
// symlink itself (certs -> certs-v2, re-pointed by ln -sfn; /etc/edged ->
// /opt/edged-v1 further up) and the first element of its relative target
// (a Kubernetes Secret whose items sit in a subdirectory is mounted as
// certs -> ..data/certs, and "..data" is what is swapped).
//
// The watch on a directory is on the one its path resolved to when it was
// added; these names are what tell the watcher to resolve it again.
func viaLinks(dirs []string) map[string]map[string][]string {
	via := make(map[string]map[string][]string)
	note := func(parent, name, dir string) {
		names := via[parent]
		if names == nil {
			names = make(map[string][]string)
			via[parent] = names
		}
		if !slices.Contains(names[name], dir) {
			names[name] = append(names[name], dir)
		}
	}
	// walk notes what is on the way to path, on behalf of d, and returns
	// the targets of the links there, which lead on.
	walk := func(path, d string) (next []string) {
		for a := path; ; {
			parent := filepath.Dir(a)
			if parent == a {
				break
			}
			fi, err := os.Lstat(a)
			if errors.Is(err, fs.ErrNotExist) {
				// Not there yet: its creation, seen in its parent
				// (the nearest that exists is watched), leads on.
				note(parent, filepath.Base(a), d)
			} else if err == nil && fi.Mode()&os.ModeSymlink != 0 {
				note(parent, filepath.Base(a), d)
				if target, err := os.Readlink(a); err == nil {
					if !filepath.IsAbs(target) {
						first, _, _ := strings.Cut(filepath.Clean(target), string(filepath.Separator))
						if first != "." && first != ".." {
							note(parent, first, d)
						}
						target = filepath.Join(parent, target)
					}
					// What the link names is watched in its parent
					// too: a release directory it names, removed and
					// made again (current -> releases/v1), is an event
					// there. Its own watch does not tell its removal
					// when the link's parent is watched: fsnotify then
					// waits for that parent's event, which never comes.
					note(filepath.Dir(target), filepath.Base(target), d)
					// The way to it counts too: missing there in
					// between, it is noted where it will appear.
					next = append(next, target)
				}
			}
			a = parent
		}
		return next
	}
	for _, d := range dirs {
		// Each path once, nearest first: the links on the way to one
		// lead to paths with the others on it (ca -> ., named as
		// ca/ca/.../ca.pem), which walked anew each time would be 2^n
		// walks. hops bounds the links followed one after the other (a
		// loop of links leads nowhere).
		seen := map[string]bool{d: true}
		paths := []string{d}
		for hops := 0; len(paths) > 0 && hops <= maxHops; hops++ {
			var next []string
			for _, p := range paths {
				for _, t := range walk(p, d) {
					if !seen[t] {
						seen[t] = true
						next = append(next, t)
					}
				}
			}
			paths = next
		}
	}
	return via
}

// maxHops is how many symlinks viaLinks follows one after the other, as
// many as Linux resolves in a path (MAXSYMLINKS).
const maxHops = 40

// linkTargets finds the extra files that are symlinks into another
// directory (site.pem -> /srv/pki/current.pem): a write over the target,
// as cp makes, is an event there and not in the file's own directory. It
// maps the target's directory and name to the extra files behind it.
func linkTargets(files []string) map[string]map[string][]string {
	targets := make(map[string]map[string][]string)
	for _, f := range files {
		real, ok := linkTarget(f)
		if !ok {
			continue
		}
		d, name := filepath.Split(real)
		d = filepath.Clean(d)
		if targets[d] == nil {
			targets[d] = make(map[string][]string)
		}
		targets[d][name] = append(targets[d][name], f)
	}
	return targets
}

// linkTarget is what path resolves to when it is a symlink into another
// directory whose events would not otherwise be seen. A target in a
// dot-directory below path's own directory is not one: that is a
// Kubernetes volume's timestamped directory, only ever replaced whole by
// a "..data" swap, which is watched for.
func linkTarget(path string) (string, bool) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return "", false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil || filepath.Dir(real) == dir {
		return "", false // the watched directory itself
	}
	if rel, err := filepath.Rel(dir, real); err == nil {
		first, _, _ := strings.Cut(rel, string(filepath.Separator))
		if first != ".." && strings.HasPrefix(first, ".") {
			return "", false
		}
	}
	return real, true
}
