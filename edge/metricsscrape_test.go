package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScrapeDuringReloadsSeesEveryEnvironment scrapes /metrics without a
// pause while reloads rebuild every environment (a server-wide setting
// they inherit changes). Each scrape, parsed strictly (no duplicate
// series), must hold the series of every environment: a reload swaps an
// environment's instance, it does not take it off /metrics for a while,
// which Prometheus would read as the series ending (staleness markers, an
// absent() alert firing, a gap in every graph).
func TestScrapeDuringReloadsSeesEveryEnvironment(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	const envs = 40
	stateDir := t.TempDir()
	files := map[string]string{"server.toml": serverTOML(stateDir, "max_body_bytes = 1000")}
	for i := range envs {
		name := fmt.Sprintf("sr-%02d", i)
		files[name+".toml"] = envTOML(name, "") + proxyTOML(name, "api", "/api", b.addr)
	}
	te := startEdge(t, files)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	scrapes, short := 0, 0
	var example string
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + te.admin + "/metrics")
				if !assert.NoError(t, err) {
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !assert.NoError(t, err) {
					return
				}
				n := strings.Count(string(body), "\nedged_pool_workers{")
				mu.Lock()
				scrapes++
				parse := scrapes%50 == 1
				if n != envs {
					short++
					example = fmt.Sprintf("%d environments' edged_pool_workers of %d", n, envs)
				}
				mu.Unlock()
				if parse {
					parseExposition(t, string(body)) // strictly, now and then: it is slow
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	reloads := 0
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		writeFiles(t, te.dir, map[string]string{"server.toml": serverTOML(stateDir, fmt.Sprintf("max_body_bytes = %d", 1001+i))})
		ch := te.reload()
		require.Len(t, ch.Changed, envs, "every environment is rebuilt")
		reloads++
		mu.Lock()
		s := short
		mu.Unlock()
		if s > 0 {
			break
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d reloads, %d scrapes", reloads, scrapes)
	assert.Zero(t, short, "scrapes missing environments during reloads (e.g. %s) of %d", example, scrapes)
}

// TestScrapesAtOnceShareOneRendering: scrapes that come while /metrics is
// being rendered get that rendering, not one each. Every scrape rendered
// its own page, and the page of 10,000 nodes with rules.prometheus is 47
// MB (300 MB allocated to render it): the 64 admin connections scraping
// at once held 64 of them.
func TestScrapesAtOnceShareOneRendering(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + proxyTOML("test", "api", "/api", b.addr),
	})
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

	const scrapes = 8
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	bodies := make(chan string, scrapes)
	for range scrapes {
		go func() {
			resp, err := c.Get("http://" + te.admin + "/metrics")
			if !assert.NoError(t, err) {
				bodies <- ""
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies <- string(body)
		}()
	}
	require.Eventually(t, func() bool { return arrived.Load() == scrapes }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // each on its way from the hook into the rendering under way
	close(release)
	first := <-bodies
	assert.Contains(t, first, "edged_pool_workers{")
	for range scrapes - 1 {
		assert.Equal(t, first, <-bodies)
	}
	assert.EqualValues(t, 1, renders.Load(), "one rendering for the scrapes that came during it")
}

// TestPanickedRenderingIsNotShared: a rendering that panics ends every
// read sharing it as a handler's panic does (its connection closed, no
// answer), none left waiting for it, and the next read renders anew
// rather than share the failure.
func TestPanickedRenderingIsNotShared(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + proxyTOML("test", "api", "/api", b.addr),
	})
	renders, arrived, release := holdFirstRendering(t, te, func() {
		panic(http.ErrAbortHandler) // net/http logs no stack for it
	})

	const reads = 4
	errs := make(chan error, reads)
	for range reads {
		go func() {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + te.admin + "/metrics")
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("an answer: %s", resp.Status)
			}
			errs <- err
		}()
	}
	require.Eventually(t, func() bool { return arrived.Load() == reads }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // each on its way from the hook into the rendering under way
	close(release)
	for range reads {
		select {
		case err := <-errs:
			assert.NotContains(t, err.Error(), "an answer", "a read sharing the panicked rendering")
			assert.NotContains(t, err.Error(), "Timeout", "a read sharing the panicked rendering")
		case <-time.After(15 * time.Second):
			t.Fatal("a read sharing the panicked rendering still waits")
		}
	}
	assert.EqualValues(t, 1, renders.Load(), "one rendering for the reads that came during it")

	resp, err := http.Get("http://" + te.admin + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "edged_pool_workers{")
	assert.EqualValues(t, 2, renders.Load(), "the read after the panic renders anew")
}

