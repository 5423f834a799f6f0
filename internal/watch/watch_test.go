package watch

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Timings: short debounces keep the suite fast; every wait for something
// that must happen is bounded generously, because the machine is shared.
const (
	debounce = 30 * time.Millisecond
	waitFor  = 5 * time.Second
	// quietFor is how long "nothing happens" is watched for: many
	// debounce periods.
	quietFor = 300 * time.Millisecond
)

func start(t *testing.T, opts Options) *Watcher {
	t.Helper()
	if opts.Debounce == 0 {
		opts.Debounce = debounce
	}
	w, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, w.Close()) })
	return w
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// replace changes path's content in one step (temporary dot-file renamed
// over it), so that no scan can see it half written.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, tmp, content)
	require.NoError(t, os.Rename(tmp, path))
}

// settle consumes what is left of earlier changes (a plain write may be
// reported in two bursts on a slow machine) until quietFor passes quietly.
func settle(w *Watcher) {
	for {
		select {
		case <-w.Events():
		case <-time.After(quietFor):
			return
		}
	}
}

// next returns the next event, failing the test when none comes in time.
func next(t *testing.T, w *Watcher) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		require.True(t, ok, "events closed")
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event")
		return Event{}
	}
}

// await collects events until every one of paths has been reported (a
// change may be split over more than one burst on a slow machine) and
// returns all paths seen.
func await(t *testing.T, w *Watcher, paths ...string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(waitFor)
	for {
		missing := slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return slices.Contains(seen, p) })
		if len(missing) == 0 {
			slices.Sort(seen)
			return slices.Compact(seen)
		}
		select {
		case ev := <-w.Events():
			seen = append(seen, ev.Paths...)
		case <-deadline:
			t.Fatalf("not reported: %v (seen %v)", missing, seen)
		}
	}
}

func sorted(paths ...string) []string {
	return slices.Sorted(slices.Values(paths))
}

// quiet fails when an event arrives within quietFor.
func quiet(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case ev := <-w.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(quietFor):
	}
}

func TestNewFile(t *testing.T) {
	dir := t.TempDir()
	w := start(t, Options{Dir: dir})
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "[server]\n")
	assert.Equal(t, []string{f}, await(t, w, f))
}

func TestInPlaceWrite(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	w := start(t, Options{Dir: dir})

	fh, err := os.OpenFile(f, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = fh.WriteString("a = 2\n")
	require.NoError(t, err)
	require.NoError(t, fh.Close())

	ev := next(t, w)
	assert.Equal(t, []string{f}, ev.Paths)
	assert.False(t, ev.Rescan)
}

func TestRenameOver(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "uat.toml")
	write(t, f, "a = 1\n")
	w := start(t, Options{Dir: dir})

	// An editor's atomic save, the way vim does it: probe file, backup,
	// swap file, new content under a temporary name renamed over.
	probe := filepath.Join(dir, "4913")
	write(t, probe, "")
	require.NoError(t, os.Remove(probe))
	require.NoError(t, os.Rename(f, f+"~"))
	tmp := filepath.Join(dir, ".uat.toml.tmp")
	write(t, tmp, "a = 2\n")
	require.NoError(t, os.Rename(tmp, f))
	require.NoError(t, os.Remove(f+"~"))

	assert.Equal(t, []string{f}, await(t, w, f), "only the config file is reported")
}

func TestCopyOver(t *testing.T) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		t.Skip("no cp:", err)
	}
	dir, src := t.TempDir(), t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	write(t, filepath.Join(src, "prod.toml"), "a = 2\n")
	w := start(t, Options{Dir: dir})

	out, err := exec.Command(cp, filepath.Join(src, "prod.toml"), f).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, []string{f}, await(t, w, f))
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	w := start(t, Options{Dir: dir})

	require.NoError(t, os.Remove(f))
	assert.Equal(t, []string{f}, await(t, w, f))
}

func TestNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	w := start(t, Options{Dir: dir})

	// Created in a hurry: the files may exist before the watch on their
	// directory does, and must be reported all the same.
	deep := filepath.Join(dir, "eu", "prod", "proxies.toml")
	write(t, deep, "a = 1\n")
	await(t, w, deep)

	// The new directories are watched from now on.
	shallow := filepath.Join(dir, "eu", "uat.toml")
	write(t, shallow, "a = 1\n")
	await(t, w, shallow)
	write(t, deep, "a = 2\n")
	await(t, w, deep)
}

func TestRemovedAndRecreatedDirectory(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "uat")
	write(t, filepath.Join(sub, "a.toml"), "a = 1\n")
	w := start(t, Options{Dir: dir})

	require.NoError(t, os.RemoveAll(sub))
	await(t, w, sub)

	b := filepath.Join(sub, "b.toml")
	write(t, b, "b = 1\n")
	await(t, w, b)

	write(t, b, "b = 2\n")
	await(t, w, b)
	assert.Contains(t, w.fsw.WatchList(), sub)
}

func TestMovedAwayDirectory(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	sub := filepath.Join(dir, "uat")
	write(t, filepath.Join(sub, "a.toml"), "a = 1\n")
	w := start(t, Options{Dir: dir})

	moved := filepath.Join(elsewhere, "uat")
	require.NoError(t, os.Rename(sub, moved))
	await(t, w, sub)
	settle(w)

	// Out of the tree, its files no longer matter.
	write(t, filepath.Join(moved, "a.toml"), "a = 2\n")
	quiet(t, w)
}

