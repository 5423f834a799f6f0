package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/config"
)

// TestStatusPageShowsTheConfigAndEscapesWhatFilesSay renders the page of a
// running server with two environments, a refused reload whose message
// and file name carry markup, an ejected node and a history, and checks
// what it shows and that nothing from a file became markup.
func TestStatusPageShowsTheConfigAndEscapesWhatFilesSay(t *testing.T) {
	testCertDir(t)
	a := nameBackend(t, "a")
	failing := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml":   envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com", "*.test.acme.com") + proxyTOML("test", "users", "/users", a.addr),
		"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") + proxyTOML("uat", "orders", "/orders", failing.addr) +
			"\n[upstream.health.passive]\nfailures = 1\neject = \"30s\"\n",
	})
	resp, _ := te.get("test.acme.com", "/users/1")
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = te.get("uat.acme.com", "/orders/1")
	require.Equal(t, 502, resp.StatusCode, "the failing node fails and is ejected")

	const evil = `<script>alert("x")</script>`
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "file change", Generation: 1, Errors: config.Errors{
		{Pos: config.Pos{File: "conf.d/uat.toml", Line: 14}, Object: `proxy "orders"`, Field: "base_path", Msg: "unknown key " + evil},
		{Pos: config.Pos{File: "conf.d/" + evil + ".toml"}, Msg: "cannot parse"},
	}})
	te.srv.SetRecentGenerations(func() []GenerationSummary {
		return []GenerationSummary{{Generation: 1, Time: time.Now(), Trigger: "start " + evil, Changes: []string{"added proxy users (test)"}}}
	})

	res, err := http.Get("http://" + te.admin + "/")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	assert.Contains(t, res.Header.Get("Content-Security-Policy"), "script-src 'self'")
	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)

	for _, want := range []string{
		`Serving generation <strong id="generation">1</strong>`,
		`<span class="bad">refused</span>`,
		`<code>conf.d/uat.toml:14</code> proxy &#34;orders&#34;: base_path: unknown key &lt;script&gt;`,
		`<code>conf.d/&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;.toml</code> cannot parse`,
		`<td class="name">test</td>`, `<td class="name">uat</td>`, // environments
		`<td class="name">test-group</td><td>test.acme.com, *.test.acme.com</td><td>test</td>`,
		`<td class="name">users</td><td><code>/users</code></td><td>users-up</td>`,
		`<td class="name">orders</td><td><code>/orders</code></td><td>orders-up</td>`,
		`<code>http://` + a.addr + `</code>`,
		`<span class="bad">ejected</span> since`,
		`<td class="name">uat-group</td><td>uat.acme.com</td>`, // the certificate's names
		`start &lt;script&gt;`, `added proxy users (test)`,
		`<svg class="spark"`,
	} {
		assert.Contains(t, page, want)
	}
	assert.Regexp(t, `<code>http://`+regexp.QuoteMeta(failing.addr)+`</code></td>\s*<td><span class="bad">ejected</span> since [^<]+: ejected after 1 failures in a row: .+</td>`, page, "since when and why the node is out")
	assert.Equal(t, 1, strings.Count(page, "<script"), "the page's own script tag only")
	assert.NotContains(t, page, evil)

	// The page's assets are its own and served from here.
	for path, ctype := range map[string]string{"/assets/page.js": "text/javascript; charset=utf-8", "/assets/page.css": "text/css; charset=utf-8"} {
		res, err := http.Get("http://" + te.admin + path)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, 200, res.StatusCode, path)
		assert.Equal(t, ctype, res.Header.Get("Content-Type"), path)
	}
	code, _ = adminGet(t, te, "/assets/page.html")
	assert.Equal(t, 404, code, "the template is not an asset")
	code, _ = adminGet(t, te, "/nothing")
	assert.Equal(t, 404, code)
}

