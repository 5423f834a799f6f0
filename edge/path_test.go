package edge

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		raw     string // as on the request line
		decoded string // routed on; "" = 400
		escaped string // forwarded; "" = the request's own
	}{
		{"/users/7", "/users/7", ""},
		{"/users/a%20b", "/users/a b", ""},
		{"/users/a%2Fb", "/users/a/b", ""},
		{"/users/.hidden/x..y/...", "/users/.hidden/x..y/...", ""},
		{"/users/./7", "/users/7", "/users/7"},
		{"/users/7/.", "/users/7/", "/users/7/"},
		{"/users/x/../7", "/users/7", "/users/7"},
		{"/users/x/..", "/users/", "/users/"},
		{"/users/x/%2e%2E/a%20b", "/users/a b", "/users/a%20b"},
		{"/users/x..%2F..%2Fy", "/users/y", "/users/y"}, // "x.." is no dot segment; the ".." after it is
		// Runs of "/" are one, as nginx's merge_slashes (on by default)
		// makes them, before dot segments are resolved.
		{"/a//../b", "/b", "/b"},
		{"/users//7", "/users/7", "/users/7"},
		{"//users/7", "/users/7", "/users/7"},
		{"/users/7//", "/users/7/", "/users/7/"},
		// Merging keeps what the client escaped: a "%2F" inside a
		// segment or a "%3B" reaches the backend as it would without
		// the "//" (a run of "/" and "%2F" is one, "/" when it has one).
		{"/users/a%2F%2Fb%20c", "/users/a/b c", "/users/a%2Fb%20c"},
		{"/users/a%2Fb//c%3Bd", "/users/a/b/c;d", "/users/a%2Fb/c%3Bd"},
		{"/users/a%2f/%2F/b", "/users/a/b", "/users/a/b"},
		{"/users/..//..//admin", "", ""},
		// A dot segment next to a backslash, which Windows servers (IIS,
		// ASP.NET) and some frameworks read as a "/".
		{`/users/..\admin`, "", ""},
		{"/users/..%5Cadmin", "", ""},
		{"/users/..%5cadmin", "", ""},
		{`/users\..\admin`, "", ""},
		{`/users/x\.`, "", ""},
		{`/users/.\x`, "", ""},
		{`/users/a\b/..x\y/x..\z`, `/users/a\b/..x\y/x..\z`, ""},
		{"/users/..", "/", "/"},
		{"/..", "", ""},
		{"/users/../../admin", "", ""},
		{"/users/..%2F..%2Fadmin", "", ""},
		{"/users/%2e%2e/%2e%2e/admin", "", ""},
		{"/./../x", "", ""},
		{"/users/..;/admin", "", ""},
		{"/users/.;x/7", "", ""},
		{"/users/x/..;", "", ""},
		{"/users/..x;/.../...;/a;b", "/users/..x;/.../...;/a;b", ""},
	}
	for _, c := range cases {
		t.Run(c.raw, func(t *testing.T) {
			u, err := url.ParseRequestURI(c.raw)
			require.NoError(t, err)
			p, why := normalizePath(u)
			if c.decoded == "" {
				assert.NotEmpty(t, why, "refused")
				return
			}
			require.Empty(t, why)
			assert.Equal(t, c.decoded, p.decoded)
			assert.Equal(t, c.escaped, p.escaped)
		})
	}
}