// configMap builds the layout of a Kubernetes ConfigMap or Secret volume
// in dir: files in a timestamped dot-directory, "..data" pointing at it,
// and one top-level link per key through "..data".
func configMap(t *testing.T, dir, version string, files map[string]string) {
	t.Helper()
	data := filepath.Join(dir, "..2026_01_01_00_00_00."+version)
	for name, content := range files {
		write(t, filepath.Join(data, name), content)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	require.NoError(t, os.Symlink(filepath.Base(data), tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			require.NoError(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
}

func TestConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	configMap(t, dir, "1", map[string]string{"prod.toml": "a = 1\n"})
	old, err := filepath.EvalSymlinks(filepath.Join(dir, "..data"))
	require.NoError(t, err)
	w := start(t, Options{Dir: dir})

	configMap(t, dir, "2", map[string]string{"prod.toml": "a = 2\n"})
	require.NoError(t, os.RemoveAll(old))

	seen := await(t, w, filepath.Join(dir, "..data"))
	assert.NotContains(t, seen, old, "the timestamped directories are not watched")
	got, err := os.ReadFile(filepath.Join(dir, "prod.toml"))
	require.NoError(t, err)
	assert.Equal(t, "a = 2\n", string(got))
}

func TestExtraFileOutsideDir(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	crt := filepath.Join(certs, "test.acme.com.pem")
	write(t, crt, "cert 1")
	other := filepath.Join(certs, "other.pem")
	write(t, other, "x")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	// Another file in the same directory is none of our business.
	write(t, other, "y")
	quiet(t, w)

	tmp := filepath.Join(certs, "test.acme.com.pem.new")
	write(t, tmp, "cert 2")
	require.NoError(t, os.Rename(tmp, crt))
	assert.Equal(t, []string{crt}, await(t, w, crt))
	assert.NotContains(t, w.fsw.WatchList(), crt, "directories are watched, never files")
}

func TestExtraSecretSwap(t *testing.T) {
	dir, secret := t.TempDir(), t.TempDir()
	configMap(t, secret, "1", map[string]string{"tls.crt": "cert 1", "tls.key": "key 1"})
	crt, key := filepath.Join(secret, "tls.crt"), filepath.Join(secret, "tls.key")
	w := start(t, Options{Dir: dir, Extra: []string{crt, key}})

	configMap(t, secret, "2", map[string]string{"tls.crt": "cert 2", "tls.key": "key 2"})
	assert.Equal(t, sorted(crt, key), await(t, w, crt, key))
}

func TestSetExtra(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	crt := filepath.Join(certs, "a.pem")
	write(t, crt, "1")
	w := start(t, Options{Dir: dir})

	write(t, crt, "2")
	quiet(t, w)

	require.NoError(t, w.SetExtra([]string{crt}))
	write(t, crt, "3")
	assert.Equal(t, []string{crt}, await(t, w, crt))
	settle(w)

	require.NoError(t, w.SetExtra(nil))
	assert.NotContains(t, w.fsw.WatchList(), certs, "unneeded directory watches are dropped")
	write(t, crt, "4")
	quiet(t, w)

	err := w.SetExtra([]string{filepath.Join(certs, "no-such-dir", "b.pem")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "b.pem")

	// The config tree keeps its watch even when it also held extra files.
	inTree := filepath.Join(dir, "c.pem")
	require.NoError(t, w.SetExtra([]string{inTree}))
	require.NoError(t, w.SetExtra(nil))
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	await(t, w, f)
}

func TestDebounceCoalesces(t *testing.T) {
	dir := t.TempDir()
	const debounce = 50 * time.Millisecond
	w := start(t, Options{Dir: dir, Debounce: debounce, MaxWait: time.Minute})
	f := filepath.Join(dir, "prod.toml")

	var maxGap time.Duration
	last := time.Now()
	for i := range 20 {
		write(t, f, string(rune('a'+i)))
		now := time.Now()
		maxGap = max(maxGap, now.Sub(last))
		last = now
		time.Sleep(5 * time.Millisecond)
	}
	ev := next(t, w)
	assert.Equal(t, []string{f}, ev.Paths)
	if maxGap > debounce/2 {
		// The machine stalled the writer for most of a quiet period:
		// a second event would be right, not a bug.
		t.Logf("writer stalled %v; not checking for a single event", maxGap)
		return
	}
	quiet(t, w)
}

func TestMaxWaitDuringEndlessBurst(t *testing.T) {
	dir := t.TempDir()
	w := start(t, Options{Dir: dir, Debounce: 200 * time.Millisecond, MaxWait: 300 * time.Millisecond})
	f := filepath.Join(dir, "prod.toml")

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitFor)
	for i := 0; ; i++ {
		select {
		case ev := <-w.Events():
			assert.Equal(t, []string{f}, ev.Paths)
			return // fired while the writes never paused
		case <-deadline:
			t.Fatal("no event during an endless burst")
		case <-tick.C:
			write(t, f, string(rune('a'+i%26)))
		}
	}
}

func TestRescan(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	f := filepath.Join(dir, "sub", "prod.toml")
	write(t, f, "a = 1\n")
	crt := filepath.Join(certs, "a.pem")
	write(t, crt, "1")
	w := start(t, Options{Dir: dir, Extra: []string{crt}, Rescan: 20 * time.Millisecond})
	w.ignoreFS.Store(true) // as on a mount where inotify sees nothing

	// Same content, new times: not a change.
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(f, later, later))
	replace(t, crt, "1")
	quiet(t, w)

	replace(t, f, "a = 2\n")
	ev := next(t, w)
	assert.Equal(t, Event{Paths: []string{f}, Rescan: true}, ev)

	g := filepath.Join(dir, "uat.toml")
	replace(t, g, "b = 1\n")
	replace(t, crt, "2")
	assert.Equal(t, sorted(crt, g), await(t, w, crt, g))

	require.NoError(t, os.Remove(g))
	assert.Equal(t, []string{g}, await(t, w, g))

	// Ignored names stay ignored by the rescan too.
	write(t, filepath.Join(dir, ".uat.toml.swp"), "x")
	write(t, filepath.Join(dir, "notes.md"), "x")
	quiet(t, w)
}

func TestNoiseDoesNotFire(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".git"), 0o755))
	w := start(t, Options{Dir: dir})

	for _, name := range []string{".prod.toml.swp", ".prod.toml.swx", "4913", "prod.toml~", ".#prod.toml", "README.md", "prod.toml.bak", ".git/index.toml", ".hidden/x.toml"} {
		write(t, filepath.Join(dir, name), "x")
	}
	require.NoError(t, os.Remove(filepath.Join(dir, "4913")))
	// A chmod or touch of prod.toml is reported (TestModeChangeIsReported).
	require.NoError(t, os.Chmod(filepath.Join(dir, "README.md"), 0o600))
	quiet(t, w)

	write(t, f, "a = 2\n")
	assert.Equal(t, []string{f}, await(t, w, f), "the watcher is alive and the noise stayed out")
}

