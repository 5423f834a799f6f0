package watch

import (
	"os"
	"path/filepath"
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