// TestScrapeAfterAReloadIsNotAnEarlierRendering: a scrape that arrives
// once a reload is applied and recorded shows it, even while a rendering
// begun before the reload is under way (Prometheus' scrape of a large
// page): whoever runs "edged reload" and then reads
// edged_config_generation or edged_config_last_reload_successful must
// not get the values before it.
func TestScrapeAfterAReloadIsNotAnEarlierRendering(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + proxyTOML("test", "api", "/api", b.addr),
	})
	renders, arrived, release := holdFirstRendering(t, te, nil)

	generation := func(gens chan<- float64) {
		resp, err := http.Get("http://" + te.admin + "/metrics")
		if !assert.NoError(t, err) {
			gens <- 0
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		v, ok := metricValue(string(body), "edged_config_generation")
		assert.True(t, ok)
		gens <- v
	}
	first := te.srv.Snapshot().Generation
	before, after := make(chan float64, 1), make(chan float64, 1)
	go generation(before)
	require.Eventually(t, func() bool { return renders.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	writeFiles(t, te.dir, map[string]string{"env.toml": envTOML("test", "") + proxyTOML("test", "api", "/api2", b.addr)})
	te.reload()
	te.srv.RecordReload(ReloadRecord{Time: time.Now(), Trigger: "test", OK: true, Generation: te.srv.Snapshot().Generation})
	go generation(after)
	require.Eventually(t, func() bool { return arrived.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // on its way from the hook into a rendering
	close(release)
	assert.EqualValues(t, first, <-before)
	assert.EqualValues(t, first+1, <-after, "the scrape after the reload shows it")
}

// TestSlowReadersShareARendering: scrapes that come one after another
// while the answers of the earlier ones are still being written, to
// readers that do not read them, get one of those answers rather than a
// rendering each (for answerShareFor after it was rendered). Each rendered
// its own, and held it for as long as its reader took, up to the 30 s
// write timeout: 16 such connections, a second apart, held 450 MiB with
// 10,000 proxies (26 MB a page), and the 64 an admin listener serves, any
// local user's, about four times that. Once the answers are written, a
// scrape renders anew.
func TestSlowReadersShareARendering(t *testing.T) {
	testCertDir(t)
	var env strings.Builder
	env.WriteString(envTOML("test", "[environment.rules.prometheus]\n"))
	// A page larger than the socket buffers of a loopback connection hold:
	// its writing waits for a reader.
	for i := range 5000 {
		fmt.Fprintf(&env, "[[proxy]]\nname = \"p%d\"\nenvironment = \"test\"\nbase_path = \"/p%d\"\ntarget = \"http://127.0.0.1:%d\"\n\n", i, i, 10000+i)
	}
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    env.String(),
	})
	var renders atomic.Int64
	hook := func(arriving bool) {
		if !arriving {
			renders.Add(1)
		}
	}
	te.srv.testHookAnswer.Store(&hook)

	const readers = 6
	type reader struct {
		c    net.Conn
		resp *http.Response
	}
	var rs []reader
	for i := range readers {
		c, err := net.Dial("tcp", te.admin)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		require.NoError(t, err)
		// The head of the answer: its rendering is over, its body being
		// written.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "reader %d", i)
		require.Equal(t, http.StatusOK, resp.StatusCode, "reader %d", i)
		rs = append(rs, reader{c, resp})
		time.Sleep(100 * time.Millisecond)
	}
	assert.EqualValues(t, 1, renders.Load(), "renderings for %d readers that came while the first answer was being written", readers)

	// Every answer read to its end, a scrape renders anew.
	for _, r := range rs {
		require.NoError(t, r.c.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, err := io.Copy(io.Discard, r.resp.Body)
		require.NoError(t, err)
		r.resp.Body.Close()
		r.c.Close()
	}
	// The client has the last byte before the handler is over: wait for
	// the server to be done writing to every reader.
	require.Eventually(t, func() bool {
		te.srv.answers.mu.Lock()
		defer te.srv.answers.mu.Unlock()
		return len(te.srv.answers.m) == 0
	}, 10*time.Second, 10*time.Millisecond, "answers still being written after every reader read its whole")
	before := renders.Load()
	tr := &http.Transport{DisableCompression: true} // the same answer as the readers'
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("http://" + te.admin + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), `proxy="p4999"`)
	assert.Equal(t, before+1, renders.Load(), "a scrape once no answer is being written renders anew")
}

// holdFirstRendering makes the first rendering of te's admin answers wait
// until release is closed, then run then (when not nil), and counts the
// reads arriving and the renderings; the hook is taken away, and release
// closed if the test did not, when the test ends.
func holdFirstRendering(t *testing.T, te *testEdge, then func()) (renders, arrived *atomic.Int64, release chan struct{}) {
	renders, arrived, release = new(atomic.Int64), new(atomic.Int64), make(chan struct{})
	hook := func(arriving bool) {
		if arriving {
			arrived.Add(1)
			return
		}
		if renders.Add(1) == 1 {
			<-release
			if then != nil {
				then()
			}
		}
	}
	te.srv.testHookAnswer.Store(&hook)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		te.srv.testHookAnswer.Store(nil)
	})
	return renders, arrived, release
}
