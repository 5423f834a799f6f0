package edge

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// h2HeadListSize is the header list size (RFC 9113 §6.5.2: each field's
// name and value, and 32) of a final answer as the client decoded it.
func h2HeadListSize(s h2asyncStream) int {
	n := len(":status") + 3 + 32
	for k, vv := range s.header {
		for _, v := range vv {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// TestH2AnswerHeadOverTheClientsHeaderListSize: a node's answer whose
// head is larger than the SETTINGS_MAX_HEADER_LIST_SIZE the client
// announced (Node.js's default is 64 KiB; many Set-Cookie, a long CSP)
// was sent all the same, and refused by the client, while edged logged
// a 200: Go's client ended the whole connection (PROTOCOL_ERROR, the
// head's CONTINUATION frames past its limit), every other request on it
// with it. It is answered 502 upstream.failed instead, a head the client
// takes, logged so; a head of exactly the client's limit passes whole,
// the next request on the connection is served, a limit below 16 KiB is
// taken as 16 KiB, and a client that announced no limit gets the node's
// answer.
func TestH2AnswerHeadOverTheClientsHeaderListSize(t *testing.T) {
	const cookies, cookieLen = 40, 1000
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		switch r.URL.Path {
		case "/cookies":
			n = cookies
		case "/some-cookies":
			n = 8 // a head of 8 KiB or so: within the floor
		}
		for i := 0; i < n; i++ {
			w.Header().Add("Set-Cookie", fmt.Sprintf("c%02d=%s", i, strings.Repeat("v", cookieLen)))
		}
		w.Header().Set("Content-Length", "2")
		_, _ = w.Write([]byte("ok"))
	}))
	testCertDir(t)
	access := filepath.Join(t.TempDir(), "access.log")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": fmt.Sprintf("[[environment]]\nname = \"test\"\n[environment.rules.access_log]\npath = %q\n", access) +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})

	// No limit announced: the node's answer, whose size is measured.
	g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
	g.headers(1, true, h2get("GET", "test.acme.com", "/cookies")...)
	s := g.result(1, 5*time.Second)
	require.Equal(t, http.StatusOK, s.status, "%v", s)
	require.Len(t, s.header["set-cookie"], cookies)
	size := h2HeadListSize(s)
	t.Logf("the answer's header list: %d bytes", size)

	for _, tc := range []struct {
		limit   int
		path    string
		status  int
		cookies int
	}{
		{size, "/cookies", http.StatusOK, cookies},
		{size - 1, "/cookies", http.StatusBadGateway, 0},
		{16 << 10, "/cookies", http.StatusBadGateway, 0},
		// A limit below 16 KiB is taken as 16 KiB.
		{1000, "/some-cookies", http.StatusOK, 8},
		{1000, "/cookies", http.StatusBadGateway, 0},
	} {
		t.Run(fmt.Sprint(tc.limit, tc.path), func(t *testing.T) {
			g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true, settings: []http2.Setting{{ID: http2.SettingMaxHeaderListSize, Val: uint32(tc.limit)}}})
			g.waitSettings()
			g.headers(1, true, h2get("GET", "test.acme.com", tc.path)...)
			s := g.result(1, 5*time.Second)
			require.Equal(t, tc.status, s.status, "%v", s)
			assert.True(t, s.ended && !s.rst, "%v", s)
			assert.LessOrEqual(t, h2HeadListSize(s), max(tc.limit, 16<<10), "the head the client got is within its limit")
			if tc.status == http.StatusOK {
				assert.Len(t, s.header["set-cookie"], tc.cookies)
				assert.Equal(t, "ok", string(s.body))
			} else {
				assert.Empty(t, s.header["set-cookie"], "nothing of the node's head")
				assert.Contains(t, string(s.body), `"upstream.failed"`)
				assert.Contains(t, string(s.body), "SETTINGS_MAX_HEADER_LIST_SIZE")
			}
			g.headers(3, true, h2get("GET", "test.acme.com", "/small")...)
			s = g.result(3, 5*time.Second)
			assert.Equal(t, http.StatusOK, s.status, "the next request: %v", s)
			assert.Equal(t, "ok", string(s.body))
			g.ping("x")
			assert.Empty(t, g.goaways)
		})
	}

	t.Run("Go's client", func(t *testing.T) {
		c := te.h2client(nil)
		c.Transport.(*http2.Transport).MaxHeaderListSize = 16 << 10
		resp, err := c.Get("https://test.acme.com/cookies")
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Contains(t, string(b), `"upstream.failed"`)
	})

	want := []float64{200, 200, 200, 502, 200, 502, 200, 200, 200, 502, 200, 502}
	var got []float64
	g.wait(5*time.Second, fmt.Sprintf("%d access lines", len(want)), func() bool {
		got = got[:0]
		for _, l := range readJSONLines(t, access) {
			got = append(got, l["status"].(float64))
		}
		return len(got) == len(want)
	})
	assert.ElementsMatch(t, want, got, "the access log's statuses")
}
