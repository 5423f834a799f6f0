package edge

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAccessAndAuditLogs(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	state := t.TempDir()
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(state, ""),
		"env.toml": envTOML("test", `
[environment.rules.access_log]
path = "`+access+`"
[environment.rules.audit_log]
`) + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "users", "/users", b.addr),
	})
	resp, _ := te.get("test.acme.com", "/users/1?a=%22q%22")
	require.Equal(t, 200, resp.StatusCode)
	resp, _ = te.get("test.acme.com", "/users/2")
	require.Equal(t, 200, resp.StatusCode)

	// Logrotate: move the file away, reopen, log again.
	rotated := access + ".1"
	require.Eventually(t, func() bool { b, _ := os.ReadFile(access); return strings.Count(string(b), "\n") == 2 }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.Rename(access, rotated))
	require.NoError(t, te.srv.ReopenLogs())
	resp, _ = te.get("test.acme.com", "/users/3")
	require.Equal(t, 200, resp.StatusCode)
	te.srv.AuditEnv("test", []byte(`{"event":"config"}`+"\n"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, te.srv.Shutdown(ctx)) // flushes and closes the logs

	lines := readJSONLines(t, rotated)
	require.Len(t, lines, 2)
	assert.Equal(t, "test", lines[0]["env"])
	assert.Equal(t, "users", lines[0]["proxy"])
	assert.Equal(t, "/users/1?a=%22q%22", lines[0]["uri"])
	assert.Equal(t, float64(200), lines[0]["status"])
	assert.Equal(t, b.addr, lines[0]["upstream_node"])
	assert.Len(t, lines[0]["request_id"], 32)
	assert.Contains(t, lines[0], "duration_ms")
	after := readJSONLines(t, access)
	require.Len(t, after, 1, "lines after SIGUSR1's reopen go to the new file")
	assert.Equal(t, "/users/3", after[0]["uri"])

	audit := readJSONLines(t, AuditLogPath(state, "test"))
	require.Len(t, audit, 4)
	assert.Equal(t, "request", audit[0]["event"])
	assert.Equal(t, "/users/1?a=%22q%22", audit[0]["uri"])
	assert.Equal(t, "config", audit[3]["event"])
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// The access log rule's format: "json" (the default) and "combined"
// (nginx's), each checked on a real request read back from its file.
func TestAccessLogFormats(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	dir := t.TempDir()
	jsonPath, combinedPath := filepath.Join(dir, "json.log"), filepath.Join(dir, "combined.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"json.toml": envTOML("fmt-json", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(jsonPath)+"\"\n") +
			groupTOML("fmt-json", "fmt-json", "test.acme.com", "test.acme.com") + proxyTOML("fmt-json", "p", "/p", b.addr),
		"combined.toml": envTOML("fmt-combined", "[environment.rules.access_log]\npath = \""+filepath.ToSlash(combinedPath)+"\"\nformat = \"combined\"\n") +
			groupTOML("fmt-combined", "fmt-combined", "uat.acme.com", "uat.acme.com") + proxyTOML("fmt-combined", "p", "/p", b.addr),
	})
	for _, host := range []string{"test.acme.com", "uat.acme.com"} {
		req, err := http.NewRequest("GET", "https://"+host+"/p/1?q=a%22b", nil)
		require.NoError(t, err)
		req.Header.Set("Referer", "https://example.com/from")
		req.Header.Set("User-Agent", `agent "quoted"`)
		resp, err := te.client(host, nil).Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "b /1", string(body))
	}
	readLine := func(path string) string {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
				return string(b)
			}
		}
		t.Fatalf("no line in %s", path)
		return ""
	}

	var rec map[string]any
	line := readLine(jsonPath)
	require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
	assert.Equal(t, "access", rec["event"])
	assert.Equal(t, "fmt-json", rec["env"])
	assert.Equal(t, "GET", rec["method"])
	assert.Equal(t, "/p/1?q=a%22b", rec["uri"])
	assert.EqualValues(t, 200, rec["status"])
	assert.EqualValues(t, len("b /1"), rec["bytes_out"])

	line = readLine(combinedPath)
	re := regexp.MustCompile(`^127\.0\.0\.1 - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "GET /p/1\?q=a%22b HTTP/1\.1" 200 4 "https://example\.com/from" "agent \\x22quoted\\x22"\n$`)
	m := re.FindStringSubmatch(line)
	require.NotNil(t, m, "combined line: %q", line)
	at, err := time.Parse(combinedTime, m[1])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, time.Minute)
}
