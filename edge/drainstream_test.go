package edge

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A stream (SSE) still running in an environment that a reload replaced
// is cut once the environment's drain_timeout has passed, as drain_timeout
// promises ("how long a replaced environment lets requests finish"),
// instead of running on the old environment's backend for ever after its
// logs and metrics are gone: over HTTP/1.1 and HTTP/2 the client's
// response is aborted (never ended as if complete), the backend's request
// ends, and the stream gets its access line before the old environment's
// log closes.
func TestStreamOfReplacedEnvironmentIsCutAfterItsDrain(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			testCertDir(t)
			ended := make(chan struct{}, 1)
			sse := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { ended <- struct{}{} }()
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				// Bounded: 60 s of events at most.
				for i := range 3000 {
					if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}))
			logPath := filepath.Join(t.TempDir(), "access.log")
			group := groupTOML("test", "g", "test.acme.com", "test.acme.com")
			env := func(log string) string {
				return fmt.Sprintf(`
[[environment]]
name = "test"
[environment.rules.access_log]
path = %q
`, log)
			}
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), ""),
				"env.toml":    env(logPath) + group + proxyTOML("test", "sse", "/", sse.addr),
			})
			old := te.srv.Snapshot().Env("test")
			c := te.client("test.acme.com", nil)
			if proto == "h2" {
				c = te.h2client(nil)
			}
			c.Timeout = 0
			resp, err := c.Get("https://test.acme.com/events")
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, 200, resp.StatusCode)
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "data: 0\n", line)

			// Another hash: the environment is rebuilt, and its new
			// instance logs elsewhere (the old one's log is its own).
			writeFiles(t, te.dir, map[string]string{"env.toml": env(logPath+".new") + group + proxyTOML("test", "sse", "/", sse.addr)})
			te.reload()
			require.NotSame(t, old, te.srv.Snapshot().Env("test"))

			readErr := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, br)
				readErr <- err
			}()
			select {
			case <-ended:
			case <-time.After(15 * time.Second):
				t.Fatal("the stream still runs on the replaced environment 15s after a reload with drain_timeout 2s")
			}
			select {
			case err := <-readErr:
				assert.Error(t, err, "the client's response is aborted, not ended as if complete")
			case <-time.After(5 * time.Second):
				t.Fatal("the client's response did not end with the backend's")
			}
			select {
			case <-old.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the replaced environment did not close")
			}
			b, err := os.ReadFile(logPath)
			require.NoError(t, err)
			assert.Contains(t, string(b), `"uri":"/events"`, "the cut stream has its access line")
		})
	}
}

// A request still waiting for its node's answer when its replaced
// environment's drain ends is ended then, as drain_timeout promises, not
// when its response_timeout passes: answered 503 upstream.unavailable (a
// retry reaches the new environment), no failure of the node, and logged
// in the replaced environment's log. So is a quiet stream waiting for its
// next chunk: aborted, and logged.
func TestRequestWaitingAtTheDrainEndIsCut(t *testing.T) {
	testCertDir(t)
	arrived := make(chan struct{}, 2)
	hung := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: 1\n\n")
			w.(http.Flusher).Flush()
		}
		arrived <- struct{}{}
		<-r.Context().Done() // then silence
	}))
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	envFile := func(log string) string {
		return fmt.Sprintf("[[environment]]\nname = \"test\"\n[environment.rules.access_log]\npath = %q\n", log) +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hung"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "60s"
[[proxy]]
name = "hung"
environment = "test"
base_path = "/"
upstream = "hung"
`, hung.addr)
	}
	server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"200ms\"\n", t.TempDir())
	te := startEdge(t, map[string]string{"server.toml": server, "env.toml": envFile(first)})
	c := te.client("test.acme.com", nil)
	waiting := make(chan int, 1)
	go func() {
		resp, err := c.Get("https://test.acme.com/wait")
		if err != nil {
			waiting <- 0
			return
		}
		resp.Body.Close()
		waiting <- resp.StatusCode
	}()
	streamEnded := make(chan error, 1)
	go func() {
		resp, err := c.Get("https://test.acme.com/stream")
		if err != nil {
			streamEnded <- err
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		streamEnded <- err
	}()
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the requests did not reach the backend")
		}
	}
	old := te.srv.Snapshot().Env("test")
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile(second)})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("test"))
	// The safety nets are far below response_timeout (60 s).
	select {
	case code := <-waiting:
		assert.Equal(t, http.StatusServiceUnavailable, code)
	case <-time.After(20 * time.Second):
		t.Fatal("the request waiting for its answer was not cut at the drain's end")
	}
	select {
	case err := <-streamEnded:
		assert.Error(t, err, "the quiet stream is aborted, not ended as if complete")
	case <-time.After(20 * time.Second):
		t.Fatal("the quiet stream was not cut at the drain's end")
	}
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced environment did not close")
	}
	lines := readJSONLines(t, first)
	require.Len(t, lines, 2, "both requests' access lines, in the replaced environment's log")
	status := map[string]float64{}
	for _, l := range lines {
		status[l["uri"].(string)] = l["status"].(float64)
	}
	assert.Equal(t, map[string]float64{"/wait": 503, "/stream": 200}, status)
	for _, n := range old.upstreams["hung"].Nodes() {
		assert.Zero(t, n.Stats().Failures, "the cut is no failure of the node")
	}
}