// TestStatusJSONCarriesThePage: the fields page.js renders are on /status
// next to the ones it always had.
func TestStatusJSONCarriesThePage(t *testing.T) {
	testCertDir(t)
	a := nameBackend(t, "a")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml":   envTOML("test", "") + groupTOML("test", "test-group", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", a.addr),
	})
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "SIGHUP", Generation: 1, Errors: config.Errors{
		{Pos: config.Pos{File: "conf.d/test.toml", Line: 3}, Msg: "bad"},
	}})
	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	for _, k := range []string{"generation", "applied", "environments", "certificates", "file_errors", "last_reload", "now", "groups", "certificate_details", "reload_errors"} {
		assert.Contains(t, st, k)
	}
	assert.Equal(t, []any{map[string]any{"where": "conf.d/test.toml:3", "message": "bad"}}, st["reload_errors"])
	env := st["environments"].(map[string]any)["test"].(map[string]any)
	for _, k := range []string{"hash", "pool", "in_flight", "upstreams", "rates", "proxies"} {
		assert.Contains(t, env, k)
	}
	assert.Equal(t, []any{map[string]any{"name": "users", "base_path": "/users", "upstream": "users-up", "requests_per_second": nil}}, env["proxies"])
	assert.NotContains(t, env["rates"], "series", "only when asked")
	_, body = adminGet(t, te, "/status?series=1")
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	env = st["environments"].(map[string]any)["test"].(map[string]any)
	series := env["rates"].(map[string]any)["series"].(map[string]any)
	assert.Equal(t, 5.0, series["step_seconds"])
	assert.Equal(t, []any{}, series["requests_per_second"], "no 5 s sampled yet")
	certs := st["certificate_details"].([]any)
	require.Len(t, certs, 1)
	c := certs[0].(map[string]any)
	assert.Equal(t, "test-group", c["virtual_host"])
	assert.Contains(t, c["names"], "test.acme.com")
	assert.Greater(t, c["days_left"], 0.0)
}

func TestCertClassAndPageAgo(t *testing.T) {
	for days, want := range map[int]string{-1: "crit", 0: "crit", 13: "crit", 14: "warn", 29: "warn", 30: "", 400: ""} {
		assert.Equal(t, want, certClass(days), "%d days", days)
	}
	now := time.Now()
	assert.Equal(t, "0s ago", pageAgo(now, now.Add(time.Second)), "a clock a little ahead is now")
	assert.Equal(t, "59s ago", pageAgo(now, now.Add(-59*time.Second)))
	assert.Equal(t, "2m ago", pageAgo(now, now.Add(-150*time.Second)))
	assert.Equal(t, "3h ago", pageAgo(now, now.Add(-3*time.Hour)))
	assert.Equal(t, "2d ago", pageAgo(now, now.Add(-50*time.Hour)))
}

// BenchmarkStatusPage renders the page of 20 environments of 25 proxies
// with a full 15 minutes of samples: what one open browser tab costs
// every 2 s is /status, this is the first load.
func BenchmarkStatusPage(b *testing.B) {
	testCertDir(b)
	a := nameBackend(b, "a")
	files := map[string]string{"server.toml": serverTOML(b.TempDir(), "")}
	for e := 0; e < 20; e++ {
		env := fmt.Sprintf("env%d", e)
		var s string
		for p := 0; p < 25; p++ {
			s += proxyTOML(env, fmt.Sprintf("p%d", p), fmt.Sprintf("/p%d", p), a.addr)
		}
		files[env+".toml"] = envTOML(env, "") + groupTOML(env, "g"+env, "test.acme.com", env+".test.acme.com") + s
	}
	te := startEdge(b, files)
	for range seriesLen {
		te.srv.sampler.tick(te.srv.Snapshot())
	}
	b.Run("page", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			w := httptest.NewRecorder()
			te.srv.servePage(w, httptest.NewRequest("GET", "/", nil))
		}
	})
	b.Run("status-series", func(b *testing.B) {
		b.ReportAllocs()
		h := te.srv.adminHandler()
		for i := 0; i < b.N; i++ {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/status?series=1", nil))
		}
	})
}

