package edge

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

// windowWakeups is how many times, so far in the process, a stream's
// handler came back from waiting for flow-control window (waitWindow),
// from the block profile (on while a test counts).
func windowWakeups() int64 {
	n, _ := runtime.BlockProfile(nil)
	recs := make([]runtime.BlockProfileRecord, n+64)
	n, _ = runtime.BlockProfile(recs)
	var total int64
	for _, r := range recs[:n] {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.HasSuffix(f.Function, ").waitWindow") {
				total += r.Count
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}

// A WINDOW_UPDATE is 13 bytes: what the server does for one must not grow
// with the streams waiting for window. Here 50 streams wait for window
// their client never gives them, and the client sends updates of the
// connection's window and of another stream's, which unblock none of
// them, one at a time. They used to wake every waiting stream's handler,
// each update (one condition variable for all): 50 goroutine wake-ups
// and lock hand-overs for 13 bytes, as many more as streams wait.
func TestH2WindowUpdatesWakeOnlyTheStreamsTheyUnblock(t *testing.T) {
	testCertDir(t)
	back := startBackend(t, flowBackend(nil))
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": "[[environment]]\nname = \"test\"\nworkers = 256\n" +
			groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/up", back.addr),
	})
	const waiting, updates = 50, 200

	g := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 0}}})
	g.waitSettings()
	// Stream 1: a request whose body has not come: open, writing nothing.
	g.headers(1, false, h2get("POST", "test.acme.com", "/up/echo")...)
	id := uint32(3)
	for i := 0; i < waiting; i, id = i+1, id+2 {
		g.headers(id, true, h2get("GET", "test.acme.com", "/up/big?n=1000")...)
	}
	for sid := uint32(3); sid < id; sid += 2 {
		g.wait(10*time.Second, "the head of every stream", func() bool { return g.stream(sid).status == http.StatusOK })
	}

	runtime.SetBlockProfileRate(1)
	defer runtime.SetBlockProfileRate(0)
	time.Sleep(50 * time.Millisecond) // the handlers wait for window now
	before := windowWakeups()
	for i := 0; i < updates; i++ {
		// One at a time, each read on its own, as over a real network.
		sid := uint32(1)
		if i%2 == 0 {
			sid = 0
		}
		require.NoError(t, g.write(func() error { return g.fr.WriteWindowUpdate(sid, 1) }))
		time.Sleep(200 * time.Microsecond)
	}
	g.ping("updated")
	time.Sleep(50 * time.Millisecond)
	woken := windowWakeups() - before
	t.Logf("%d WINDOW_UPDATE frames that unblock none of the %d streams waiting for window woke their handlers %d times", updates, waiting, woken)
	assert.Less(t, woken, int64(updates), "the waiting streams are not woken for updates that do not unblock them")
	require.Nil(t, g.closed)
	assert.Empty(t, g.goaways)

	// The windows they wait for do wake them.
	for sid := uint32(3); sid < id; sid += 2 {
		g.windowUpdate(sid, 1000)
	}
	for sid := uint32(3); sid < id; sid += 2 {
		r := g.result(sid, 10*time.Second)
		assert.True(t, r.ended && !r.rst, "stream %d: %v", sid, r)
		assert.Len(t, r.body, 1000, "stream %d", sid)
	}

	// A stream with window of its own, waiting for the connection's, is
	// woken by the connection's update.
	g2 := dialH2Async(t, te.addr, h2asyncOpts{settings: []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 20}}})
	g2.headers(1, true, h2get("GET", "test.acme.com", "/up/big?n=100000")...)
	g2.waitBody(1, 65535, 10*time.Second)
	g2.windowUpdate(0, 100000-65535)
	r := g2.result(1, 10*time.Second)
	assert.True(t, r.ended && !r.rst, "%v", r)
	assert.Len(t, r.body, 100000)
}
