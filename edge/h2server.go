package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"edged/internal/httpsyntax"
)

// h2sConn serves one HTTP/2 connection. Its goroutine reads the frames
// and acts on each at once, under the connection's lock; every stream's
// handler runs on a goroutine of its own and writes its HEADERS and DATA
// itself, under the same lock, into the h2Conn that gathers them into
// few writes on the wire. No frame passes from one goroutine to another
// on its way in or out. (The body bytes a handler leaves held for window,
// h2Response.hold, are written by whichever of it and the reader finds
// the window open.)
type h2sConn struct {
	srv    *Server
	hc     *h2Conn
	fr     *http2.Framer
	ctx    context.Context
	remote string
	peer   // the client, as forwarding reads it (peerOf)
	tls    *tls.ConnectionState
	cfg    h2Config

	mu      sync.Mutex
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	streams map[uint32]*h2Stream // until each one's handler is done
	canon   map[string]string    // canonicalKey's cache
	lower   map[string]string    // lowerKey's cache
	date    string               // the Date of answers in second dateSec
	dateSec int64
	// recentResets are the last streams edged reset (sendReset).
	recentResets [h2RecentResets]uint32
	nextReset    int
	maxID        uint32 // highest stream id the client opened
	// Rapid reset: opened counts the streams whose handler started,
	// earlyResets those the client reset before their answer ended and
	// within h2EarlyResetLifetime of their start (checkResetFlood).
	opened, earlyResets uint64
	// Flow control. sendWindow is what the client lets the connection
	// send; recvUnacked what handlers have read and the client has not
	// been given back yet.
	sendWindow  int64
	recvWindow  int64 // what the client may still send on the connection
	recvUnacked int64
	peerWindow  int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	held        int64  // answer bytes held for window, all streams' (h2Response.hold)
	readAhead   int64  // request body bytes streams reserved to read ahead (h2Response.takeReadAhead)
	connWaiters int    // streams whose writer waits for the connection's window (connWait)
	peerFrame   uint32 // the client's SETTINGS_MAX_FRAME_SIZE
	started     bool   // edged's SETTINGS are out
	shutdown    bool   // edged sent GOAWAY (endGracefully, idleEnd): no new streams
	goneID      uint32 // the last stream id of edged's first GOAWAY (lastTaken)
	err         error  // set once the connection is done for
	erred       bool   // connError sent GOAWAY: close lingering (the reader's own)
	idle        *time.Timer
	// The silent-peer check: frames counts the frames read, alive runs
	// every h2ReadIdleTimeout and pings a peer that sent none since.
	frames     uint64
	framesSeen uint64
	pingOut    bool
	alive      *time.Timer
	// The head in progress (read_header_timeout): headStart is when the
	// reader read the frame header of the HEADERS frame whose block it
	// is reading (nanoseconds since headEpoch, plus 1; 0: none);
	// headWatch looks at it (checkHead) while headArmed.
	headEpoch time.Time
	headStart atomic.Int64
	headArmed atomic.Bool
	headWatch *time.Timer
	// peerHeaderList is the client's SETTINGS_MAX_HEADER_LIST_SIZE, at
	// least h2PeerHeaderListFloor (math.MaxInt64 until it says one: no
	// limit), read by the streams' handlers without c.mu
	// (h2Response.headOver).
	peerHeaderList atomic.Int64
}

// h2Config is the HTTP/2 part of [server].
type h2Config struct {
	maxStreams   uint32
	maxHeader    uint32
	readTimeout  time.Duration // a request body's
	writeTimeout time.Duration // a stream waiting for window
	idleTimeout  time.Duration
	headTimeout  time.Duration // for the client's preface
}

const (
	// h2DefaultFrame is the frame size a client takes until it says
	// otherwise (RFC 9113 §6.5.2).
	h2DefaultFrame = 16 << 10
	// h2WindowUpdateMin: read bytes are given back to the client once
	// this many gathered, not one WINDOW_UPDATE per read.
	h2WindowUpdateMin = 16 << 10
	// h2HeldPerStream and h2HeldPerConn bound the answer bytes held in
	// memory for a client's flow-control window (h2Response.hold): a
	// default window's worth per stream, and per connection as much as it
	// holds ahead of its socket (h2PendingMax), so that many connections
	// that give no window pin no more memory each than one that does not
	// read.
	h2HeldPerStream  = 64 << 10
	h2HeldPerConn    = 256 << 10
	h2HeldPerProcess = 256 << 20 // all connections' (processBudget): 1,024 connections' h2HeldPerConn
	// h2HeadKeep is the most of its head-encoding buffer a connection
	// keeps after an answer: a node's head may take up to 1 MiB.
	h2HeadKeep = 32 << 10
	// h2ReadAheadPerConn bounds the request body bytes a connection's
	// streams read ahead of their workers at once (awaitBody): the
	// connection's window, 16 streams' bodyWaitMax. The bytes a client
	// sent that edged has not read yet are bounded by that window too.
	h2ReadAheadPerConn = h2UploadPerConn
)

var errH2StreamClosed = errors.New("http2: stream closed")

// serveH2 serves tc, a TLS connection that negotiated "h2", until it
// closes; ctx is the connection's.
func (s *Server) serveH2(ctx context.Context, tc *tls.Conn, cfg h2Config) {
	cs := tc.ConnectionState()
	c := &h2sConn{
		srv:        s,
		hc:         newH2Conn(tc, cfg.writeTimeout),
		ctx:        ctx,
		remote:     tc.RemoteAddr().String(),
		tls:        &cs,
		cfg:        cfg,
		streams:    make(map[uint32]*h2Stream),
		sendWindow: 65535,
		recvWindow: h2UploadPerConn,
		peerWindow: 65535,
		peerFrame:  h2DefaultFrame,
	}
	c.clientIP = hostOfAddr(c.remote)
	c.peerHeaderList.Store(math.MaxInt64)
	// Frames are read from the TLS connection itself, which holds a
	// record's worth already: no buffer of the connection's own.
	c.fr = http2.NewFramer(c.hc, tc)
	c.fr.SetReuseFrames()
	c.fr.MaxHeaderListSize = cfg.maxHeader
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.SetMaxReadFrameSize(h2MaxFrame)
	c.henc = hpack.NewEncoder(&c.hbuf)
	s.trackH2(c, true)
	defer s.trackH2(c, false)
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in the HTTP/2 server", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
		c.closeAll(errH2StreamClosed)
		if c.erred {
			// Answers written before the error, and the GOAWAY naming the
			// last stream processed, are not to be lost in a reset.
			c.hc.CloseLingering()
			c.hc.DrainLingering()
		}
		c.hc.Close()
	}()
	if !c.readPreface(tc) {
		return
	}
	c.mu.Lock()
	_ = c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamPreread},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.maxHeader},
	)
	_ = c.fr.WriteWindowUpdate(0, h2UploadPerConn-65535)
	c.started = true
	if c.shutdown {
		// The shutdown came during the preface (endGracefully): a GOAWAY
		// naming no stream tells the client that none of its requests
		// was taken, and it may send them again (RFC 9113 6.8). The
		// connection then ends as any at shutdown with no stream: its
		// reader drops what the client still sends while it lingers.
		_ = c.fr.WriteGoAway(c.goneID, http2.ErrCodeNo, nil)
		go c.hc.CloseLingering()
	}
	c.armIdle()
	c.alive = time.AfterFunc(h2ReadIdleTimeout, c.checkAlive)
	if cfg.headTimeout > 0 {
		// Disarmed: the first head arms it (headBegins), whose Reset,
		// after this, is what checkHead runs after.
		c.headEpoch = time.Now()
		c.headWatch = time.AfterFunc(math.MaxInt64, c.checkHead)
	}
	c.mu.Unlock()
	first := true
	for {
		// The header first: a frame that fails to read is judged by its
		// type (readError).
		fh, err := c.fr.ReadFrameHeader()
		if err == nil && first && fh.Type != http2.FrameSettings {
			// Told by its header, so that a first frame that fails to
			// read (a malformed HEADERS) is refused all the same.
			c.connError(http2.ErrCodeProtocol, "h2_first_frame")
			return
		}
		var f http2.Frame
		if err == nil {
			// A request's head, with the CONTINUATION frames the
			// Framer reads for it, must come within read_header_timeout
			// of its first frame, as a later head over HTTP/1.1.
			head := fh.Type == http2.FrameHeaders && c.headWatch != nil
			if head {
				c.headBegins()
			}
			f, err = c.fr.ReadFrameForHeader(fh)
			if head {
				c.headStart.Store(0)
			}
		}
		if err != nil {
			if !c.fail(c.readError(fh, err), true) {
				return
			}
			continue
		}
		if first {
			first = false
			_ = tc.SetReadDeadline(time.Time{}) // the client's preface is in
		}
		c.hc.Lingered()
		if err := c.processLocked(f); err != nil && !c.fail(err, false) {
			return
		}
	}
}

