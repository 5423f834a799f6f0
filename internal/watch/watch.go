package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sync/errgroup"

	"edged/internal/config"
)

// ErrClosed is returned by SetExtra after Close.
var ErrClosed = errors.New("watch: watcher closed")

// Options configure a Watcher.
type Options struct {
	// Dir is the config directory, watched recursively: subdirectories
	// are added when they appear and dropped when they go. Dot-directories
	// are not descended into, but a "..data" swap in a watched directory
	// is seen. When Dir is, or lies below, a symlink, re-pointing it is
	// seen too, and the tree is watched where it leads then.
	Dir string
	// Extra are files outside the config tree's rules that a reload
	// depends on: the certificate, key and CA files virtual hosts name.
	// Their directories are watched, for those names and for the symlink
	// swaps they resolve through (a Kubernetes Secret's "..data"); so
	// are the directories holding symlinks or missing directories on the
	// way to them, and those a symlinked file points into (see doc.go).
	// Relative paths are taken relative to the working directory.
	Extra []string
	// Debounce is the quiet period after the last relevant event before
	// the burst is reported.
	Debounce time.Duration
	// MaxWait caps how long a burst may delay its report, counted from
	// its first event, so a file rewritten forever is still reported.
	// Zero means 10 × Debounce.
	MaxWait time.Duration
	// Rescan is the interval of the safety-net rescan, which hashes every
	// relevant file and reports those whose content changed; it finds
	// what inotify misses on some bind mounts and network file systems.
	// What it finds is reported once the files stay as they are for
	// Debounce, compared again after each, within MaxWait: a deploy it
	// comes upon halfway is reported whole. Zero turns it off.
	Rescan time.Duration
	// Logger receives warnings (lost events, directories that cannot be
	// watched) and debug records per event; nil discards them.
	Logger *slog.Logger
}

// Event is one coalesced burst of changes.
type Event struct {
	// Paths are the absolute paths that changed, sorted and deduplicated,
	// best effort: a config file, an extra file, a directory that went
	// away, a "..data" link that was swapped. When the kernel dropped
	// events, Paths holds Dir itself and every extra file: anything may
	// have changed.
	Paths []string
	// Rescan is set when the changes, or some of them, were found by the
	// periodic rescan or after lost events rather than by an event.
	Rescan bool
}

// Watcher reports changes to the config tree and extra files on Events. It
// starts watching in New and stops in Close; its goroutines belong to it.
type Watcher struct {
	dir      string
	debounce time.Duration
	maxWait  time.Duration
	rescan   time.Duration
	log      *slog.Logger

	fsw       *fsnotify.Watcher
	events    chan Event
	extraReqs chan extraReq
	rescans   chan rescanFound // changed paths found by the rescan goroutine

	ctx       context.Context
	cancel    context.CancelFunc
	group     errgroup.Group
	closeOnce sync.Once
	closeErr  error

	// ignoreFS makes the loop drop every fsnotify event, so tests can show
	// what the rescan finds on its own.
	ignoreFS atomic.Bool

	// extraMu guards extraList, read by the rescan goroutine.
	extraMu   sync.Mutex
	extraList []string

	// scanMu guards last, the digests the next rescan compares with. The
	// loop replaces it whenever a burst fires, before the receiver can
	// read any file, so the rescan reports only what changed after the
	// receiver was told to look (and not the same change twice).
	scanMu sync.Mutex
	last   scan
	// lastSeq numbers last among the scans taken (scanSeq the latest):
	// a rescan's scan that reaches the loop after a newer one replaced
	// last is dropped (see rescanFound).
	lastSeq, scanSeq uint64

	// Owned by the loop goroutine (and by New before it starts).
	tree  map[string]bool // directories of the config tree
	extra map[string]*extraDir
	// via are the directories holding symlinks an extra directory or the
	// config directory resolves through, with those names (viaLinks).
	via map[string]map[string][]string
	// targets are the directories and names of what extra files and
	// config files that are symlinks into another directory point at
	// (linkTargets, treeLinks).
	targets map[string]map[string][]string
	// treeLinks are the config files of the tree that are symlinks into
	// another directory, to what they resolve to.
	treeLinks map[string]string
	// links are the tree's symlinks out of their own directory that are
	// followed (see treeLink); linkVia maps the directories and names
	// their vias name to them.
	links   map[string]*treeLink
	linkVia map[string]map[string][]string
	watched map[string]bool // directories added to fsw
	// ids are what the watched directories were when their watch was
	// added: a path whose symlink has been re-pointed since no longer
	// names the directory its watch is on.
	ids map[string]os.FileInfo
	// births are the watched directories' birth times (birth), where
	// known: an inode number reused at once is another directory.
	births map[string]int64
	// lost are directories holding names that links or the extra and
	// config directories lead through, whose watch stale replaced: the
	// events queued on the old watch went with it, among them those
	// telling of the others that lead through there (relook).
	lost map[string]bool
}

