package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2async is an HTTP/2 client, frame by frame over TLS, for tests that
// watch what edged's server sends while they send more (h2raw, in
// hostile_test.go, reads only when asked).
//
// A reader goroutine reads the server's frames into a queue, never
// waiting for the test: it answers SETTINGS and PINGs (unless silent) and
// gives every DATA's bytes back (if autoWindow) through the writer
// goroutine, which runs all writes in order. The test's view (streams,
// GOAWAYs, PINGs, the client's send windows, the connection's end) takes
// the queued frames only while the test waits or drains: waitFor, wait
// and ping take them one at a time and stop at the one that satisfied
// them, so that a test can tell what came first; result and waitBody, and
// drain, take all that was read by then.
//
// Sending: headers, data, send (DATA as the windows allow), settings,
// windowUpdate, ping, and write for any other frames. Watching: stream,
// window and the view's fields; result, waitBody, waitSettings,
// waitClosed, waitFor and wait.
type h2async struct {
	t    *testing.T
	c    *tls.Conn
	fr   *http2.Framer // read by the reader; written by the writer goroutine only
	bw   *bufio.Writer
	enc  *hpack.Encoder // the writer goroutine's, into hbuf
	hbuf bytes.Buffer
	opts h2asyncOpts
	wq   chan func()
	quit chan struct{} // closed at the test's cleanup

	// alarm: the reader saw HEADERS, RST_STREAM or GOAWAY, or the
	// connection ended (for a test that writes until the server reacts).
	alarm atomic.Bool

	mu    sync.Mutex
	inbox []h2asyncFrame // read, not yet taken into the view
	wake  chan struct{}  // a token when inbox grows

	// The view: the test goroutine's only.
	streams     map[uint32]*h2asyncStream
	goaways     []h2asyncFrame
	pings       []h2asyncFrame   // the server's PINGs (not ACKs)
	pingAcks    map[[8]byte]bool // the ACKs of the client's PINGs, by data
	closed      error            // why reading ended: the connection is over
	closedAt    time.Time
	gotSettings bool  // the server's first SETTINGS
	connWin     int64 // the client's send window, connection
	initWin     int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	streamWin   map[uint32]int64
}

// h2asyncOpts are how an h2async answers the server.
type h2asyncOpts struct {
	silent     bool            // never answer: no SETTINGS ACK, no PING ACK
	autoWindow bool            // give every DATA's bytes back at once, stream and connection
	settings   []http2.Setting // in the client's first SETTINGS
}

// h2asyncFrame is a frame the server sent, copied, or the end of the
// connection (err).
type h2asyncFrame struct {
	typ    http2.FrameType
	stream uint32
	at     time.Time
	end    bool // END_STREAM
	ack    bool // SETTINGS, PING
	fields []hpack.HeaderField
	data   []byte        // DATA, PING
	code   http2.ErrCode // RST_STREAM, GOAWAY
	last   uint32        // GOAWAY's last stream id
	incr   uint32        // WINDOW_UPDATE
	sets   []http2.Setting
	err    error // reading failed
}

// h2asyncStream is what the server sent on one stream.
type h2asyncStream struct {
	interim        []int // 1xx statuses, in order
	status         int
	header         http.Header // the final answer's, names as sent
	trailer        http.Header
	body           []byte
	dataFrames     int
	ended          bool // END_STREAM
	endedOnHeaders bool
	dataAfterEnd   bool
	rst            bool
	code           http2.ErrCode // of the first RST_STREAM
	rstCodes       []http2.ErrCode
	at             time.Time // when it ended: its first END_STREAM or RST_STREAM
	goaway         bool      // the connection got a GOAWAY, whatever its last stream (set by stream)
}

func (s h2asyncStream) String() string {
	return fmt.Sprintf("{interim %v status %d ended %v (on HEADERS %v) rst %v %v goaway %v, %d DATA frames, %d body bytes, header %v}",
		s.interim, s.status, s.ended, s.endedOnHeaders, s.rst, s.rstCodes, s.goaway, s.dataFrames, len(s.body), s.header)
}

