package edge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"edged/internal/loopback"
)

// HTTP/2 carrying real traffic (h2server.go): uploads a client gives up
// midway, answers whose head the client's settings shape (its HPACK
// table, its frame size), and what a node's answer may not carry over
// HTTP/2; over real TLS, through edged, to real backends.

// uploadSeen is what a node read of one upload.
type uploadSeen struct {
	n      int
	err    error
	remote string
}

// TestH2UploadResetMidwayIsNotWholeAtTheNode: a client that resets its
// stream in the middle of an upload (RST_STREAM CANCEL) aborts the node's
// request: the node's read of the body fails (never a body that looks
// whole, shorter than sent), with a Content-Length or without one
// (chunked to the node), and the next request is served.
func TestH2UploadResetMidwayIsNotWholeAtTheNode(t *testing.T) {
	seen := make(chan uploadSeen, 4)
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		n, err := io.Copy(io.Discard, r.Body)
		seen <- uploadSeen{int(n), err, r.RemoteAddr}
		_, _ = io.WriteString(w, "got it")
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})
	const total, sendFirst = 1 << 20, 200 << 10
	for i, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length %v", withLength), func(t *testing.T) {
			fc := dialH2Async(t, te.addr, h2asyncOpts{autoWindow: true})
			fc.waitSettings()
			fields := h2get("POST", "test.acme.com", "/upload")
			if withLength {
				fields = append(fields, "content-length", fmt.Sprint(total))
			}
			fc.headers(1, false, fields...)
			require.Equal(t, sendFirst, fc.send(1, flowPattern(sendFirst, i), false, 5*time.Second))
			// The node has the request (past the 64 KiB read ahead)
			// before the reset.
			time.Sleep(200 * time.Millisecond)
			require.NoError(t, fc.write(func() error { return fc.fr.WriteRSTStream(1, http2.ErrCodeCancel) }))
			select {
			case s := <-seen:
				assert.Error(t, s.err, "the node's read of the body fails: it read %d bytes of %d sent", s.n, sendFirst)
				assert.LessOrEqual(t, s.n, sendFirst)
			case <-time.After(5 * time.Second):
				t.Fatal("the node's request did not end within 5 s of the client's reset")
			}
			fc.headers(3, true, h2get("GET", "test.acme.com", "/ok")...)
			r := fc.result(3, 5*time.Second)
			assert.Equal(t, http.StatusOK, r.status, "%v", r)
			assert.Equal(t, "ok", string(r.body))
		})
	}
}

// h2sync is a client reading the server's frames one at a time, header
// blocks undecoded, for tests that look at the blocks' bytes.
type h2sync struct {
	t   *testing.T
	fr  *http2.Framer
	bw  *bufio.Writer
	enc *hpack.Encoder
	buf bytes.Buffer
	dec *hpack.Decoder
}

func dialH2Sync(t *testing.T, addr string, maxRead uint32, settings ...http2.Setting) *h2sync {
	c := dialH2TLS(t, addr)
	require.NoError(t, c.SetDeadline(time.Now().Add(15*time.Second)))
	s := &h2sync{t: t, bw: bufio.NewWriter(c)}
	s.fr = http2.NewFramer(s.bw, c)
	if maxRead > 0 {
		s.fr.SetMaxReadFrameSize(maxRead)
	}
	s.enc = hpack.NewEncoder(&s.buf)
	s.dec = hpack.NewDecoder(4096, nil)
	_, err := s.bw.WriteString(http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, s.fr.WriteSettings(settings...))
	require.NoError(t, s.fr.WriteWindowUpdate(0, 1<<30))
	require.NoError(t, s.bw.Flush())
	return s
}

func (s *h2sync) request(id uint32, path string) {
	s.buf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "test.acme.com"}, {":path", path}} {
		_ = s.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	require.NoError(s.t, s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: s.buf.Bytes(), EndStream: true, EndHeaders: true}))
	require.NoError(s.t, s.bw.Flush())
}

func (s *h2sync) settings(set ...http2.Setting) {
	require.NoError(s.t, s.fr.WriteSettings(set...))
	require.NoError(s.t, s.bw.Flush())
}

// h2syncAnswer is one stream's answer: its header block, as sent and
// decoded, the sizes of the frames that carried it, and its body.
type h2syncAnswer struct {
	block      []byte
	blockSizes []int
	fields     []hpack.HeaderField
	body       []byte
	dataSizes  []int
	rst        bool
}

