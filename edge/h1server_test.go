package edge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startH1 serves h with edged's HTTP/1.1 server on a plain loopback
// listener and returns its address.
func startH1(t testing.TB, h http.Handler, mod func(*h1Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := newH1Server(h, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, 5*time.Second, 10*time.Second, 10*time.Second, 10*time.Second, 8192)
	if mod != nil {
		mod(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// rawExchange sends raw on a fresh connection and returns everything the
// server sent until it closed the connection (or 2 s passed).
func rawExchange(t testing.TB, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	b, _ := io.ReadAll(c)
	return string(b)
}

func echoBodyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			io.WriteString(w, "body error: "+err.Error())
			return
		}
		io.WriteString(w, r.Method+" "+r.RequestURI+" "+string(b))
		for k, v := range r.Trailer {
			io.WriteString(w, " trailer "+k+"="+strings.Join(v, ","))
		}
	})
}

func TestH1ChunkedRequestBody(t *testing.T) {
	addr := startH1(t, echoBodyHandler(), nil)
	out := rawExchange(t, addr, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"3\r\nabc\r\n5;ext=1;q=\"x y\"\r\ndefgh\r\n0\r\nX-T: 1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	require.NoError(t, err, out)
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "POST /x abcdefgh trailer X-T=1", string(b))
}

func TestH1ChunkedFromGoClient(t *testing.T) {
	addr := startH1(t, echoBodyHandler(), nil)
	for _, size := range []int{1, 800, 1600, 5000, 100000} {
		body := io.MultiReader(strings.NewReader(strings.Repeat("y", size/2)), strings.NewReader(strings.Repeat("z", size-size/2)))
		req, err := http.NewRequest("POST", "http://"+addr+"/c", body)
		require.NoError(t, err)
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, string(b))
		assert.Equal(t, "POST /c "+strings.Repeat("y", size/2)+strings.Repeat("z", size-size/2), string(b))
	}
}

func TestH1UnreadBodyThenChunked(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 0 {
			w.WriteHeader(413)
			return
		}
		echoBodyHandler().ServeHTTP(w, r)
	}), nil)
	c := &http.Client{Transport: &http.Transport{}}
	resp, err := c.Post("http://"+addr+"/a", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 413, resp.StatusCode)
	req, _ := http.NewRequest("POST", "http://"+addr+"/b", io.MultiReader(strings.NewReader("yy"), strings.NewReader("zz")))
	req.ContentLength = -1
	resp, err = c.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "POST /b yyzz", string(b))
}

// TestH1ChunkExtensionsAreBounded: chunk extensions are dropped, but what
// a client sends of them (and of chunk framing) is bounded against the
// data it carries, as net/http bounds it since CVE-2023-39326: 16 bytes a
// chunk and twice its data, and 16 KiB more. One byte of data behind each
// 4 KiB line had edged read 4096 times max_body_bytes within read_timeout.
// Chunks of one byte without extensions, and long extensions on large
// chunks, are still read.
func TestH1ChunkExtensionsAreBounded(t *testing.T) {
	addr := startH1(t, echoBodyHandler(), nil)
	ext := ";x=" + strings.Repeat("a", 4000)
	post := func(chunks string) (int, string) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		go io.WriteString(c, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunks+"0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	status, body := post(strings.Repeat("1"+ext+"\r\nA\r\n", 100))
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "chunk extensions")

	status, body = post(strings.Repeat("1\r\nA\r\n", 10000))
	assert.Equal(t, 200, status)
	assert.Equal(t, "POST /x "+strings.Repeat("A", 10000), body)

	status, body = post(strings.Repeat("1000"+ext+"\r\n"+strings.Repeat("B", 4096)+"\r\n", 20))
	assert.Equal(t, 200, status)
	assert.Equal(t, "POST /x "+strings.Repeat("B", 20*4096), body)
}