func TestOverflowReportsEverything(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	crt := filepath.Join(certs, "a.pem")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	// The kernel queue cannot be overflowed on purpose from a test
	// without root; report it the way fsnotify does.
	w.fsw.Errors <- fsnotify.ErrEventOverflow
	ev := next(t, w)
	assert.Equal(t, Event{Paths: sorted(crt, dir), Rescan: true}, ev)
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{Dir: filepath.Join(t.TempDir(), "absent")})
	assert.Error(t, err)

	f := filepath.Join(t.TempDir(), "file")
	write(t, f, "")
	_, err = New(Options{Dir: f})
	assert.ErrorContains(t, err, "not a directory")
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	w, err := New(Options{Dir: dir, Debounce: debounce, Rescan: 10 * time.Millisecond})
	require.NoError(t, err)
	write(t, filepath.Join(dir, "a.toml"), "x") // leave a burst in flight

	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "Close twice is fine")
	for range w.Events() {
		// drain: the channel must be closed
	}
	assert.ErrorIs(t, w.SetExtra(nil), ErrClosed)
	// Polled by hand: Eventually runs its condition on goroutines of its own.
	deadline := time.Now().Add(waitFor)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left behind:\n%s", n-before, buf[:runtime.Stack(buf, true)])
	}
}

// TestRescanWaitsForTheQuietPeriod: where inotify sees nothing (NFS, a
// bind mount, no inotify at all), the rescan is what finds a deploy. One
// still copying files when the rescan comes (rsync of a checkout, file
// after file) is reported once the files have been quiet for the
// debounce, as inotify's events would have it, with every file: not a
// debounce after the rescan with part of them written, which applied a
// state never on disk as a whole (a proxy moved from one file to
// another: in neither) and served it until the next rescan.
func TestRescanWaitsForTheQuietPeriod(t *testing.T) {
	dir := t.TempDir()
	const (
		debounce = 100 * time.Millisecond
		files    = 60
	)
	w := start(t, Options{Dir: dir, Debounce: debounce, MaxWait: time.Minute, Rescan: 300 * time.Millisecond})
	w.ignoreFS.Store(true) // as on a mount where inotify sees nothing

	// The deploy: a file every 10 ms, each written aside and renamed.
	done := make(chan time.Duration, 1) // the longest pause between two files
	go func() {
		var maxGap time.Duration
		last := time.Now()
		for i := range files {
			f := filepath.Join(dir, fmt.Sprintf("f%02d.toml", i))
			tmp := filepath.Join(dir, "."+filepath.Base(f)+".tmp")
			if err := os.WriteFile(tmp, []byte("a = 1\n"), 0o644); err != nil {
				t.Error(err)
				break
			}
			if err := os.Rename(tmp, f); err != nil {
				t.Error(err)
				break
			}
			now := time.Now()
			maxGap = max(maxGap, now.Sub(last))
			last = now
			time.Sleep(10 * time.Millisecond)
		}
		done <- maxGap
	}()

	select {
	case ev := <-w.Events():
		maxGap := <-done
		if maxGap > debounce/2 {
			// The machine stalled the writer for most of a quiet
			// period: an event then would be right, not a bug.
			t.Logf("writer stalled %v; not checking", maxGap)
			return
		}
		t.Fatalf("reported while the files were still being written, with %d of %d", len(ev.Paths), files)
	case maxGap := <-done:
		ev := next(t, w)
		if maxGap > debounce/2 {
			t.Logf("writer stalled %v; not checking", maxGap)
			return
		}
		assert.True(t, ev.Rescan)
		assert.Len(t, ev.Paths, files, "every file of the deploy in one event")
	}
}