func (a h2syncAnswer) field(name string) string {
	for _, f := range a.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// answer reads frames until stream id ends, acknowledging SETTINGS (and
// noting the ACKs of the client's: settingsAcked counts them), giving
// window back for DATA.
func (s *h2sync) answer(id uint32, settingsAcked *int) h2syncAnswer {
	s.t.Helper()
	var a h2syncAnswer
	inBlock := false
	for {
		f, err := s.fr.ReadFrame()
		require.NoError(s.t, err)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				if settingsAcked != nil {
					*settingsAcked++
				}
				continue
			}
			require.NoError(s.t, s.fr.WriteSettingsAck())
			require.NoError(s.t, s.bw.Flush())
		case *http2.HeadersFrame:
			require.False(s.t, inBlock)
			if f.StreamID != id {
				continue
			}
			a.block = append(a.block[:0], f.HeaderBlockFragment()...)
			a.blockSizes = append(a.blockSizes[:0], int(f.Length))
			inBlock = !f.HeadersEnded()
			if !inBlock {
				a.decode(s)
			}
			if f.StreamEnded() {
				return a
			}
		case *http2.ContinuationFrame:
			require.True(s.t, inBlock)
			a.block = append(a.block, f.HeaderBlockFragment()...)
			a.blockSizes = append(a.blockSizes, int(f.Length))
			inBlock = !f.HeadersEnded()
			if !inBlock {
				a.decode(s)
			}
		case *http2.DataFrame:
			if f.Length > 0 {
				require.NoError(s.t, s.fr.WriteWindowUpdate(0, f.Length))
				if !f.StreamEnded() {
					require.NoError(s.t, s.fr.WriteWindowUpdate(f.StreamID, f.Length))
				}
				require.NoError(s.t, s.bw.Flush())
			}
			if f.StreamID == id {
				a.body = append(a.body, f.Data()...)
				a.dataSizes = append(a.dataSizes, int(f.Length))
				if f.StreamEnded() {
					return a
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				a.rst = true
				return a
			}
		case *http2.GoAwayFrame:
			s.t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
}

func (a *h2syncAnswer) decode(s *h2sync) {
	fields, err := s.dec.DecodeFull(a.block)
	require.NoError(s.t, err, "the header block decodes")
	a.fields = fields
}

// TestH2ClientHeaderTableSize: a client that sets SETTINGS_HEADER_TABLE_SIZE
// to 0 gets, at the start of the next header block edged sends, a dynamic
// table size update to 0 (RFC 7541 §4.2), and no field is indexed from
// then on; a client that raises it again, and lowers it again, gets
// blocks that decode, with its table's bound.
func TestH2ClientHeaderTableSize(t *testing.T) {
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Same", "a value that repeats from answer to answer")
		_, _ = io.WriteString(w, "ok")
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})
	s := dialH2Sync(t, te.addr, 0)
	acks := 0
	s.request(1, "/a")
	a := s.answer(1, &acks)
	require.Equal(t, "200", a.field(":status"))
	s.request(3, "/a")
	a = s.answer(3, &acks)
	require.Equal(t, "a value that repeats from answer to answer", a.field("x-same"))

	s.settings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	s.dec.SetAllowedMaxDynamicTableSize(0)
	s.request(5, "/b")
	before := acks
	a = s.answer(5, &acks)
	require.Equal(t, before+1, acks, "the ACK came before the answer")
	require.NotEmpty(t, a.block)
	assert.Equal(t, byte(0x20), a.block[0], "the block starts with a table size update to 0: % x", a.block[:min(8, len(a.block))])
	assert.Equal(t, "a value that repeats from answer to answer", a.field("x-same"))
	for i := 0; i < 3; i++ {
		id := uint32(7 + 2*i)
		s.request(id, "/c")
		a = s.answer(id, nil)
		assert.Equal(t, "a value that repeats from answer to answer", a.field("x-same"))
	}

	s.settings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 4096})
	s.dec.SetAllowedMaxDynamicTableSize(4096)
	for i := 0; i < 3; i++ {
		id := uint32(13 + 2*i)
		s.request(id, "/d")
		a = s.answer(id, nil)
		assert.Equal(t, "a value that repeats from answer to answer", a.field("x-same"))
	}
	s.settings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100})
	s.dec.SetAllowedMaxDynamicTableSize(100)
	for i := 0; i < 3; i++ {
		id := uint32(19 + 2*i)
		s.request(id, "/e")
		a = s.answer(id, nil)
		assert.Equal(t, "a value that repeats from answer to answer", a.field("x-same"))
	}
}