// TestH1LargeHeadIsNotKeptByItsConnection: the header map and value list
// a connection reuses are dropped after a request with many fields,
// not cleared and kept: a Go map never shrinks, and one head of 60 KiB
// of short fields left each idle keep-alive connection holding about
// 1 MB (50 MB for these 50), where it holds its 4 KiB read buffer.
func TestH1LargeHeadIsNotKeptByItsConnection(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header { // answers with as many fields
			w.Header()[k] = r.Header[k]
		}
		io.WriteString(w, "ok")
	}), func(s *h1Server) { s.maxHeaderBytes = 64 << 10 })
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := 0; b.Len() < 60<<10; i++ {
		fmt.Fprintf(&b, "x%d:\r\n", i)
	}
	b.WriteString("\r\n")
	assert.Less(t, heapKeptByConns(t, addr, 50, b.String()), int64(10<<20), "heap kept by 50 idle connections")
}

// heapKeptByConns is the heap that n connections to addr keep once each
// has sent heads, in turn, and read their answers (200 each), left open.
func heapKeptByConns(t *testing.T, addr string, n int, heads ...string) int64 {
	t.Helper()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	for range n {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		br := bufio.NewReader(c)
		for _, head := range heads {
			_, err = io.WriteString(c, head)
			require.NoError(t, err)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			_, _ = io.ReadAll(resp.Body)
			require.Equal(t, 200, resp.StatusCode)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse) - int64(before)
}

// TestH1LongTrailerListIsNotKeptByItsConnection: the list of names a
// Trailer header announces is reused from request to request like the
// header map, and must be dropped after a long one like the map: one head
// of 60 KiB announcing "A,A,A,..." grew it to 32768 names (512 KiB, plus
// the head its names point into), kept by the connection for its life,
// its later requests included.
func TestH1LongTrailerListIsNotKeptByItsConnection(t *testing.T) {
	addr := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), func(s *h1Server) { s.maxHeaderBytes = 64 << 10 })
	long := "GET / HTTP/1.1\r\nHost: a\r\nTrailer: " + strings.Repeat("A,", 30<<10) + "A\r\n\r\n"
	short := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	assert.Less(t, heapKeptByConns(t, addr, 50, long, short), int64(10<<20), "heap kept by 50 keep-alive connections")
}

// TestH1EarlierHeadsAreNotKeptByTheirConnection: what a connection keeps
// between requests (the parsed head, the value list it reuses, the
// Forwarded value it caches per Host) must not point into the text of an
// earlier head: a string that does keeps all of it alive. A head of
// 900 KiB (max_header_bytes up to 1 MiB) was kept by an idle connection
// after its answer, and, by the Forwarded cache and the value list, for
// the connection's life when its later requests named the same Host,
// where the read buffer grown for it is given back.
func TestH1EarlierHeadsAreNotKeptByTheirConnection(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), "max_header_bytes = 1048576")
	big := "GET /big HTTP/1.1\r\nHost: test.acme.com\r\nX-Big: " + strings.Repeat("b", 900<<10) + "\r\n\r\n"
	// Its path is forwarded merged ("/q?..."): the outgoing URI is made
	// anew, in the text the Forwarded value is cut from.
	bigQuery := "GET //q?" + strings.Repeat("q", 900<<10) + " HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"
	small := "GET /small HTTP/1.1\r\nHost: test.acme.com\r\n\r\n"
	exchange := func(heads ...string) {
		c, br := dialH1(t, te)
		for _, head := range heads {
			_, err := io.WriteString(c, head)
			require.NoError(t, err)
			resp, body := readResp(t, br, "GET")
			require.Equal(t, 200, resp.StatusCode, body)
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	for range 7 {
		exchange(big) // then idle
		exchange(big, small)
		exchange(bigQuery, small)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	kept := int64(ms.HeapInuse) - int64(before)
	assert.Less(t, kept, int64(5<<20), "heap kept by 21 keep-alive connections after heads of 900 KiB")
}
