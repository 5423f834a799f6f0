package edge

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowReader is a node that reads an upload slowly but steadily: 64 KiB,
// then a pause, until its end (bounded: at most 4,096 reads). It answers
// 200 with the bytes it read.
func slowReader(got *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		var n int64
		for range 4096 {
			k, err := io.ReadFull(r.Body, buf)
			n += int64(k)
			if err != nil {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		got.Store(n)
		io.WriteString(w, strconv.FormatInt(n, 10))
	})
}

// read_timeout is the client's time to send its body, not the node's to
// read it: an upload sent at once, to a node that reads it at about
// 2.6 MB/s, needs several times read_timeout (500 ms) to drain into the
// node, and the time edged spent blocked writing it to the node is not
// counted against the client. Before, over both protocols, edged
// answered 400 request.invalid ("the request body did not arrive within
// read_timeout") once the sockets' buffers were full, the node's
// slowness blamed on the client.
func TestSlowNodeUploadIsNotCutByReadTimeout(t *testing.T) {
	const size = 8 << 20
	var got atomic.Int64
	te := edgeTo(t, slowReader(&got), `read_timeout = "500ms"`)
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			got.Store(-1)
			c := te.client("", nil)
			if proto == "HTTP/2.0" {
				c = te.h2client(nil)
			}
			c.Timeout = 30 * time.Second
			req, err := http.NewRequest("PUT", "https://test.acme.com/up", bytes.NewReader(body))
			require.NoError(t, err)
			resp, err := c.Do(req)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, proto, resp.Proto)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
			assert.Equal(t, strconv.Itoa(size), string(b), "the node read the whole body")
			assert.Equal(t, int64(size), got.Load())
		})
	}
}

// The client's own slowness is still cut: an upload larger than
// bodyWaitMax whose first 80 KiB come at once, then a byte every 300 ms,
// to a node that reads all it gets at once, is answered 400
// request.invalid at read_timeout (500 ms) over both protocols: the
// time edged spends writing to the node between the body's reads is
// all it gives back, and here it is next to none.
func TestTricklingUploadToAFastNodeIsStillCut(t *testing.T) {
	const size = 200 << 10
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}), `read_timeout = "500ms"`)
	first := bytes.Repeat([]byte("x"), 80<<10)
	const most = 40 // bytes trickled at most: 12 s

	t.Run("HTTP/1.1", func(t *testing.T) {
		c, br := dialH1(t, te)
		require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
		_, err := io.WriteString(c, "PUT /t HTTP/1.1\r\nHost: test.acme.com\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		require.NoError(t, err)
		_, err = c.Write(first)
		require.NoError(t, err)
		stop := make(chan struct{})
		trickled := make(chan int, 1)
		go func() {
			n := 0
			defer func() { trickled <- n }()
			for range most {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				n++
			}
		}()
		resp, body := readResp(t, br, "PUT")
		close(stop)
		n := <-trickled
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
		assert.Contains(t, body, "did not arrive within read_timeout")
		assert.Less(t, n, most/2, "cut near read_timeout, not let trickle on")
	})

	t.Run("HTTP/2", func(t *testing.T) {
		g := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
		g.waitSettings()
		g.headers(1, false, h2get("PUT", "test.acme.com", "/t", "content-length", strconv.Itoa(size))...)
		require.Equal(t, len(first), g.send(1, first, false, 5*time.Second))
		n := 0
		for n < most && !g.waitFor(300*time.Millisecond, func() bool { return g.over(1) }) {
			g.data(1, false, []byte("x"))
			n++
		}
		s := g.result(1, 5*time.Second)
		assert.Equal(t, http.StatusBadRequest, s.status, "%s", s.body)
		assert.Contains(t, string(s.body), "did not arrive within read_timeout")
		assert.Less(t, n, most/2, "cut near read_timeout, not let trickle on")
	})
}