func TestPathIsRoutedAsItsLoosestBackendReadsIt(t *testing.T) {
	for _, c := range []struct{ raw, routed, base string }{
		{"/users;jsessionid=1", "/users", "/users"},
		{"/users;a/;b/7;c/", "/users/7/", "/users/7"},
		{"/;x", "/", ""},
		{"/api/;x", "/api/", "/api"},
		{"/a%3Bb/c", "/a/c", "/a/c"},
		{"/api/x;/../internal;y", "/api/internal", "/api/internal"},
		{"/users/7", "", "/users"},
		{`/api\internal\x`, "/api/internal/x", "/api/internal"},
		{`/api\\internal;y\`, "/api/internal/", "/api/internal"},
		{"/api%5cinternal", "/api/internal", "/api/internal"},
	} {
		t.Run(c.raw, func(t *testing.T) {
			u, err := url.ParseRequestURI(c.raw)
			require.NoError(t, err)
			p, why := normalizePath(u)
			require.Empty(t, why)
			assert.Equal(t, c.routed, p.routed)
			if c.base == "" {
				return
			}
			// What the base path stands for in the decoded path ends
			// with its last segment's name.
			end := p.baseEnd(c.base)
			name := c.base[strings.LastIndexByte(c.base, '/')+1:]
			assert.True(t, strings.HasSuffix(p.decoded[:end], name), "%q ends %q", p.decoded[:end], name)
			assert.Equal(t, p.routedOn(), c.base+looseSegments("/x" + p.decoded[end:])[len("/x"):], "the rest is what follows the base path")
		})
	}
}

func TestNormalizePathAllocatesNothingWithoutDotSegments(t *testing.T) {
	u, err := url.ParseRequestURI("/api/v1/users/42/orders.json?x=1")
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		if p, why := normalizePath(u); why != "" || p.escaped != "" {
			t.Fatal("changed")
		}
	})
	assert.Zero(t, allocs)
}

// rawRequest sends one request line as written (no client cleans it up)
// over TLS and returns the response.
func rawRequest(t *testing.T, te *testEdge, host, uri string) (*http.Response, string) {
	t.Helper()
	c, err := tls.Dial("tcp", te.addr, &tls.Config{ServerName: host, RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", uri, host)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestPathTraversalNeverReachesTheBackend(t *testing.T) {
	testCertDir(t)
	var mu sync.Mutex
	var seen []string
	rec := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RequestURI)
		mu.Unlock()
		fmt.Fprint(w, r.RequestURI)
	}))
	admin := nameBackend(t, "admin")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "public"
environment = "test"
base_path = "/public"
target = "http://%s/api/public"
`, rec.addr) + proxyTOML("test", "admin", "/admin", admin.addr),
	})
	for _, uri := range []string{"/public/../../admin", "/public/..%2F..%2Fadmin", "/public/%2e%2e/%2e%2e/admin", "/public/..%2f..%2f..%2fetc/passwd"} {
		t.Run("refused "+uri, func(t *testing.T) {
			resp, body := rawRequest(t, te, "test.acme.com", uri)
			f := requireFault(t, resp, body, http.StatusBadRequest, "request.invalid")
			assert.Contains(t, f.Fault.Message, "climbs above the root")
		})
	}
	mu.Lock()
	assert.Empty(t, seen, "no traversal reached the backend")
	mu.Unlock()

	cases := []struct{ uri, backend, body string }{
		{"/public/a%20b/c?x=%2e%2e", "public", "/api/public/a%20b/c?x=%2e%2e"}, // kept as sent
		{"/public/a%2Fb", "public", "/api/public/a%2Fb"},
		{"/public/x/../y", "public", "/api/public/y"},
		{"/public/x/%2e%2e/y%20z", "public", "/api/public/y%20z"},
		{"/public/./.", "public", "/api/public/"},
		{"/public/../admin/7", "admin", "admin /7"}, // resolved first, then routed
	}
	for _, c := range cases {
		t.Run("resolved "+c.uri, func(t *testing.T) {
			resp, body := rawRequest(t, te, "test.acme.com", c.uri)
			require.Equal(t, 200, resp.StatusCode, body)
			assert.Equal(t, c.body, body)
		})
	}
}

