package config

import (
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

// LoadFiles is Load as if dir held exactly files (path as Files returns
// it → content) and no other configuration file, TLS material read from
// disk as it is now: what a rollback would leave, checked before it
// writes anything.
func LoadFiles(dir string, files map[string][]byte) (*Config, error) {
	srcs := make([]source, 0, len(files))
	for p, b := range files {
		srcs = append(srcs, source{path: p, data: b})
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].path < srcs[j].path })
	return loadSources(dir, srcs, nil, nil, readTLSFile)
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
