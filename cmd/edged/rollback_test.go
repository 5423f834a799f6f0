package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
	"edged/internal/history"
)

// TestRollbackRefusesAGenerationThatNoLongerLoads: the history holds the
// .toml files, never the certificates they name. A generation whose
// certificate has since been removed (renewed under another name) would
// not load: rollback says so, naming the file, line and certificate, and
// changes nothing (it used to write the files and move the others aside,
// leaving a conf.d that neither a reload nor a restart could load).
func TestRollbackRefusesAGenerationThatNoLongerLoads(t *testing.T) {
	ex := newExample(t)
	ex.noWatch(t)
	p := startServe(t, ex.confDir)
	gen := p.generation(t)

	// The certificate is renewed under a new name, the old one removed.
	groups := filepath.Join(ex.confDir, "groups.toml")
	was, err := os.ReadFile(groups)
	require.NoError(t, err)
	for _, ext := range []string{".pem", ".key"} {
		require.NoError(t, os.Rename(filepath.Join(ex.certDir, "test.acme.com"+ext), filepath.Join(ex.certDir, "test-2027"+ext)))
	}
	now := strings.ReplaceAll(string(was), "certs/test.acme.com.", "certs/test-2027.")
	require.NotEqual(t, string(was), now)
	require.NoError(t, os.WriteFile(groups, []byte(now), 0o644))
	require.NoError(t, os.WriteFile(ex.home("test", "orders.toml"), []byte(ordersProxy), 0o644))
	code, _, errOut := runEdged(t, "reload", "--control", ex.controlPath())
	require.Equal(t, 0, code, errOut)
	require.Equal(t, gen+1, p.generation(t))

	for _, args := range [][]string{{}, {"--no-wait"}} {
		code, out, errOut := runEdged(t, append([]string{"rollback", fmt.Sprint(gen), "-c", ex.confDir}, args...)...)
		assert.Equal(t, 1, code, out)
		assert.NotContains(t, out, "restored")
		assert.NotContains(t, out, "moved aside")
		assert.Contains(t, errOut, groups+":")
		assert.Contains(t, errOut, filepath.Join(ex.certDir, "test.acme.com.pem"))
		assert.Contains(t, errOut, fmt.Sprintf("edged rollback: generation %d would not load with the files it names as they are now; nothing written", gen))

		b, err := os.ReadFile(groups)
		require.NoError(t, err)
		assert.Equal(t, now, string(b), "nothing written")
		_, err = os.Stat(ex.home("test", "orders.toml"))
		assert.NoError(t, err, "nothing moved aside")
		aside, _ := filepath.Glob(ex.home("test", ".orders.toml.rolled-back-*"))
		assert.Empty(t, aside)
		assert.Equal(t, gen+1, p.generation(t))
	}
}

// TestRollbackKeepsAnEditTheHistoryDoesNotHold: a rollback moves the
// files added since the generation aside, but it used to overwrite the
// ones the generation also has with no copy: an operator's edit not yet
// applied (made with --no-wait, or refused by the running edged), which
// no generation recorded, was lost for good. Such a file is kept beside
// it as .NAME.rolled-back-TIME, like a file moved aside; a content the
// history holds (a generation that served) is not copied, as a rollback
// to that generation brings it back.
func TestRollbackKeepsAnEditTheHistoryDoesNotHold(t *testing.T) {
	ex := newExample(t)
	dir := ex.confDir
	st, err := history.Open(config.StateDir(dir), 10)
	require.NoError(t, err)
	save := func(gen uint64) {
		cfg, err := config.Load(dir)
		require.NoError(t, err)
		files, err := history.FilesOf(dir, cfg.Files)
		require.NoError(t, err)
		require.NoError(t, st.Save(history.Record{Generation: gen, Time: time.Now(), Trigger: "test", Files: files}))
	}
	save(3)
	uat := ex.home("uat", "uat.toml")
	was, err := os.ReadFile(uat)
	require.NoError(t, err)

	// Applied, then recorded: the history holds it.
	applied := string(was) + "\n# applied as generation 4\n"
	require.NoError(t, os.WriteFile(uat, []byte(applied), 0o644))
	save(4)
	code, out, errOut := runEdged(t, "rollback", "3", "-c", dir, "--no-wait")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "restored "+uat)
	assert.NotContains(t, out, "kept")
	kept, err := filepath.Glob(ex.home("uat", ".uat.toml.rolled-back-*"))
	require.NoError(t, err)
	assert.Empty(t, kept, "generation 4 holds what was replaced")

	// A hand edit that no generation has.
	edit := string(was) + "\n# alice: orders go live tomorrow, not applied yet\n"
	require.NoError(t, os.WriteFile(uat, []byte(edit), 0o644))
	code, out, errOut = runEdged(t, "rollback", "3", "-c", dir, "--no-wait")
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(uat)
	require.NoError(t, err)
	assert.Equal(t, string(was), string(b), "restored")
	kept, err = filepath.Glob(ex.home("uat", ".uat.toml.rolled-back-*"))
	require.NoError(t, err)
	require.Len(t, kept, 1, "the edit is kept, not lost")
	b, err = os.ReadFile(kept[0])
	require.NoError(t, err)
	assert.Equal(t, edit, string(b))
	assert.Contains(t, out, "kept "+kept[0]+" (what "+uat+" held, which no generation has)")
}

// TestRollbackThatStopsHalfWaySaysSo: a rollback checks what it can
// before it changes anything, but a write may still fail after others
// were made (a disk full, a name too long to move aside). The directory
// then holds neither generation: the error used to be the bare failure
// of the last step, which reads as though nothing was changed. It says
// that the rollback stopped half way, what it changed (listed above it)
// and how to finish.
func TestRollbackThatStopsHalfWaySaysSo(t *testing.T) {
	ex := newExample(t)
	dir := ex.confDir
	st, err := history.Open(config.StateDir(dir), 10)
	require.NoError(t, err)
	cfg, err := config.Load(dir)
	require.NoError(t, err)
	files, err := history.FilesOf(dir, cfg.Files)
	require.NoError(t, err)
	require.NoError(t, st.Save(history.Record{Generation: 3, Time: time.Now(), Trigger: "test", Files: files}))

	test := ex.home("test", "test.toml")
	b, err := os.ReadFile(test)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(test, append(b, "\n# edited\n"...), 0o644))
	// A newer file whose name leaves no room for the suffix of its
	// name aside (255 bytes at most): test/ is written first, then
	// moving this one aside fails.
	long := filepath.Join(dir, strings.Repeat("n", 240)+".toml")
	require.NoError(t, os.WriteFile(long, []byte("# newer\n"), 0o644))

	code, out, errOut := runEdged(t, "rollback", "3", "-c", dir, "--no-wait")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "restored "+test)
	assert.Contains(t, errOut, long)
	assert.Contains(t, errOut, "edged rollback: stopped half way: "+dir+" holds some of generation 3's files and some of those it was replacing (what it changed is listed above); fix the cause and run edged rollback 3 again")
}