// An encoded NUL in the path is refused, as nginx does ("%00" is a 400
// there): a backend that hands the path to C (a file name, a CGI script)
// reads it cut short at the NUL, "/files/x.php%00.jpg" as "/files/x.php".
// The query is the backend's to read and is passed on as sent.
func TestEncodedNULInPathIsRefused(t *testing.T) {
	rec := recordingBackend(t)
	te, _ := oneEnv(t, rec, "", "")
	for _, uri := range []string{"/files/x.php%00.jpg", "/%00", "/a%00/../b"} {
		resp, body := rawH1(t, te.addr, "test.acme.com", "GET "+uri+" HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", false)
		require.NotNil(t, resp, uri)
		requireFault(t, resp, body, http.StatusBadRequest, "request.invalid")
	}
	h := dialH2(t, te.addr, "test.acme.com")
	h.headers(1, true, h2get("GET", "test.acme.com", "/files/x.php%00.jpg")...)
	r := h.result(1)
	assert.Equal(t, http.StatusBadRequest, r.status, "%+v", r)
	assert.Zero(t, rec.count(), "no NUL reached the backend")

	resp, body := rawH1(t, te.addr, "test.acme.com", "GET /files/x?q=%00 HTTP/1.1\r\nHost: test.acme.com\r\n\r\n", false)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "/files/x?q=%00", rec.last(t).uri)
}

// A "." or ".." segment with path parameters (".;x", "..;x") is refused:
// Java servers (Tomcat, Jetty, Spring; Jakarta Servlet 6.0 3.5.2) remove
// the parameters first and then resolve the segment, so
// "/public/..;/admin" reached a Tomcat behind target "/api/public" as
// "/admin", out of the proxy's target path, while edged had routed it
// to /public. The Servlet specification now rejects such a path too.
func TestDotSegmentWithParametersIsRefused(t *testing.T) {
	testCertDir(t)
	rec := recordingBackend(t)
	te, _ := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "public"
environment = "test"
base_path = "/public"
target = "http://%s/api/public"
`, rec.addr),
	})
	for _, uri := range []string{"/public/..;/admin", "/public/x/..;jsessionid=1/..;/admin", "/public/.;/x", "/public/..%3B/admin", "/public/x/..;"} {
		resp, body := rawRequest(t, te, "test.acme.com", uri)
		f := requireFault(t, resp, body, http.StatusBadRequest, "request.invalid")
		assert.Contains(t, f.Fault.Message, "parameters", uri)
	}
	h := dialH2(t, te.addr, "test.acme.com")
	h.headers(1, true, h2get("GET", "test.acme.com", "/public/..;/admin")...)
	r := h.result(1)
	assert.Equal(t, http.StatusBadRequest, r.status, "%+v", r)
	assert.Zero(t, rec.count(), "no dot segment with parameters reached the backend")

	// Parameters on other segments, and names that only start with dots,
	// are the backend's.
	for _, uri := range []string{"/public/a;b/c", "/public/..x;y/z", "/public/...;/z", "/public/x;/..y"} {
		resp, body := rawRequest(t, te, "test.acme.com", uri)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", uri, body)
		assert.Equal(t, "/api"+uri, rec.last(t).uri)
	}
}

// The request's boundary after the base path reaches the backend as a
// "/": "/public%2Fx" is routed to /public as "/public/x" (matching is on
// the decoded path), and went to the backend as "/api/public%2Fx", one
// segment "public/x" beside the target path to a server that keeps "%2F"
// apart from "/" (Go's ServeMux, Apache and Tomcat, which refuse it).
// nginx forwards "/api/public/x" there. What follows the boundary keeps
// its escaping.
func TestEncodedSlashAfterTheBasePathIsForwardedAsASlash(t *testing.T) {
	checkForwardedURIs(t, `
[[proxy]]
name = "bare"
environment = "test"
base_path = "/bare"
upstream = "up"
`, []forwardedURI{
		{"/public%2Fx", "/api/public/x"},
		{"/public%2fx%2Fy?q=%2F", "/api/public/x%2Fy?q=%2F"},
		{"/public%2F", "/api/public/"},
		{"/bare%2Fx", "/x"},
		{"/public/x%2Fy", "/api/public/x%2Fy"},
	})
}

// A request that escapes a character of the base path ("/%70ublic" for
// "/public") keeps the escaping of what follows it, as any path without
// dot segments does: its rest was decoded and escaped again, so
// "/%70ublic/a%2Fb" reached the backend as "/api/public/a/b", two
// segments where the client sent one.
func TestEscapedBasePathKeepsTheRestAsSent(t *testing.T) {
	checkForwardedURIs(t, `
[[proxy]]
name = "books"
environment = "test"
base_path = "/bücher"
upstream = "up"
target_path = "/books"
`, []forwardedURI{
		{"/%70ublic/a%2Fb", "/api/public/a%2Fb"},
		{"/%70ublic/%41%7e", "/api/public/%41%7e"},
		{"/%70ublic%2Fa%2Fb", "/api/public/a%2Fb"},
		{"/%70ublic", "/api/public"},
		{"/b%C3%BCcher/x%2Fy", "/books/x%2Fy"},
		{"/b%c3%bccher%2F", "/books/"},
	})
}

// forwardedURI is a request target and the one the backend gets for it.
type forwardedURI struct{ uri, backend string }

// checkForwardedURIs starts an edge whose proxy "public" (base path
// /public, target path /api/public) and those of extraProxies (TOML on
// upstream "up") forward to one recording backend, and checks what the
// backend gets for each request.
func checkForwardedURIs(t *testing.T, extraProxies string, cases []forwardedURI) {
	t.Helper()
	testCertDir(t)
	rec := recordingBackend(t)
	te, _ := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[upstream]]
name = "up"
environment = "test"
nodes = [{ url = "http://%s" }]

[[proxy]]
name = "public"
environment = "test"
base_path = "/public"
upstream = "up"
target_path = "/api/public"
`, rec.addr) + extraProxies,
	})
	for _, c := range cases {
		resp, body := rawRequest(t, te, "test.acme.com", c.uri)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", c.uri, body)
		assert.Equal(t, c.backend, rec.last(t).uri, c.uri)
	}
}

