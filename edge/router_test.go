package edge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPathTableMatchesOnSegmentBoundaries(t *testing.T) {
	tab := newPathTable[string]()
	for _, p := range []string{"/users", "/users/admin", "/a/b/c", "/v1.0"} {
		tab.add(p, p)
	}
	cases := []struct {
		path, want string
	}{
		{"/users", "/users"},
		{"/users/", "/users"},
		{"/users/7", "/users"},
		{"/users/7/orders", "/users"},
		{"/users/admin", "/users/admin"},
		{"/users/admin/x", "/users/admin"},
		{"/users/administrator", "/users"},
		{"/usersx", ""},
		{"/user", ""},
		{"/", ""},
		{"/a/b", ""},
		{"/a/b/c/d", "/a/b/c"},
		{"/a/b/cd", ""},
		{"/v1.0/x", "/v1.0"},
		{"", ""},
	}
	for _, c := range cases {
		got, ok := tab.match(c.path)
		assert.Equal(t, c.want != "", ok, c.path)
		assert.Equal(t, c.want, got, c.path)
	}
	tab.add("/", "/")
	got, ok := tab.match("/usersx")
	assert.True(t, ok)
	assert.Equal(t, "/", got, "a root base path catches the rest")
	got, _ = tab.match("/users/1")
	assert.Equal(t, "/users", got, "longer base paths still win over the root")
}

// A long path costs no more to match than the longest base path. Every
// prefix of the path was looked up, each hashed whole once the table has
// more than a few base paths: a 64 KiB path of 32768 segments hashed about
// a gigabyte, 25 ms of CPU per request with 100 base paths, before any
// environment's limit applies (a request is otherwise some 20 µs).
func TestPathTableMatchIsBoundedByTheLongestBasePath(t *testing.T) {
	tab := newPathTable[string]()
	for _, p := range []string{"/users", "/a/a/a", "/"} {
		tab.add(p, p)
	}
	for i := range 100 {
		tab.add("/api"+itoa3(i), "api")
	}
	long := strings.Repeat("/a", 32<<10)
	got, ok := tab.match(long)
	require.True(t, ok)
	assert.Equal(t, "/a/a/a", got)
	got, _ = tab.match("/users" + long)
	assert.Equal(t, "/users", got)
	got, _ = tab.match("/usersx" + long)
	assert.Equal(t, "/", got)
	// What it costs: BenchmarkPathTableMatchLongPath.
}

// BenchmarkPathTableMatchLongPath: a 64 KiB path of 32768 segments
// against 100 base paths, which cost 20-25 ms of CPU a request when every
// prefix was looked up.
func BenchmarkPathTableMatchLongPath(b *testing.B) {
	tab := newPathTable[string]()
	tab.add("/", "/")
	for i := range 100 {
		tab.add("/api"+itoa3(i), "api")
	}
	long := "/b" + strings.Repeat("/a", 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		if got, _ := tab.match(long); got != "/" {
			b.Fatal(got)
		}
	}
}

// TestPathTableMatchesBasePathsOfEveryLength: match looks up only
// prefixes as long as some base path (pathTable.lens, a bit per length):
// base paths of 2 to 300 bytes, across the words' boundaries, each
// found under itself and nested under one another.
func TestPathTableMatchesBasePathsOfEveryLength(t *testing.T) {
	tab := newPathTable[string]()
	for n := 2; n <= 300; n += 3 {
		tab.add("/"+strings.Repeat("x", n-1), "flat")
		tab.add(strings.Repeat("/y", n/2), "nested")
	}
	for n := 2; n <= 300; n += 3 {
		base := "/" + strings.Repeat("x", n-1)
		got, ok := tab.match(base + "/rest")
		require.True(t, ok, base)
		assert.Equal(t, "flat", got, "%d bytes", n)
		_, ok = tab.match(base + "x/rest") // no base path of n+1 bytes
		assert.False(t, ok, "%d+1 bytes", n)
		nested := strings.Repeat("/y", n/2)
		got, ok = tab.match(nested + "/z/y")
		require.True(t, ok, nested)
		assert.Equal(t, "nested", got)
	}
	_, ok := tab.match("/nothing")
	assert.False(t, ok)
}

// BenchmarkPathTableMatchLongBasePath: one base path of 32 KiB among 100
// short ones, and a request path of 64 KiB that shares its first half:
// every prefix up to 32 KiB was hashed in a lookup (16,384 of them).
func BenchmarkPathTableMatchLongBasePath(b *testing.B) {
	tab := newPathTable[string]()
	tab.add("/", "/")
	for i := range 100 {
		tab.add("/api"+itoa3(i), "api")
	}
	tab.add(strings.Repeat("/a", 16<<10)+"/end", "long")
	long := strings.Repeat("/a", 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		if got, _ := tab.match(long); got != "/" {
			b.Fatal(got)
		}
	}
}

func TestHostTableExactThenLongestWildcard(t *testing.T) {
	tab := newHostTable[string]()
	tab.add("api.acme.com", "exact")
	tab.add("*.acme.com", "acme")
	tab.add("*.test.acme.com", "test")
	cases := map[string]string{
		"api.acme.com":        "exact",
		"www.acme.com":        "acme",
		"x.test.acme.com":     "test",
		"a.b.test.acme.com":   "test",
		"test.acme.com":       "acme",
		"acme.com":            "",
		"evil-acme.com":       "",
		"api.acme.com.evil":   "",
		"":                    "",
		"com":                 "",
		"x.test.acme.com.":    "",
		"deep.x.api.acme.com": "acme",
	}
	for host, want := range cases {
		got, ok := tab.lookup(host)
		assert.Equal(t, want != "", ok, host)
		assert.Equal(t, want, got, host)
	}
}

func TestHostOnly(t *testing.T) {
	cases := map[string]string{
		"Test.Acme.COM":      "test.acme.com",
		"test.acme.com:8443": "test.acme.com",
		"test.acme.com.":     "test.acme.com",
		"TEST.acme.com.:443": "test.acme.com",
		"[::1]:443":          "::1",
		"[::1]":              "::1",
		"plain":              "plain",
	}
	for in, want := range cases {
		assert.Equal(t, want, hostOnly(in), in)
	}
}

func BenchmarkRouteLookup(b *testing.B) {
	hosts := newHostTable[*pathTable[int]]()
	for g := 0; g < 100; g++ {
		pt := newPathTable[int]()
		for p := 0; p < 100; p++ {
			pt.add("/api"+itoa3(p)+"/v1", p)
		}
		hosts.add("g"+itoa3(g)+".acme.com", &pt)
		hosts.add("*.g"+itoa3(g)+".acme.com", &pt)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pt, ok := hosts.lookup(hostOnly("x.g042.acme.com:443"))
		if !ok {
			b.Fatal("host")
		}
		if _, ok := pt.match("/api077/v1/users/42/orders"); !ok {
			b.Fatal("path")
		}
	}
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}