func TestRescanDoesNotRepeatEvents(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "prod.toml")
	write(t, f, "a = 1\n")
	// Rescans far apart compared with the debounce: a burst usually fires
	// between two of them, and the next one must not report it again.
	// (A rescan that happens to fall inside the burst joins it; fine.)
	const rescan = 200 * time.Millisecond
	w := start(t, Options{Dir: dir, Rescan: rescan})

	for i := range 2 {
		// One atomic change, so one burst: any rescan event after it
		// is a repeat. (A rescan that falls inside the burst joins it.)
		replace(t, f, fmt.Sprintf("a = %d\n", i+2))
		await(t, w, f)
		timeout := time.After(3 * rescan)
	drain:
		for {
			select {
			case ev := <-w.Events():
				require.False(t, ev.Rescan, "rescan repeated a reported change: %+v", ev)
			case <-timeout:
				break drain
			}
		}
	}
}

// TestSwappedDirectoryLinkIsWatched: a directory of the tree that is a
// symlink, re-pointed at another directory the way releases are deployed
// (a new link renamed over the old one, as ln -sfn does), is watched
// where it points now: edits made there afterwards are reported, and the
// directory it pointed at before no longer matters.
func TestSwappedDirectoryLinkIsWatched(t *testing.T) {
	dir, rel1, rel2 := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, filepath.Join(rel1, "a.toml"), "a = 1\n")
	write(t, filepath.Join(rel2, "a.toml"), "a = 2\n")
	link := filepath.Join(dir, "prod")
	require.NoError(t, os.Symlink(rel1, link))
	w := start(t, Options{Dir: dir})

	tmp := filepath.Join(dir, ".prod.tmp")
	require.NoError(t, os.Symlink(rel2, tmp))
	require.NoError(t, os.Rename(tmp, link))
	f := filepath.Join(link, "a.toml")
	await(t, w, f)
	settle(w)

	write(t, filepath.Join(rel2, "a.toml"), "a = 3\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(rel1, "a.toml"), "a = 4\n")
	quiet(t, w)
}

// lnsfn re-points the symlink link at target in one step, as ln -sfn and
// release deployments do: a new link renamed over the old one.
func lnsfn(t *testing.T, target, link string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".tmp")
	require.NoError(t, os.Symlink(target, tmp))
	require.NoError(t, os.Rename(tmp, link))
}

// TestExtraDirectoryLinkSwap: the certificate directory is a symlink
// (certs -> certs-v1) that is re-pointed with ln -sfn. The swap is reported
// at once, not at the next rescan, and the files are watched where the link
// points now: an edit there afterwards is reported, one in the directory it
// pointed at before is not.
func TestExtraDirectoryLinkSwap(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	v1, v2 := filepath.Join(base, "certs-v1"), filepath.Join(base, "certs-v2")
	write(t, filepath.Join(v1, "site.pem"), "cert 1")
	write(t, filepath.Join(v2, "site.pem"), "cert 2")
	link := filepath.Join(base, "certs")
	require.NoError(t, os.Symlink("certs-v1", link))
	crt := filepath.Join(link, "site.pem")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	lnsfn(t, "certs-v2", link)
	assert.Contains(t, await(t, w, crt), crt)
	settle(w)

	write(t, filepath.Join(v2, "site.pem"), "cert 3")
	await(t, w, crt)
	settle(w)
	write(t, filepath.Join(v1, "site.pem"), "cert 4")
	quiet(t, w)
}

// TestExtraAncestorLinkSwap: a directory further up is the symlink
// (/etc/edged -> /opt/edged-v1, certificates in /etc/edged/certs).
func TestExtraAncestorLinkSwap(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	v1, v2 := filepath.Join(base, "edged-v1"), filepath.Join(base, "edged-v2")
	write(t, filepath.Join(v1, "certs", "site.pem"), "cert 1")
	write(t, filepath.Join(v2, "certs", "site.pem"), "cert 2")
	link := filepath.Join(base, "edged")
	require.NoError(t, os.Symlink(v1, link))
	crt := filepath.Join(link, "certs", "site.pem")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	lnsfn(t, v2, link)
	assert.Contains(t, await(t, w, crt), crt)
	settle(w)

	write(t, filepath.Join(v2, "certs", "site.pem"), "cert 3")
	await(t, w, crt)
	settle(w)
	write(t, filepath.Join(v1, "certs", "site.pem"), "cert 4")
	quiet(t, w)
}