// TestH2LargeAnswerHeadAndFrameSize: a node's answer whose head is
// larger than a frame (120 KiB of fields) reaches the client as HEADERS
// and CONTINUATION frames none larger than the client's
// SETTINGS_MAX_FRAME_SIZE, 16 KiB by default, and decodes whole; a
// client that allows 1 MiB frames gets the same answer, head and body,
// in frames up to that size.
func TestH2LargeAnswerHeadAndFrameSize(t *testing.T) {
	const fields, valueLen, bodyLen = 60, 2000, 300 << 10
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < fields; i++ {
			w.Header().Set(fmt.Sprintf("X-H-%d", i), strings.Repeat(string(rune('a'+i%26)), valueLen))
		}
		w.Header().Set("Content-Length", fmt.Sprint(bodyLen))
		_, _ = w.Write(flowPattern(bodyLen, 3))
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})
	for _, frame := range []uint32{16 << 10, 1 << 20} {
		t.Run(fmt.Sprint(frame), func(t *testing.T) {
			var set []http2.Setting
			if frame > 16<<10 {
				set = append(set, http2.Setting{ID: http2.SettingMaxFrameSize, Val: frame}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20})
			}
			s := dialH2Sync(t, te.addr, frame, set...)
			for i, id := range []uint32{1, 3} {
				s.request(id, "/big")
				a := s.answer(id, nil)
				require.False(t, a.rst)
				require.Equal(t, "200", a.field(":status"))
				for i := 0; i < fields; i++ {
					require.Equal(t, strings.Repeat(string(rune('a'+i%26)), valueLen), a.field(fmt.Sprintf("x-h-%d", i)), "field %d", i)
				}
				assert.True(t, bytes.Equal(flowPattern(bodyLen, 3), a.body), "the body, whole (%d bytes)", len(a.body))
				for _, n := range append(a.blockSizes, a.dataSizes...) {
					assert.LessOrEqual(t, n, int(frame))
				}
				t.Logf("answer %d: head in %d frames %v, body in %d DATA frames, largest %d", i, len(a.blockSizes), a.blockSizes, len(a.dataSizes), slicesMax(a.dataSizes))
			}
		})
	}
}

func slicesMax(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestH2NodeConnectionFieldsAreNotSent: the connection-specific fields of
// a node's HTTP/1.1 answer (RFC 9113 §8.2.2: Connection and what it names,
// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, and TE, Trailer)
// never reach an HTTP/2 client, which must treat an answer carrying them
// as malformed; the others do.
func TestH2NodeConnectionFieldsAreNotSent(t *testing.T) {
	addr, _ := loopback.Backend(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
				"connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nkeep-alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"+
				"Upgrade: h2c\r\nTE: trailers\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\nX-Kept: yes\r\n\r\n"+
				"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"); err != nil {
				return
			}
		}
	})
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", addr),
	})
	s := dialH2Sync(t, te.addr, 0)
	s.request(1, "/")
	a := s.answer(1, nil)
	require.Equal(t, "200", a.field(":status"))
	assert.Equal(t, "hello", string(a.body))
	assert.Equal(t, "yes", a.field("x-kept"))
	for _, f := range a.fields {
		switch f.Name {
		case "connection", "x-hop", "keep-alive", "proxy-connection", "upgrade", "te", "trailer", "transfer-encoding", "x-t":
			t.Errorf("%s: %s reached the client", f.Name, f.Value)
		}
	}
}

// TestH2LargeAnswerHeadIsNotKeptByItsConnection: the buffer a
// connection encodes its answers' heads in, grown by a node's head of
// 600 KiB, is not kept at that size for the connection's life (as
// upstream's connections drop a long line's buffer, maxKeptLong), and
// the head goes in frames of 16 KiB even to a client that allows larger
// ones, so that the frame writer's own buffer, which keeps its largest
// frame, grows no larger either.
func TestH2LargeAnswerHeadIsNotKeptByItsConnection(t *testing.T) {
	const fields, valueLen = 300, 2000
	back := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			for i := 0; i < fields; i++ {
				w.Header().Set(fmt.Sprintf("X-H-%d", i), strings.Repeat("v", valueLen))
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	testCertDir(t)
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml":    envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") + proxyTOML("test", "up", "/", back.addr),
	})
	s := dialH2Sync(t, te.addr, 1<<20, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	s.request(1, "/big")
	a := s.answer(1, nil)
	require.Equal(t, "200", a.field(":status"))
	require.Equal(t, strings.Repeat("v", valueLen), a.field(fmt.Sprintf("x-h-%d", fields-1)))
	for _, n := range a.blockSizes {
		assert.LessOrEqual(t, n, 16<<10, "a frame of the head: %v", a.blockSizes)
	}
	s.request(3, "/small")
	require.Equal(t, "200", s.answer(3, nil).field(":status"))
	conns := te.srv.h2Conns()
	require.Len(t, conns, 1)
	c := conns[0]
	c.mu.Lock()
	kept := c.hbuf.Cap()
	c.mu.Unlock()
	assert.LessOrEqual(t, kept, 64<<10, "the head buffer the connection keeps")
}
