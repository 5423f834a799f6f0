package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// IsConfigName reports whether a file named name is a configuration file:
// its name ends exactly in ".toml" and does not start with "." (editor
// swap files, ".#x.toml").
func IsConfigName(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".toml")
}

// WalkProblem is an entry of a configuration tree that Walk could not
// take as a configuration file or directory.
type WalkProblem struct {
	Path string
	Kind WalkProblemKind
	Err  error       // DirUnreadable, BrokenLink
	Mode fs.FileMode // NotRegular: what the entry is
	Prev string      // DirAlreadyRead: the path the directory was read as
}

// WalkProblemKind says what a WalkProblem is.
type WalkProblemKind int

const (
	// DirUnreadable is a directory (the root included) that could not be
	// resolved or listed.
	DirUnreadable WalkProblemKind = iota
	// DirAlreadyRead is a directory reached a second time (a symlink loop
	// or a second link to it); it is skipped.
	DirAlreadyRead
	// BrokenLink is a symlink with a configuration file's name whose
	// target does not resolve.
	BrokenLink
	// NotRegular is an entry with a configuration file's name that is not
	// a regular file (a FIFO, a device, a socket).
	NotRegular
)

// Walk walks the configuration tree rooted at root the way operators of
// conf.d directories expect, and the way both Load and the watcher
// (internal/watch) see it, so that a file the loader reads is a file the
// watcher watches: only names that IsConfigName accepts, sorted by path;
// names starting with "." skipped, files and directories alike ("..data"
// and the timestamped directories of a Kubernetes ConfigMap); symlinks
// followed, to files and to directories, each directory read once so a
// link loop ends.
//
// dir, when set, is called for every directory before it is read, so that
// a watcher adding a watch there cannot miss a file created during the
// walk. Walk returns the configuration files found, sorted, and the
// entries it could not take, in the order met.
func Walk(root string, dir func(path string)) (files []string, problems []WalkProblem) {
	seen := make(map[string]string) // real directory → path it was read as
	var walk func(string)
	walk = func(d string) {
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			problems = append(problems, WalkProblem{Path: d, Kind: DirUnreadable, Err: err})
			return
		}
		if prev, ok := seen[real]; ok {
			problems = append(problems, WalkProblem{Path: d, Kind: DirAlreadyRead, Prev: prev})
			return
		}
		seen[real] = d
		if dir != nil {
			dir(d)
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			problems = append(problems, WalkProblem{Path: d, Kind: DirUnreadable, Err: err})
			return
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			p := filepath.Join(d, name)
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				fi, err := os.Stat(p)
				if err != nil {
					if IsConfigName(name) {
						problems = append(problems, WalkProblem{Path: p, Kind: BrokenLink, Err: err})
					}
					continue
				}
				typ = fi.Mode().Type()
			}
			switch {
			case typ.IsDir():
				walk(p)
			case !IsConfigName(name):
			case typ.IsRegular():
				files = append(files, p)
			default:
				problems = append(problems, WalkProblem{Path: p, Kind: NotRegular, Mode: typ})
			}
		}
	}
	walk(filepath.Clean(root))
	sort.Strings(files)
	return files, problems
}

// listFiles is Walk for a load: the root must be a directory, at most
// maxFiles configuration files, and what Walk could not take becomes
// errors (a loop: a warning).
func listFiles(dir string) (paths []string, errs, warns []Error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, []Error{{Pos: Pos{File: dir}, Msg: fmt.Sprintf("cannot read the configuration directory: %v", err)}}, nil
	}
	if !fi.IsDir() {
		return nil, []Error{{Pos: Pos{File: dir}, Msg: "not a directory: give the directory holding the *.toml files"}}, nil
	}
	paths, problems := Walk(dir, nil)
	if len(paths) > maxFiles {
		// Refused before any is read: what the files hold cannot matter.
		return nil, []Error{{Pos: Pos{File: dir}, Msg: fmt.Sprintf(
			"%d configuration files (*.toml), more than the %d allowed; remove files that are not configuration, or merge small ones",
			len(paths), maxFiles)}}, nil
	}
	for _, p := range problems {
		switch p.Kind {
		case DirUnreadable:
			errs = append(errs, Error{Pos: Pos{File: p.Path}, Msg: fmt.Sprintf("cannot read directory: %v", p.Err)})
		case DirAlreadyRead:
			warns = append(warns, Error{Pos: Pos{File: p.Path},
				Msg: fmt.Sprintf("directory already read as %s (symlink loop or second link); skipped", p.Prev)})
		case BrokenLink:
			errs = append(errs, Error{Pos: Pos{File: p.Path}, Msg: fmt.Sprintf("broken symlink: %v", p.Err)})
		case NotRegular:
			errs = append(errs, Error{Pos: Pos{File: p.Path}, Msg: fmt.Sprintf("is %s, not a regular file", fileKind(p.Mode))})
		}
	}
	return paths, errs, warns
}