// TestExtraSecretItemInSubdirectory: a Kubernetes Secret whose items put
// the files in a subdirectory (items: path: certs/tls.crt) is mounted as
// certs -> ..data/certs, so the certificate's directory is itself a link
// through "..data". Every swap is reported, the second one too, after
// the kubelet removed the directory the first one replaced.
func TestExtraSecretItemInSubdirectory(t *testing.T) {
	dir, secret := t.TempDir(), t.TempDir()
	swap := func(version string) {
		data := filepath.Join(secret, "..2026_01_01_00_00_00."+version)
		write(t, filepath.Join(data, "certs", "tls.crt"), "cert "+version)
		old, _ := filepath.EvalSymlinks(filepath.Join(secret, "..data"))
		lnsfn(t, filepath.Base(data), filepath.Join(secret, "..data"))
		if old != "" {
			require.NoError(t, os.RemoveAll(old))
		}
	}
	swap("1")
	require.NoError(t, os.Symlink(filepath.Join("..data", "certs"), filepath.Join(secret, "certs")))
	crt := filepath.Join(secret, "certs", "tls.crt")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	swap("2")
	assert.Contains(t, await(t, w, crt), crt)
	settle(w)
	swap("3")
	assert.Contains(t, await(t, w, crt), crt)
}

// TestExtraLinkInTree: the certificate directory is a symlink inside the
// config directory; re-pointing it reports the certificate, which is no
// config file.
func TestExtraLinkInTree(t *testing.T) {
	dir, base := t.TempDir(), t.TempDir()
	v1, v2 := filepath.Join(base, "v1"), filepath.Join(base, "v2")
	write(t, filepath.Join(v1, "site.pem"), "cert 1")
	write(t, filepath.Join(v2, "site.pem"), "cert 2")
	link := filepath.Join(dir, "certs")
	require.NoError(t, os.Symlink(v1, link))
	crt := filepath.Join(link, "site.pem")
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	lnsfn(t, v2, link)
	assert.Contains(t, await(t, w, crt), crt)
	settle(w)
	write(t, filepath.Join(v2, "site.pem"), "cert 3")
	await(t, w, crt)
}

// TestConfigDirLinkSwap: the config directory itself is a symlink to a
// release (-c /etc/edged/current, current -> releases/v1) re-pointed with
// ln -sfn. The swap is reported at once, and the tree is watched where the
// link points now.
func TestConfigDirLinkSwap(t *testing.T) {
	base := t.TempDir()
	v1, v2 := filepath.Join(base, "releases", "v1"), filepath.Join(base, "releases", "v2")
	write(t, filepath.Join(v1, "prod", "a.toml"), "a = 1\n")
	write(t, filepath.Join(v2, "prod", "a.toml"), "a = 2\n")
	dir := filepath.Join(base, "current")
	require.NoError(t, os.Symlink(filepath.Join("releases", "v1"), dir))
	w := start(t, Options{Dir: dir})

	lnsfn(t, filepath.Join("releases", "v2"), dir)
	f := filepath.Join(dir, "prod", "a.toml")
	await(t, w, dir)
	settle(w)

	write(t, filepath.Join(v2, "prod", "a.toml"), "a = 3\n")
	await(t, w, f)
	settle(w)
	write(t, filepath.Join(v1, "prod", "a.toml"), "a = 4\n")
	quiet(t, w)
}

// TestExtraFileInMissingDirectory: a virtual host names a certificate in
// a directory that does not exist yet (the config went first, a failed
// reload asked for the file); creating the directories and the file is
// reported at once, not at the next rescan.
func TestExtraFileInMissingDirectory(t *testing.T) {
	dir, certs := t.TempDir(), t.TempDir()
	crt := filepath.Join(certs, "new", "site", "site.pem")
	w, err := New(Options{Dir: dir, Extra: []string{crt}, Debounce: debounce})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, w.Close()) })
	err = w.SetExtra([]string{crt})
	require.Error(t, err, "the directory cannot be watched yet")

	write(t, crt, "cert 1")
	assert.Contains(t, await(t, w, crt), crt)
	settle(w)
	write(t, crt, "cert 2")
	await(t, w, crt)
}