// TestStatusBoundsTheErrorsOfAReload: a 2 MiB file of "[[proxy]]" lines
// is refused with 838,820 errors; /status carried every one three times
// (last_reload, file_errors, reload_errors: 400 MB, 3 GB allocated, 16 s)
// and the page once, every 2 s while a page is open. The record /status
// keeps has the first maxReportedErrors, and how many more the reload had.
func TestStatusBoundsTheErrorsOfAReload(t *testing.T) {
	te := edgeTo(t, nil, "")
	const n = 50000
	errs := make(config.Errors, n)
	for i := range errs {
		errs[i] = config.Error{Pos: config.Pos{File: "conf.d/x.toml", Line: i + 1}, Object: `proxy "p"`, Field: "name", Msg: "required"}
	}
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "file change", Generation: 1, Errors: errs})
	assert.Len(t, errs, n, "the caller's record is left whole")

	code, body := adminGet(t, te, "/status?series=1")
	require.Equal(t, 200, code)
	assert.Less(t, len(body), 100<<10, "bounded, whatever the reload refused")
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.ReloadErrors, maxReportedErrors)
	assert.Equal(t, "conf.d/x.toml:1", st.ReloadErrors[0].Where, "the first ones, in order")
	assert.Equal(t, n-maxReportedErrors, st.ReloadErrorsOmitted)
	require.NotNil(t, st.LastReload)
	assert.Len(t, st.LastReload.Errors, maxReportedErrors)
	assert.Equal(t, n-maxReportedErrors, st.LastReload.ErrorsOmitted)
	assert.Len(t, st.FileErrors["conf.d/x.toml"], maxReportedErrors)

	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)
	assert.Less(t, len(page), 100<<10)
	assert.Contains(t, page, fmt.Sprintf("and %d more errors", n-maxReportedErrors))

	// A reload that succeeds clears them.
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "file change", OK: true, Generation: 2})
	_, body = adminGet(t, te, "/status")
	st = Status{}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Empty(t, st.ReloadErrors)
	assert.Zero(t, st.ReloadErrorsOmitted)
}

// A node the passive check ejected and the active check then took down is
// shown down, with the active check's reason: that verdict keeps it out
// even in panic mode, and outlasts the ejection. The page showed it
// "ejected", with the reason of whichever verdict came last.
func TestStatusPageShowsADownNodeDownThoughEjected(t *testing.T) {
	testCertDir(t)
	failing := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"uat.toml": envTOML("uat", "") + groupTOML("uat", "uat-group", "uat.acme.com", "uat.acme.com") + proxyTOML("uat", "orders", "/orders", failing.addr) +
			"\n[upstream.health.passive]\nfailures = 1\neject = \"1h\"\n" +
			"\n[upstream.health.active]\npath = \"/health\"\ninterval = \"2s\"\nunhealthy = 2\n",
	})
	// The first probe failed (one of two); the request fails and ejects.
	resp, _ := te.get("uat.acme.com", "/orders/1")
	require.Equal(t, 502, resp.StatusCode, "the failing node fails and is ejected")
	var nodes []NodeStatus
	for range 100 { // the second probe, 2 s on
		nodes = te.srv.Status().Environments["uat"].Upstreams[0].Nodes
		if nodes[0].Stats.Down {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.True(t, nodes[0].Stats.Down, "down after two failed probes")
	require.True(t, nodes[0].Stats.Ejected, "and still ejected")
	assert.Contains(t, nodes[0].OutReason, "down after 2 failed health checks")

	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)
	assert.Regexp(t, `<code>http://`+regexp.QuoteMeta(failing.addr)+`</code></td>\s*<td><span class="bad">down</span> since [^<]+: down after 2 failed health checks: .+</td>`, page)
}

// TestStatusBoundsALongNameInAReloadError: a name is quoted in full by
// each error about its object, with its unprintable runes as 10-byte
// escapes: a 1.6 MB file naming one environment with 400,000 of them, and
// a few wrong fields, made 11 errors of 36 MB, and /status (which shows
// each three times) 119 MB on every read. Each part of an error reported
// is cut, saying how long it was.
func TestStatusBoundsALongNameInAReloadError(t *testing.T) {
	te, _ := threeGroups(t, "")
	long := strings.Repeat("\U0010fffe", 100000)
	bad := "[[environment]]\nname = \"" + long + "\"\nworkers = -1\nqueue = -1\nqueue_timeout = \"x\"\nreject_delay = \"x\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(te.dir, "zz-bad.toml"), []byte(bad), 0o644))
	rl := &Reloader{Dir: te.dir, Server: te.srv, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rec := rl.Reload("test")
	require.False(t, rec.OK)
	require.Greater(t, len(rec.Errors), 2)

	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	assert.Less(t, len(body), 256<<10, "bounded, whatever the length of a name (the file has %d bytes)", len(bad))
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.NotEmpty(t, st.ReloadErrors)
	cut := regexp.MustCompile(`\.\.\. \(\d+ bytes\)`)
	for _, e := range st.ReloadErrors {
		assert.True(t, cut.MatchString(e.Message), "a cut part says how long it was (a message of %d bytes)", len(e.Message))
	}
	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)
	assert.Less(t, len(page), 256<<10)
}

