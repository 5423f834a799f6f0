package config

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
