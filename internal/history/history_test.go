package history

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

func TestSaveKeepsTheNewestAndLists(t *testing.T) {
	st, err := Open(t.TempDir(), 3)
	require.NoError(t, err)
	for g := uint64(1); g <= 5; g++ {
		require.NoError(t, st.Save(Record{Generation: g, Time: time.Now(), Trigger: "test", Files: []File{{Path: "a.toml", SHA256: strings.Repeat("ab", 32)}}}))
	}
	recs, bad, err := st.List()
	require.Empty(t, bad)
	require.NoError(t, err)
	require.Len(t, recs, 3)
	assert.Equal(t, uint64(3), recs[0].Generation)
	last, err := st.Last()
	require.NoError(t, err)
	assert.Equal(t, uint64(5), last)
	_, err = st.Get(1)
	assert.ErrorContains(t, err, "generation 1 is not in the history (it holds 3 to 5)")
	// The CLI opens the history with the default keep, not the server's
	// history_keep: what it says is there is what is there.
	cli, err := Open(filepath.Dir(st.dir), 50)
	require.NoError(t, err)
	_, err = cli.Get(2)
	assert.EqualError(t, err, "generation 2 is not in the history (it holds 3 to 5)")
	assert.ErrorContains(t, st.Save(Record{Generation: 6}), "no files", "a record that could not restore anything is refused")
}

func TestRestoreWritesFilesAndMovesNewerOnesAside(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	a := write("a.toml", "a1")
	sub := write("sub/b.toml", "b1")
	files, err := FilesOf(dir, []config.File{loaded(t, a), loaded(t, sub)})
	require.NoError(t, err)
	rec := &Record{Generation: 4, Files: files}
	assert.Equal(t, "sub/b.toml", files[1].Path)

	write("a.toml", "a2")
	c := write("c.toml", "new since")
	done, err := Restore(rec, dir, []string{a, c, sub}, nil)
	require.NoError(t, err)
	written, aside := done.Written, done.MovedAside
	assert.Equal(t, []string{a}, written, "only the file that differs is rewritten")
	require.Len(t, aside, 1)
	assert.Contains(t, filepath.Base(aside[0]), ".c.toml.rolled-back-")
	b, err := os.ReadFile(a)
	require.NoError(t, err)
	assert.Equal(t, "a1", string(b))
	kept, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.Equal(t, "new since", string(kept), "moved aside, not deleted")
}

func TestRestoreRefusesPathsOutsideTheDirectory(t *testing.T) {
	rec := &Record{Generation: 1, Files: []File{{Path: "../etc/passwd", Content: "x"}}}
	_, err := Restore(rec, t.TempDir(), nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "leaves the config directory")

	dir := t.TempDir()
	keep := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(keep, []byte("x"), 0o644))
	_, err = Restore(&Record{Generation: 2}, dir, []string{keep}, nil)
	assert.ErrorContains(t, err, "no files to restore")
	assert.FileExists(t, keep, "nothing was moved aside")
}

func TestDiffPerEnvironment(t *testing.T) {
	old := &config.Config{
		Environments: []*config.Environment{{Name: "test", Workers: 1}, {Name: "uat", Workers: 1}},
		Proxies: []*config.Proxy{
			{Name: "users", Environment: "test", BasePath: "/users"},
			{Name: "gone", Environment: "uat", BasePath: "/gone"},
		},
	}
	next := &config.Config{
		Environments: []*config.Environment{{Name: "test", Workers: 1, Pos: config.Pos{File: "moved.toml", Line: 9}}, {Name: "uat", Workers: 2}},
		Proxies: []*config.Proxy{
			{Name: "users", Environment: "test", BasePath: "/users/v2"},
			{Name: "orders", Environment: "uat", BasePath: "/orders"},
		},
	}
	var tr Tracker
	tr.Changes(old)
	got := tr.Changes(next)
	assert.Equal(t, []Change{
		{Env: "test", Kind: "proxy", Name: "users", Action: "changed"},
		{Env: "uat", Kind: "environment", Name: "uat", Action: "changed"},
		{Env: "uat", Kind: "proxy", Name: "gone", Action: "removed"},
		{Env: "uat", Kind: "proxy", Name: "orders", Action: "added"},
	}, got, "a block moved to another file is no change")
}