// writeNamedCert writes dir/name.pem and dir/name.key: a self-signed
// certificate for dnsNames, which x509 takes as any IA5 string (control
// characters included).
func writeNamedCert(t *testing.T, dir, name string, dnsNames []string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dnsNames[0]}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
}

// An operator may read the page or /status with curl in a terminal, which
// acts on escape sequences (retitle the window, erase lines, move the
// cursor). What reaches them comes from files: a certificate's names
// (x509 takes control characters in them), file names in a refused
// reload's errors and in triggers (any byte but NUL and /). html/template
// escapes markup, not those; encoding/json escapes C0 controls and
// invalid UTF-8, not C1 controls (U+009B is CSI) or the bidirectional
// ones. Neither answer carries any of them: the page shows them as the
// CLI does (\x1b, \u009b, \u202e), /status as JSON escapes.
func TestStatusPageAndStatusSendNoControlCharacters(t *testing.T) {
	testCertDir(t)
	a := nameBackend(t, "a")
	certs := t.TempDir()
	writeNamedCert(t, certs, "odd", []string{"test.acme.com", "x\x1b]0;owned\x07.acme.com"})
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml": envTOML("test", "") + fmt.Sprintf("[[env_group]]\nname = \"g\"\nhostnames = [\"test.acme.com\"]\nenvironments = [\"test\"]\n"+
			"[[virtual_host]]\nname = \"g\"\ncert_file = %q\nkey_file = %q\n", filepath.Join(certs, "odd.pem"), filepath.Join(certs, "odd.key")) +
			proxyTOML("test", "users", "/users", a.addr),
	})
	file := "conf.d/x\x1b[2K\u009b31m\u202eevil\r\xff.toml"
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "file change: " + file, Generation: 1, Errors: config.Errors{
		{Pos: config.Pos{File: file, Line: 3}, Msg: "cannot parse"},
	}})
	te.srv.SetRecentGenerations(func() []GenerationSummary {
		return []GenerationSummary{{Generation: 1, Time: time.Now(), Trigger: "file change " + file}}
	})

	for _, path := range []string{"/", "/status", "/status?series=1"} {
		code, body := adminGet(t, te, path)
		require.Equal(t, 200, code, path)
		for i := 0; i < len(body); {
			r, n := utf8.DecodeRuneInString(body[i:])
			bad := r == utf8.RuneError && n == 1 || r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f || r == 0x202e
			if !assert.False(t, bad, "%s: %U at byte %d: %q", path, r, i, body[max(i-40, 0):min(i+40, len(body))]) {
				break
			}
			i += n
		}
	}
	_, page := adminGet(t, te, "/")
	assert.Contains(t, page, `x\x1b]0;owned\x07.acme.com`, "the certificate's name, shown")
	assert.Contains(t, page, `conf.d/x\x1b[2K\u009b31m\u202eevil\x0d\xff.toml`, "the file's name, shown")
	_, body := adminGet(t, te, "/status")
	var st Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.ReloadErrors, 1)
	assert.Equal(t, "conf.d/x\x1b[2K\u009b31m\u202eevil\r\ufffd.toml:3", st.ReloadErrors[0].Where, "the same name, decoded")
}

// TestStatusReadsAtOnceShareOneRendering: reads of /status, of
// /status?series=1 and of the page that come while one of the same is
// rendered get that rendering, as scrapes of /metrics do. Each rendered
// its own: with 10,000 nodes /status is 6 MB and 57 MB allocated to
// render it, and the 64 admin connections reading it at once (any local
// user's) rendered 64 of them.
func TestStatusReadsAtOnceShareOneRendering(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "api", "/api", b.addr),
	})
	for _, path := range []string{"/status", "/status?series=1", "/"} {
		t.Run(path, func(t *testing.T) {
			var renders, arrived atomic.Int64
			release := make(chan struct{})
			hook := func(arriving bool) {
				if arriving {
					arrived.Add(1)
					return
				}
				renders.Add(1)
				<-release
			}
			te.srv.testHookAnswer.Store(&hook)
			defer te.srv.testHookAnswer.Store(nil)

			const reads = 8
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			bodies := make(chan string, reads)
			for range reads {
				go func() {
					resp, err := c.Get("http://" + te.admin + path)
					if !assert.NoError(t, err) {
						bodies <- ""
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					bodies <- string(body)
				}()
			}
			require.Eventually(t, func() bool { return arrived.Load() == reads }, 5*time.Second, 5*time.Millisecond)
			time.Sleep(200 * time.Millisecond) // each on its way from the hook into the rendering under way
			close(release)
			first := <-bodies
			assert.Contains(t, first, "test.acme.com")
			for range reads - 1 {
				assert.Equal(t, first, <-bodies)
			}
			assert.EqualValues(t, 1, renders.Load(), "one rendering for the reads that came during it")
		})
	}
}

