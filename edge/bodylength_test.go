package edge

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWholeBodyOfUnknownLengthGoesWithItsLength: a request body of
// unknown length (HTTP/2 without content-length, HTTP/1.1 chunked) that
// edged read whole before the request took its worker (up to 64 KiB)
// reaches the node with its Content-Length, as behind nginx, not chunked:
// servers that take no chunked requests answer 411 to it. A longer one
// goes chunked, streamed as it comes.
func TestWholeBodyOfUnknownLengthGoesWithItsLength(t *testing.T) {
	type seen struct {
		cl   int64
		te   []string
		body string
	}
	got := make(chan seen, 8)
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.ContentLength, r.TransferEncoding, string(b)}
		_, _ = io.WriteString(w, "ok")
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})
	small := strings.Repeat("s", 10<<10)
	large := strings.Repeat("L", 100<<10)
	for _, tc := range []struct {
		name  string
		body  string
		whole bool
	}{{"10 KiB", small, true}, {"100 KiB", large, false}} {
		t.Run("HTTP/2 "+tc.name, func(t *testing.T) {
			fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
			fc.waitSettings()
			fc.headers(1, false, h2get("POST", "test.acme.com", "/p")...)
			fc.send(1, []byte(tc.body), true, 5*time.Second)
			s := fc.result(1, 5*time.Second)
			require.Equal(t, http.StatusOK, s.status, "%v", s)
			g := <-got
			assert.Equal(t, tc.body, g.body)
			if tc.whole {
				assert.Equal(t, int64(len(tc.body)), g.cl, "the node gets the length")
				assert.Empty(t, g.te, "not chunked")
			} else {
				assert.Equal(t, int64(-1), g.cl)
				assert.Equal(t, []string{"chunked"}, g.te)
			}
		})
		t.Run("HTTP/1.1 chunked "+tc.name, func(t *testing.T) {
			c := te.client("test.acme.com", nil)
			req, err := http.NewRequest("POST", "https://test.acme.com/p", io.MultiReader(strings.NewReader(tc.body)))
			require.NoError(t, err)
			req.ContentLength = -1
			resp, err := c.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			g := <-got
			assert.Equal(t, tc.body, g.body)
			if tc.whole {
				assert.Equal(t, int64(len(tc.body)), g.cl, fmt.Sprintf("the node gets the length (%v)", g.te))
				assert.Empty(t, g.te, "not chunked")
			} else {
				assert.Equal(t, []string{"chunked"}, g.te)
			}
		})
	}
}
