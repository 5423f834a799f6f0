package unidiff

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnifiedKnownOutputs(t *testing.T) {
	ten := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"
	cases := []struct {
		name, a, b, want string
	}{
		{"equal", "x\n", "x\n", ""},
		{"new file", "", "a\nb\n", "--- A\n+++ B\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"deleted file", "a\nb\n", "", "--- A\n+++ B\n@@ -1,2 +0,0 @@\n-a\n-b\n"},
		{"one line changed", ten, strings.Replace(ten, "5\n", "five\n", 1),
			"--- A\n+++ B\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"},
		{"added at the end", "a\nb\n", "a\nb\nc\n", "--- A\n+++ B\n@@ -1,2 +1,3 @@\n a\n b\n+c\n"},
		{"inserted at the top", "b\n", "a\nb\n", "--- A\n+++ B\n@@ -1 +1,2 @@\n+a\n b\n"},
		{"two hunks", ten + ten, strings.Replace(strings.Replace(ten+ten, "2\n", "two\n", 1), "9\n10\n1\n", "9\n10\none\n", 1),
			"--- A\n+++ B\n@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n 4\n 5\n@@ -8,7 +8,7 @@\n 8\n 9\n 10\n-1\n+one\n 2\n 3\n 4\n"},
		{"close changes share a hunk", ten, strings.Replace(strings.Replace(ten, "3\n", "x\n", 1), "8\n", "y\n", 1),
			"--- A\n+++ B\n@@ -1,10 +1,10 @@\n 1\n 2\n-3\n+x\n 4\n 5\n 6\n 7\n-8\n+y\n 9\n 10\n"},
		{"no newline at the end", "a\nb", "a\nb\n", "--- A\n+++ B\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, Unified("A", "B", c.a, c.b))
		})
	}
}

// randomText is lines drawn from a small alphabet, so that texts share
// many lines in many ways.
func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(strconv.Itoa(r.Intn(6)))
		b.WriteByte('\n')
	}
	return b.String()
}

// apply applies a diff made by Unified to a: it must give b back.
func apply(t *testing.T, a, diff string) string {
	t.Helper()
	src := splitLines(a)
	lines := splitLines(diff)
	require.GreaterOrEqual(t, len(lines), 2)
	var out []string
	pos := 0
	for i := 2; i < len(lines); {
		h := lines[i]
		require.True(t, strings.HasPrefix(h, "@@ -"), "hunk header: %q", h)
		var as, ac int
		rng := strings.Fields(h)[1][1:]
		s, c, ok := strings.Cut(rng, ",")
		as, _ = strconv.Atoi(s)
		ac = 1
		if ok {
			ac, _ = strconv.Atoi(c)
		}
		from := as - 1
		if ac == 0 {
			from = as
		}
		require.GreaterOrEqual(t, from, pos)
		out = append(out, src[pos:from]...)
		pos = from
		i++
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@") {
			l := lines[i]
			switch l[0] {
			case ' ':
				require.Equal(t, src[pos], l[1:])
				out = append(out, l[1:])
				pos++
			case '-':
				require.Equal(t, src[pos], l[1:])
				pos++
			case '+':
				out = append(out, l[1:])
			default:
				t.Fatalf("line %q", l)
			}
			i++
		}
	}
	out = append(out, src[pos:]...)
	return strings.Join(out, "")
}

// Counting the lines a diff removes and adds: Myers' script is a
// shortest one, so no diff of the same texts may have fewer.
func editCount(d string) int {
	n := 0
	for _, l := range strings.Split(d, "\n") {
		if strings.HasPrefix(l, "+") && !strings.HasPrefix(l, "+++") || strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "---") {
			n++
		}
	}
	return n
}

func TestUnifiedRoundTripsAndIsShortest(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	diffPath, err := exec.LookPath("diff")
	dir := t.TempDir()
	for i := 0; i < 300; i++ {
		a, b := randomText(r, r.Intn(30)), randomText(r, r.Intn(30))
		d := Unified("a", "b", a, b)
		if a == b {
			assert.Empty(t, d)
			continue
		}
		require.Equal(t, b, apply(t, a, d), "case %d:\n%s", i, d)
		if err != nil {
			continue
		}
		pa, pb := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		require.NoError(t, os.WriteFile(pa, []byte(a), 0o600))
		require.NoError(t, os.WriteFile(pb, []byte(b), 0o600))
		out, _ := exec.Command(diffPath, "--minimal", "-u", "--label", "a", "--label", "b", pa, pb).Output()
		assert.Equal(t, editCount(string(out)), editCount(d), "case %d: as few edits as diff --minimal\nours:\n%s\ndiff:\n%s", i, d, out)
	}
}

// On texts where the shortest diff is unique, the output is diff -u's,
// byte for byte.
func TestUnifiedMatchesDiffU(t *testing.T) {
	diffPath, err := exec.LookPath("diff")
	if err != nil {
		t.Skip("diff is not installed")
	}
	var a, b strings.Builder
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&a, "line %d\n", i)
		switch {
		case i == 5:
			fmt.Fprintf(&b, "line five\n")
		case i == 20:
		case i == 33:
			fmt.Fprintf(&b, "line %d\nnew line after %d\n", i, i)
		case i == 58:
			fmt.Fprintf(&b, "line 58 changed\n")
		default:
			fmt.Fprintf(&b, "line %d\n", i)
		}
	}
	b.WriteString("no newline")
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	require.NoError(t, os.WriteFile(pa, []byte(a.String()), 0o600))
	require.NoError(t, os.WriteFile(pb, []byte(b.String()), 0o600))
	want, _ := exec.Command(diffPath, "-u", "--label", "a/x.toml", "--label", "b/x.toml", pa, pb).Output()
	require.NotEmpty(t, want)
	assert.Equal(t, string(want), Unified("a/x.toml", "b/x.toml", a.String(), b.String()))
}

// Past maxEdits the diff is still correct, only not the shortest.
func TestUnifiedBoundsTheSearch(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("same\n")
	b.WriteString("same\n")
	for i := 0; i < 3*maxEdits; i++ {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
		if i%2 == 0 {
			fmt.Fprintf(&a, "both%d\n", i)
			fmt.Fprintf(&b, "both%d\n", i)
		}
	}
	d := Unified("a", "b", a.String(), b.String())
	assert.Equal(t, b.String(), apply(t, a.String(), d))
	assert.Equal(t, 2*3*maxEdits+2*(3*maxEdits/2), editCount(d), "every differing line removed and added")
}
