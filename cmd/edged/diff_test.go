package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// TestDiffShowsControlCharactersInsteadOfSendingThem: pending files are
// anyone's bytes (a writer of any home), and edged diff is what the
// operator reads before a reload. A terminal escape in a line or a file
// name must not reach the terminal, where it could rewrite what the
// operator sees (erase the line above, retitle the window); it is shown
// as an escape. Tabs, newlines and CRLF line ends pass as they are.
func TestDiffShowsControlCharactersInsteadOfSendingThem(t *testing.T) {
	evil := "[[proxy]]\nname = \"x\"\r\n\x1b[1A\x1b[2K# nothing to see\n\u009b31m\tbad \xff byte\x07\n"
	out := diffFiles(map[string]string{}, map[string]string{"prod/\x1b]0;hi\x07x.toml": evil}, "generation 1", "pending")
	for i, r := range out {
		if r == '\n' || r == '\t' || r == '\r' && strings.HasPrefix(out[i+1:], "\n") {
			continue
		}
		assert.False(t, r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f, "control character %U at %d in %q", r, i, out)
	}
	assert.True(t, utf8.ValidString(out), "%q", out)
	assert.Contains(t, out, `+\x1b[1A\x1b[2K# nothing to see`)
	assert.Contains(t, out, `+++ b/prod/\x1b]0;hi\x07x.toml`)
	assert.Contains(t, out, "+name = \"x\"\r\n", "a CRLF line end is kept")
	assert.Contains(t, out, `+\u009b31m`+"\tbad \\xff byte\\x07\n")
}

// TestDiffShowsBidiControlsInsteadOfSendingThem: TOML allows Unicode's
// bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE, U+2066-U+2069
// isolates...) in comments and strings, and a terminal that lays out
// bidirectional text reorders what follows them: a pending line can be
// shown as something other than what it is (the "Trojan Source" trick),
// in the diff an operator reads before a reload. They are shown as
// escapes, like control characters.
func TestDiffShowsBidiControlsInsteadOfSendingThem(t *testing.T) {
	evil := "[[proxy]]\nname = \"orders\"\nupstream = \"prod-pool\" # \u202e\u2066 \"test-pool\" = maertspu\u2069\u2066\n# \u200f\u061c\u2067\u2068\u202a\u202b\u202c\u202d\u200e\n"
	out := diffFiles(map[string]string{}, map[string]string{"prod/\u202eorders.toml": evil}, "generation 1", "pending")
	for _, r := range []rune{0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c} {
		assert.NotContains(t, out, string(r), "%U reached the terminal", r)
	}
	assert.Contains(t, out, `+upstream = "prod-pool" # \u202e\u2066 "test-pool" = maertspu\u2069\u2066`)
	assert.Contains(t, out, `+++ b/prod/\u202eorders.toml`)
	assert.Equal(t, "prod-pool: café ü 日本", visible("prod-pool: café ü 日本"), "other text passes as it is")
}

// TestDiffShowsNewlinesInANameInsteadOfBreakingTheLine: a file's name may
// hold a newline (any byte but / and NUL), and the loader reads such a
// .toml file. Printed as it is in a diff header, the name went on over
// lines of its own, which read as a hunk: a change nobody made, shown
// in the diff an operator checks before a reload. In a name, newline,
// tab and carriage return are shown as escapes too.
func TestDiffShowsNewlinesInANameInsteadOfBreakingTheLine(t *testing.T) {
	name := "prod/zz\n@@ -1 +1 @@\n-upstream = \"prod-pool\"\n+upstream = \"test-pool\"\t\r.toml"
	out := diffFiles(map[string]string{}, map[string]string{name: "# nothing\n"}, "generation 1", "pending")
	assert.Equal(t, "--- /dev/null\tgeneration 1\n"+
		`+++ b/prod/zz\n@@ -1 +1 @@\n-upstream = "prod-pool"\n+upstream = "test-pool"\t\x0d.toml`+"\tpending\n"+
		"@@ -0,0 +1 @@\n+# nothing\n", out)
}