// field is the first value of the final answer's field name (lower case).
func (s h2asyncStream) field(name string) string {
	if v := s.header[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// dialH2TLS opens a TLS connection to addr for test.acme.com that
// negotiated h2, closed at the test's end.
func dialH2TLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"h2"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.Equal(t, "h2", c.ConnectionState().NegotiatedProtocol)
	return c
}

// dialH2Async connects to addr for test.acme.com and sends the preface
// and the client's SETTINGS.
func dialH2Async(t *testing.T, addr string, opts h2asyncOpts) *h2async {
	t.Helper()
	c := &h2async{
		t: t, c: dialH2TLS(t, addr), opts: opts,
		wq: make(chan func(), 4096), quit: make(chan struct{}), wake: make(chan struct{}, 1),
		streams: map[uint32]*h2asyncStream{}, pingAcks: map[[8]byte]bool{},
		connWin: 65535, initWin: 65535, streamWin: map[uint32]int64{},
	}
	require.NoError(t, c.c.SetDeadline(time.Now().Add(15*time.Second)))
	c.bw = bufio.NewWriterSize(c.c, 64<<10)
	c.fr = http2.NewFramer(c.bw, c.c)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = 1 << 20
	c.enc = hpack.NewEncoder(&c.hbuf)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.writeLoop() }()
	go func() { defer wg.Done(); c.readLoop() }()
	t.Cleanup(func() {
		close(c.quit)
		c.c.Close()
		wg.Wait()
	})
	require.NoError(t, c.write(func() error {
		if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		return c.fr.WriteSettings(opts.settings...)
	}))
	return c
}

func (c *h2async) writeLoop() {
	for {
		select {
		case fn := <-c.wq:
			fn()
		case <-c.quit:
			return
		}
	}
}

// post has the writer goroutine run fn and flush what it wrote; the
// outcome goes to errc, if any.
func (c *h2async) post(fn func() error, errc chan<- error) {
	w := func() {
		err := fn()
		if err == nil {
			err = c.bw.Flush()
		}
		if errc != nil {
			errc <- err
		}
	}
	select {
	case c.wq <- w:
	case <-c.quit:
	}
}

// write runs fn, which writes with c.fr (and c.block), on the writer
// goroutine, flushes, and returns the first error.
func (c *h2async) write(fn func() error) error {
	errc := make(chan error, 1)
	c.post(fn, errc)
	select {
	case err := <-errc:
		return err
	case <-c.quit:
		return net.ErrClosed
	}
}

// block encodes fields (name, value pairs); for functions given to write.
func (c *h2async) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

func (c *h2async) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		rf := h2asyncFrame{at: time.Now(), err: err}
		if err == nil {
			rf.typ, rf.stream = f.Header().Type, f.Header().StreamID
			switch f := f.(type) {
			case *http2.SettingsFrame:
				rf.ack = f.IsAck()
				_ = f.ForeachSetting(func(s http2.Setting) error {
					rf.sets = append(rf.sets, s)
					return nil
				})
				if !rf.ack && !c.opts.silent {
					c.post(c.fr.WriteSettingsAck, nil)
				}
			case *http2.PingFrame:
				rf.ack, rf.data = f.IsAck(), bytes.Clone(f.Data[:])
				if !rf.ack && !c.opts.silent {
					data := f.Data
					c.post(func() error { return c.fr.WritePing(true, data) }, nil)
				}
			case *http2.MetaHeadersFrame:
				rf.end, rf.fields = f.StreamEnded(), slices.Clone(f.Fields)
			case *http2.DataFrame:
				rf.end, rf.data = f.StreamEnded(), bytes.Clone(f.Data())
				if n := f.Header().Length; c.opts.autoWindow && n > 0 {
					id, end := rf.stream, rf.end
					c.post(func() error {
						if err := c.fr.WriteWindowUpdate(0, n); err != nil || end {
							return err
						}
						return c.fr.WriteWindowUpdate(id, n)
					}, nil)
				}
			case *http2.RSTStreamFrame:
				rf.code = f.ErrCode
			case *http2.GoAwayFrame:
				rf.code, rf.last = f.ErrCode, f.LastStreamID
			case *http2.WindowUpdateFrame:
				rf.incr = f.Increment
			}
		}
		switch {
		case err != nil, rf.typ == http2.FrameHeaders, rf.typ == http2.FrameRSTStream, rf.typ == http2.FrameGoAway:
			c.alarm.Store(true)
		}
		c.mu.Lock()
		c.inbox = append(c.inbox, rf)
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// take moves the next frame read into the view; false if none is waiting.
func (c *h2async) take() bool {
	c.mu.Lock()
	if len(c.inbox) == 0 {
		c.mu.Unlock()
		return false
	}
	f := c.inbox[0]
	c.inbox[0] = h2asyncFrame{}
	c.inbox = c.inbox[1:]
	c.mu.Unlock()
	c.note(f)
	return true
}