// TestDoubleSlashIsRoutedAsTheBackendReadsIt: runs of "/" are merged
// before routing, as nginx does by default (merge_slashes), and the
// backend gets the merged path. "/api//internal/x" matched no base path
// "/api/internal": it went to the /api proxy, whose backend (most merge
// slashes, or redirect to the clean path) then served its own
// "/v1/internal/x", which the more specific proxy is there to shadow.
func TestDoubleSlashIsRoutedAsTheBackendReadsIt(t *testing.T) {
	testCertDir(t)
	api := nameBackend(t, "api")
	internal := nameBackend(t, "internal")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "api"
environment = "test"
base_path = "/api"
target = "http://%s/v1"
`, api.addr) + proxyTOML("test", "internal", "/api/internal", internal.addr),
	})
	cases := []struct{ uri, body string }{
		{"/api//internal/x", "internal /x"},
		{"//api/internal//x", "internal /x"},
		{"/api/internal", "internal /"},
		{"/api//users//7?q=a//b", "api /v1/users/7"},
		{"/api//x//../internal/y", "internal /y"},
	}
	for _, c := range cases {
		t.Run(c.uri, func(t *testing.T) {
			resp, body := rawRequest(t, te, "test.acme.com", c.uri)
			require.Equal(t, 200, resp.StatusCode, body)
			assert.Equal(t, c.body, body)
		})
	}
	resp, _ := rawRequest(t, te, "test.acme.com", "/api//users//7?q=a//b")
	assert.Equal(t, "/v1/users/7?q=a//b", resp.Header.Get("X-Seen-Uri"), "the query is the backend's")
	// A stray "//" (a client joining its base URL and a path) does not
	// change what the client escaped: "group%2Fproject" is one segment
	// to a backend that keeps "%2F" apart from "/" (GitLab's project
	// ids, Jenkins' branch names), as it is without the "//".
	for uri, want := range map[string]string{
		"/api/projects/group%2Fproject/x%3By":  "/v1/projects/group%2Fproject/x%3By",
		"/api//projects/group%2Fproject/x%3By": "/v1/projects/group%2Fproject/x%3By",
	} {
		resp, body := rawRequest(t, te, "test.acme.com", uri)
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Equal(t, want, resp.Header.Get("X-Seen-Uri"), uri)
	}
}

// TestPathParametersAreRoutedAsTheBackendReadsThem: a segment's
// parameters (";" to the segment's end) are left out when a request is
// matched against base paths, as Java servers (Tomcat, Jetty, Spring)
// read them. "/api/internal;x" matched no base path "/api/internal" (its
// segment "internal;x" is not "internal"): it went to the /api proxy,
// whose Java backend read "/v1/internal" and served what the more
// specific base path is there to shadow (the "/admin;" bypass of Apache
// Shiro, CVE-2020-1957). nginx, HAProxy and Envoy match "/api/internal"
// as a plain prefix, and route it there too. What follows the base path
// is forwarded as sent, the parameters of its last segment with it.
func TestPathParametersAreRoutedAsTheBackendReadsThem(t *testing.T) {
	checkShadowing(t, []shadowCase{
		{"/api/internal;jsessionid=1", "internal", "/;jsessionid=1"},
		{"/api/internal;x/y?q=1", "internal", "/;x/y?q=1"},
		{"/api;x/internal/y", "internal", "/y"},
		{"/api/;x/internal", "internal", "/"},
		{"/api;a/;b/internal;c", "internal", "/;c"},
		{"/api/internal%3Bx", "internal", "/%3Bx"}, // matched decoded, as "%2F" is
		// Parameters of segments that no base path names are the
		// backend's, as are names that only start like one.
		{"/api;x", "api", "/v1;x"},
		{"/api/v2;x/y", "api", "/v1/v2;x/y"},
		{"/api;x/users", "api", "/v1;x/users"},
		{"/api/internalx;y", "api", "/v1/internalx;y"},
	})
}

// TestBackslashIsRoutedAsTheBackendReadsIt: a "\" (sent as is or as
// "%5C") separates segments when a request is matched against base
// paths, as IIS and ASP.NET read it. "/api/internal\x" matched no base
// path "/api/internal" (its segment "internal\x" is not "internal"): it
// went to the /api proxy, whose IIS backend read "/v1/internal/x" and
// served what the more specific base path is there to shadow. nginx,
// HAProxy and Envoy route it to /api/internal (a plain prefix). The "\"
// after the base path reaches the backend as a "/", as a "%2F" there
// does.
func TestBackslashIsRoutedAsTheBackendReadsIt(t *testing.T) {
	checkShadowing(t, []shadowCase{
		{`/api/internal\x`, "internal", "/x"},
		{`/api\internal`, "internal", "/"},
		{`/api%5Cinternal%5cx?q=\`, "internal", "/x?q=\\"},
		{`/api\\internal`, "internal", "/"},
		{`/api\x`, "api", "/v1/x"},
		// What follows the base path is the backend's, as sent.
		{`/api/v2\x`, "api", `/v1/v2\x`},
		{`/api/internalx\y`, "api", `/v1/internalx\y`},
	})
}

// A path is forwarded with the client's escaping (README, Forwarding)
// when it also holds a byte that net/url would escape (a raw '|', '{',
// '"' or '^', which the request line allows): url.URL.EscapedPath then
// escapes the decoded path afresh, and "group%2Fproject", one segment,
// reached the backend as "group/project", two, where the same request
// without the '|' kept it. Over HTTP/1.1 and HTTP/2, with and without a
// "//" to merge.
func TestEscapingIsKeptBesideARawByte(t *testing.T) {
	testCertDir(t)
	rec := recordingBackend(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "api"
environment = "test"
base_path = "/api"
target = "http://%s/v1"
`, rec.addr),
	})
	cases := map[string]string{
		"/api/projects/group%2Fproject/x|y":    "/v1/projects/group%2Fproject/x|y",
		"/api/projects/group%2Fproject/{x}":    "/v1/projects/group%2Fproject/{x}",
		`/api/a%2Fb/"q"^`:                      `/v1/a%2Fb/"q"^`,
		"/api//projects/group%2Fproject/x|y":   "/v1/projects/group%2Fproject/x|y",
		"/api/a%2Fb%7C/c|d?k=%2F|":             "/v1/a%2Fb%7C/c|d?k=%2F|",
		"/api%2Fa%2Fb|c":                       "/v1/a%2Fb|c",
		"/api/x/../projects/group%2Fproject/|": "/v1/projects/group/project/%7C", // dot segments: escaped afresh, as README says
	}
	for uri, want := range cases {
		resp, body := rawRequest(t, te, "test.acme.com", uri)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", uri, body)
		assert.Equal(t, want, rec.last(t).uri, "HTTP/1.1 %s", uri)

		h := dialH2(t, te.addr, "test.acme.com")
		h.headers(1, true, h2get("GET", "test.acme.com", uri)...)
		r := h.result(1)
		require.Equal(t, http.StatusOK, r.status, "%s: %+v", uri, r)
		assert.Equal(t, want, rec.last(t).uri, "HTTP/2 %s", uri)
	}
}