// TestTrackerHashesSharedObjectsOnce: what a Tracker lists for configs
// that share objects is what it lists for fresh copies of them; an object
// it saw before is not hashed again (what it holds is taken as unchanged).
func TestTrackerHashesSharedObjectsOnce(t *testing.T) {
	users := &config.Proxy{Name: "users", Environment: "test", BasePath: "/users"}
	pool := &config.Upstream{Name: "pool", Environment: "test", Nodes: []config.Node{{URL: "http://127.0.0.1:9001", Weight: 1}}}
	first := &config.Config{
		Environments: []*config.Environment{{Name: "test"}},
		Upstreams:    []*config.Upstream{pool},
		Proxies:      []*config.Proxy{users, {Name: "orders", Environment: "test", BasePath: "/orders"}},
	}
	second := &config.Config{
		Environments: first.Environments,
		Upstreams:    first.Upstreams,
		Proxies: []*config.Proxy{
			users,
			{Name: "orders", Environment: "test", BasePath: "/orders/v2"}, // changed
			{Name: "stock", Environment: "test", BasePath: "/stock"},      // added
		},
	}
	third := &config.Config{
		Environments: first.Environments,
		Upstreams:    first.Upstreams,
		Proxies: []*config.Proxy{
			{Name: "users", Environment: "test", BasePath: "/users"},      // rewritten as it was
			{Name: "orders", Environment: "test", BasePath: "/orders/v2"}, // the same, anew
		},
	}
	var tr Tracker
	assert.Len(t, tr.Changes(first), 5, "the first config adds everything")
	want := []Change{
		{Env: "test", Kind: "proxy", Name: "orders", Action: "changed"},
		{Env: "test", Kind: "proxy", Name: "stock", Action: "added"},
	}
	assert.Equal(t, want, tr.Changes(second))
	assert.Equal(t, []Change{{Env: "test", Kind: "proxy", Name: "stock", Action: "removed"}}, tr.Changes(third))

	var fresh Tracker
	fresh.Changes(clone(t, first))
	assert.Equal(t, want, fresh.Changes(clone(t, second)), "fresh copies give the same changes")

	// A shared object is taken as it was hashed: written to behind the
	// Tracker's back (which no one does), it shows no change.
	users2 := *users
	third.Proxies[0] = users
	tr.Changes(third)
	users.BasePath = "/people"
	assert.Empty(t, tr.Changes(third))
	third.Proxies[0] = &users2
	assert.Empty(t, tr.Changes(third), "a new object with what the old one held is no change")
}

// clone copies a config's objects, so that it shares none with c.
func clone(t *testing.T, c *config.Config) *config.Config {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	var out config.Config
	require.NoError(t, json.Unmarshal(b, &out))
	return &out
}

func TestAuditAppendsJSONLines(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, 5)
	require.NoError(t, err)
	require.NoError(t, st.Audit(map[string]string{"result": "success"}))
	require.NoError(t, st.Audit(map[string]string{"result": "failure"}))
	b, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	require.NoError(t, err)
	assert.Equal(t, "{\"result\":\"success\"}\n{\"result\":\"failure\"}\n", string(b))
}

// loaded is a config file as the loader returns it.
func loaded(t *testing.T, path string) config.File {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return config.File{Path: path, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b)), Data: b}
}

