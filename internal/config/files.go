package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Files lists the configuration files Load would read in dir, sorted by
// path, with the same skip rules (dotfiles, dot-directories, only the
// exact ".toml" suffix).
func Files(dir string) ([]string, error) {
	paths, errs, _ := listFiles(dir)
	if len(errs) > 0 {
		return paths, Errors(errs)
	}
	return paths, nil
}

// LoadOverlay is Load as if the files in overlay (path as Files returns
// it → content) were written into dir: new paths are added, existing ones
// replaced. It lets a tool validate a change before writing anything.
func LoadOverlay(dir string, overlay map[string][]byte) (*Config, error) {
	srcs, errs, warns := readDir(dir)
	for i, s := range srcs {
		if b, ok := overlay[s.path]; ok {
			srcs[i].data = b
		}
	}
	for p, b := range overlay {
		found := false
		for _, s := range srcs {
			if s.path == p {
				found = true
				break
			}
		}
		if !found {
			srcs = append(srcs, source{path: p, data: b})
		}
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].path < srcs[j].path })
	return loadSources(dir, srcs, errs, warns, readTLSFile)
}

// LoadWithoutTLS is Load except that the files virtual hosts name
// (certificate, key, client CA) are not read: cert_file and key_file must
// be set, but need not exist yet, and there are no certificate warnings.
// The Config has no TLS material and must not be served; it is for tools
// that make those files, like tools/devcerts.
func LoadWithoutTLS(dir string) (*Config, error) {
	srcs, errs, warns := readDir(dir)
	return loadSources(dir, srcs, errs, warns, nil)
}

// WriteFile writes a config file through a dot-named temp file in the
// same directory (which the loader and the watcher skip) and renames it
// over path, so a running edged never reads half a file.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	return writeFile(path, b, func(tmp string) error { return os.Chmod(tmp, mode) })
}

// ReplaceFile is WriteFile giving path the mode and owner of the file it
// replaces or, when there is none, of its directory (the mode less its
// execute bits): a file written with sudo into a service's configuration
// stays readable by the service. The owner is set before the rename, so
// when this process may not give it (only root may give a file to another
// user), path is left as it was and the error says which owner.
func ReplaceFile(path string, b []byte) error {
	like := path
	fi, err := os.Stat(path)
	if err != nil {
		like = filepath.Dir(path)
		if fi, err = os.Stat(like); err != nil {
			return err
		}
	}
	mode := fi.Mode().Perm()
	if fi.IsDir() {
		mode &^= 0o111
	}
	return writeFile(path, b, func(tmp string) error {
		if err := os.Chmod(tmp, mode); err != nil {
			return err
		}
		if err := sameOwner(tmp, fi, !fi.IsDir()); err != nil {
			return fmt.Errorf("%s: cannot give it the owner of %s: %w", path, like, err)
		}
		return nil
	})
}

// writeFile writes b to a temp file beside path, lets prepare set its
// mode (and owner), and renames it over path.
func writeFile(path string, b []byte, prepare func(tmp string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := prepare(tmp.Name()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