type extraReq struct {
	paths []string
	reply chan error
}

// New starts watching opts.Dir and opts.Extra. Changes made after New
// returns are reported on Events. It fails when Dir cannot be watched; an
// extra directory that cannot be watched is logged and left to the rescan.
func New(opts Options) (*Watcher, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("watch: config dir %q: %w", opts.Dir, err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("watch: config dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("watch: config dir %s: not a directory", dir)
	}
	extra, err := absAll(opts.Extra)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		dir:       dir,
		debounce:  max(opts.Debounce, 0),
		maxWait:   opts.MaxWait,
		rescan:    opts.Rescan,
		log:       opts.Logger,
		events:    make(chan Event),
		extraReqs: make(chan extraReq),
		rescans:   make(chan rescanFound),
		tree:      make(map[string]bool),
		watched:   make(map[string]bool),
		ids:       make(map[string]os.FileInfo),
		births:    make(map[string]int64),
		treeLinks: make(map[string]string),
		links:     make(map[string]*treeLink),
		extra:     make(map[string]*extraDir),
	}
	if w.maxWait <= 0 {
		w.maxWait = 10 * w.debounce
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if err := w.startInotify(dir); err != nil {
		// The inotify limits are per user and per machine
		// (fs.inotify.max_user_instances, max_user_watches): other
		// programs may have taken them all. Serving matters more than
		// noticing edits at once: the rescan, SIGHUP and edged reload
		// still apply them.
		how := "changes are found by the rescan every " + w.rescan.String() + ", or applied on SIGHUP and edged reload"
		if w.rescan <= 0 {
			how = "rescan_interval is off: changes are applied only on SIGHUP and edged reload"
		}
		w.log.Warn("cannot watch the config files (inotify); "+how+"; raise fs.inotify.max_user_instances or max_user_watches and restart to watch them",
			"dir", dir, "err", err)
	}
	w.addTree(dir)
	if err := w.setExtra(extra); err != nil {
		w.log.Warn("watching certificate directories", "err", err)
	}

	if w.rescan > 0 {
		w.last = takeScan(dir, extra)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.group.Go(func() error { return w.loop(w.ctx) })
	if w.rescan > 0 {
		w.group.Go(func() error { return w.rescanLoop(w.ctx) })
	}
	return w, nil
}

// startInotify creates the inotify watcher and watches dir with it. On
// failure w.fsw stays nil: the watcher runs on its rescan alone.
func (w *Watcher) startInotify(dir string) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	w.fsw = fsw
	if err := w.add(dir); err != nil {
		fsw.Close()
		w.fsw = nil
		return err
	}
	return nil
}

func absAll(paths []string) ([]string, error) {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("watch: extra file %q: %w", p, err)
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Events delivers one Event per quiet burst. An Event not yet received
// absorbs later bursts, so a slow receiver gets fewer, larger events and
// the watcher never blocks on it. The channel is closed by Close.
func (w *Watcher) Events() <-chan Event { return w.events }

// SetExtra replaces the extra files, typically after a reload changed the
// certificates virtual hosts name, and re-targets the directory watches.
// Directories that cannot be watched are returned as an error (the others
// are watched all the same).
func (w *Watcher) SetExtra(paths []string) error {
	abs, err := absAll(paths)
	if err != nil {
		return err
	}
	req := extraReq{paths: abs, reply: make(chan error, 1)}
	select {
	case w.extraReqs <- req:
		return <-req.reply
	case <-w.ctx.Done():
		return ErrClosed
	}
}

// Close stops watching, waits for the watcher's goroutines to end and
// closes the Events channel. It may be called more than once.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		w.cancel()
		err := w.group.Wait()
		if w.fsw != nil {
			err = errors.Join(err, w.fsw.Close())
		}
		w.closeErr = err
		close(w.events)
	})
	return w.closeErr
}