// TestDotSegmentNextToABackslashIsRefused: IIS and ASP.NET, and some
// frameworks, read "\" (sent as is or as "%5C") as "/": "/public/..\admin"
// reached such a backend behind target "/api/public" as "/api/admin", out
// of the proxy's target path, while edged had routed it to /public.
func TestDotSegmentNextToABackslashIsRefused(t *testing.T) {
	testCertDir(t)
	rec := recordingBackend(t)
	te, _ := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "public"
environment = "test"
base_path = "/public"
target = "http://%s/api/public"
`, rec.addr),
	})
	for _, uri := range []string{`/public/..\admin`, "/public/..%5Cadmin", "/public/x/..%5c..%5cadmin", `/public\..\..\admin`, `/public/.\x`} {
		resp, body := rawRequest(t, te, "test.acme.com", uri)
		f := requireFault(t, resp, body, http.StatusBadRequest, "request.invalid")
		assert.Contains(t, f.Fault.Message, "backslash", uri)
	}
	h := dialH2(t, te.addr, "test.acme.com")
	h.headers(1, true, h2get("GET", "test.acme.com", "/public/..%5Cadmin")...)
	r := h.result(1)
	assert.Equal(t, http.StatusBadRequest, r.status, "%+v", r)
	assert.Zero(t, rec.count(), "no dot segment next to a backslash reached the backend")

	// A backslash elsewhere is the backend's.
	resp, body := rawRequest(t, te, "test.acme.com", "/public/a%5Cb/..x%5Cy")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "/api/public/a%5Cb/..x%5Cy", rec.last(t).uri)
}

// BenchmarkNormalizePath is the per-request cost of the path checks on a
// path that needs nothing done (the common case).
func BenchmarkNormalizePath(b *testing.B) {
	u, err := url.ParseRequestURI("/api/v1/users/42/orders.json?x=1")
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, why := normalizePath(u); why != "" {
			b.Fatal(why)
		}
	}
}

// shadowCase is a request to an edge serving base path "/api" (backend
// "api", target path "/v1") and "/api/internal" (backend "internal"),
// the backend it must reach, and the request target that backend sees.
type shadowCase struct{ uri, backend, seen string }

// checkShadowing sends each case to such an edge over TLS.
func checkShadowing(t *testing.T, cases []shadowCase) {
	testCertDir(t)
	api := nameBackend(t, "api")
	internal := nameBackend(t, "internal")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			fmt.Sprintf(`
[[proxy]]
name = "api"
environment = "test"
base_path = "/api"
target = "http://%s/v1"
`, api.addr) + proxyTOML("test", "internal", "/api/internal", internal.addr),
	})
	for _, c := range cases {
		t.Run(c.uri, func(t *testing.T) {
			resp, body := rawRequest(t, te, "test.acme.com", c.uri)
			require.Equal(t, 200, resp.StatusCode, body)
			assert.Equal(t, c.backend, resp.Header.Get("X-Backend"))
			assert.Equal(t, c.seen, resp.Header.Get("X-Seen-Uri"))
		})
	}
}
