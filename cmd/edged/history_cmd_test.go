package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/history"
)

// A mistyped -c is an error, not an empty (or another directory's) history.
func TestHistoryOnAMissingDirectoryFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "conf.d")
	code, out, errOut := runEdged(t, "history", "-c", missing)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, "edged history: config directory "+missing+" does not exist (-c names the directory of the .toml files)\n", errOut)

	file := filepath.Join(t.TempDir(), "server.toml")
	require.NoError(t, os.WriteFile(file, []byte("[server]\n"), 0o644))
	code, _, errOut = runEdged(t, "history", "-c", file)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, file+" is not a directory")
}

// TestHistoryShowsControlCharactersInsteadOfSendingThem: a file's name is
// anyone's bytes (a writer of an environment's home names it), and the
// history records it, in the files a generation changed and in the
// watcher's trigger. Printed as it is, an escape sequence in it would act
// on the operator's terminal (as edged diff already prevents).
func TestHistoryShowsControlCharactersInsteadOfSendingThem(t *testing.T) {
	dir, state := historyConf(t, stateServer)
	st, err := history.Open(state, 10)
	require.NoError(t, err)
	evil := "test/\x1b[2J\x1b]0;owned\x07\u009b31m.toml"
	sum := config.SHA256Hex([]byte("x"))
	require.NoError(t, st.Save(history.Record{
		Generation: 7, Time: time.Now(), Trigger: "file change: " + evil,
		Files:   []history.File{{Path: evil, SHA256: sum, Content: "x"}},
		Changed: []history.FileChange{{Path: evil, Action: "added", Owner: "alice"}},
	}))
	for _, args := range [][]string{{"history", "-c", dir}, {"history", "7", "-c", dir}} {
		code, out, errOut := runEdged(t, args...)
		require.Equal(t, 0, code, errOut)
		assert.NotContains(t, out, "\x1b", args)
		assert.NotContains(t, out, "\x07", args)
		assert.NotContains(t, out, "\u009b", args)
		if len(args) == 4 {
			assert.Contains(t, out, `test/\x1b[2J\x1b]0;owned\x07\u009b31m.toml`)
		}
	}
}

// TestRollbackShowsControlCharactersInsteadOfSendingThem: the files a
// rollback moves aside are named by whoever wrote them.
func TestRollbackShowsControlCharactersInsteadOfSendingThem(t *testing.T) {
	dir := withGeneration3(t)
	evil := filepath.Join(dir, "\x1b[2J\u009b31m.toml")
	require.NoError(t, os.WriteFile(evil, []byte("# added later\n"), 0o644))

	code, out, errOut := runEdged(t, "rollback", "3", "--no-wait", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "moved aside ")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\u009b")
	assert.Contains(t, out, `.\x1b[2J\u009b31m.toml.rolled-back-`)
}

// TestPromoteShowsControlCharactersInsteadOfSendingThem: the diff promote
// prints holds the target file, written by the target environment's
// operators (TOML allows C1 controls such as CSI, U+009B, in comments),
// and its name.
func TestPromoteShowsControlCharactersInsteadOfSendingThem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	test := "[server]\nstate_dir = \"../state\"\n\n[[environment]]\nname = \"test\"\n\n" +
		"[[upstream]]\nname = \"u\"\nenvironment = \"test\"\nnodes = [{ url = \"http://127.0.0.1:9\" }]\n\n" +
		"[[proxy]]\nname = \"orders\"\nenvironment = \"test\"\nbase_path = \"/orders\"\nupstream = \"u\"\n"
	uat := "[[environment]]\nname = \"uat\"\n\n" +
		"[[upstream]]\nname = \"u\"\nenvironment = \"uat\"\nnodes = [{ url = \"http://127.0.0.1:9\" }]\n# uat \u009b2J\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.toml"), []byte(test), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "uat\x1b[2J.toml"), []byte(uat), 0o644))

	code, out, errOut := runEdged(t, "promote", "orders", "--from", "test", "--to", "uat", "--dry-run", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "+[[proxy]]")
	assert.NotContains(t, out, "\x1b")
	assert.NotContains(t, out, "\u009b")
	assert.Contains(t, out, `uat\x1b[2J.toml`)
	assert.Contains(t, out, `# uat \u009b2J`)
}

// TestHistoryListsPastADamagedRecord: a kept record that no longer
// parses (a disk error, a hand edit) is one lost generation: the history
// goes on recording and prunes it in its turn. edged history used to
// fail on it, listing nothing, for as long as it was kept (history_keep
// reloads): the operator could not see which generation to roll back to.
// It lists the others and names the damaged one on stderr.
func TestHistoryListsPastADamagedRecord(t *testing.T) {
	dir, state := historyConf(t, stateServer)
	st, err := history.Open(state, 10)
	require.NoError(t, err)
	for g := uint64(1); g <= 3; g++ {
		require.NoError(t, st.Save(history.Record{
			Generation: g, Time: time.Now(), Trigger: "start",
			Files: []history.File{{Path: "server.toml", SHA256: config.SHA256Hex([]byte(stateServer)), Content: stateServer}},
		}))
	}
	damaged := filepath.Join(state, "history", "gen-0000000002.json")
	require.NoError(t, os.WriteFile(damaged, []byte(`{"generation": 2, "fil`), 0o640))

	code, out, errOut := runEdged(t, "history", "-c", dir)
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.True(t, strings.HasPrefix(lines[1], "1 "), out)
	assert.True(t, strings.HasPrefix(lines[2], "3 "), out)
	assert.Contains(t, errOut, "edged history: generation 2 cannot be read: "+damaged)
}

