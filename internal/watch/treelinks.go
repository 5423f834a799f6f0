package watch

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// treeLink is a symlink of the config tree that leads out of its own
// directory: a subdirectory (conf.d/prod -> /srv/prod/current, an
// environment's home in a team's checkout) or a config file
// (conf.d/prod.toml -> ../available/prod.toml). The watches of the tree
// are on what such a link led to when they were added; a deploy that
// re-points a link further on (current -> releases/v2), or removes its
// target and makes it again, or renames a new one into its place, changes
// nothing in the link's own directory. vias are where it does.
type treeLink struct {
	dir  bool
	vias []viaName
}

// viaName is a name in a directory whose change re-points or makes again
// what a tree link leads to.
type viaName struct{ dir, name string }

// linkVias lists the names whose change re-points or makes again what the
// symlink p leads to: its target, in the directory the target lies in (a
// directory removed is seen there, and not by its own watch once the
// link's directory is watched: see viaLinks), and the symlinks and missing
// directories on the way to it.
func linkVias(p string) []viaName {
	target, err := os.Readlink(p)
	if err != nil {
		return nil
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(p), target)
	}
	parent := filepath.Dir(target)
	// Watched where it is: a watch through a link names its events by
	// whichever path was watched first.
	if real, err := filepath.EvalSymlinks(parent); err == nil {
		parent = real
	}
	out := []viaName{{parent, filepath.Base(target)}}
	for d, names := range viaLinks([]string{target}) {
		for name := range names {
			if v := (viaName{d, name}); !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	// In an order of their own, to compare with those of another look.
	slices.SortFunc(out, func(a, b viaName) int {
		return cmp.Or(strings.Compare(a.dir, b.dir), strings.Compare(a.name, b.name))
	})
	return out
}

// follow watches where a change re-points or makes again what the tree
// link p leads to, in place of where that was before. What changed on the
// way between the look and the watches is no event in them: it looks
// again once they are there, until the two agree (each round that does
// not finds what changed meanwhile, so few rounds do).
func (w *Watcher) follow(p string, dir bool) {
	for range maxFollowRounds {
		vias := linkVias(p)
		w.followVias(p, dir, vias)
		if w.viasWatched(vias) && slices.Equal(vias, linkVias(p)) {
			return
		}
	}
}

// maxFollowRounds bounds the looks of follow and followDir: a link a
// deploy keeps re-pointing is followed again at its next event anyway.
const maxFollowRounds = 8

// followVias makes vias the names the tree link p is followed through,
// and watches their directories.
func (w *Watcher) followVias(p string, dir bool, vias []viaName) {
	old := w.links[p]
	w.links[p] = &treeLink{dir: dir, vias: vias}
	if w.linkVia == nil {
		w.linkVia = make(map[string]map[string][]string)
	}
	for _, v := range vias {
		names := w.linkVia[v.dir]
		if names == nil {
			names = make(map[string][]string)
			w.linkVia[v.dir] = names
		}
		if !slices.Contains(names[v.name], p) {
			names[v.name] = append(names[v.name], p)
		}
		// A directory that cannot be watched (yet) is left to the
		// rescan, or noted in its parent as missing.
		w.stale(v.dir)
		_ = w.add(v.dir)
	}
	if old != nil {
		for _, v := range old.vias {
			if !slices.Contains(vias, v) {
				w.forgetVia(p, v)
				w.release(v.dir)
			}
		}
	}
}

// viasWatched reports whether every directory of vias that is there is
// watched.
func (w *Watcher) viasWatched(vias []viaName) bool {
	for _, v := range vias {
		if !w.watched[v.dir] && isDir(v.dir) {
			return false
		}
	}
	return true
}

// unfollow stops following the tree link p, and drops the watches only it
// needed.
func (w *Watcher) unfollow(p string) {
	l := w.links[p]
	if l == nil {
		return
	}
	w.forget(p)
	for _, v := range l.vias {
		w.release(v.dir)
	}
}

// forget stops following the tree link p but keeps the watches: the
// caller follows it again at once, or leaves them to unwatchUnneeded. A
// watch removed and added again would miss what happens in between.
func (w *Watcher) forget(p string) {
	l := w.links[p]
	if l == nil {
		return
	}
	for _, v := range l.vias {
		w.forgetVia(p, v)
	}
	delete(w.links, p)
}

func (w *Watcher) forgetVia(p string, v viaName) {
	names := w.linkVia[v.dir]
	links := slices.DeleteFunc(names[v.name], func(q string) bool { return q == p })
	if len(links) == 0 {
		delete(names, v.name)
	} else {
		names[v.name] = links
	}
	if len(names) == 0 {
		delete(w.linkVia, v.dir)
	}
}

// needed reports whether the directory d is to be watched: it is of the
// tree, holds extra files, links or missing directories on the way to
// them, the targets of links, or names a tree link leads through.
func (w *Watcher) needed(d string) bool {
	return w.tree[d] || w.extra[d] != nil || w.via[d] != nil || w.targets[d] != nil || w.linkVia[d] != nil
}

// release drops the watch of d when nothing needs it any more.
func (w *Watcher) release(d string) {
	if w.watched[d] && !w.needed(d) {
		w.unwatch(d)
		delete(w.watched, d)
		delete(w.ids, d)
		delete(w.births, d)
	}
}

// followFile follows the config file p when it is a symlink into another
// directory, or one that leads nowhere (its target's directory may be
// made again), and stops following it otherwise: gone, a file of its own,
// or a link its own directory's watch sees the target of (a ConfigMap's
// "..data" links).
func (w *Watcher) followFile(p string) {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		w.unfollow(p)
		return
	}
	if _, ok := linkTarget(p); !ok && isFile(p) {
		w.unfollow(p)
		return
	}
	w.follow(p, false)
}