// TestContentsStoredOnceAndPruned: generations share the content of an
// unchanged file, Get gives it back, and a content no kept generation
// names is removed with the last generation naming it.
func TestContentsStoredOnceAndPruned(t *testing.T) {
	state, dir := t.TempDir(), t.TempDir()
	st, err := Open(state, 2)
	require.NoError(t, err)
	write := func(name, content string) config.File {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return loaded(t, p)
	}
	big, small1 := write("big.toml", "big, never changes"), write("small.toml", "small v1")
	save := func(gen uint64, fs ...config.File) {
		files, err := FilesOf(dir, fs)
		require.NoError(t, err)
		require.NoError(t, st.Save(Record{Generation: gen, Time: time.Now(), Files: files}))
	}
	blobs := func() int {
		ents, err := os.ReadDir(filepath.Join(state, "history", "blobs"))
		require.NoError(t, err)
		return len(ents)
	}
	save(1, big, small1)
	small2 := write("small.toml", "small v2")
	save(2, big, small2)
	assert.Equal(t, 3, blobs(), "the unchanged file is stored once")
	raw, err := os.ReadFile(filepath.Join(state, "history", "gen-0000000001.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "never changes", "records hold hashes, not contents")

	rec, err := st.Get(1)
	require.NoError(t, err)
	require.Len(t, rec.Files, 2)
	assert.Equal(t, File{Path: "big.toml", SHA256: big.SHA256, Content: "big, never changes"}, rec.Files[0])
	assert.Equal(t, "small v1", rec.Files[1].Content)

	save(3, big, write("small.toml", "small v3"))
	assert.Equal(t, 3, blobs(), "small v1 went with generation 1")
	_, err = st.Get(1)
	require.Error(t, err)
	rec, err = st.Get(2)
	require.NoError(t, err)
	assert.Equal(t, "small v2", rec.Files[1].Content)

	// A damaged content is an error, never restored.
	require.NoError(t, os.WriteFile(filepath.Join(state, "history", "blobs", small2.SHA256), []byte("tampered"), 0o640))
	_, err = st.Get(2)
	assert.ErrorContains(t, err, "damaged")

	// The next process's first Save finds what the kept records name on
	// disk: it removes a content that none names (left by a crash), and
	// prunes generation 2 with its content.
	orphan := filepath.Join(state, "history", "blobs", strings.Repeat("cd", 32))
	require.NoError(t, os.WriteFile(orphan, []byte("orphan"), 0o640))
	st, err = Open(state, 2)
	require.NoError(t, err)
	save(4, big, write("small.toml", "small v4"))
	assert.NoFileExists(t, orphan)
	assert.NoFileExists(t, filepath.Join(state, "history", "blobs", small2.SHA256))
	assert.Equal(t, 3, blobs(), "big, small v3 and small v4")
	rec, err = st.Get(3)
	require.NoError(t, err)
	assert.Equal(t, "small v3", rec.Files[1].Content)
	save(5, big, write("small.toml", "small v4"))
	save(6, big, write("small.toml", "small v4"))
	assert.Equal(t, 2, blobs(), "small v3 went with generation 3; small v4 is stored once")
	rec, err = st.Get(6)
	require.NoError(t, err)
	assert.Equal(t, "big, never changes", rec.Files[0].Content)
}

// TestRecordsWithInlineContentStillLoad: a record written before contents
// were kept apart holds them inline.
func TestRecordsWithInlineContentStillLoad(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 5)
	require.NoError(t, err)
	// Such records held each content's SHA-256 from the first one.
	server := sha256.Sum256([]byte("[server]\n"))
	sum := hex.EncodeToString(server[:])
	old := `{"generation": 7, "time": "2026-11-01T10:00:00Z", "trigger": "start",
  "files": [{"path": "a.toml", "sha256": "` + sum + `", "content": "[server]\n"}]}`
	require.NoError(t, os.WriteFile(filepath.Join(state, "history", "gen-0000000007.json"), []byte(old), 0o640))
	rec, err := st.Get(7)
	require.NoError(t, err)
	assert.Equal(t, "[server]\n", rec.Files[0].Content)

	// An empty file of such a record: its content is in the record as
	// "", which is also what a record with its content kept apart holds;
	// no blob was ever written for it, and there is nothing to read.
	const empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	old = `{"generation": 8, "time": "2026-11-01T10:00:00Z", "trigger": "start",
  "files": [{"path": "a.toml", "sha256": "` + empty + `", "content": ""}, {"path": "b.toml", "sha256": "` + sum + `", "content": "[server]\n"}]}`
	require.NoError(t, os.WriteFile(filepath.Join(state, "history", "gen-0000000008.json"), []byte(old), 0o640))
	rec, err = st.Get(8)
	require.NoError(t, err, "generation 8 can be restored and diffed")
	assert.Equal(t, "", rec.Files[0].Content)
	assert.Equal(t, "[server]\n", rec.Files[1].Content)
}

// TestDamagedRecordDoesNotStopTheHistory: a kept record that no longer
// parses (a disk error, a hand edit) is one lost generation, not the end
// of the history: the next process still records its generations, and
// the damaged record goes out with keep like any other.
func TestDamagedRecordDoesNotStopTheHistory(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 3)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("a"))
	rec := func(gen uint64) Record {
		return Record{Generation: gen, Time: time.Now(), Files: []File{{Path: "a.toml", SHA256: hex.EncodeToString(sum[:]), Content: "a"}}}
	}
	require.NoError(t, st.Save(rec(1)))
	require.NoError(t, st.Save(rec(2)))
	damaged := filepath.Join(state, "history", "gen-0000000002.json")
	require.NoError(t, os.WriteFile(damaged, []byte(`{"generation": 2, "fil`), 0o640))

	st, err = Open(state, 3)
	require.NoError(t, err)
	require.NoError(t, st.Save(rec(3)), "the next process records its generations")
	got, err := st.Get(3)
	require.NoError(t, err)
	assert.Equal(t, "a", got.Files[0].Content)
	_, err = st.Get(2)
	assert.ErrorContains(t, err, damaged, "the damaged one says where it is")
	recs, bad, err := st.List()
	require.NoError(t, err)
	require.Len(t, recs, 2, "the others are listed")
	require.Len(t, bad, 1)
	assert.ErrorContains(t, bad[0], "generation 2 cannot be read: "+damaged)

	require.NoError(t, st.Save(rec(4)))
	require.NoError(t, st.Save(rec(5)))
	assert.NoFileExists(t, damaged, "pruned in its turn")
	recs, bad, err = st.List()
	require.Empty(t, bad)
	require.NoError(t, err)
	require.Len(t, recs, 3)
	assert.Equal(t, uint64(3), recs[0].Generation)
}

