package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"edged/internal/loopback"
)

// stallingBackend answers every request with head, then part of the body,
// then nothing until the connection is closed.
func stallingBackend(t *testing.T, head, part string) string {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		io.WriteString(c, head)
		time.Sleep(20 * time.Millisecond) // the body on its own: edged must wait for it
		io.WriteString(c, part)
		_, _ = io.Copy(io.Discard, br) // until edged gives up and closes
	})
	return addr
}

func TestStalledUpstreamBodyFreesTheWorker(t *testing.T) {
	testCertDir(t)
	const timeout = 300 * time.Millisecond
	cases := []struct {
		name, head, part string
		h2               bool
		streamed         string // what a stream delivers before the cut ("" = buffered, maybe nothing)
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789", false, ""},
		{"content-length over HTTP/2", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789", true, ""},
		{"chunked stream", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n", false, "0123456789"},
		{"chunked stream over HTTP/2", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n", true, "0123456789"},
		{"server-sent events", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\n", "data: 012\n", false, "data: 012\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := stallingBackend(t, c.head, c.part)
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), ""),
				"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "stall"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "%s"
retries = 0
[[proxy]]
name = "stall"
environment = "test"
base_path = "/"
upstream = "stall"
`, addr, timeout),
			})
			client := te.client("test.acme.com", nil)
			if c.h2 {
				client = te.h2client(nil)
			}
			pool := te.srv.Snapshot().Env("test").pool
			start := time.Now()
			done := getAsync(client, "https://test.acme.com/x")
			require.Eventually(t, func() bool { return pool.Stats().InFlight == 1 }, 5*time.Second, time.Millisecond, "the stalled request holds its worker")
			require.Eventually(t, func() bool { return pool.Stats().InFlight == 0 }, 5*time.Second, 5*time.Millisecond)
			freed := time.Since(start)
			r := <-done
			require.Error(t, r.err, "the client sees a cut answer, never a complete one (status %d, body %q)", r.status, r.body)
			if c.streamed != "" {
				assert.Equal(t, 200, r.status)
				assert.Equal(t, c.streamed, r.body, "a stream delivers what came before the cut")
			}
			assert.GreaterOrEqual(t, freed, timeout-50*time.Millisecond, "not before the idle timeout")
			assert.Less(t, freed, timeout+time.Second, "within about the idle timeout")
		})
	}
}
