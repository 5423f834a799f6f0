package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"edged/internal/atomicfile"
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
	// TooLarge is the directory where the walk stopped: past it, the tree
	// would hold more than MaxWalkDirs directories or MaxWalkEntries
	// entries. Err says which.
	TooLarge
	// DanglingLink is a symlink with another name (not a configuration
	// file's) whose target does not resolve: nothing for a load, but a
	// subdirectory once its target is made (conf.d/prod ->
	// /srv/prod/current before the first deploy), which the watcher
	// follows.
	DanglingLink
)

// The walk follows symlinks, to directories too: one link under conf.d to
// "/" or to a large share would have every load and every rescan walk all
// of it, and the watcher watch each of its directories. MaxFiles counts
// only the configuration files found; these bound the walk itself. Each
// is far above what a configuration tree holds.
const (
	// MaxWalkDirs bounds the directories of a configuration tree.
	MaxWalkDirs = 10000
	// MaxWalkEntries bounds the entries of all its directories together,
	// whatever they are: every configuration file MaxFiles allows, and as
	// many other entries.
	MaxWalkEntries = 2 * MaxFiles
)

// maxWalkDirs and maxWalkEntries are MaxWalkDirs and MaxWalkEntries; a
// test lowers them.
var maxWalkDirs, maxWalkEntries = MaxWalkDirs, MaxWalkEntries

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
	files, _, problems = walkTree(root, dir, newResolver())
	return files, problems
}

// walkTree is Walk that also says where each file is to be read from:
// reads[i] is where files[i] led when the walk met it, through the links
// res met (see resolver). A directory is listed, and what is below it
// looked up, where its path led once, not by its path again at each
// step, and a file that is a link is read where it led then: a link on
// the way that a deploy re-points meanwhile (current -> releases/v2, ln
// -sfn; -c naming it, or an environment's home linked to it; a
// ConfigMap's "..data", which each of its files is a link through) would
// otherwise have one load read some files of one release and the rest
// of the other, a configuration never on disk as a whole.
func walkTree(root string, dir func(path string), res *resolver) (files, reads []string, problems []WalkProblem) {
	seen := make(map[string]string) // real directory → path it was read as
	entriesLeft := maxWalkEntries
	stopped := false
	stop := func(d, format string, args ...any) {
		problems = append(problems, WalkProblem{Path: d, Kind: TooLarge, Err: fmt.Errorf(format, args...)})
		stopped = true
	}
	// d is the directory's path as named under root, at where to look
	// it up: in the directory its parent led to, a real path but for the
	// root's (resolve). An entry that is a symlink is resolved where it
	// is met; a plain directory listed in a real one is where it is.
	// Resolving each directory by its whole path lstat'ed every
	// directory above it again: a chain of 1,800 directories took each
	// walk 71 s.
	var walk func(d, at string, resolve bool)
	walk = func(d, at string, resolve bool) {
		if stopped {
			return
		}
		real := at
		if resolve {
			var err error
			if real, err = res.Eval(at); err != nil {
				problems = append(problems, WalkProblem{Path: d, Kind: DirUnreadable, Err: err})
				return
			}
		}
		if prev, ok := seen[real]; ok {
			problems = append(problems, WalkProblem{Path: d, Kind: DirAlreadyRead, Prev: prev})
			return
		}
		if len(seen) == maxWalkDirs {
			stop(d, "more than the %d directories a configuration tree may have (a symlink to a large directory?); nothing past it is read", maxWalkDirs)
			return
		}
		seen[real] = d
		if dir != nil {
			dir(d)
		}
		entries, err := readDirAtMost(real, entriesLeft)
		if errors.Is(err, errTooManyEntries) {
			stop(d, "more than the %d entries a configuration tree may have (a symlink to a large directory?); nothing past it is read", maxWalkEntries)
			return
		}
		if err != nil {
			res.gone(err) // it was there a moment ago
			problems = append(problems, WalkProblem{Path: d, Kind: DirUnreadable, Err: err})
			return
		}
		entriesLeft -= len(entries)
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			p, rp := filepath.Join(d, name), filepath.Join(real, name)
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				fi, err := os.Stat(rp)
				if err == nil {
					rp, err = res.Eval(rp)
				}
				if err == nil {
					fi, err = os.Lstat(rp)
				}
				if err != nil {
					kind := DanglingLink
					if IsConfigName(name) {
						kind = BrokenLink
					}
					problems = append(problems, WalkProblem{Path: p, Kind: kind, Err: err})
					continue
				}
				typ = fi.Mode().Type()
			}
			switch {
			case typ.IsDir():
				walk(p, rp, false)
			case !IsConfigName(name):
			case typ.IsRegular():
				files = append(files, p)
				reads = append(reads, rp)
			default:
				problems = append(problems, WalkProblem{Path: p, Kind: NotRegular, Mode: typ})
			}
		}
	}
	walk(filepath.Clean(root), filepath.Clean(root), true)
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return files[order[i]] < files[order[j]] })
	sortedFiles, sortedReads := make([]string, len(files)), make([]string, len(files))
	for i, k := range order {
		sortedFiles[i], sortedReads[i] = files[k], reads[k]
	}
	return sortedFiles, sortedReads, problems
}

var errTooManyEntries = errors.New("too many entries")

// readDirAtMost is os.ReadDir of a directory of at most n entries: one
// of more is errTooManyEntries, read no further than n+1 entries.
func readDirAtMost(d string, n int) ([]os.DirEntry, error) {
	f, err := atomicfile.OpenDir(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var entries []os.DirEntry
	for {
		batch, err := f.ReadDir(min(1024, n+1-len(entries)))
		entries = append(entries, batch...)
		if len(entries) > n {
			return nil, errTooManyEntries
		}
		if errors.Is(err, io.EOF) || len(batch) == 0 && err == nil {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// listFiles is Walk for a load: the root must be a directory, at most
// maxFiles configuration files, and what Walk could not take becomes
// errors (a loop: a warning).
func listFiles(dir string) (paths []string, errs, warns []Error) {
	paths, _, errs, warns = listRelease(dir, newResolver())
	return paths, errs, warns
}

// listRelease is listFiles that also says where each file is to be read
// from (see walkTree): reads[i] is the path paths[i] is read from, where
// it led when the walk met it, through the links res met. dir may be a
// release link that a deploy re-points at any moment (current ->
// releases/v2, ln -sfn), and so may a subdirectory or a file (a
// ConfigMap's keys, links through "..data"): files read by their paths
// one after the other would be some of one release and the rest of the
// other. The files the configuration names are read through res too.
func listRelease(dir string, res *resolver) (paths, reads []string, errs, warns []Error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil, []Error{{Pos: Pos{File: dir}, Msg: fmt.Sprintf("cannot read the configuration directory: %v", err)}}, nil
	}
	if !fi.IsDir() {
		return nil, nil, []Error{{Pos: Pos{File: dir}, Msg: "not a directory: give the directory holding the *.toml files"}}, nil
	}
	paths, reads, problems := walkTree(dir, nil, res)
	if len(paths) > maxFiles {
		// Refused before any is read: what the files hold cannot matter.
		return nil, nil, []Error{tooManyFilesError(dir, len(paths))}, nil
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
		case TooLarge:
			errs = append(errs, Error{Pos: Pos{File: p.Path}, Msg: p.Err.Error()})
		}
	}
	return paths, reads, errs, warns
}