// readPreface reads the client's preface within read_header_timeout,
// which goes on to bound its first frame, its SETTINGS.
func (c *h2sConn) readPreface(tc *tls.Conn) bool {
	if d := c.cfg.headTimeout; d > 0 {
		_ = tc.SetReadDeadline(time.Now().Add(d))
	}
	var buf [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(tc, buf[:]); err != nil || string(buf[:]) != http2.ClientPreface {
		if err == nil {
			c.connError(http2.ErrCodeProtocol, "h2_preface")
		}
		return false
	}
	// The deadline stays for the client's SETTINGS, the rest of its
	// preface (serveH2 lifts it once that is read).
	return true
}

// fail handles an error of reading a frame (read) or of acting on one: a
// stream's is answered with RST_STREAM and the connection goes on (true);
// a connection's with GOAWAY; any other (the socket's) ends it silently.
func (c *h2sConn) fail(err error, read bool) bool {
	var (
		se http2.StreamError
		ce http2.ConnectionError
		oe h2ConnErr
	)
	switch {
	case errors.As(err, &se):
		if err := c.streamError(se, read); err != nil {
			return c.fail(err, false) // a rapid reset: the connection ends
		}
		return true
	case errors.As(err, &oe):
		c.connError(oe.code, oe.why)
	case errors.As(err, &ce):
		c.connError(http2.ErrCode(ce), "h2_frame")
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.connError(http2.ErrCodeFrameSize, "h2_frame_too_large")
	}
	return false
}

// streamError answers a stream error with RST_STREAM; its error is the
// connection's when the client has now made edged reset too many streams
// (checkResetFlood).
func (c *h2sConn) streamError(se http2.StreamError, read bool) error {
	c.mu.Lock()
	defer c.mu.Unlock() // and on a panic: serveH2's recover takes it again
	if read && se.StreamID > c.maxID && se.StreamID%2 == 1 {
		// A malformed HEADERS opened it: the one frame whose stream
		// error readError leaves as such on a new stream.
		c.maxID = se.StreamID
	}
	reason, why := refusedH2Protocol, "h2_stream"
	if se.Code == http2.ErrCodeRefusedStream {
		// Over h2_max_concurrent_streams, which counts the handlers
		// of streams the client reset and cannot see: no protocol
		// error of the client's.
		reason, why = refusedH2Refused, "h2_max_concurrent_streams"
	}
	// A stream reset for the client's error cancels its handler as the
	// client's own RST_STREAM does: a client that sends a bad frame on
	// each stream once its request reached the node (MadeYouReset,
	// CVE-2025-8671) is a rapid reset too.
	early := false
	if st := c.streams[se.StreamID]; st != nil {
		early = st.resetEarly()
	}
	c.resetStream(se.StreamID, se.Code, reason, why)
	if early {
		c.earlyResets++
		return c.checkResetFlood()
	}
	return nil
}

// resetEarly reports whether st, about to be reset from the client's side,
// is so before its answer ended and within h2EarlyResetLifetime of its
// start (checkResetFlood), c.mu held.
func (st *h2Stream) resetEarly() bool {
	return !st.reset && !st.resp.ended && time.Since(st.opened) < h2EarlyResetLifetime
}

// readError is err, the Framer's failure to read a frame of header fh,
// as the connection takes it, c.mu not held. Three of the Framer's stream
// errors are connection errors here:
//
//   - a HEADERS frame whose padding runs past its end comes as a stream
//     error without a cause (parseHeadersFrame's; those of a decoded
//     block carry theirs): its block was never decoded, so the HPACK
//     decoder lacks the entries the client's encoder added, and the next
//     blocks would be read against the wrong table. RFC 9113 makes it a
//     connection error (§6.2, §4.3);
//   - a HEADERS frame with a malformed field on an even stream id, or
//     on one not above the last the client opened, is a connection
//     error (§5.1.1), as for a well-formed one;
//   - a WINDOW_UPDATE of increment 0 is a stream error, but on a stream
//     never opened any frame other than HEADERS or PRIORITY is a
//     connection error (§5.1), as processWindowUpdate has it for the
//     other increments: no RST_STREAM for a stream that does not exist,
//     and the stream does not count as opened (fail).
func (c *h2sConn) readError(fh http2.FrameHeader, err error) error {
	var se http2.StreamError
	if !errors.As(err, &se) {
		return err
	}
	switch fh.Type {
	case http2.FrameHeaders:
		if se.Cause == nil {
			return connErr(http2.ErrCodeProtocol, "h2_headers_padding")
		}
		// A malformed block on a stream id the client may not open is
		// the connection error a well-formed one gets (processHeaders),
		// not a RST_STREAM on a stream that never existed.
		c.mu.Lock()
		id := se.StreamID
		bad := c.streams[id] == nil && (id%2 != 1 || id <= c.maxID && !c.wasReset(id) && !c.ignored(id))
		c.mu.Unlock()
		if bad {
			return connErr(http2.ErrCodeProtocol, "h2_stream_id")
		}
	case http2.FrameWindowUpdate:
		c.mu.Lock()
		idle := c.neverOpened(se.StreamID)
		c.mu.Unlock()
		if idle {
			return connErr(http2.ErrCodeProtocol, "h2_window_idle")
		}
	}
	return err
}

// h2ConnErr is a connection error found while processing a frame.
type h2ConnErr struct {
	code http2.ErrCode
	why  string
}

func (e h2ConnErr) Error() string { return "http2: connection error: " + e.why }

func connErr(code http2.ErrCode, why string) error { return h2ConnErr{code, why} }

func streamErr(id uint32, code http2.ErrCode) error {
	return http2.StreamError{StreamID: id, Code: code}
}

// connError sends GOAWAY with code and ends the connection, on the
// connection's own goroutine.
func (c *h2sConn) connError(code http2.ErrCode, why string) {
	c.erred = true
	reason := refusedH2Protocol
	if code == http2.ErrCodeEnhanceYourCalm {
		reason = refusedH2Flood
	}
	c.srv.refusals.request(nil, reason, 0, c.remote, "", why)
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.fr.WriteGoAway(c.lastTaken(), code, nil)
}

// checkResetFlood ends a connection whose client resets most of the
// streams it opens before their answer (CVE-2023-44487, rapid reset), c.mu
// held. h2_max_concurrent_streams bounds the handlers running at once, the
// reset ones included, but each reset frees its slot at once: a client
// that resets every stream once its request reached the node makes the
// node start requests as fast as it can send frames, on one connection.
// As Envoy's premature-reset limit: judged once h2ResetFloodMin streams
// were opened, the connection ends (GOAWAY ENHANCE_YOUR_CALM) when half
// of them or more were reset early. A browser cancelling what a page no
// longer needs stays well below that; a connection that served many
// requests has not earned a flood of resets of the same number, only
// that many at most.
func (c *h2sConn) checkResetFlood() error {
	if c.opened >= h2ResetFloodMin && 2*c.earlyResets >= c.opened {
		return connErr(http2.ErrCodeEnhanceYourCalm, "h2_rapid_reset")
	}
	return nil
}

const (
	// h2ResetFloodMin is how many streams a connection opens before its
	// resets are judged (checkResetFlood), Envoy's default.
	h2ResetFloodMin = 500
)

// h2EarlyResetLifetime: a stream the client resets before its answer
// ended and within this of its start was reset early (a variable for
// tests), Envoy's default.
var h2EarlyResetLifetime = time.Second

// processLocked acts on one frame under c.mu. The lock is let go by a
// defer: a panic in the frame's work reaches serveH2's recover, which takes
// the lock again to end the streams.
func (c *h2sConn) processLocked(f http2.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames++
	return c.process(f)
}

// process acts on one frame, c.mu held.
func (c *h2sConn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.StreamID != 0 {
			return connErr(http2.ErrCodeProtocol, "h2_ping_stream")
		}
		if !f.IsAck() {
			_ = c.fr.WritePing(true, f.Data)
		}
	case *http2.RSTStreamFrame:
		if c.neverOpened(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "h2_rst_idle")
		}
		if st := c.streams[f.StreamID]; st != nil {
			early := st.resetEarly()
			c.closeStream(st, errH2StreamClosed)
			if early {
				c.earlyResets++
				return c.checkResetFlood()
			}
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return streamErr(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.GoAwayFrame:
		// The client is done with the connection: a stream it opens
		// later is not served, and edged's GOAWAY tells it so (as
		// x/net's server does), rather than leave it unanswered.
		c.endGracefully()
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "h2_push_promise")
	}
	return nil // unknown frame types are ignored
}

func (c *h2sConn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	// SETTINGS_INITIAL_WINDOW_SIZE changes every stream's window by the
	// difference (RFC 9113 §6.9.2). A frame may carry it thousands of
	// times (16 KiB of settings): its changes are applied in one walk of
	// the streams, by the last value's difference, and a window that one
	// of them would have taken past 2^31-1, the highest's, is the error
	// it is in order (CVE-2020-11080: one walk per setting made 16 KiB
	// cost as much CPU as a hundred times the bytes of other frames).
	window, highest := c.peerWindow, int64(-1)
	if err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				return connErr(http2.ErrCode(ce), "h2_setting")
			}
			return connErr(http2.ErrCodeProtocol, "h2_setting")
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingInitialWindowSize:
			window, highest = int64(s.Val), max(highest, int64(s.Val))
		case http2.SettingMaxFrameSize:
			c.peerFrame = s.Val
		case http2.SettingMaxHeaderListSize:
			c.peerHeaderList.Store(max(int64(s.Val), h2PeerHeaderListFloor))
		}
		return nil
	}); err != nil {
		return err
	}
	if highest >= 0 {
		delta, most := window-c.peerWindow, highest-c.peerWindow
		c.peerWindow = window
		for _, st := range c.streams {
			if st.sendWindow+most > 1<<31-1 {
				return connErr(http2.ErrCodeFlowControl, "h2_window_overflow")
			}
			st.sendWindow += delta
			// Only a stream this may unblock: one waiting for the
			// connection's window (connWait) is not, and a client
			// toggling the setting would wake them all each time.
			if delta > 0 && st.sendWindow > 0 {
				if !st.connWait {
					st.sendCond.Broadcast()
				}
				c.pushHeld(st)
			}
		}
	}
	// Its error is the wire's, which the writer handles (h2Conn), or that
	// of a connection closing lingering, whose frames are read and
	// dropped: neither ends the reading here.
	_ = c.fr.WriteSettingsAck()
	return nil
}