// loop owns the watch state: it turns fsnotify events into bursts, bursts
// into Events, and applies SetExtra.
func (w *Watcher) loop(ctx context.Context) error {
	var (
		burst       = make(map[string]bool)
		burstRescan bool
		first       time.Time // of the burst; zero when there is none
		timer       = time.NewTimer(time.Hour)
		pending     *Event // fired, not yet received
	)
	timer.Stop()
	defer timer.Stop()
	// Without inotify (see New) these stay nil: never ready.
	var (
		fsEvents chan fsnotify.Event
		fsErrors chan error
	)
	if w.fsw != nil {
		fsEvents, fsErrors = w.fsw.Events, w.fsw.Errors
	}

	note := func(paths []string, rescan bool) {
		if len(paths) == 0 && !rescan {
			return
		}
		for _, p := range paths {
			burst[p] = true
		}
		burstRescan = burstRescan || rescan
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		timer.Reset(min(w.debounce, first.Add(w.maxWait).Sub(now)))
	}

	for {
		var (
			out  chan<- Event // nil, so never ready, until an event is pending
			send Event
		)
		if pending != nil {
			out, send = w.events, *pending
		}
		select {
		case <-ctx.Done():
			return nil

		case ev, ok := <-fsEvents:
			if !ok {
				return nil
			}
			if w.ignoreFS.Load() {
				continue
			}
			paths := w.handle(ev)
			if len(paths) > 0 {
				w.log.Debug("config change", "op", ev.Op.String(), "file", ev.Name)
			}
			note(paths, false)

		case err, ok := <-fsErrors:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("file events were lost; rescanning everything", "dir", w.dir, "err", err)
				w.resync()
				note(w.everything(), true)
				continue
			}
			w.log.Warn("watching config files", "dir", w.dir, "err", err)

		case found := <-w.rescans:
			w.resync()
			if !w.accept(found) {
				continue
			}
			paths := found.paths
			if len(paths) > 0 {
				// The first few name the change: a tree copied in at
				// once would make a line of every path.
				w.log.Info("rescan found changed files", "changed", len(paths), "files", paths[:min(len(paths), logPaths)])
			}
			note(paths, len(paths) > 0)

		case req := <-w.extraReqs:
			req.reply <- w.setExtra(req.paths)

		case <-timer.C:
			if w.rescan > 0 {
				// Where only the rescan sees changes (a bind mount,
				// NFS, no inotify), no event extends a burst it found:
				// files a deploy is still copying are found by
				// comparing once more, and keep the burst open until
				// they are quiet, as their events would.
				moving := w.rebase()
				if burstRescan && len(moving) > 0 {
					if time.Since(first) < w.maxWait {
						note(moving, true)
						continue
					}
					for _, p := range moving {
						burst[p] = true
					}
				}
			}
			if pending == nil {
				pending = &Event{}
			}
			for p := range burst {
				pending.Paths = append(pending.Paths, p)
			}
			slices.Sort(pending.Paths)
			pending.Paths = slices.Compact(pending.Paths)
			pending.Rescan = pending.Rescan || burstRescan
			clear(burst)
			burstRescan = false
			first = time.Time{}

		case out <- send:
			pending = nil
		}
	}
}

// logPaths is how many changed paths a log line names.
const logPaths = 10

