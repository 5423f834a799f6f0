package edge

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProbeEarlyAnswer(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(401)
		io.WriteString(w, "no")
	}), "")
	for _, path := range []string{"/keep", "/close"} {
		for _, n := range []int{10, 100 << 10, 1 << 20} {
			c, br := dialH1(t, te)
			_, err := io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: test.acme.com\r\nExpect: 100-continue\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n")
			require.NoError(t, err)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			line, err := br.ReadString('\n')
			t.Logf("%s %d first line %q %v", path, n, line, err)
			if strings.Contains(line, "100") {
				br.ReadString('\n')
				go io.WriteString(c, strings.Repeat("x", n))
			}
			resp, body := readResp(t, br, "POST")
			t.Logf("   -> %d %q close=%v", resp.StatusCode, body, resp.Close)
			c.Close()
		}
	}
}