func (c *h2sConn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		if f.Increment == 0 {
			return connErr(http2.ErrCodeProtocol, "h2_window_zero")
		}
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > 1<<31-1 {
			return connErr(http2.ErrCodeFlowControl, "h2_window_overflow")
		}
		// The held answers first, sent here; then only the streams that
		// wait for the connection's window, as many as it may serve
		// (wakeConnWaiters): one waiting for its own would wake for
		// nothing, as many times as the client sends updates.
		for _, st := range c.streams {
			c.pushHeld(st)
		}
		c.wakeConnWaiters()
		return nil
	}
	if c.neverOpened(f.StreamID) {
		return connErr(http2.ErrCodeProtocol, "h2_window_idle")
	}
	st := c.streams[f.StreamID]
	if st == nil {
		return nil // a closed stream's: allowed
	}
	if f.Increment == 0 {
		return streamErr(f.StreamID, http2.ErrCodeProtocol)
	}
	st.sendWindow += int64(f.Increment)
	if st.sendWindow > 1<<31-1 {
		return streamErr(f.StreamID, http2.ErrCodeFlowControl)
	}
	st.sendCond.Broadcast()
	c.pushHeld(st)
	return nil
}

// wakeConnWaiters wakes the streams whose writers wait for the
// connection's window, as many as it may serve, c.mu held: each woken one
// may take up to its own window. A client giving the window a byte at a
// time woke every waiting handler for each byte, which one of them sent.
// A writer that leaves some of it wakes the next ones (passWindow).
func (c *h2sConn) wakeConnWaiters() {
	budget := c.sendWindow
	if c.connWaiters == 0 || budget <= 0 {
		return
	}
	for _, st := range c.streams {
		if st.connWait {
			st.sendCond.Broadcast()
			if budget -= st.sendWindow; budget <= 0 {
				return
			}
		}
	}
}

// passWindow wakes the streams waiting for the connection's window that
// a writer leaving some of it (its answer written, or its own window
// spent) was woken instead of (wakeConnWaiters), c.mu held.
func (c *h2sConn) passWindow() {
	if c.connWaiters > 0 && c.sendWindow > 0 {
		c.wakeConnWaiters()
	}
}