// note takes one frame into the view.
func (c *h2async) note(f h2asyncFrame) {
	if f.err != nil {
		c.closed, c.closedAt = f.err, f.at
		return
	}
	switch f.typ {
	case http2.FrameSettings:
		if f.ack {
			return
		}
		c.gotSettings = true
		for _, s := range f.sets {
			if s.ID == http2.SettingInitialWindowSize {
				delta := int64(s.Val) - c.initWin
				c.initWin = int64(s.Val)
				for id := range c.streamWin {
					c.streamWin[id] += delta
				}
			}
		}
	case http2.FrameWindowUpdate:
		if f.stream == 0 {
			c.connWin += int64(f.incr)
		} else if _, ok := c.streamWin[f.stream]; ok {
			c.streamWin[f.stream] += int64(f.incr)
		}
	case http2.FramePing:
		if f.ack {
			c.pingAcks[[8]byte(f.data)] = true
		} else {
			c.pings = append(c.pings, f)
		}
	case http2.FrameGoAway:
		c.goaways = append(c.goaways, f)
	case http2.FrameHeaders:
		s := c.streamOf(f.stream)
		h := make(http.Header)
		status := 0
		for _, hf := range f.fields {
			if hf.Name == ":status" {
				status, _ = strconv.Atoi(hf.Value)
				continue
			}
			h[hf.Name] = append(h[hf.Name], hf.Value)
		}
		switch {
		case status != 0 && status < 200:
			s.interim = append(s.interim, status)
		case status != 0:
			s.status, s.header = status, h
		default:
			s.trailer = h
		}
		if f.end {
			s.endedOnHeaders = s.dataFrames == 0
			s.end(f.at)
		}
	case http2.FrameData:
		s := c.streamOf(f.stream)
		if s.ended {
			s.dataAfterEnd = true
		}
		s.dataFrames++
		s.body = append(s.body, f.data...)
		if f.end {
			s.end(f.at)
		}
	case http2.FrameRSTStream:
		s := c.streamOf(f.stream)
		if !s.rst {
			s.code = f.code
			if s.at.IsZero() {
				s.at = f.at
			}
		}
		s.rst = true
		s.rstCodes = append(s.rstCodes, f.code)
	}
}

func (s *h2asyncStream) end(at time.Time) {
	if s.at.IsZero() {
		s.at = at
	}
	s.ended = true
}

func (c *h2async) streamOf(id uint32) *h2asyncStream {
	s := c.streams[id]
	if s == nil {
		s = &h2asyncStream{}
		c.streams[id] = s
	}
	return s
}

// drain takes the frames read so far into the view, without waiting.
func (c *h2async) drain() {
	for c.take() {
	}
}

// waitFor takes frames until cond holds (true), or the connection ends
// before it does, or d passes (false).
func (c *h2async) waitFor(d time.Duration, cond func() bool) bool {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	// cond may look at the server's state too (what it holds), which
	// changes with no frame coming: looked at again every 10 ms as well.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if c.closed != nil {
			return false
		}
		select {
		case <-timeout.C:
			return false
		default:
		}
		if !c.take() {
			select {
			case <-c.wake:
			case <-tick.C:
			case <-timeout.C:
				return false
			}
		}
	}
	return true
}

// wait is waitFor that fails the test, naming what it waited for, if
// cond does not come to hold.
func (c *h2async) wait(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	if c.waitFor(d, cond) {
		return
	}
	if c.closed != nil {
		c.t.Fatalf("waiting for %s: the connection ended: %v", what, c.closed)
	}
	c.t.Fatalf("waiting for %s: not within %s", what, d)
}

// stream is what stream id got so far, as the view shows.
func (c *h2async) stream(id uint32) h2asyncStream {
	var s h2asyncStream
	if p := c.streams[id]; p != nil {
		s = *p
	}
	s.goaway = len(c.goaways) > 0
	return s
}

// over: stream id has ended (END_STREAM, RST_STREAM) or a GOAWAY left it
// out.
func (c *h2async) over(id uint32) bool {
	if s := c.streams[id]; s != nil && (s.ended || s.rst) {
		return true
	}
	for _, g := range c.goaways {
		if g.last < id {
			return true
		}
	}
	return false
}

