package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium finds a Chromium or Chrome to drive. Without one the test
// skips (CI installs it: .ci/run), saying how to get it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is not installed: CI must run the status page's browser test (.ci/run installs it)")
	}
	t.Skip("Chromium is not installed; to run this test: apt-get install -y chromium")
	return ""
}

// TestStatusPageInABrowser opens the admin listener's status page of a real
// edged serving the example config in headless Chromium: it loads without
// a console error, lists the environments, shows the generation of a
// reload within 5 s without the page being reloaded, and a broken file's
// file:line; and that edged gives no answer while it is stopped. It saves a screenshot in the test's temp dir (and, with
// EDGED_SCREENSHOT=path, there too, after a minute of traffic so that the
// sparklines have something to draw: how bench/status-page.png was made).
func TestStatusPageInABrowser(t *testing.T) {
	exe := chromium(t)
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	caFile := filepath.Join(ex.certDir, "ca.pem")
	c := p.client(t, caFile)
	code, body := getBody(t, c, "https://test.acme.com/users/1")
	require.Equal(t, 200, code, body)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(1280, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Every console message, exception and browser log entry (a failed
	// request, a CSP violation) of the page.
	var (
		mu       sync.Mutex
		problems []string
	)
	consoleCtx, stopConsole := context.WithCancel(bctx)
	defer stopConsole()
	messages := chromedp.Console(consoleCtx)
	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, string(m.Type)+": "+m.String()+" ("+m.URL+")")
				mu.Unlock()
			}
		}
	}()

	url := "http://" + p.admin + "/"
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(url)))
	// page.js has replaced the server's rendering once it says "Live".
	waitText(t, bctx, "live", "Live: refreshed from /status", 10*time.Second)
	envs, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("environments")))
	require.NoError(t, err)
	for _, env := range []string{"test", "uat", "prod"} {
		assert.Regexp(t, `(?m)^\s*`+env+`\b`, envs, "the example's environment %s is listed", env)
	}
	groups, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("groups")))
	require.NoError(t, err)
	assert.Contains(t, groups, "*.uat.acme.com")
	gen := generation(t, bctx)
	// A mark on the document: a page reload would lose it.
	_, err = chromedp.Run(bctx, chromedp.Evaluate[bool](`window.edgedMark = true`))
	require.NoError(t, err)

	// A file change: a new generation, shown within 5 s of the write.
	testToml := ex.home("test", "test.toml")
	b, err := os.ReadFile(testToml)
	require.NoError(t, err)
	changed := regexp.MustCompile(`(?m)^workers = \d+`).ReplaceAll(b, []byte("workers = 7"))
	require.NotEqual(t, string(b), string(changed), "test.toml sets workers")
	require.NoError(t, os.WriteFile(testToml, changed, 0o644))
	written := time.Now()
	waitText(t, bctx, "generation", strconv.FormatUint(gen+1, 10), 5*time.Second)
	t.Logf("generation %d shown %v after the write", gen+1, time.Since(written).Round(time.Millisecond))
	envs, err = chromedp.Run(bctx, chromedp.Text(chromedp.ID("environments")))
	require.NoError(t, err)
	assert.Contains(t, envs, "0 / 7", "test's new worker count")

	// A broken file: refused, its file:line on the page. Its second
	// error carries markup, which the page shows as text.
	broken := filepath.Join(ex.confDir, "broken.toml")
	// 120 more unknown keys: the page shows the first 100 errors and says
	// how many more there are.
	var more strings.Builder
	for i := range 120 {
		fmt.Fprintf(&more, "unknown%d = 1\n", i)
	}
	require.NoError(t, os.WriteFile(broken, []byte("# refused\n[[environment]]\nname = \"staging\"\nworkerz = 3\n\"<img src=x onerror=alert(1)>\" = 1\n"+more.String()), 0o644))
	waitText(t, bctx, "config", "broken.toml:4", 5*time.Second)
	cfgText, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("config")))
	require.NoError(t, err)
	assert.Contains(t, cfgText, "refused")
	assert.Contains(t, cfgText, "workerz")
	assert.Contains(t, cfgText, "<img src=x onerror=alert(1)>", "the file's text, as text")
	assert.Contains(t, cfgText, "and 22 more errors")
	items, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#reload-errors li").length`))
	require.NoError(t, err)
	assert.Equal(t, 101, items, "100 errors and the line saying how many more")
	markup, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#config img, #config script").length`))
	require.NoError(t, err)
	assert.Zero(t, markup, "no element made of a file's text")
	assert.Equal(t, gen+1, generation(t, bctx), "the serving generation stays")

	marked, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.edgedMark === true`))
	require.NoError(t, err)
	assert.True(t, marked, "the page was updated in place, never reloaded")

	if out := os.Getenv("EDGED_SCREENSHOT"); out != "" {
		traffic(t, c, time.Minute)
		time.Sleep(2500 * time.Millisecond) // one more refresh
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	shot := filepath.Join(t.TempDir(), "status-page.png")
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("screenshot: %s", shot)
	if out := os.Getenv("EDGED_SCREENSHOT"); out != "" {
		require.NoError(t, os.WriteFile(out, png, 0o644))
		t.Logf("screenshot: %s", out)
	}

	// A frozen edged (stopped, or stuck) accepts connections and answers
	// nothing: the page says it has no answer, rather than "Live" with
	// the last data for ever, and goes on once edged answers again.
	pid := p.cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	waitText(t, bctx, "live", "Cannot reach /status (no answer within 10 s)", 15*time.Second)
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	waitText(t, bctx, "live", "Live: refreshed from /status", 5*time.Second)

	stopConsole()
	reading.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, problems, "the page logs no error or warning")
}

// waitText waits until the element with id has text containing want.
func waitText(t *testing.T, ctx context.Context, id, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById(`+strconv.Quote(id)+`) || {}).textContent || ""`))
		require.NoError(t, err)
		if last = v; strings.Contains(v, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("#%s did not show %q within %v; it shows %q", id, want, within, last)
}

func generation(t *testing.T, ctx context.Context) uint64 {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("generation")))
	require.NoError(t, err)
	g, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	require.NoError(t, err, "generation %q", s)
	return g
}

// traffic sends requests to the example's environments for d, a few a
// second, so that the page's rates and sparklines show something.
func traffic(t *testing.T, c *http.Client, d time.Duration) {
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		for _, host := range []string{"test", "uat", "prod"} {
			if i%3 == 0 || host != "prod" {
				resp, err := c.Get("https://" + host + ".acme.com/users/" + strconv.Itoa(i))
				require.NoError(t, err)
				resp.Body.Close()
			}
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// The page, refreshed by its script, shows a control character of a
// file's name as the server's rendering does (\x1b, \u202e): a
// bidirectional control would otherwise reorder the text after it (a name
// shown other than it is), and the server-rendered escape turned back
// into an invisible character at the first refresh.
func TestStatusPageShowsControlCharactersAfterARefresh(t *testing.T) {
	exe := chromium(t)
	ex := newExample(t)
	p := startServe(t, ex.confDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate("http://"+p.admin+"/")))
	waitText(t, bctx, "live", "Live: refreshed from /status", 10*time.Second)

	broken := filepath.Join(ex.confDir, "x\x1b[2K\u202eevil.toml")
	require.NoError(t, os.WriteFile(broken, []byte("[[environment]\n"), 0o644))
	waitText(t, bctx, "config", `x\x1b[2K\u202eevil.toml:`, 10*time.Second)
}