func (c *h2sConn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	if n > c.recvWindow {
		return connErr(http2.ErrCodeFlowControl, "h2_conn_window")
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || st.remoteDone {
		// Give the connection's window back: the stream will not read.
		c.giveBack(nil, n)
		if c.neverOpened(id) {
			return connErr(http2.ErrCodeProtocol, "h2_data_idle")
		}
		if (st == nil || st.reset) && c.wasReset(id) {
			return nil // sent before the client saw edged's reset
		}
		if st == nil && c.ignored(id) {
			return nil
		}
		return streamErr(id, http2.ErrCodeStreamClosed)
	}
	if n > st.recvWindow {
		c.giveBack(nil, n)
		return streamErr(id, http2.ErrCodeFlowControl)
	}
	st.recvWindow -= n
	if st.detached {
		// Its handler is done, its answer waits for window: the rest
		// of the request is not wanted (the stream is reset with
		// NO_ERROR once the answer is out, as in run), and its window
		// is not given back. Its bytes are counted all the same: the
		// request may still end with trailers, which check its length
		// (endOfRequest).
		c.giveBack(nil, n)
		st.received += int64(len(f.Data()))
		if f.StreamEnded() {
			st.remoteDone = true
		}
		return nil
	}
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.giveBack(st, pad)
	}
	st.received += int64(len(data))
	if st.req.ContentLength >= 0 && st.received > st.req.ContentLength {
		c.giveBack(nil, int64(len(data)))
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if len(data) > 0 {
		st.body.push(data)
		st.body.cond.Signal()
		if st.windowOpen && c.srv.uploads.take(len(data)) {
			// Its request has its worker: what it holds unread, its
			// node slower than its client, is bounded by its own window,
			// the workers bound how many hold it, and the connection's
			// window goes back at once, as it would over connections of
			// their own. Held against the connection's window, five
			// uploads to a node that reads nothing yet held all of it,
			// and every other upload on the connection waited for them,
			// answered 400 at read_timeout as if its client were slow.
			st.freed += int64(len(data))
			c.giveBack(nil, int64(len(data)))
		}
	}
	if f.StreamEnded() {
		return c.endOfRequest(st)
	}
	return nil
}

// takeUnread accounts for n bytes of st's body leaving its buffer (read, or
// dropped), c.mu held: it returns how many of them the connection's window
// is owed (those that came before the stream had its worker first, then
// those the process's budget had no room for), and gives the budget back
// those whose window was given back when they came (processData).
func (c *h2sConn) takeUnread(st *h2Stream, n int) (owed int64) {
	if st.freed == 0 {
		return int64(n)
	}
	owed = min(int64(n), int64(st.body.unread())-st.freed)
	k := int64(n) - owed
	st.freed -= k
	c.srv.uploads.give(int(k))
	return owed
}

// endOfRequest marks st's request as whole, c.mu held.
func (c *h2sConn) endOfRequest(st *h2Stream) error {
	if st.req.ContentLength >= 0 && st.received != st.req.ContentLength {
		return streamErr(st.id, http2.ErrCodeProtocol)
	}
	st.remoteDone = true
	if st.body.err == nil {
		st.body.err = io.EOF
	}
	st.body.cond.Signal()
	return nil
}

// giveBack returns n read bytes to the client's windows (st's too, when
// not nil), in updates of at least h2WindowUpdateMin.
func (c *h2sConn) giveBack(st *h2Stream, n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= h2WindowUpdateMin {
		_ = c.fr.WriteWindowUpdate(0, uint32(c.recvUnacked))
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if st != nil {
		c.giveBackStream(st, n)
	}
}

// giveBackStream returns n read bytes to st's window, in updates of at
// least h2WindowUpdateMin.
func (c *h2sConn) giveBackStream(st *h2Stream, n int64) {
	if st.remoteDone {
		return
	}
	st.recvUnacked += n
	if st.recvUnacked >= h2WindowUpdateMin {
		_ = c.fr.WriteWindowUpdate(st.id, uint32(st.recvUnacked))
		st.recvWindow += st.recvUnacked
		st.recvUnacked = 0
	}
}

func (c *h2sConn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if st := c.streams[id]; st != nil {
		if st.reset && c.wasReset(id) {
			return nil
		}
		if st.remoteDone {
			return streamErr(id, http2.ErrCodeStreamClosed)
		}
		return c.processTrailers(st, f)
	}
	if id <= c.maxID && c.wasReset(id) {
		return nil // trailers sent before the client saw edged's reset
	}
	if id <= c.maxID && c.ignored(id) {
		return nil // trailers
	}
	if id%2 != 1 || id <= c.maxID {
		return connErr(http2.ErrCodeProtocol, "h2_stream_id")
	}
	c.maxID = id
	if f.HasPriority() && f.Priority.StreamDep == id {
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if c.shutdown {
		return nil // after GOAWAY: ignored (RFC 9113 §6.8)
	}
	if len(c.streams) >= int(c.cfg.maxStreams) {
		// A stream stays until its handler is done, a reset one too: a
		// client that opens and resets streams cannot pile up handlers.
		return streamErr(id, http2.ErrCodeRefusedStream)
	}
	st, status, err := c.newStream(f)
	if err != nil {
		return err
	}
	c.stopIdle()
	c.streams[id] = st
	c.opened++
	st.opened = time.Now()
	if f.StreamEnded() {
		st.remoteDone = true
		st.body.err = io.EOF
	}
	go st.run(status)
	return nil
}

// processTrailers ends st's request with its trailers. They are checked,
// not kept: edged forwards no trailers, over HTTP/1.1 either (a request's
// Trailer field is hop-by-hop, prepareHeader drops it).
func (c *h2sConn) processTrailers(st *h2Stream, f *http2.MetaHeadersFrame) error {
	if !f.StreamEnded() {
		return streamErr(st.id, http2.ErrCodeProtocol)
	}
	if len(f.PseudoFields()) > 0 {
		return streamErr(st.id, http2.ErrCodeProtocol)
	}
	for _, hf := range f.RegularFields() {
		if forbiddenTrailer(c.canonicalKey(hf.Name)) {
			return streamErr(st.id, http2.ErrCodeProtocol)
		}
	}
	return c.endOfRequest(st)
}

// h2ConnectionFields may not appear in an HTTP/2 request (RFC 9113 §8.2.2).
func h2ConnectionField(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// newStream makes a stream of a request's HEADERS; status is not 0
// when the request is to be answered with it, without the handler.
func (c *h2sConn) newStream(f *http2.MetaHeadersFrame) (st *h2Stream, status int, err error) {
	id := f.StreamID
	var method, path, scheme, authority string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		default:
			return nil, 0, streamErr(id, http2.ErrCodeProtocol)
		}
	}
	connect := method == http.MethodConnect
	if connect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, streamErr(id, http2.ErrCodeProtocol)
		}
	} else if method == "" || path == "" || (scheme != "https" && scheme != "http") {
		return nil, 0, streamErr(id, http2.ErrCodeProtocol)
	}
	st = h2Streams.Get().(*h2Stream)
	st.init(c, id)
	hdr := st.hdr
	fields := f.RegularFields()
	// Each field's first value is a one-value slice of vals, which has
	// room for all of them: no allocation per field.
	vals := st.vals[:0]
	if cap(vals) < len(fields) {
		vals = make([]string, 0, len(fields))
	}
	for _, hf := range fields {
		k := c.canonicalKey(hf.Name)
		if h2ConnectionField(k) || (k == "Te" && hf.Value != "trailers") {
			st.release()
			return nil, 0, streamErr(id, http2.ErrCodeProtocol)
		}
		if vv, ok := hdr[k]; ok {
			hdr[k] = append(vv, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		n := len(vals)
		hdr[k] = vals[n-1 : n : n]
	}
	st.vals = vals
	if cookies := hdr["Cookie"]; len(cookies) > 1 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if authority == "" {
		authority = hdr.Get("Host")
	}
	r := &st.req
	*r = *st.reqBase
	r.Method = method
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = hdr
	r.Host = authority
	r.RemoteAddr = c.remote
	r.TLS = c.tls
	r.ContentLength = 0
	if !f.StreamEnded() {
		r.ContentLength = -1
		if vv, ok := hdr["Content-Length"]; ok {
			n, valid := parseContentLength(vv[0])
			if !valid || len(vv) > 1 {
				status = http.StatusBadRequest
			}
			r.ContentLength = n
		}
		r.Body = &st.body
	} else {
		if vv, ok := hdr["Content-Length"]; ok {
			if n, valid := parseContentLength(vv[0]); !valid || len(vv) > 1 || n != 0 {
				status = http.StatusBadRequest
			}
		}
		r.Body = http.NoBody
	}
	if connect {
		r.URL = &url.URL{Host: authority}
		r.RequestURI = authority
	} else {
		r.URL = &st.url
		if !originFormFast(path, &st.url) {
			u, perr := url.ParseRequestURI(path)
			if perr != nil {
				st.release()
				return nil, 0, streamErr(id, http2.ErrCodeProtocol)
			}
			r.URL = u
		}
		r.RequestURI = path
	}
	if f.Truncated {
		status = http.StatusRequestHeaderFieldsTooLarge
	}
	// The expectation is case-insensitive (RFC 9110 10.1.1), as the
	// HTTP/1.1 parser reads it: a client sending "100-Continue" waits
	// for the 100 before its body. Any other is not met: 417, as over
	// HTTP/1.1, rather than forwarded without it.
	// An empty one is none, as over HTTP/1.1.
	expect := false
	for _, ex := range hdr["Expect"] {
		switch ex = httpsyntax.TrimOWS(ex); {
		case ex == "":
		case httpsyntax.EqualFoldASCII(ex, "100-continue"):
			expect = true
		case status == 0:
			status = http.StatusExpectationFailed
		}
	}
	st.body.expect = expect && status == 0 && r.ContentLength != 0
	// Here, not in run: the reader looks at the answer's end (a client's
	// RST_STREAM, checkResetFlood) from the moment the stream is known.
	st.resp.reset(r)
	return st, status, nil
}

// sendReset writes RST_STREAM for id and remembers id among the last
// h2RecentResets streams reset: frames the client sent before it saw the
// reset are then dropped quietly (RFC 9113 §5.1), c.mu held.
func (c *h2sConn) sendReset(id uint32, code http2.ErrCode) {
	_ = c.fr.WriteRSTStream(id, code)
	c.recentResets[c.nextReset%h2RecentResets] = id
	c.nextReset++
}

// wasReset reports whether edged reset stream id lately.
func (c *h2sConn) wasReset(id uint32) bool {
	for _, r := range c.recentResets {
		if r == id && id != 0 {
			return true
		}
	}
	return false
}

// h2RecentResets is how many reset streams a connection remembers.
const h2RecentResets = 32

// resetStream sends RST_STREAM for id and closes its stream, counting it
// as refused for reason, c.mu held.
func (c *h2sConn) resetStream(id uint32, code http2.ErrCode, reason refusal, why string) {
	c.srv.refusals.request(nil, reason, 0, c.remote, "", why)
	c.sendReset(id, code)
	if st := c.streams[id]; st != nil {
		c.closeStream(st, errH2StreamClosed)
	}
}

// closeStream ends st from the client's side (reset, or the connection's
// end): its handler sees its context cancelled and its body fail, c.mu
// held.
func (c *h2sConn) closeStream(st *h2Stream, err error) {
	if st.reset {
		return
	}
	st.reset = true
	if st.body.err == nil || st.body.err == io.EOF && st.body.unread() > 0 {
		st.body.err = err
	}
	st.remoteDone = true
	c.dropBody(st)
	c.dropHeld(st)
	st.body.cond.Broadcast()
	st.sendCond.Broadcast()
	st.ctx.cancel()
	if st.detached {
		c.retire(st)
	}
}

// dropBody drops what st's handler has not read of its body and gives it
// back to the connection's window, c.mu held.
func (c *h2sConn) dropBody(st *h2Stream) {
	if n := st.body.unread(); n > 0 {
		owed := c.takeUnread(st, n)
		st.body.buf, st.body.off = st.body.buf[:0], 0
		c.giveBack(nil, owed)
	}
}

// forget drops st, whose handler is done, from the connection, c.mu
// held.
func (c *h2sConn) forget(st *h2Stream) {
	delete(c.streams, st.id)
	if len(c.streams) == 0 {
		c.armIdle()
	}
}

// closeAll ends every stream: the connection is gone.
func (c *h2sConn) closeAll(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for _, st := range c.streams {
		c.closeStream(st, err) // wakes its writer, waiting for window or not
	}
	if c.idle != nil {
		c.idle.Stop()
	}
	if c.alive != nil {
		c.alive.Stop()
	}
	if c.headWatch != nil {
		c.headWatch.Stop()
	}
}

// checkAlive pings a peer silent for h2ReadIdleTimeout and closes the
// connection when the ping gets no answer, nor any other frame, within
// h2PingTimeout.
func (c *h2sConn) checkAlive() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.frames != c.framesSeen {
		c.framesSeen, c.pingOut = c.frames, false
		c.alive.Reset(h2ReadIdleTimeout)
		c.mu.Unlock()
		return
	}
	if c.pingOut {
		c.mu.Unlock()
		c.hc.Close()
		return
	}
	c.pingOut = true
	_ = c.fr.WritePing(false, [8]byte{'e', 'd', 'g', 'e', 'd'})
	c.alive.Reset(h2PingTimeout)
	c.mu.Unlock()
}

// headBegins notes that the reader reads a request's head (a HEADERS
// frame and its block's CONTINUATION frames), for checkHead. It costs a
// clock read and a few atomics: the watch is armed at most once per
// read_header_timeout, not once per head.
func (c *h2sConn) headBegins() {
	c.headStart.Store(int64(time.Since(c.headEpoch)) + 1)
	if c.headArmed.CompareAndSwap(false, true) {
		c.headWatch.Reset(c.cfg.headTimeout)
	}
}

// checkHead closes the connection whose reader has been reading one
// request's head for read_header_timeout (a HEADERS frame whose payload
// trickles in, or CONTINUATION frames that never end its block: the
// reader reads no other frame meanwhile, and the silent-peer check,
// which counts whole frames, took 45 s or more to notice); the head is
// cut without an answer, as over HTTP/1.1. It looks again when that
// head's time ends, and disarms itself when no head is being read: the
// next head arms it (headBegins).
func (c *h2sConn) checkHead() {
	for {
		start := c.headStart.Load()
		if start == 0 {
			c.headArmed.Store(false)
			// A head that began meanwhile, whose headBegins saw the
			// watch still armed, is looked at now.
			if c.headStart.Load() == 0 || !c.headArmed.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		if left := c.cfg.headTimeout - (time.Since(c.headEpoch) - time.Duration(start-1)); left > 0 {
			c.headWatch.Reset(left)
			return
		}
		c.hc.Close()
		return
	}
}

// armIdle starts the idle timeout of a connection without streams, c.mu
// held.
func (c *h2sConn) armIdle() {
	if c.cfg.idleTimeout <= 0 || c.err != nil {
		return
	}
	if c.idle == nil {
		c.idle = time.AfterFunc(c.cfg.idleTimeout, c.idleEnd)
		return
	}
	c.idle.Reset(c.cfg.idleTimeout)
}

func (c *h2sConn) stopIdle() {
	if c.idle != nil {
		c.idle.Stop()
	}
}

// idleEnd ends a connection that had no stream for idle_timeout. A
// request the client sent meanwhile may be read before the connection
// closes: its stream, above the GOAWAY's last, is not served, as the
// GOAWAY tells the client, which may send it again elsewhere.
func (c *h2sConn) idleEnd() {
	c.mu.Lock()
	busy := len(c.streams) > 0
	if !busy {
		_ = c.fr.WriteGoAway(c.stopTaking(), http2.ErrCodeNo, nil)
	}
	c.mu.Unlock()
	if !busy {
		c.hc.CloseLingering()
	}
}

// goAway sends GOAWAY for the server's shutdown: streams in flight end,
// new ones are ignored, and the connection closes when the last ends.
func (c *h2sConn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endGracefully()
}

// endGracefully is goAway, c.mu held; it also answers a client's
// GOAWAY.
func (c *h2sConn) endGracefully() {
	if c.shutdown {
		return
	}
	last := c.stopTaking()
	if !c.started {
		// Still reading the client's preface: edged's first frame must be
		// its SETTINGS, so the GOAWAY follows them (serveH2). Closed now,
		// the client, whose first requests may be on their way, could
		// not tell whether any was taken.
		return
	}
	_ = c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
	if len(c.streams) == 0 {
		go c.hc.CloseLingering()
	}
}

// stopTaking makes the connection take no new stream and returns the
// last stream id it took, for a GOAWAY, c.mu held.
func (c *h2sConn) stopTaking() uint32 {
	if !c.shutdown {
		c.shutdown = true
		c.goneID = c.maxID
	}
	return c.goneID
}

// ignored reports whether stream id, which the client opened, was
// opened after edged's GOAWAY and not served: its frames, sent before the
// client saw the GOAWAY, are ignored (RFC 9113 §6.8), c.mu held.
func (c *h2sConn) ignored(id uint32) bool {
	return c.shutdown && id > c.goneID && id%2 == 1
}

// neverOpened reports whether stream id (not 0) was never opened, c.mu
// held: an odd id above the last the client opened, or an even one, which
// only edged would open and never does (no push). A frame other than
// HEADERS or PRIORITY on it is a connection error (RFC 9113 §5.1).
func (c *h2sConn) neverOpened(id uint32) bool {
	return id > c.maxID || id%2 == 0
}

// lastTaken is the last stream id a GOAWAY names, c.mu held. Once edged
// sent one, the streams the client opens are ignored (processHeaders):
// maxID moves past them, so that their frames are told from those of
// streams never opened, but a later GOAWAY (a connection error's) may not
// name them, nor any id above the first's (RFC 9113 §6.8).
func (c *h2sConn) lastTaken() uint32 {
	if c.shutdown {
		return c.goneID
	}
	return c.maxID
}

// h2Stream is one request and its answer.
type h2Stream struct {
	c   *h2sConn
	id  uint32
	ctx h2StreamCtx
	// reqBase carries ctx: a request copied from it has it too.
	reqBase *http.Request
	req     http.Request
	url     url.URL
	hdr     http.Header
	vals    []string // backs hdr's values
	body    h2Body
	resp    h2Response

	sendWindow  int64
	recvWindow  int64
	recvUnacked int64
	received    int64     // body bytes received
	sendCond    sync.Cond // its writer waits here for window (waitWindow); L is c.mu
	connWait    bool      // its writer waits for the connection's window
	// freed: of the body bytes received and not read yet, those whose
	// connection window was given back when they came (processData).
	freed int64

	// gen changes when the stream's handler is done, under c.mu: a
	// timer of the stream that fires late sees it and does nothing.
	gen        atomic.Uint64
	opened     time.Time // when its handler started
	remoteDone bool      // the client's side ended (END_STREAM or reset)
	reset      bool
	// waitingBody: its handler waits for the body before it takes a
	// worker (awaitBody), a wait the shutdown's cut ends (cutBodyWaits).
	waitingBody bool
	// windowOpen: openWindow ran. Until then the stream's window is
	// h2StreamPreread, and what is read of its body while waitingBody is
	// given back to the connection's window only.
	windowOpen bool
	// detached: its handler is done (its worker given back) and its
	// answer's last bytes are held for window (h2Response.hold); the
	// connection's reader sends them as the client gives window, and
	// stall resets the stream when none comes within write_timeout.
	detached bool
	stall    *time.Timer
}

var h2Streams = sync.Pool{New: func() any {
	st := &h2Stream{hdr: make(http.Header, 8)}
	st.reqBase = new(http.Request).WithContext(&st.ctx)
	st.resp.st = st
	st.resp.header = make(http.Header, 8)
	st.body.st = st
	return st
}}

func (st *h2Stream) init(c *h2sConn, id uint32) {
	st.c, st.id = c, id
	st.ctx.reset(c.ctx)
	st.body.cond.L = &c.mu
	st.sendCond.L = &c.mu
	st.connWait = false
	st.body.buf, st.body.off = st.body.buf[:0], 0
	st.body.err = nil
	st.body.expect = false
	st.body.deadline = nil
	st.body.due, st.body.late, st.body.moves = time.Time{}, false, false
	st.sendWindow = c.peerWindow
	st.recvWindow = h2StreamPreread
	st.recvUnacked, st.received, st.windowOpen, st.freed = 0, 0, false, 0
	st.remoteDone, st.reset, st.waitingBody = false, false, false
	st.detached, st.stall = false, nil
}

func (st *h2Stream) release() {
	// Its maps and value list go back to the pool with it, and a Go map
	// never shrinks: those a head of thousands of fields grew (about 2
	// MB for one of 20,000) are dropped, as an HTTP/1.1 connection drops
	// its own (h1HeaderKeep), not kept by every stream that takes it
	// next.
	resetFields(&st.hdr, &st.vals, &st.resp.header)
	st.req = http.Request{}
	st.c = nil
	if cap(st.body.buf) > 32<<10 {
		st.body.buf = nil
	}
	if cap(st.resp.held) > 32<<10 {
		st.resp.held = nil
	}
	st.ctx.mu.Lock()
	cancelled := st.ctx.cerr != nil
	st.ctx.mu.Unlock()
	if cancelled {
		// Not reused: a goroutine watching the context for a child of
		// it (context.WithDeadline of an upstream dial) may be about to
		// ask for its Err, which must stay non-nil.
		return
	}
	h2Streams.Put(st)
}

// run serves the stream's request on its own goroutine.
func (st *h2Stream) run(status int) {
	h2GrowStack(0)
	c := st.c
	r := &st.req
	w := &st.resp
	if status == 0 && c.cfg.readTimeout > 0 && r.ContentLength != 0 {
		st.body.armDeadline(c.cfg.readTimeout)
		st.body.moves = true
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					c.srv.log.Error("panic serving an HTTP/2 request", "remote", c.remote, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
				w.aborted = true
			}
		}()
		switch status {
		case 0:
			c.srv.ServeHTTP(w, r)
		case http.StatusRequestHeaderFieldsTooLarge:
			c.srv.refuse(w, r, c.srv.sniCounters(r, nil), refusedHeadTooLarge, status, "request header fields too large", requestID(r))
		case http.StatusExpectationFailed:
			c.srv.refuse(w, r, c.srv.sniCounters(r, nil), refusedExpectation, status, errExpectation.msg, requestID(r))
		default:
			c.srv.refuse(w, r, c.srv.sniCounters(r, nil), refusedInvalid, status, "malformed Content-Length", requestID(r))
		}
	}()
	if st.body.deadline != nil {
		st.body.deadline.Stop()
	}
	// Before the stream may be detached: the reader may end it from then on.
	st.ctx.end()
	c.mu.Lock()
	detach := w.finish()
	c.dropBody(st)
	gen := st.gen.Add(1)
	if detach {
		// The answer's last bytes wait for window, held; the worker is
		// given back already, the stream is the reader's now.
		st.detached = true
		if d := c.cfg.writeTimeout; d > 0 {
			st.stall = time.AfterFunc(d, func() { c.stalled(st, gen) })
		}
		c.mu.Unlock()
		return
	}
	if !st.remoteDone && !st.reset {
		// The answer is complete before the request: the rest of it is
		// not wanted (RFC 9113 §8.1).
		c.sendReset(st.id, http2.ErrCodeNo)
		c.closeStream(st, errH2StreamClosed)
	}
	c.forget(st)
	closeConn := c.shutdown && len(c.streams) == 0
	c.mu.Unlock()
	st.release()
	if closeConn {
		c.hc.CloseLingering()
	}
}

// pushHeld sends what the windows allow of the answer bytes st holds,
// after a WINDOW_UPDATE or SETTINGS gave window, c.mu held. A detached
// stream whose answer is then out ends; one that sent some gets
// write_timeout afresh.
func (c *h2sConn) pushHeld(st *h2Stream) {
	w := &st.resp
	if w.heldLen() == 0 || st.reset {
		return
	}
	before := w.sent
	if w.sendHeld() != nil || w.sent == before {
		return // a failed write: the connection is ending (h2Conn)
	}
	if !st.detached {
		// Its handler may wait in settle for these bytes, or in Write
		// behind them: a WINDOW_UPDATE of the connection whose window
		// they took wakes no one for it (wakeConnWaiters).
		st.sendCond.Broadcast()
		return
	}
	if w.heldLen() == 0 {
		if !st.remoteDone {
			// As run does for an answer complete before the request.
			c.sendReset(st.id, http2.ErrCodeNo)
		}
		c.closeStream(st, errH2StreamClosed) // retires it
		return
	}
	if st.stall != nil {
		st.stall.Reset(c.cfg.writeTimeout)
	}
}

// stalled resets a detached stream that got no window for
// write_timeout, as a handler waiting for window is (finish), unless it
// ended meanwhile (gen).
func (c *h2sConn) stalled(st *h2Stream, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.gen.Load() != gen || !st.detached {
		return
	}
	c.sendReset(st.id, http2.ErrCodeInternal)
	c.closeStream(st, errH2StreamClosed) // retires it
}

// dropHeld drops the answer bytes st holds, c.mu held.
func (c *h2sConn) dropHeld(st *h2Stream) {
	w := &st.resp
	c.held -= int64(w.heldLen())
	c.srv.held.give(w.heldLen())
	w.held, w.heldOff = w.held[:0], 0
}

// retire drops a detached stream, whose answer is out or which was
// reset, from the connection, c.mu held (closeStream).
func (c *h2sConn) retire(st *h2Stream) {
	st.detached = false
	st.gen.Add(1)
	if st.stall != nil {
		st.stall.Stop()
		st.stall = nil
	}
	c.forget(st)
	if c.shutdown && len(c.streams) == 0 && c.err == nil {
		go c.hc.CloseLingering()
	}
	st.release()
}

// h2StreamCtx is a stream's context: the connection's, ended on its own
// when the stream is reset, with one slot for the upstream client's
// abort (upstream.AbortRegistry), as h1Context.
type h2StreamCtx struct {
	h1Context
	done chan struct{}
	cerr error
}

// reset readies x, never cancelled (h2Stream.release), for a new stream.
// Its done channel serves again (the upstream client asks for Done on
// every request). Whoever waited on it for the earlier stream stopped
// when its handler returned (context.AfterFunc's stop, a child context's
// cancel), but the goroutine of such a wait may still look at x after
// that: every field is read and written under x.mu.
func (x *h2StreamCtx) reset(parent context.Context) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.Context, x.abort, x.ended = parent, nil, false
}