// result waits until stream id is over or the connection is, takes what
// else was read by then (drain), and returns what the stream got; the test
// fails if neither comes within d.
func (c *h2async) result(id uint32, d time.Duration) h2asyncStream {
	c.t.Helper()
	if !c.waitFor(d, func() bool { return c.over(id) }) && c.closed == nil {
		c.t.Fatalf("waiting for the end of stream %d: not within %s", id, d)
	}
	c.drain()
	return c.stream(id)
}

// waitBody waits until stream id carried n body bytes or is over, takes
// what else was read by then (drain), and returns what the stream got; the
// test fails if neither comes within d, or the connection ends first.
func (c *h2async) waitBody(id uint32, n int, d time.Duration) h2asyncStream {
	c.t.Helper()
	c.wait(d, fmt.Sprintf("%d body bytes on stream %d", n, id), func() bool {
		return c.over(id) || len(c.stream(id).body) >= n
	})
	c.drain()
	return c.stream(id)
}

// waitClosed waits for the connection to end; false if it is still open
// after d.
func (c *h2async) waitClosed(d time.Duration) bool {
	return c.waitFor(d, func() bool { return c.closed != nil })
}

// waitSettings waits for the server's SETTINGS and its first connection
// WINDOW_UPDATE.
func (c *h2async) waitSettings() {
	c.t.Helper()
	c.wait(5*time.Second, "the server's SETTINGS and connection WINDOW_UPDATE", func() bool {
		return c.gotSettings && c.connWin > 65535
	})
}

// headers sends one HEADERS frame (a request's head, or its trailers)
// with fields as written (name, value pairs). The first on a stream opens
// the client's send window for it.
func (c *h2async) headers(id uint32, end bool, fields ...string) {
	c.t.Helper()
	if _, ok := c.streamWin[id]; !ok {
		c.streamWin[id] = c.initWin
	}
	require.NoError(c.t, c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(fields...), EndStream: end, EndHeaders: true})
	}), "sending HEADERS on stream %d", id)
}

// data sends one DATA frame, whatever the windows.
func (c *h2async) data(id uint32, end bool, p []byte) {
	c.t.Helper()
	c.connWin -= int64(len(p))
	c.streamWin[id] -= int64(len(p))
	require.NoError(c.t, c.write(func() error { return c.fr.WriteData(id, end, p) }), "sending DATA on stream %d", id)
}

// send sends p on stream id in frames of 16 KiB at most as the windows
// allow, waiting up to d for window; END_STREAM goes on the last frame
// when end. It stops early, returning what it sent, once the server reset
// the stream.
func (c *h2async) send(id uint32, p []byte, end bool, d time.Duration) int {
	c.t.Helper()
	sent := 0
	for len(p) > 0 || end {
		var k int64
		reset := false
		c.wait(d, fmt.Sprintf("window to send on stream %d (%d bytes sent, %d to go; connection window %d)", id, sent, len(p), c.connWin), func() bool {
			reset = c.stream(id).rst
			k = min(int64(len(p)), c.connWin, c.streamWin[id], 16<<10)
			return reset || k > 0 || len(p) == 0
		})
		if reset {
			return sent
		}
		c.data(id, end && int(k) == len(p), p[:k])
		sent += int(k)
		p = p[k:]
		if len(p) == 0 {
			break
		}
	}
	return sent
}

// window is the client's send window of stream id (0: the connection).
func (c *h2async) window(id uint32) int64 {
	if id == 0 {
		return c.connWin
	}
	return c.streamWin[id]
}

func (c *h2async) settings(s ...http2.Setting) {
	c.t.Helper()
	require.NoError(c.t, c.write(func() error { return c.fr.WriteSettings(s...) }), "sending SETTINGS")
}

func (c *h2async) windowUpdate(id, n uint32) {
	c.t.Helper()
	require.NoError(c.t, c.write(func() error { return c.fr.WriteWindowUpdate(id, n) }), "sending WINDOW_UPDATE")
}

// ping sends a PING and waits for its ACK: every frame the server wrote
// before it is in the view by then.
func (c *h2async) ping(tag string) {
	c.t.Helper()
	var data [8]byte
	copy(data[:], tag)
	require.NoError(c.t, c.write(func() error { return c.fr.WritePing(false, data) }), "sending PING")
	c.wait(5*time.Second, "the PING's ACK", func() bool { return c.pingAcks[data] })
}
