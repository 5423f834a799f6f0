package edge

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestH2LargeHeadIsNotKeptByItsPooledStream: a stream goes back to its
// pool with its header map and value list, which a head of thousands of
// fields grew and which never shrink; the next streams to take it keep
// them, as an HTTP/1.1 connection would for its life (h1HeaderKeep).
func TestH2LargeHeadIsNotKeptByItsPooledStream(t *testing.T) {
	te := edgeTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), "max_header_bytes = 1048576")
	c := te.h2client(nil)
	// One P: a stream put back in one P's private slot of the pool is
	// not to be had from another.
	procs := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	for range 256 {
		h2Streams.Get() // the streams other tests left
	}
	req, err := http.NewRequest("GET", "https://test.acme.com/big", nil)
	require.NoError(t, err)
	for i := range 20000 {
		req.Header["X-F"+strconv.Itoa(i)] = []string{"v"}
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	require.Eventually(t, func() bool { return h2HandlersRunning(te.srv) == 0 }, 5*time.Second, 5*time.Millisecond)

	// Taken out before any collection, which empties the pool: under
	// traffic its streams are taken again long before one.
	held := make([]*h2Stream, 0, 64)
	for range cap(held) {
		held = append(held, h2Streams.Get().(*h2Stream))
	}
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse)
	}
	// The request's other copies (the client's, the backend's) gone
	// with their goroutines: the heap holds still.
	with := heap()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		h := heap()
		if d := h - with; d > -64<<10 && d < 64<<10 {
			break
		}
		with = h
	}
	runtime.KeepAlive(held)
	held = nil
	kept := with - heap()
	assert.Less(t, kept, int64(1<<20), "heap the pooled streams keep after a head of 20,000 fields")
}