func (x *h2StreamCtx) Value(key any) any {
	x.mu.Lock()
	p := x.Context
	x.mu.Unlock()
	return p.Value(key)
}

func (x *h2StreamCtx) Deadline() (time.Time, bool) {
	x.mu.Lock()
	p := x.Context
	x.mu.Unlock()
	return p.Deadline()
}

func (x *h2StreamCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if x.cerr != nil {
			close(x.done)
		}
	}
	return x.done
}

func (x *h2StreamCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cerr
}

// cancel ends the context: the client reset the stream or went away.
func (x *h2StreamCtx) cancel() {
	x.mu.Lock()
	if x.cerr != nil {
		x.mu.Unlock()
		return
	}
	x.cerr = context.Canceled
	if x.done != nil {
		close(x.done)
	}
	a := x.abort
	x.abort, x.ended = nil, true
	x.mu.Unlock()
	if a != nil {
		a.Abort()
	}
}

// h2Body is a request's body, filled by the connection's reader.
type h2Body struct {
	st       *h2Stream
	cond     sync.Cond // L is the connection's mu
	buf      []byte    // received; buf[off:] not read yet
	off      int
	err      error // io.EOF once the request ended
	expect   bool  // 100 Continue to send before the first read
	deadline *time.Timer
	// due is when deadline ends the body's wait (zero: none; c.mu held
	// once the handler runs); late: it has, and a read that finds
	// nothing fails.
	// moves: due is read_timeout's, moved on by the time edged spends
	// between the body's reads (moveReadDeadline), not the handler's.
	due   time.Time
	late  bool
	moves bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.expect {
		b.expect = false
		if b.unread() == 0 && b.err == nil && !st.resp.wroteHeader && !st.reset {
			st.resp.writeFields(100, false, nil)
		}
	}
	if !st.windowOpen && !st.waitingBody {
		c.openWindow(st)
	}
	for b.unread() == 0 && b.err == nil && !b.late {
		b.cond.Wait()
	}
	if b.unread() == 0 {
		if b.err == nil {
			b.err = os.ErrDeadlineExceeded
		}
		return 0, b.err
	}
	n := copy(p, b.buf[b.off:])
	owed := c.takeUnread(st, n)
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	c.giveBack(nil, owed)
	if !st.waitingBody {
		c.giveBackStream(st, int64(n))
	}
	return n, nil
}