func isFile(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func isLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// refollow is the watcher's answer to a change where the tree link p
// leads through: it returns the paths that may have changed with it.
// A config file is looked at again (relink). A directory is watched and
// read again where the link leads now (followDir), whether or not that
// looks like the directory it led to before: one removed and made again
// at once has, on ext4, the inode number of the one removed, whose watch
// the kernel dropped, and files may have been written in it before any
// watch was there to see them.
func (w *Watcher) refollow(p string) []string {
	l := w.links[p]
	if l == nil {
		return nil
	}
	if !l.dir {
		w.relink(p)
		return []string{p}
	}
	w.drop(p)
	out := append(w.followDir(p), p)
	// The watches drop took from certificate directories below it.
	return append(out, w.rewatchExtra(p)...)
}

// followDir follows the directory link p, the ways to its target first
// so that a change there afterwards is an event, then watches the tree
// where it leads, if anywhere, and returns the files found there. A
// target made between the look and the watches is no event in them: it
// looks again once they are there, until the two agree.
func (w *Watcher) followDir(p string) []string {
	var files []string
	for range maxFollowRounds {
		if !isLink(p) {
			// A directory of its own now, whose creation is an event
			// in its parent, or gone.
			w.unfollow(p)
			if isDir(p) && !w.tree[p] {
				files = append(files, w.addTree(p)...)
			}
			return files
		}
		w.follow(p, true)
		if isDir(p) && !w.tree[p] {
			// addTree watches p, and the tree below, after its ways.
			files = append(files, w.addTree(p)...)
		}
		if l := w.links[p]; l != nil && w.viasWatched(l.vias) && slices.Equal(l.vias, linkVias(p)) && (w.tree[p] || !isDir(p)) {
			return files
		}
	}
	return files
}

// forgetBelow forgets the tree links at or below path (see drop).
func (w *Watcher) forgetBelow(path string) {
	for p := range w.links {
		if p == path || strings.HasPrefix(p, path+string(filepath.Separator)) {
			w.forget(p)
		}
	}
}

// linksThrough returns the tree links that lead through the directory d,
// which went away: the links into it and those it names on their way.
func (w *Watcher) linksThrough(d string) []string {
	var out []string
	for _, files := range w.targets[d] {
		for _, f := range files {
			if w.links[f] != nil {
				out = append(out, f)
			}
		}
	}
	for _, links := range w.linkVia[d] {
		out = append(out, links...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
