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
// environment's drain ends is still logged: its line is not lost because
// the environment's logs closed 5 s after the drain while the request ran
// on until response_timeout. Its environment stays on /status as draining
// meanwhile.
func TestRequestWaitingPastTheDrainIsLogged(t *testing.T) {
	testCertDir(t)
	arrived := make(chan struct{}, 1)
	hung := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // never answers
	}))
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	envFile := func(log, timeout string) string {
		return fmt.Sprintf("[[environment]]\nname = \"test\"\n[environment.rules.access_log]\npath = %q\n", log) +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hung"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = %q
[[proxy]]
name = "hung"
environment = "test"
base_path = "/"
upstream = "hung"
`, hung.addr, timeout)
	}
	server := fmt.Sprintf("[server]\nhttps = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nstate_dir = %q\ndrain_timeout = \"200ms\"\n", t.TempDir())
	// response_timeout past the drain and the 5 s the logs waited after it
	te := startEdge(t, map[string]string{"server.toml": server, "env.toml": envFile(first, "6500ms")})
	done := make(chan int, 1)
	go func() {
		resp, err := te.client("test.acme.com", nil).Get("https://test.acme.com/x")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	old := te.srv.Snapshot().Env("test")
	writeFiles(t, te.dir, map[string]string{"env.toml": envFile(second, "6500ms")})
	te.reload()
	require.NotSame(t, old, te.srv.Snapshot().Env("test"))
	select {
	case code := <-done:
		assert.Equal(t, http.StatusGatewayTimeout, code)
	case <-time.After(20 * time.Second):
		t.Fatal("no answer")
	}
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced environment did not close")
	}
	lines := readJSONLines(t, first)
	require.Len(t, lines, 1, "the request's access line, in the replaced environment's log")
	assert.EqualValues(t, 504, lines[0]["status"])
}