// openWindow opens st's window to h2UploadPerStream at its first read
// with its worker (or with none to wait for), c.mu held: what the client
// may send, with what edged holds unread of it, is then the whole window
// (what was read ahead, or read and not yet acknowledged, is given back
// with it).
func (c *h2sConn) openWindow(st *h2Stream) {
	st.windowOpen = true
	n := h2UploadPerStream - st.recvWindow - int64(st.body.unread())
	if st.remoteDone || n <= 0 {
		return
	}
	_ = c.fr.WriteWindowUpdate(st.id, uint32(n))
	st.recvWindow += n
	st.recvUnacked = 0
}

func (b *h2Body) Close() error { return nil }

func (b *h2Body) unread() int { return len(b.buf) - b.off }

// push adds received bytes, moving the unread ones to the front first
// when that makes room.
func (b *h2Body) push(p []byte) {
	if b.off > 0 && len(b.buf)+len(p) > cap(b.buf) {
		n := copy(b.buf, b.buf[b.off:])
		b.buf, b.off = b.buf[:n], 0
	}
	b.buf = append(b.buf, p...)
}

// armDeadline fails the body's reads that find nothing after d, unless
// the stream has ended by then (and its state gone to another stream:
// gen tells), or the whole body has arrived: what is left to read is
// then edged's own delay (a wait for a worker, a node's dial), not the
// client's, and the read of it needs no time (HTTP/1.1 reads a body
// already in its buffer the same way). The body's reads are told once
// the deadline has passed (late), not failed: a deadline that passed
// while edged was writing to a slow node is moved on before the next
// read (moveReadDeadline).
func (b *h2Body) armDeadline(d time.Duration) {
	st := b.st
	c, gen := st.c, st.gen.Load()
	b.due = time.Now().Add(d)
	b.deadline = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if st.gen.Load() != gen || b.due.IsZero() || time.Now().Before(b.due) {
			return // cleared, or moved on meanwhile (the timer is set again)
		}
		b.late = true
		b.cond.Broadcast()
	})
}

// moveReadDeadline moves read_timeout's deadline d later (now is the
// time), the time edged spent elsewhere between two of the body's reads
// (readDeadlineMover); one the handler set is left alone.
func (b *h2Body) moveReadDeadline(d time.Duration, now time.Time) {
	c := b.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !b.moves || b.err != nil || b.deadline == nil {
		return
	}
	b.due = b.due.Add(d)
	if left := b.due.Sub(now); left > 0 {
		b.late = false
		b.deadline.Reset(left)
	}
}

// h2Response is the http.ResponseWriter of a stream.
type h2Response struct {
	st      *h2Stream
	header  http.Header
	status  int
	isHEAD  bool
	noBody  bool
	cl      int64
	written int64 // body bytes the handler wrote: sent, or held
	sent    int64 // body bytes sent
	// held are body bytes written while the client gave no window,
	// from heldOff on (hold); heldEnd: END_STREAM follows them.
	held    []byte
	heldOff int
	heldEnd bool
	// holding: hold kept some of this answer's bytes. Set and read on
	// the handler's goroutine only (hold, settle): an answer that never
	// held any settles without the connection's lock.
	holding     bool
	wroteHeader bool
	headSent    bool
	ended       bool
	aborted     bool
	err         error
	rid         [1]string // backs the answer's x-request-id (exchange.respond)
}

func (w *h2Response) reset(r *http.Request) {
	*w = h2Response{st: w.st, header: w.header, held: w.held[:0], isHEAD: r.Method == http.MethodHead, cl: -1}
}

func (w *h2Response) Header() http.Header { return w.header }