// TestTempRecordsOfACrashAreRemoved: a process killed while writing a
// record leaves its temp file in history/; the next process's first Save
// removes it (as it removes the contents no record names), so crashes do
// not pile files up in state_dir.
func TestTempRecordsOfACrashAreRemoved(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 3)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("a"))
	rec := Record{Generation: 1, Time: time.Now(), Files: []File{{Path: "a.toml", SHA256: hex.EncodeToString(sum[:]), Content: "a"}}}
	require.NoError(t, st.Save(rec))
	left := filepath.Join(state, "history", ".gen-0000000002.json.tmp-123456")
	require.NoError(t, os.WriteFile(left, []byte(`{"generation": 2`), 0o640))
	other := filepath.Join(state, "history", "notes.txt")
	require.NoError(t, os.WriteFile(other, []byte("mine"), 0o640))

	st, err = Open(state, 3)
	require.NoError(t, err)
	rec.Generation = 2
	require.NoError(t, st.Save(rec))
	assert.NoFileExists(t, left)
	assert.FileExists(t, other, "only what the store writes is removed")
}

// TestRestoreNeverMovesAsideOverAnEarlierOne: files moved aside are named
// by the second of the rollback; two rollbacks in one second (a script)
// that each move a file of the same name aside must keep both, not have
// the second rename delete the first one's copy.
func TestRestoreNeverMovesAsideOverAnEarlierOne(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	require.NoError(t, os.WriteFile(a, []byte("a1"), 0o644))
	files, err := FilesOf(dir, []config.File{loaded(t, a)})
	require.NoError(t, err)
	rec := &Record{Generation: 4, Files: files}

	c := filepath.Join(dir, "c.toml")
	// Earlier copies, for this second and the next ones the rollback may
	// run in.
	now := time.Now().UTC()
	var earlier []string
	for i := 0; i < 3; i++ {
		p := filepath.Join(dir, ".c.toml.rolled-back-"+now.Add(time.Duration(i)*time.Second).Format("20060102T150405Z"))
		require.NoError(t, os.WriteFile(p, []byte("earlier"), 0o644))
		earlier = append(earlier, p)
	}
	require.NoError(t, os.WriteFile(c, []byte("now"), 0o644))
	done, err := Restore(rec, dir, []string{a, c}, nil)
	require.NoError(t, err)
	aside := done.MovedAside
	require.Len(t, aside, 1)
	for _, p := range earlier {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "earlier", string(b), "%s kept", p)
	}
	b, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.Equal(t, "now", string(b))
	assert.Contains(t, filepath.Base(aside[0]), ".c.toml.rolled-back-")
}