// handle updates the watches for one fsnotify event and returns the paths
// it changed, if any matter.
func (w *Watcher) handle(ev fsnotify.Event) []string {
	if !ev.Has(fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename) {
		return append(w.modeChanged(ev.Name), w.relook()...)
	}
	var out []string

	// fsnotify keeps a watched directory's own removal to itself when it
	// watches the parent of the directory's path too, taking the parent's
	// event for the name to tell; the parent of a config directory reached
	// through a symlink (current -> releases/v1) is watched for the link,
	// but the directory removed is releases/v1. A removal in the config
	// directory tells that it may be gone, or another one already.
	if ev.Has(fsnotify.Remove|fsnotify.Rename) && filepath.Dir(ev.Name) == w.dir && w.watched[w.dir] && w.moved(w.dir) {
		out = append(out, w.handle(fsnotify.Event{Name: w.dir, Op: fsnotify.Remove})...)
	}

	// A watched directory itself went away (or was moved, which leaves
	// the watch on an inode under another name): stop watching it and
	// everything below. Its parent, when watched, reports the same name.
	// retarget: a symlink on the way to the extra files or the config
	// directory may lead elsewhere now; watch there.
	retarget := false
	if ev.Has(fsnotify.Remove|fsnotify.Rename) && (w.tree[ev.Name] || w.watched[ev.Name]) {
		// A config directory below the top is seen again in its
		// parent (createdDir below). The config directory itself and
		// those outside the tree (of extra files, and the links and
		// link targets on the way to them) may be replaced, a new one
		// renamed into place, or removed for good or for a while:
		// retarget watches each where its path leads now or, while
		// nothing is there, its parent for its return.
		retarget = ev.Name == w.dir || !w.tree[ev.Name]
		through := w.linksThrough(ev.Name)
		w.drop(ev.Name)
		out = append(out, ev.Name)
		// The tree links that led into it or through it lead nowhere
		// now, or elsewhere.
		for _, p := range through {
			out = append(out, w.refollow(p)...)
		}
		// A directory of the tree there again already: the event was
		// of the one before it, read after the new one's creation (a
		// link's target removed and made again at once, the tree there
		// watched again meanwhile), which would otherwise go unwatched.
		if !retarget && w.tree[filepath.Dir(ev.Name)] && isDir(ev.Name) {
			out = append(out, w.addTree(ev.Name)...)
		}
	}

	dir, name := filepath.Split(ev.Name)
	dir = filepath.Clean(dir)

	if ed := w.extra[dir]; ed != nil {
		switch {
		case ed.files[name]:
			out = append(out, ev.Name)
			retarget = ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename)
		case ed.links[name]:
			for f := range ed.files {
				out = append(out, filepath.Join(dir, f))
			}
			retarget = true
		}
	}

	createdDir := ev.Has(fsnotify.Create) && isDir(ev.Name)
	if w.tree[dir] {
		switch {
		case name == swapLink:
			out = append(out, ev.Name)
		case strings.HasPrefix(name, "."):
		case createdDir:
			// A name that was watched already now names another
			// directory (a symlink re-pointed by a rename over it, as
			// ln -sfn and release deployments do): its watch, and those
			// below it, are on what it named before. Watch what it
			// names now.
			if w.watched[ev.Name] {
				w.drop(ev.Name)
			}
			// Files may have landed in it before its watch did.
			out = append(out, w.addTree(ev.Name)...)
		case config.IsConfigName(name):
			out = append(out, ev.Name)
			if ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename) {
				w.relink(ev.Name)
			}
		case w.links[ev.Name] != nil:
			// A directory link followed while it led nowhere.
			out = append(out, w.refollow(ev.Name)...)
		case ev.Has(fsnotify.Create) && isLink(ev.Name) && !isFile(ev.Name):
			// A link made before its target: a subdirectory once the
			// target is made (or made since it looked).
			out = append(out, w.followDir(ev.Name)...)
		}
	}
	if createdDir {
		out = append(out, w.rewatchExtra(ev.Name)...)
	}

	// What an extra file that is a symlink points at changed.
	out = append(out, w.targets[dir][name]...)

	// A tree link leads through here: a link re-pointed on the way, or
	// its target removed, made again or replaced. (A write to a linked
	// config file is in targets.)
	if ev.Has(fsnotify.Create | fsnotify.Remove | fsnotify.Rename) {
		for _, p := range slices.Clone(w.linkVia[dir][name]) {
			out = append(out, w.refollow(p)...)
		}
	}

	// A symlink on the way to extra files or to the config directory
	// changed, or a directory there was removed or made: they are other
	// files now, and their directories' watches may be on what the link
	// named before, or on a directory removed and made again at once,
	// which on ext4 often has the inode number of the one removed: an
	// unchanged inode says nothing of a watch the kernel dropped.
	// retarget watches them again, after the ways to them.
	if dirs, ok := w.via[dir][name]; ok {
		for _, d := range dirs {
			if d == w.dir {
				w.drop(w.dir)
				out = append(out, w.dir)
				continue
			}
			if !w.tree[d] && w.watched[d] {
				w.forgetWatch(d)
			}
			for f := range w.extra[d].files {
				out = append(out, filepath.Join(d, f))
			}
		}
		retarget = true
	}
	if retarget {
		// A directory that cannot be watched was warned of by
		// SetExtra, the one that named it.
		files, err := w.retarget()
		if err != nil {
			w.log.Debug("watching certificate directories", "err", err)
		}
		out = append(out, files...)
	}
	return append(out, w.relook()...)
}