func (w *h2Response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("edge: invalid WriteHeader code " + strconv.Itoa(code))
	}
	c := w.st.c
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			c.mu.Lock()
			if !w.st.reset {
				w.writeFields(code, false, w.header)
			}
			c.mu.Unlock()
		}
		return
	}
	w.wroteHeader = true
	w.status = code
	w.noBody = w.isHEAD || code == http.StatusNoContent || code == http.StatusNotModified
	if v := w.header["Content-Length"]; len(v) > 0 {
		if n, ok := parseContentLength(v[0]); ok && len(v) == 1 {
			w.cl = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	if w.cl == 0 || w.noBody {
		// Nothing follows: the head leaves now and ends the stream.
		c.mu.Lock()
		if !w.st.reset {
			w.sendHead(true)
		}
		c.mu.Unlock()
	}
}

// takeBackHead undoes WriteHeader while no HEADERS frame was sent and no
// body byte written (headTakerBack): a head with a body to come leaves
// with its first bytes.
func (w *h2Response) takeBackHead() bool {
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.st.reset || !w.wroteHeader || w.headSent || w.written > 0 || w.err != nil {
		return false
	}
	clear(w.header)
	w.wroteHeader, w.status, w.noBody, w.cl = false, 0, false, -1
	return true
}

func (w *h2Response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.passWindow()
	if st.reset {
		// Nothing more may be sent on a reset stream (RFC 9113 §5.1).
		return 0, errH2StreamClosed
	}
	if !w.headSent {
		w.sendHead(false)
	}
	n := 0
	var wait h2WindowWait
	defer wait.stop()
	// Progress is any byte sent since the last look, by this loop or by
	// the reader, which sends held bytes as window comes (pushHeld).
	last := w.sent
	for len(p) > 0 {
		if w.sent != last {
			last = w.sent
			wait.progress()
		}
		if err := wait.check(st); err != nil {
			w.err = err
			return n, err
		}
		before := w.sent
		if err := w.sendHeld(); err != nil {
			return n, err
		}
		if w.heldLen() == 0 {
			if k := st.takeWindow(len(p)); k > 0 {
				end := w.cl >= 0 && w.sent+int64(k) == w.cl
				if err := c.fr.WriteData(st.id, end, p[:k]); err != nil {
					w.err = err
					return n, err
				}
				w.ended = end
				w.sent += int64(k)
				w.written += int64(k)
				n += k
				p = p[k:]
			}
		}
		if w.sent != before {
			continue // progress, counted above
		}
		if w.hold(p) {
			w.written += int64(len(p))
			return n + len(p), nil
		}
		wait.waitWindow(st)
	}
	return n, nil
}

// hold keeps p, which the client's windows do not let go now, to be sent
// as they open (sendHeld), within h2HeldPerStream, the connection's
// h2HeldPerConn and the process's h2HeldPerProcess, c.mu held. An answer whose end is held this way frees
// the environment's worker its handler holds before the client took it
// (a proxied request then waits in settle, workerless, to be logged
// with what went; another handler ends, finish): a client that gives no
// window (or never reads) holds no worker with the answers that fit, as
// an HTTP/1.1 client's socket buffer holds a short answer it does not
// read.
func (w *h2Response) hold(p []byte) bool {
	c := w.st.c
	if w.heldLen()+len(p) > h2HeldPerStream || c.held+int64(len(p)) > h2HeldPerConn || !c.srv.held.take(len(p)) {
		return false
	}
	if w.heldOff > 0 && len(w.held)+len(p) > cap(w.held) {
		k := copy(w.held, w.held[w.heldOff:])
		w.held, w.heldOff = w.held[:k], 0
	}
	w.held = append(w.held, p...)
	w.holding = true
	c.held += int64(len(p))
	return true
}

func (w *h2Response) heldLen() int { return len(w.held) - w.heldOff }

// takeReadAhead reserves n bytes of the connection's h2ReadAheadPerConn,
// and of the process's readAheadPerProcess, for the stream's body read
// ahead of its worker (readAheadBudget).
func (w *h2Response) takeReadAhead(n int) bool {
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readAhead+int64(n) > h2ReadAheadPerConn || !c.srv.readAhead.take(n) {
		return false
	}
	c.readAhead += int64(n)
	return true
}

// waitingBody marks the stream as waiting for its body (bodyWaiter); a
// wait that starts once the shutdown cut them ends at once.
func (w *h2Response) waitingBody(on bool) {
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.waitingBody = on
	if on && c.srv.bodyWaitsCut.Load() {
		st.body.cutWait()
	}
}

// cutBodyWaits ends the waits of the connection's streams for their
// bodies (Server.cutWaits).
func (c *h2sConn) cutBodyWaits() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.streams {
		if st.waitingBody {
			st.body.cutWait()
		}
	}
}

// cutWait fails the body's reads still to come, c.mu held: its handler
// waits for it before taking a worker, and the shutdown cut that wait.
func (b *h2Body) cutWait() {
	if b.err == nil {
		b.err = errBodyWaitCut
		b.cond.Broadcast()
	}
}

// giveReadAhead returns what takeReadAhead reserved: the wait is over.
func (w *h2Response) giveReadAhead(n int) {
	c := w.st.c
	c.mu.Lock()
	c.readAhead -= int64(n)
	c.mu.Unlock()
	c.srv.readAhead.give(n)
}

// sendHeld sends what the windows allow of the held bytes, c.mu held.
func (w *h2Response) sendHeld() error {
	st := w.st
	for w.heldLen() > 0 {
		k := st.takeWindow(w.heldLen())
		if k == 0 {
			break
		}
		end := w.cl >= 0 && w.sent+int64(k) == w.cl || w.heldEnd && k == w.heldLen()
		if err := st.c.fr.WriteData(st.id, end, w.held[w.heldOff:w.heldOff+k]); err != nil {
			w.err = err
			return err
		}
		w.heldOff += k
		st.c.held -= int64(k)
		st.c.srv.held.give(k)
		w.sent += int64(k)
		w.ended = end
	}
	if w.heldLen() == 0 {
		w.held, w.heldOff = w.held[:0], 0
	}
	return nil
}

// settle waits, the handler's answer written and its worker given back
// (exchange.finish), until the body bytes held for window (hold) are
// sent, the stream ends, or write_timeout passes with none of them sent,
// which ends the answer as it ends a Write waiting as long (finish resets
// the stream). It reports the body bytes written that the client does
// not get, which the access log and the metrics do not count as sent:
// a stream reset while its answer waited for window is logged with what
// went, as nginx logs $body_bytes_sent. Without wait (an answer being
// aborted) it waits for nothing: what is held is dropped.
func (w *h2Response) settle(wait bool) (unsent int64) {
	if !w.holding {
		return 0 // every byte written went out in Write
	}
	st := w.st
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.passWindow()
	var ww h2WindowWait
	defer ww.stop()
	// Progress is any byte sent since the last look, by this loop or by
	// the reader, which sends held bytes as window comes (pushHeld).
	last := w.sent
	for wait && w.heldLen() > 0 {
		if w.sent != last {
			last = w.sent
			ww.progress()
		}
		if err := ww.check(st); err != nil {
			if w.err == nil {
				w.err = err
			}
			break
		}
		if w.sendHeld() != nil {
			break
		}
		if w.sent != last {
			continue
		}
		ww.waitWindow(st)
	}
	return w.written - w.sent
}

// takeWindow takes what the windows let the stream send now of want
// bytes, in one frame, c.mu held.
func (st *h2Stream) takeWindow(want int) int {
	c := st.c
	k := min(int64(want), st.sendWindow, c.sendWindow, int64(c.peerFrame))
	if k <= 0 {
		return 0
	}
	st.sendWindow -= k
	c.sendWindow -= k
	return int(k)
}

// h2WindowWait is a handler's wait for window in one Write: write_timeout
// from its start, or from the last bytes it sent.
type h2WindowWait struct {
	timer   *time.Timer
	expired *bool // set by timer, c.mu held
}

// check reports why the writer cannot go on, c.mu held.
func (ww *h2WindowWait) check(st *h2Stream) error {
	switch {
	case st.reset:
		return errH2StreamClosed
	case st.c.err != nil:
		return st.c.err
	case ww.expired != nil && *ww.expired:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// waitWindow waits on the stream's own condition, woken by what may let it
// send: its window, the connection's when that is what it waits for
// (connWait), its end, write_timeout; c.mu held.
func (ww *h2WindowWait) waitWindow(st *h2Stream) {
	c := st.c
	if ww.timer == nil && c.cfg.writeTimeout > 0 {
		expired := new(bool)
		ww.expired = expired
		ww.timer = time.AfterFunc(c.cfg.writeTimeout, func() {
			c.mu.Lock()
			*expired = true
			st.sendCond.Broadcast()
			c.mu.Unlock()
		})
	}
	// Its own window spent, it may leave some of the connection's, which
	// the streams waiting for it were not woken for.
	c.passWindow()
	st.connWait = st.sendWindow > 0
	if st.connWait {
		c.connWaiters++
	}
	st.sendCond.Wait()
	if st.connWait {
		c.connWaiters--
	}
	st.connWait = false
}

// progress restarts write_timeout: some bytes were sent.
func (ww *h2WindowWait) progress() {
	ww.stop()
	ww.timer, ww.expired = nil, nil
}

func (ww *h2WindowWait) stop() {
	if ww.timer != nil {
		ww.timer.Stop()
	}
}

// sendHead writes the HEADERS of the final answer, c.mu held.
func (w *h2Response) sendHead(end bool) {
	w.headSent = true
	w.ended = end
	w.writeFields(w.status, end, w.header)
}

// writeFields encodes and writes a HEADERS frame, c.mu held. The
// request id is sent never indexed: unique to each answer, it would only
// push the fields that repeat out of the HPACK table. A final answer
// whose Connection the handler set to close (connectionClose: a
// connection that can serve nothing more), or any final answer in the
// lame duck (Server.NotReady), ends the connection as HTTP/1.1's would:
// GOAWAY goes first, naming this stream the last one served, so that the
// client sends its next request on a new connection, and the connection
// closes when its streams are done.
func (w *h2Response) writeFields(status int, end bool, h http.Header) {
	c := w.st.c
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: h2Status(status)})
	hasDate, closeConn := false, false
	for k, vv := range h {
		if h2ConnectionField(k) || k == "Trailer" || k == "Te" || !httpguts.ValidHeaderFieldName(k) {
			if k == "Connection" && status >= 200 {
				closeConn = headerHasCloseToken(h)
			}
			continue
		}
		if k == "Content-Length" && (status < 200 || status == http.StatusNoContent) {
			continue // no body, and no length, for these (RFC 9110 8.6), as over HTTP/1.1
		}
		lk := c.lowerKey(k)
		hasDate = hasDate || lk == "date"
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v, Sensitive: lk == h2RequestIDKey})
			}
		}
	}
	if status >= 200 && !hasDate {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "date", Value: c.now()})
	}
	if status >= 200 && w.cl < 0 && end && !w.noBody {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	}
	if closeConn || status >= 200 && c.srv.draining.Load() {
		c.endGracefully()
	}
	w.writeBlock(end)
}