// TestRestoreNeverShowsTheWatcherLessThanBothGenerations: the running
// edged's watcher may reload between two steps of a rollback (a step
// syncs the disk; a slow fsync outlasts reload_debounce). A proxy that
// both the current files and the generation have must then never be
// missing from a directory that loads: that reload would apply it and
// drop the proxy's routes until the rollback's next step. Moving the
// newer files aside first did that when the proxy moved between files
// (here from b.toml back into a.toml); writing the generation's files
// first leaves, in between, both copies (which does not load: the
// running edged keeps serving) rather than neither.
func TestRestoreNeverShowsTheWatcherLessThanBothGenerations(t *testing.T) {
	dir := t.TempDir()
	const env = "[[environment]]\nname = \"test\"\n"
	const p = "[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\ntarget = \"http://127.0.0.1:9/orders\"\n"
	const q = "[[proxy]]\nname = \"users\"\nenvironment = \"test\"\nbase_path = \"/users\"\ntarget = \"http://127.0.0.1:9/users\"\n"
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	require.NoError(t, os.WriteFile(a, []byte(env+"\n"+p), 0o644))
	files, err := FilesOf(dir, []config.File{loaded(t, a)})
	require.NoError(t, err)
	rec := &Record{Generation: 4, Files: files}
	require.NoError(t, os.WriteFile(a, []byte(env), 0o644))
	require.NoError(t, os.WriteFile(b, []byte(p+"\n"+q), 0o644))
	cfg, err := config.Load(dir)
	require.NoError(t, err, "the current files load")
	require.Len(t, cfg.Proxies, 2)

	steps := 0
	testHookChanged = func() {
		steps++
		cfg, err := config.Load(dir)
		if err != nil {
			return // a reload would refuse it and keep serving
		}
		var names []string
		for _, p := range cfg.Proxies {
			names = append(names, p.Name)
		}
		assert.Contains(t, names, "orders", "after step %d a reload would serve no orders", steps)
	}
	t.Cleanup(func() { testHookChanged = nil })
	done, err := Restore(rec, dir, []string{a, b}, func(string) bool { return true })
	require.NoError(t, err)
	assert.Equal(t, 2, steps)
	assert.Equal(t, []string{a}, done.Written)
	require.Len(t, done.MovedAside, 1)
	cfg, err = config.Load(dir)
	require.NoError(t, err)
	require.Len(t, cfg.Proxies, 1)
	assert.Equal(t, "orders", cfg.Proxies[0].Name)
}

// TestGetRefusesContentsThatDoNotMatchTheirHash: a record is what a
// rollback restores, so a content it cannot vouch for is an error, as a
// damaged blob is. A file whose sha256 was not a SHA-256 (a hand edit, a
// bit flipped on disk) came back with the content "", and a rollback
// wrote the file empty; a content held inline (records written before
// blobs) was not checked against its hash at all.
func TestGetRefusesContentsThatDoNotMatchTheirHash(t *testing.T) {
	state := t.TempDir()
	st, err := Open(state, 5)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("[server]\n"))
	good := hex.EncodeToString(sum[:])
	require.NoError(t, st.Save(Record{Generation: 1, Time: time.Now(), Files: []File{{Path: "a.toml", SHA256: good, Content: "[server]\n"}}}))
	path := filepath.Join(state, "history", "gen-0000000001.json")
	raw, err := os.ReadFile(path)
	require.NoError(t, err)

	for name, rec := range map[string]string{
		"not a SHA-256":          strings.Replace(string(raw), good, "damaged", 1),
		"one digit short":        strings.Replace(string(raw), good, good[:63], 1),
		"inline, another's hash": `{"generation": 1, "time": "2026-11-01T10:00:00Z", "trigger": "start", "files": [{"path": "a.toml", "sha256": "` + good + `", "content": "[server]\nhttps = \"0.0.0.0:8443\"\n"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, []byte(rec), 0o640))
			got, err := st.Get(1)
			if err == nil {
				t.Fatalf("Get returned a.toml with content %q", got.Files[0].Content)
			}
			assert.ErrorContains(t, err, "generation 1")
			assert.ErrorContains(t, err, "a.toml")
			assert.ErrorContains(t, err, "damaged")
		})
	}
}

// TestRestoreRefusesPathsNoGenerationHas: a generation records the .toml
// files the loader read, never a certificate, a key or a file the loader
// skips (a dot-name, or one in a dot-directory). A record naming one (a
// hand edit, a damaged record) had edged rollback, run as root, write it
// into the config directory: a key file beside the configuration, say.
func TestRestoreRefusesPathsNoGenerationHas(t *testing.T) {
	for _, p := range []string{"tls/prod.key", "prod/.hidden.toml", ".git/config.toml", "uat.toml.bak"} {
		t.Run(p, func(t *testing.T) {
			dir := t.TempDir()
			rec := &Record{Generation: 3, Files: []File{{Path: "a.toml", Content: "[server]\n"}, {Path: p, Content: "x"}}}
			_, err := Restore(rec, dir, nil, nil)
			require.Error(t, err)
			assert.ErrorContains(t, err, "generation 3")
			assert.ErrorContains(t, err, p)
			assert.NoFileExists(t, filepath.Join(dir, filepath.FromSlash(p)))
			assert.NoFileExists(t, filepath.Join(dir, "a.toml"), "nothing written")
		})
	}
}