// modeChanged returns the paths a change of mode, owner or ACL of path
// (IN_ATTRIB: chmod, chown, setfacl, touch) may have made readable or
// unreadable to edged, though their content is the same: a config file,
// a config directory, an extra file or what one points at. A directory of
// the tree that could not be watched (created unreadable to edged) is
// watched now if it can be, with the files found in it.
func (w *Watcher) modeChanged(path string) []string {
	dir, name := filepath.Split(path)
	dir = filepath.Clean(dir)
	var out []string
	if ed := w.extra[dir]; ed != nil && ed.files[name] {
		out = append(out, path)
	}
	out = append(out, w.targets[dir][name]...)
	switch {
	case w.tree[path]:
		out = append(out, path)
	case !w.tree[dir] || strings.HasPrefix(name, "."):
	case isDir(path):
		out = append(out, w.addTree(path)...)
		out = append(out, path)
	case config.IsConfigName(name):
		out = append(out, path)
	}
	return out
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// addTree watches root and the config directories below it, and returns
// the config files found there. The tree holds at most config.MaxWalkDirs
// directories, as many as the loader reads: a directory that appears is
// walked on its own, and a symlink to a large directory made in the tree
// again and again would otherwise add that many watches each time.
func (w *Watcher) addTree(root string) []string {
	full := false
	// Unreadable entries are skipped: a later event or rescan looks again.
	files, problems := config.Walk(root, func(d string) {
		if !w.tree[d] && len(w.tree) >= config.MaxWalkDirs {
			if !full {
				full = true
				w.log.Warn("the config tree has more directories than the loader reads; those past it are not watched", "dir", d, "max", config.MaxWalkDirs)
			}
			return
		}
		if d != w.dir && w.links[d] == nil && isLink(d) {
			// The ways to where it leads first: what re-points or
			// makes them again after this is an event, the watch of d
			// then possibly on what that replaced.
			w.follow(d, true)
		}
		if err := w.add(d); err != nil {
			w.log.Warn("cannot watch config directory", "dir", d, "err", err)
			return
		}
		w.tree[d] = true
	})
	// A dangling link named *.toml is still a file the loader will trip
	// over.
	// Followed, for its target's return (see treeLink).
	for _, p := range problems {
		switch {
		case p.Kind == config.BrokenLink:
			files = append(files, p.Path)
			if w.links[p.Path] == nil {
				w.followFile(p.Path)
			}
		case p.Kind == config.DanglingLink && w.links[p.Path] == nil:
			// A subdirectory once its target is made (or made since
			// the walk looked).
			files = append(files, w.followDir(p.Path)...)
		}
	}
	changed := false
	for _, f := range files {
		moved := w.noteTreeLink(f)
		if moved || (w.links[f] == nil && w.treeLinks[f] != "") {
			w.followFile(f)
		}
		changed = moved || changed
	}
	if changed {
		w.indexTargets()
	}
	return files
}

// noteTreeLink records whether the config file path is a symlink into
// another directory, where a save of what it points at is an event, and
// reports whether that changed.
func (w *Watcher) noteTreeLink(path string) bool {
	real, _ := linkTarget(path)
	if w.treeLinks[path] == real {
		return false
	}
	if real == "" {
		delete(w.treeLinks, path)
	} else {
		w.treeLinks[path] = real
	}
	return true
}

// relink is noteTreeLink for the event of one config file: it moves the
// file's entry in targets from where its link led to where it leads now,
// and the watches with it, rather than index every link of the tree
// again: a checkout that makes thousands of links is as many events, and
// indexing them all at each would cost the square of their number.
func (w *Watcher) relink(path string) {
	// The way there first: what changes on it after this is an event.
	w.followFile(path)
	old := w.treeLinks[path]
	if !w.noteTreeLink(path) {
		return
	}
	if old != "" {
		d, name := filepath.Split(old)
		d = filepath.Clean(d)
		if files := w.targets[d][name]; files != nil {
			if i := slices.Index(files, path); i >= 0 {
				files = slices.Delete(files, i, i+1)
			}
			if len(files) == 0 {
				delete(w.targets[d], name)
			} else {
				w.targets[d][name] = files
			}
		}
		if len(w.targets[d]) == 0 {
			delete(w.targets, d)
			w.release(d)
		}
	}
	if real := w.treeLinks[path]; real != "" {
		d, name := filepath.Split(real)
		d = filepath.Clean(d)
		if w.targets == nil {
			w.targets = make(map[string]map[string][]string)
		}
		if w.targets[d] == nil {
			w.targets[d] = make(map[string][]string)
		}
		w.targets[d][name] = append(w.targets[d][name], path)
		w.stale(d)
		_ = w.add(d)
	}
}

// indexTargets makes targets from the extra files and the tree's links,
// and watches their directories; one that cannot be watched is left to
// the rescan.
func (w *Watcher) indexTargets() {
	w.targets = linkTargets(w.extras())
	for f, real := range w.treeLinks {
		d, name := filepath.Split(real)
		d = filepath.Clean(d)
		if w.targets[d] == nil {
			w.targets[d] = make(map[string][]string)
		}
		w.targets[d][name] = append(w.targets[d][name], f)
	}
	for d := range w.targets {
		w.stale(d)
		_ = w.add(d)
	}
}

// drop forgets the watched directory path and every watched directory
// below it.
func (w *Watcher) drop(path string) {
	for d := range w.watched {
		if d == path || strings.HasPrefix(d, path+string(filepath.Separator)) {
			// The kernel has usually removed the watch already.
			w.unwatch(d)
			delete(w.watched, d)
			delete(w.ids, d)
			delete(w.births, d)
			delete(w.tree, d)
		}
	}
	for d := range w.tree {
		if d == path || strings.HasPrefix(d, path+string(filepath.Separator)) {
			delete(w.tree, d)
		}
	}
	for f := range w.treeLinks {
		if strings.HasPrefix(f, path+string(filepath.Separator)) {
			delete(w.treeLinks, f)
		}
	}
	w.forgetBelow(path)
}

func (w *Watcher) add(d string) error {
	if w.watched[d] {
		return nil
	}
	// Taken before the watch is: should the path be re-pointed in
	// between, the next check finds it stale and watches it again.
	fi, err := os.Stat(d)
	if err != nil {
		return err
	}
	born := birth(d)
	if w.fsw == nil {
		return nil // no inotify: the rescan looks at d
	}
	if err := w.fsw.Add(d); err != nil {
		return err
	}
	w.watched[d] = true
	w.ids[d] = fi
	w.births[d] = born
	return nil
}

// unwatch removes the watch of d, if there is inotify.
func (w *Watcher) unwatch(d string) {
	if w.fsw != nil {
		_ = w.fsw.Remove(d)
	}
}

// rewatchExtra watches the extra directories at or below a directory that
// just appeared, and returns their files: they are new too.
func (w *Watcher) rewatchExtra(root string) []string {
	var out []string
	for d, ed := range w.extra {
		if w.watched[d] || (d != root && !strings.HasPrefix(d, root+string(filepath.Separator))) {
			continue
		}
		if w.add(d) == nil {
			for f := range ed.files {
				out = append(out, filepath.Join(d, f))
			}
		}
	}
	return out
}

// setExtra makes paths the extra files and watches exactly the
// directories the tree and they need.
func (w *Watcher) setExtra(paths []string) error {
	w.extraMu.Lock()
	w.extraList = paths
	w.extraMu.Unlock()
	_, err := w.retarget()
	w.relook()
	return err
}

// retarget watches exactly the directories the tree and the extra files
// need, each where its path leads now: the watch of an extra directory
// whose path went through a symlink that has been re-pointed since is on
// the directory the link named before, so it is replaced. It returns the
// extra files of the directories it watches anew, re-pointed or created
// since, and the config directory with its files when it watches that
// again after handle dropped it. The config tree's other directories are
// left to handle and resync.
func (w *Watcher) retarget() ([]string, error) {
	w.extra = extraDirs(w.extras())
	dirs := append(slices.Collect(maps.Keys(w.extra)), w.dir)
	w.via = viaLinks(dirs)

	var (
		out  []string
		errs []error
	)
	// What was created or re-pointed between viaLinks and the watches is
	// no event in them: look again until the two agree (each round that
	// does not finds a directory deeper, so few rounds do).
	for range 16 {
		errs = errs[:0]
		for _, d := range slices.Sorted(maps.Keys(w.extra)) {
			had := w.watched[d] && !w.stale(d)
			if err := w.add(d); err != nil {
				errs = append(errs, fmt.Errorf("watch: directory of %s: %w",
					filepath.Join(d, slices.Sorted(maps.Keys(w.extra[d].files))[0]), err))
			} else if !had {
				// Re-pointed, or there at last: its files are others.
				for f := range w.extra[d].files {
					out = append(out, filepath.Join(d, f))
				}
			}
		}
		// The config directory whose watch handle dropped (it was
		// removed or replaced) is watched again as soon as it is
		// there; until then viaLinks names it in its parent, whose
		// event for it leads here again.
		if !w.watched[w.dir] && isDir(w.dir) {
			out = append(out, w.retree()...)
		}
		// After the directories they lead to: an inode watched through
		// more than one path has its events named by the path watched
		// first (a CA named through ca -> .). A directory holding a
		// link that cannot be watched is left to the rescan.
		for d := range w.via {
			w.stale(d)
			_ = w.add(d)
		}
		w.indexTargets()
		via := viaLinks(dirs)
		if reflect.DeepEqual(via, w.via) && w.settled() {
			break
		}
		w.via = via
	}
	w.unwatchUnneeded()
	slices.Sort(out)
	return out, errors.Join(errs...)
}

// unwatchUnneeded drops the watches no tree directory, extra file, link
// or link target needs any more.
func (w *Watcher) unwatchUnneeded() {
	for d := range w.watched {
		w.release(d)
	}
}

// settled reports whether the config directory and the extra
// directories that are there are watched, and the directories holding
// links on the way to them: one made after retarget looked is watched
// after its creation, which no watch then saw.
func (w *Watcher) settled() bool {
	if !w.watched[w.dir] && isDir(w.dir) {
		return false
	}
	for d := range w.extra {
		if !w.watched[d] && isDir(d) {
			return false
		}
	}
	for d := range w.via {
		if !w.watched[d] && isDir(d) {
			return false
		}
	}
	return true
}

// stale drops the watch of d, outside the config tree, when d no longer
// names the directory it is on, and says so.
func (w *Watcher) stale(d string) bool {
	if !w.watched[d] || w.tree[d] || !w.moved(d) {
		return false
	}
	w.forgetWatch(d)
	if w.linkVia[d] != nil || w.via[d] != nil {
		if w.lost == nil {
			w.lost = make(map[string]bool)
		}
		w.lost[d] = true
	}
	return true
}

// relook follows again the tree links, and watches again the extra and
// config directories, that lead through a directory whose watch stale
// replaced, and returns the paths that may have changed with them: the
// removal or making of what they lead to, told by an event queued on
// the old watch, was lost with it (two links into /srv/rel, made again
// with it: the event of the first one has the watch of /srv/rel
// replaced before the second one's is read).
func (w *Watcher) relook() []string {
	var out []string
	for range maxFollowRounds {
		if len(w.lost) == 0 {
			break
		}
		lost := w.lost
		w.lost = nil
		again := false
		for _, d := range slices.Sorted(maps.Keys(lost)) {
			var links []string
			for _, ps := range w.linkVia[d] {
				links = append(links, ps...)
			}
			slices.Sort(links)
			for _, p := range slices.Compact(links) {
				out = append(out, w.refollow(p)...)
			}
			for _, ds := range w.via[d] {
				for _, e := range ds {
					switch {
					case e == w.dir:
						w.drop(w.dir)
						out = append(out, w.dir)
					case !w.tree[e] && w.watched[e]:
						w.forgetWatch(e)
					}
					again = true
				}
			}
		}
		if again {
			files, _ := w.retarget()
			out = append(out, files...)
		}
	}
	return out
}

// forgetWatch removes the watch of d, for its callers to add it again
// where d leads now.
func (w *Watcher) forgetWatch(d string) {
	w.unwatch(d)
	delete(w.watched, d)
	delete(w.ids, d)
	delete(w.births, d)
}

// moved reports whether the watched path d names another directory than
// the one its watch is on, or none.
func (w *Watcher) moved(d string) bool {
	fi, err := os.Stat(d)
	return err != nil || !os.SameFile(fi, w.ids[d]) || w.births[d] != 0 && birth(d) != w.births[d]
}

// retree watches the config tree again where the config directory's path
// leads now, once handle dropped its watch (it was removed or replaced,
// or a change on the way there: -c names a release directory's link),
// and returns the directory and its config files.
func (w *Watcher) retree() []string {
	w.drop(w.dir)
	if err := w.add(w.dir); err != nil {
		w.log.Warn("cannot watch the config directory; watching it again at the next rescan", "dir", w.dir, "err", err)
		return []string{w.dir}
	}
	return append(w.addTree(w.dir), w.dir)
}

// resync brings the watches in line with the disk after events may have
// been lost: directories that appeared are added, vanished ones dropped,
// unwatched extra directories tried again, and so are those whose watch
// the kernel dropped or whose path leads to another directory now (a
// file system unmounted, or mounted over one).
func (w *Watcher) resync() {
	w.forgetLost()
	for d := range w.tree {
		if !isDir(d) || (w.watched[d] && w.moved(d)) {
			if l := w.links[d]; l != nil && l.dir {
				// Followed on, for its target's return.
				w.refollow(d)
				continue
			}
			w.drop(d)
		}
	}
	if w.watched[w.dir] && w.moved(w.dir) {
		w.drop(w.dir)
	}
	w.addTree(w.dir)
	// What changed behind a re-pointed link is the rescan's to report.
	_, _ = w.retarget()
	w.relook()
}

// forgetLost forgets the watches inotify no longer has, for the callers of
// add to watch those directories again. The kernel drops the watches of a
// file system being unmounted (an NFS export autofs lets go when idle)
// with no event fsnotify passes on: it takes IN_UNMOUNT and IN_IGNORED
// for itself.
func (w *Watcher) forgetLost() {
	if w.fsw == nil {
		return
	}
	live := make(map[string]bool, len(w.watched))
	for _, d := range w.fsw.WatchList() {
		live[d] = true
	}
	for d := range w.watched {
		if !live[d] {
			delete(w.watched, d)
			delete(w.ids, d)
			delete(w.births, d)
		}
	}
}

// everything is what an Event holds when events were lost.
func (w *Watcher) everything() []string {
	out := []string{w.dir}
	for d, ed := range w.extra {
		for f := range ed.files {
			out = append(out, filepath.Join(d, f))
		}
	}
	return out
}

// rescanFound is what a rescan found: the files whose content changed
// since the reference, and its scan, the next reference once the loop
// takes it (accept).
type rescanFound struct {
	paths []string
	cur   scan
	seq   uint64
}

// rescanLoop hashes every relevant file each interval and hands the loop
// the files whose content changed since the previous scan or burst.
func (w *Watcher) rescanLoop(ctx context.Context) error {
	t := time.NewTicker(w.rescan)
	defer t.Stop()
	var sent rescanFound
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		extra := w.extras()
		w.scanMu.Lock()
		ref := w.last
		if sent.seq > w.lastSeq {
			ref = sent.cur // handed over, not accepted yet
		}
		w.scanSeq++
		found := rescanFound{cur: takeScan(w.dir, extra), seq: w.scanSeq}
		found.paths = changed(ref, found.cur)
		w.scanMu.Unlock()
		select {
		case w.rescans <- found:
			sent = found
		case <-ctx.Done():
			return nil
		}
	}
}

// accept makes the scan of found the reference, unless the loop took a
// newer one (rebase) since it was taken: that one compared with the
// reference before found's, and so counted found's changes already. The
// reference moves only once the loop has the changes: a burst due while
// found is on its way compares with the scan before it, and finds the
// files found names still moving (a rescan that made found's scan the
// reference at once had a burst fire meanwhile without them).
func (w *Watcher) accept(found rescanFound) bool {
	w.scanMu.Lock()
	defer w.scanMu.Unlock()
	if found.seq < w.lastSeq {
		return false
	}
	w.last, w.lastSeq = found.cur, found.seq
	return true
}

// rebase makes the current content the rescan's reference, and returns
// the files whose content changed since the previous one.
func (w *Watcher) rebase() []string {
	extra := w.extras()
	w.scanMu.Lock()
	defer w.scanMu.Unlock()
	w.scanSeq++
	cur := takeScan(w.dir, extra)
	moving := changed(w.last, cur)
	w.last, w.lastSeq = cur, w.scanSeq
	return moving
}

func (w *Watcher) extras() []string {
	w.extraMu.Lock()
	defer w.extraMu.Unlock()
	return w.extraList
}