// headOver reports whether the final head of status, of which the fields
// copied from a node's answer make nodeFields bytes of header list
// (copyResponseHeader), would be larger than the client's
// SETTINGS_MAX_HEADER_LIST_SIZE, with its size and the limit. It counts
// what writeFields adds: :status, the request id (in the header by
// then), a date when the node sent none, and, when the answer's length
// is unknown (mayBeEmpty), the content-length: 0 of one found empty. A
// field writeFields drops (an invalid one, a 204's length, the node's own
// request id, replaced) is counted: the head sent is never over the
// limit. The header is looked at only
// when the head may come within those fields' bytes of the limit.
func (w *h2Response) headOver(status int, nodeFields int64, mayBeEmpty bool) (size, limit int64, over bool) {
	const (
		dateField   = int64(len("date") + len(http.TimeFormat) + h2FieldOverhead)
		lengthField = int64(len("content-length") + 1 + h2FieldOverhead)
	)
	limit = w.st.c.peerHeaderList.Load()
	size = nodeFields + int64(len(":status")+len(h2Status(status))+h2FieldOverhead+
		len(h2RequestIDKey)+len(w.rid[0])+h2FieldOverhead)
	if size+dateField+lengthField <= limit {
		return size, limit, false
	}
	if len(w.header["Date"]) == 0 {
		size += dateField
	}
	if mayBeEmpty && len(w.header["Content-Length"]) == 0 {
		size += lengthField
	}
	return size, limit, size > limit
}

// writeBlock writes c.hbuf as HEADERS and CONTINUATION frames of 16 KiB
// at most, whatever the client allows: the Framer keeps a buffer the size
// of the largest frame it wrote, for the connection's life. Nor does
// c.hbuf keep more than h2HeadKeep.
func (w *h2Response) writeBlock(end bool) {
	c := w.st.c
	block := c.hbuf.Bytes()
	if c.hbuf.Cap() > h2HeadKeep {
		c.hbuf = bytes.Buffer{} // block keeps the bytes; c.henc writes to &c.hbuf
	}
	max := int(min(c.peerFrame, h2DefaultFrame))
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		var err error
		if first {
			err = c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.st.id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = c.fr.WriteContinuation(w.st.id, len(block) == 0, frag)
		}
		if err != nil {
			w.err = err
			return
		}
	}
}

// finish ends the answer after the handler, c.mu held. It reports
// whether the answer's last bytes are held for window (hold): the
// stream is then to be detached from its handler (run).
func (w *h2Response) finish() (detach bool) {
	st := w.st
	if st.reset || w.ended {
		return false
	}
	if w.aborted || w.err != nil || (!w.noBody && w.cl > w.written) {
		// A panic, a stream that got no window within write_timeout, or
		// a body short of the length its head announced: the client
		// must not take the answer for whole.
		st.c.sendReset(st.id, http2.ErrCodeInternal)
		st.c.closeStream(st, errH2StreamClosed)
		w.ended = true
		return false
	}
	if !w.wroteHeader {
		w.wroteHeader = true
		w.status = http.StatusOK
	}
	if !w.headSent {
		w.sendHead(true)
		return false
	}
	if w.heldLen() > 0 {
		w.heldEnd = true // END_STREAM goes with the last of them
		return true
	}
	_ = st.c.fr.WriteData(st.id, true, nil)
	w.ended = true
	return false
}

func (w *h2Response) Flush() { _ = w.FlushError() }

func (w *h2Response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !w.headSent && !w.st.reset {
		w.sendHead(false)
	}
	return w.err
}

// SetReadDeadline moves the request body's deadline (ResponseController).
func (w *h2Response) SetReadDeadline(t time.Time) error {
	b := &w.st.body
	c := w.st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	b.moves, b.late, b.due = false, false, time.Time{}
	if b.deadline != nil {
		b.deadline.Stop()
		b.deadline = nil
	}
	if !t.IsZero() {
		b.armDeadline(time.Until(t))
	}
	return nil
}

// SetWriteDeadline is accepted: the connection's writes carry
// write_timeout, and a stream waiting for window waits as long at most.
func (w *h2Response) SetWriteDeadline(time.Time) error { return nil }

var h2StatusText [600]string

func init() {
	for i := 100; i < len(h2StatusText); i++ {
		h2StatusText[i] = strconv.Itoa(i)
	}
}

func h2Status(code int) string {
	if code < len(h2StatusText) {
		return h2StatusText[code]
	}
	return strconv.Itoa(code)
}

// lowerKey is a header name as HTTP/2 sends it, in lower case: the
// common names from a table, the connection's others from its cache,
// c.mu held.
func (c *h2sConn) lowerKey(k string) string {
	for i := 0; i < len(k); i++ {
		if b := k[i]; 'A' <= b && b <= 'Z' {
			if v, ok := h2CommonLower[k]; ok {
				return v
			}
			return cachedName(&c.lower, k, strings.ToLower)
		}
	}
	return k
}

// canonicalKey is a received header name in net/http's canonical form:
// the common names from a table, the connection's others from its cache,
// c.mu held.
func (c *h2sConn) canonicalKey(k string) string {
	if v, ok := h2CommonCanonical[k]; ok {
		return v
	}
	return cachedName(&c.canon, k, http.CanonicalHeaderKey)
}

// cachedName is conv(k), kept in *m for the next time while *m holds
// fewer than h2NameCacheMax names.
func cachedName(m *map[string]string, k string, conv func(string) string) string {
	if v, ok := (*m)[k]; ok {
		return v
	}
	v := conv(k)
	if len(*m) < h2NameCacheMax {
		if *m == nil {
			*m = make(map[string]string)
		}
		(*m)[k] = v
	}
	return v
}

// h2NameCacheMax bounds each of a connection's caches of header names.
const h2NameCacheMax = 64

var h2CommonLower, h2CommonCanonical = func() (map[string]string, map[string]string) {
	names := []string{"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Authorization",
		"Cache-Control", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date", "Etag",
		"Expires", "Host", "If-Modified-Since", "If-None-Match", "Last-Modified", "Location", "Origin",
		"Referer", "Server", "Set-Cookie", "User-Agent", "Vary", "Via", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id", "Forwarded", "Retry-After", "Te", "Trailer"}
	lower := make(map[string]string, len(names))
	canon := make(map[string]string, len(names))
	for _, n := range names {
		l := strings.ToLower(n)
		lower[n] = l
		canon[l] = n
	}
	return lower, canon
}()

// trackH2 adds or removes a connection of the server's shutdown list.
func (s *Server) trackH2(c *h2sConn, add bool) {
	s.h2mu.Lock()
	defer s.h2mu.Unlock()
	if add {
		if s.h2conns == nil {
			s.h2conns = make(map[*h2sConn]struct{})
		}
		s.h2conns[c] = struct{}{}
		if s.h2down {
			go c.goAway()
		}
		return
	}
	delete(s.h2conns, c)
}

// h2Conns is the server's HTTP/2 connections at the moment, for a walk
// that takes each one's lock (which s.h2mu must not be held under).
func (s *Server) h2Conns() []*h2sConn {
	s.h2mu.Lock()
	defer s.h2mu.Unlock()
	conns := make([]*h2sConn, 0, len(s.h2conns))
	for c := range s.h2conns {
		conns = append(conns, c)
	}
	return conns
}

// goAwayH2 sends GOAWAY to every HTTP/2 connection.
func (s *Server) goAwayH2() {
	s.h2mu.Lock()
	defer s.h2mu.Unlock()
	s.h2down = true
	for c := range s.h2conns {
		go c.goAway()
	}
}

// now returns the Date header's value, formatted once a second, c.mu
// held.
func (c *h2sConn) now() string {
	t := time.Now()
	if sec := t.Unix(); sec != c.dateSec || c.date == "" {
		c.dateSec = sec
		c.date = t.UTC().Format(http.TimeFormat)
	}
	return c.date
}

// h2FieldOverhead is what each field adds to a header list's size, besides
// its name and value (RFC 9113 §6.5.2).
const h2FieldOverhead = 32

// h2PeerHeaderListFloor is the smallest SETTINGS_MAX_HEADER_LIST_SIZE of a
// client's that edged holds its answers' heads to (h2Response.headOver):
// the limit is advisory (RFC 9113 §6.5.2), and a client announcing a
// few bytes would otherwise have every answer it asks for counted as a
// node's failure (netty stopped applying it for that reason). A head
// above it is one nginx (proxy_buffer_size, 4 or 8 KiB) and HAProxy
// (tune.bufsize, 16 KiB) refuse with 502 by default anyway.
const h2PeerHeaderListFloor = 16 << 10

// h2FieldAllowance is added to max_header_bytes for HTTP/2's header list
// size, which counts 32 bytes more per field than the fields' text: ten
// typical fields' worth, as net/http does.
const h2FieldAllowance = 10 * h2FieldOverhead