// TestDiffOfPendingFilesFollowsNoLinkOthersMayHavePut: edged diff reads
// the .toml files of DIR as they are, often as root (sudo edged diff),
// and the loader follows symbolic links. A link named x.toml that a
// writer of an environment's home puts there, pointing at a private key
// (or /etc/shadow) they may not read themselves, had the key printed to
// the terminal of whoever checked the pending changes. A link in a
// directory that others than the caller and root may write to is not
// followed (as edged rollback follows none): its content is not shown,
// and stderr says why. A link in a directory only the caller may write
// to (the operator's own layout, nginx's sites-enabled) is followed.
func TestDiffOfPendingFilesFollowsNoLinkOthersMayHavePut(t *testing.T) {
	dir := withGeneration3(t)
	root := filepath.Dir(dir)
	key := filepath.Join(root, "certs", "prod.key")
	require.NoError(t, os.MkdirAll(filepath.Dir(key), 0o700))
	const secret = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETSECRET\n-----END PRIVATE KEY-----\n"
	require.NoError(t, os.WriteFile(key, []byte(secret), 0o600))
	home := filepath.Join(dir, "prod")
	require.NoError(t, os.Mkdir(home, 0o755))
	require.NoError(t, os.Chmod(home, 0o775)) // prod-ops write here
	link := filepath.Join(home, "x.toml")
	require.NoError(t, os.Symlink(key, link))
	// The caller's own link, in a directory only it may write to.
	avail := filepath.Join(root, "available", "app.toml")
	require.NoError(t, os.MkdirAll(filepath.Dir(avail), 0o755))
	require.NoError(t, os.WriteFile(avail, []byte("# app\n"), 0o644))
	require.NoError(t, os.Symlink(avail, filepath.Join(dir, "app.toml")))

	code, out, errOut := runEdged(t, "diff", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "SECRET", "key material printed")
	assert.NotContains(t, out, "BEGIN PRIVATE KEY", "key material printed")
	assert.NotContains(t, out, "prod/x.toml", "a file whose content is not shown is no change")
	assert.Contains(t, errOut, "edged diff: "+link+" is a symbolic link in "+home+", which others may write to (mode 0775, owner root): "+link+" is not shown")
	assert.Contains(t, out, "+++ b/app.toml\tpending in "+dir+"\n@@ -0,0 +1 @@\n+# app\n", "the caller's own link is followed")

	// A link to a directory, in such a directory, leads nowhere either.
	require.NoError(t, os.Remove(link))
	secrets := filepath.Join(root, "secrets")
	require.NoError(t, os.Mkdir(secrets, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "cred.toml"), []byte("token = \"SECRET\"\n"), 0o600))
	require.NoError(t, os.Symlink(secrets, filepath.Join(home, "sub")))
	code, out, errOut = runEdged(t, "diff", "-c", dir)
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "SECRET", "a secret printed")
	assert.Contains(t, errOut, "edged diff: "+filepath.Join(home, "sub")+" is a symbolic link in "+home+", which others may write to (mode 0775, owner root): "+filepath.Join(home, "sub", "cred.toml")+" is not shown")
}

// TestDiffOfPendingFilesReadsNoMoreThanALoad: a load reads at most 8 MiB
// of configuration files (MaxTotalSize) and refuses the rest; edged diff
// read every pending file whole, up to 2 MiB each and as many as the
// 100,000 files a tree may hold, and printed them (a home's writer makes
// a thousand sparse 2 MiB files without a byte of disk: gigabytes of
// memory and of output). It stops where a load stops, and says so.
func TestDiffOfPendingFilesReadsNoMoreThanALoad(t *testing.T) {
	dir := withGeneration3(t)
	home := filepath.Join(dir, "prod")
	require.NoError(t, os.Mkdir(home, 0o755))
	for i := range 24 {
		f, err := os.Create(filepath.Join(home, fmt.Sprintf("big%02d.toml", i)))
		require.NoError(t, err)
		require.NoError(t, f.Truncate(config.MaxFileSize)) // sparse
		require.NoError(t, f.Close())
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, out, errOut := runEdged(t, "diff", "-c", dir)
	runtime.ReadMemStats(&after)
	assert.Equal(t, 1, code, errOut)
	assert.Zero(t, len(out), "bytes on stdout")
	assert.Contains(t, errOut, "edged diff: "+dir+": configuration files add up to more than the 8388608 bytes (8 MiB) allowed, at "+filepath.Join(home, "big04.toml"))
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(32<<20), "bytes allocated by edged diff")
}

// TestDiffOfPendingFilesIsNotRacedIntoALink: a pending file checked for
// a link others may have put and then opened by name is read through
// whatever is at the name by the open: a home's writer renaming a link
// to a key over x.toml and a file back, again and again, has sudo edged
// diff print the key in one of its runs. The file is opened without
// following a link where others may write, so what is checked is what is
// read.
func TestDiffOfPendingFilesIsNotRacedIntoALink(t *testing.T) {
	dir := withGeneration3(t)
	root := filepath.Dir(dir)
	key := filepath.Join(root, "certs", "prod.key")
	require.NoError(t, os.MkdirAll(filepath.Dir(key), 0o700))
	require.NoError(t, os.WriteFile(key, []byte("SECRET\n"), 0o600))
	home := filepath.Join(dir, "prod")
	require.NoError(t, os.Mkdir(home, 0o755))
	require.NoError(t, os.Chmod(home, 0o775)) // prod-ops write here
	name := filepath.Join(home, "x.toml")
	require.NoError(t, os.WriteFile(name, []byte("# x\n"), 0o644))
	file, link := filepath.Join(home, ".file"), filepath.Join(home, ".link")

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				_ = os.Symlink(key, link)
				_ = os.Rename(link, name)
			} else {
				_ = os.WriteFile(file, []byte("# x\n"), 0o644)
				_ = os.Rename(file, name)
			}
		}
	}()
	leaked, read := 0, 0
	for range 2000 {
		files, _, err := pendingFiles(dir, io.Discard)
		if err != nil {
			continue // x.toml between two renames
		}
		read++
		if strings.Contains(files["prod/x.toml"], "SECRET") {
			leaked++
		}
	}
	close(stop)
	<-done
	require.Positive(t, read)
	assert.Zero(t, leaked, "runs that read the key, of %d", read)
}