// TestExtraFileLinkTargetWrittenInPlace: the certificate a virtual host
// names is a symlink into another directory (site.pem ->
// /srv/pki/current.pem), and cp writes the renewed one over the target.
// The write is reported at once; so is one to a new target once the link
// is re-pointed, and the old target no longer matters.
func TestExtraFileLinkTargetWrittenInPlace(t *testing.T) {
	dir, certs, pki := t.TempDir(), t.TempDir(), t.TempDir()
	t1, t2 := filepath.Join(pki, "current.pem"), filepath.Join(pki, "v2", "next.pem")
	write(t, t1, "cert 1")
	write(t, t2, "cert 2")
	crt := filepath.Join(certs, "site.pem")
	require.NoError(t, os.Symlink(t1, crt))
	w := start(t, Options{Dir: dir, Extra: []string{crt}})

	write(t, t1, "cert 3")
	assert.Equal(t, []string{crt}, await(t, w, crt))
	settle(w)

	lnsfn(t, t2, crt)
	await(t, w, crt)
	settle(w)
	write(t, t2, "cert 4")
	await(t, w, crt)
	settle(w)
	write(t, t1, "cert 5")
	quiet(t, w)
}

// TestConfigFileLinkTargetEdited: a config file is a symlink into another
// directory, as nginx's sites-enabled/ links into sites-available/. Saving
// the target there, by rename or in place, is reported at once; so is an
// edit behind a link made after the start.
func TestConfigFileLinkTargetEdited(t *testing.T) {
	dir, avail := t.TempDir(), t.TempDir()
	target := filepath.Join(avail, "prod.toml")
	write(t, target, "a = 1\n")
	f := filepath.Join(dir, "prod.toml")
	require.NoError(t, os.Symlink(target, f))
	w := start(t, Options{Dir: dir})

	replace(t, target, "a = 2\n")
	assert.Equal(t, []string{f}, await(t, w, f))
	settle(w)
	write(t, target, "a = 3\n")
	await(t, w, f)
	settle(w)

	other := filepath.Join(avail, "sub", "uat.toml")
	write(t, other, "b = 1\n")
	g := filepath.Join(dir, "uat.toml")
	require.NoError(t, os.Symlink(other, g))
	await(t, w, g)
	settle(w)
	write(t, other, "b = 2\n")
	await(t, w, g)
	settle(w)

	require.NoError(t, os.Remove(g))
	await(t, w, g)
	settle(w)
	write(t, other, "b = 3\n")
	quiet(t, w)
}

// TestExtraPathThroughALinkToItsOwnDirectory: a CA file named through a
// link to its own directory again and again (ca -> ., and tls_ca_file =
// "/srv/pki/ca/ca/.../ca.pem", which the kernel resolves while the path
// follows at most 40 links). Every link on the way leads to a path with
// the others on it: followed anew each time they were 2^n walks, and 36
// of them kept New (and SetExtra, which a reload calls) busy for days,
// with every reload behind it. Each path on the way is walked once.
func TestExtraPathThroughALinkToItsOwnDirectory(t *testing.T) {
	dir, pki := t.TempDir(), t.TempDir()
	require.NoError(t, os.Symlink(".", filepath.Join(pki, "ca")))
	write(t, filepath.Join(pki, "ca.pem"), "ca 1")
	crt := filepath.Join(pki, strings.Repeat("ca/", 36)+"ca.pem")
	_, err := os.Stat(crt)
	require.NoError(t, err, "the kernel resolves it")

	started := make(chan *Watcher, 1)
	go func() {
		w, err := New(Options{Dir: dir, Extra: []string{crt}, Debounce: debounce})
		assert.NoError(t, err)
		started <- w
	}()
	var w *Watcher
	select {
	case w = <-started:
		t.Cleanup(func() { assert.NoError(t, w.Close()) })
	case <-time.After(60 * time.Second):
		t.Fatal("New still follows the links after 60 s")
	}
	write(t, filepath.Join(pki, "ca.pem"), "ca 2")
	assert.Contains(t, await(t, w, crt), crt)
}
