package edge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 504 (the node did not answer within response_timeout) leaves the same
// trace in edged's log as a 502 (the node failed): a warning with the
// proxy, the node and the request id the client was given.
func TestUpstreamTimeoutIsLoggedLikeAFailure(t *testing.T) {
	testCertDir(t)
	hang := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	refused := closedPort(t)
	te, logs := startEdgeLogged(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + fmt.Sprintf(`
[[upstream]]
name = "hang"
environment = "test"
nodes = [{ url = "http://%s" }]
response_timeout = "200ms"
[[proxy]]
name = "hang"
environment = "test"
base_path = "/hang"
upstream = "hang"
[[proxy]]
name = "refused"
environment = "test"
base_path = "/refused"
target = "http://%s"
`, hang.addr, refused),
	})
	for _, c := range []struct {
		path, msg, node string
		status          int
	}{
		{"/hang", "upstream timed out", hang.addr, 504},
		{"/refused", "upstream failed", refused, 502},
	} {
		resp, body := te.get("test.acme.com", c.path)
		require.Equal(t, c.status, resp.StatusCode, body)
		rid := resp.Header.Get("X-Request-Id")
		require.Len(t, rid, 32)
		var line map[string]any
		for l := range strings.Lines(logs.String()) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == rid {
				line = m
			}
		}
		if assert.NotNil(t, line, "%s: a log line with request_id %s:\n%s", c.path, rid, logs.String()) {
			assert.Equal(t, "WARN", line["level"], c.path)
			assert.Equal(t, c.msg, line["msg"], c.path)
			assert.Equal(t, strings.TrimPrefix(c.path, "/"), line["proxy"], c.path)
			assert.Equal(t, c.node, line["node"], c.path)
			assert.NotEmpty(t, line["error"], c.path)
		}
	}
}