// TestStatusReadAfterAReloadIsNotAnEarlierRendering: a read of /status
// that arrives once a reload is applied (and recorded) shows it, even
// while a rendering begun before the reload is under way: whoever runs
// "edged reload" and then reads /status must not get the generation
// before it from a status page's read that was rendering then.
func TestStatusReadAfterAReloadIsNotAnEarlierRendering(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "api", "/api", b.addr),
	})
	renders, arrived, release := holdFirstRendering(t, te, nil)

	generation := func(gens chan<- uint64) {
		resp, err := http.Get("http://" + te.admin + "/status")
		if !assert.NoError(t, err) {
			gens <- 0
			return
		}
		defer resp.Body.Close()
		var st Status
		assert.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
		gens <- st.Generation
	}
	before, after := make(chan uint64, 1), make(chan uint64, 1)
	go generation(before)
	require.Eventually(t, func() bool { return renders.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	writeFiles(t, te.dir, map[string]string{"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "api", "/api2", b.addr)})
	te.reload()
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "test", OK: true, Generation: te.srv.Snapshot().Generation})
	go generation(after)
	require.Eventually(t, func() bool { return arrived.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // on its way from the hook into a rendering
	close(release)
	assert.EqualValues(t, 1, <-before)
	assert.EqualValues(t, 2, <-after, "the read after the reload shows it")
}

// TestStatusListsAFewNamesOfEachCertificate: certificate_details copied
// every name of each virtual host's certificate, and one SAN certificate
// commonly serves many groups: 400 virtual hosts sharing one of 2,000
// names made /status 24 MB (173 MB allocated, 0.6 s, at every read, and
// the page reads it every 2 s). Each entry now lists the certificate's
// first 10 names and says how many it has.
func TestStatusListsAFewNamesOfEachCertificate(t *testing.T) {
	const groups, names = 200, 2000
	a := nameBackend(t, "a")
	certs := t.TempDir()
	dns := []string{"big.acme.com"}
	for i := 1; i < names; i++ {
		dns = append(dns, fmt.Sprintf("h%d.big.acme.com", i))
	}
	writeNamedCert(t, certs, "big", dns)
	var b strings.Builder
	b.WriteString(envTOML("test", "") + proxyTOML("test", "users", "/users", a.addr))
	for g := range groups {
		fmt.Fprintf(&b, "[[env_group]]\nname = \"g%d\"\nhostnames = [\"h%d.big.acme.com\"]\nenvironments = [\"test\"]\n"+
			"[[virtual_host]]\nname = \"g%d\"\ncert_file = %q\nkey_file = %q\n", g, g+1, g, filepath.Join(certs, "big.pem"), filepath.Join(certs, "big.key"))
	}
	te := startEdge(t, map[string]string{"server.toml": serverTOML(t.TempDir(), ""), "test.toml": b.String()})

	code, body := adminGet(t, te, "/status")
	require.Equal(t, 200, code)
	assert.Less(t, len(body), 1<<20, "bytes of /status")
	var st struct {
		Certs []struct {
			VirtualHost string   `json:"virtual_host"`
			Names       []string `json:"names"`
			NamesTotal  int      `json:"names_total"`
		} `json:"certificate_details"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.Certs, groups)
	for _, c := range st.Certs {
		assert.Equal(t, dns[:10], c.Names, c.VirtualHost)
		assert.Equal(t, names, c.NamesTotal, c.VirtualHost)
	}
	code, page := adminGet(t, te, "/")
	require.Equal(t, 200, code)
	assert.True(t, strings.Contains(page, "h9.big.acme.com and 1990 more"), "the page lists the first 10 names and says how many more")
	assert.Less(t, len(page), 1<<20, "bytes of the page")
}