// TestHistoryShowsNewlinesInANameInsteadOfBreakingTheLine: the files a
// generation changed are listed by name, one per line, and a name may
// hold a newline: printed as it is, it made lines of its own, such as a
// generation that never was in the list, or a file "changed" by another
// owner.
func TestHistoryShowsNewlinesInANameInsteadOfBreakingTheLine(t *testing.T) {
	dir, state := historyConf(t, stateServer)
	st, err := history.Open(state, 10)
	require.NoError(t, err)
	evil := "test/x\n  changed  prod/prod.toml  owner root\n.toml"
	sum := config.SHA256Hex([]byte("x"))
	require.NoError(t, st.Save(history.Record{
		Generation: 7, Time: time.Now(), Trigger: "file change: " + evil + "\n8  2026-12-04 09:20:17  edged rollback  bob  5  -",
		Files:   []history.File{{Path: evil, SHA256: sum, Content: "x"}},
		Changed: []history.FileChange{{Path: evil, Action: "added", Owner: "alice"}},
	}))
	code, out, errOut := runEdged(t, "history", "7", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `  added  test/x\n  changed  prod/prod.toml  owner root\n.toml  owner alice`)
	assert.NotContains(t, out, "\n  changed  prod/prod.toml")
	assert.NotContains(t, out, "\n8  2026")
}

// TestReadingTheHistoryCreatesNothing: edged history, diff and rollback
// only read the history, and run as the operator (often with sudo). They
// used to create state_dir/history when it was not there yet (before the
// service's first start): as root, a directory the service's user then
// could not write to, and every generation it applied went unrecorded.
func TestReadingTheHistoryCreatesNothing(t *testing.T) {
	dir, state := historyConf(t, stateServer)

	code, out, errOut := runEdged(t, "history", "-c", dir)
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "GENERATION  TIME  CAUSE  USER  FILES  CHANGES\n", out)
	code, _, errOut = runEdged(t, "diff", "-c", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "the history of "+dir+" is empty")
	code, _, errOut = runEdged(t, "rollback", "3", "-c", dir, "--no-wait")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "generation 3 is not in the history (it is empty)")
	_, err := os.Stat(state)
	assert.ErrorIs(t, err, os.ErrNotExist, "state_dir is the service's to create")
}

// stateServer is a server.toml whose state_dir is "state" beside conf.d.
const stateServer = "[server]\nstate_dir = \"../state\"\n"

// historyConf makes a conf.d holding server.toml (server) and returns it
// with the state_dir that names, made by whatever opens its history.
// withGeneration3 makes a config directory whose server.toml has one
// environment, "test", recorded in its state_dir's history as generation
// 3: what a rollback to 3 restores.
func withGeneration3(t *testing.T) (dir string) {
	t.Helper()
	server := stateServer + "\n[[environment]]\nname = \"test\"\n"
	dir, state := historyConf(t, server)
	st, err := history.Open(state, 10)
	require.NoError(t, err)
	require.NoError(t, st.Save(history.Record{
		Generation: 3, Time: time.Now(), Trigger: "start",
		Files: []history.File{{Path: "server.toml", SHA256: config.SHA256Hex([]byte(server)), Content: server}},
	}))
	return dir
}

func historyConf(t *testing.T, server string) (dir, state string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "conf.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.toml"), []byte(server), 0o644))
	return dir, filepath.Join(filepath.Dir(dir), "state")
}

// TestServeStartsPastARecordThatIsAPipe: the running edged reads its
// history at start (the newest records, for /status and the first
// generation's changes) and before its first record (every kept one). A
// named pipe in a record's place held its start for ever, before it
// listened: it is one lost generation, and edged starts and records on.
func TestServeStartsPastARecordThatIsAPipe(t *testing.T) {
	ex := newExample(t)
	ex.fastReloads(t)
	hist := filepath.Join(ex.root, "var", "state", "history")
	require.NoError(t, os.MkdirAll(hist, 0o750))
	fifo := filepath.Join(hist, "gen-0000000009.json")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	t.Cleanup(func() {
		// Lets a reader stuck in its open go (the code before the fix).
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})

	p := startServe(t, ex.confDir)
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(hist, "gen-0000000010.json"))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "the start's generation, 10, is recorded")
	assert.Equal(t, 10, p.generation(t))

	code, out, errOut := runEdged(t, "history", "-c", ex.confDir)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "\n10 ")
	assert.Contains(t, errOut, "edged history: generation 9 cannot be read: "+fifo+" is a named pipe, not a regular file")
}
