package edge

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Frames sends, after a valid preface and SETTINGS, whatever frames
// the fuzzer makes, then a PING, closes its side, and reads until the
// PING's answer or the connection's end; then it hangs up. The server must
// not crash, must let go of the connection once the client is gone (no
// goroutine of it stuck on a lock or a wait), and must serve the next
// client. The seeds are well-formed exchanges: requests with and without
// bodies, trailers, CONTINUATION, resets, window updates, settings.
func FuzzH2Frames(f *testing.F) {
	for _, s := range h2FuzzSeeds(f) {
		f.Add(s)
	}
	testCertDir(f)
	back := startBackend(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	te := startEdge(f, map[string]string{
		"server.toml": serverTOML(f.TempDir(), `read_timeout = "1s"`+"\n"+`write_timeout = "1s"`+"\n"+`h2_max_concurrent_streams = 8`),
		"env.toml": envTOML("test", "") + groupTOML("test", "g", "test.acme.com", "test.acme.com") +
			proxyTOML("test", "x", "/x", back.addr),
	})
	cfg := &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(f), NextProtos: []string{"h2"}}
	next := te.h2client(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := tls.Dial("tcp", te.addr, cfg)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		var out bytes.Buffer
		out.WriteString(http2.ClientPreface)
		fr := http2.NewFramer(&out, nil)
		_ = fr.WriteSettings()
		out.Write(data)
		_ = fr.WriteSettings() // ends a header block left open with a protocol error
		_ = fr.WritePing(false, h2FuzzPing)
		if _, err := c.Write(out.Bytes()); err == nil {
			// The end of the input: a frame it left unfinished ends
			// there rather than swallow the PING and wait.
			_ = c.CloseWrite()
			h2FuzzDrain(c)
		}
		c.Close()
		deadline := time.Now().Add(5 * time.Second)
		for len(te.srv.h2Conns()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the server still holds the connection 5s after the client left; input %q", data)
			}
			time.Sleep(2 * time.Millisecond)
		}
		// And it serves the next client.
		defer next.CloseIdleConnections()
		resp, err := next.Get("https://test.acme.com/x")
		if err != nil {
			t.Fatalf("the next client: %v; input %q", err, data)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the next client got %d; input %q", resp.StatusCode, data)
		}
	})
}

var h2FuzzPing = [8]byte{'f', 'u', 'z', 'z', 'p', 'i', 'n', 'g'}

// h2FuzzDrain reads the server's frames until its answer to h2FuzzPing,
// the connection's end, or c's deadline. The frames are parsed only as
// far as their headers: the payloads are skipped.
func h2FuzzDrain(c *tls.Conn) {
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(c, payload); err != nil {
			return
		}
		if http2.FrameType(hdr[3]) == http2.FramePing && hdr[4]&byte(http2.FlagPingAck) != 0 && bytes.Equal(payload, h2FuzzPing[:]) {
			return
		}
	}
}

// h2FuzzSeeds are frame sequences of well-formed exchanges.
func h2FuzzSeeds(tb testing.TB) [][]byte {
	block := func(fields ...string) []byte {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			if err := enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]}); err != nil {
				tb.Fatal(err)
			}
		}
		return b.Bytes()
	}
	get := block(h2get("GET", "test.acme.com", "/x")...)
	post := block(h2get("POST", "test.acme.com", "/x", "content-length", "5")...)
	postUnknown := block(h2get("POST", "test.acme.com", "/x", "trailer", "x-sum")...)
	trailers := block("x-sum", "1")
	frames := func(write func(fr *http2.Framer) error) []byte {
		var b bytes.Buffer
		if err := write(http2.NewFramer(&b, nil)); err != nil {
			tb.Fatal(err)
		}
		return b.Bytes()
	}
	return [][]byte{
		frames(func(fr *http2.Framer) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true})
		}),
		frames(func(fr *http2.Framer) error {
			return errors.Join(
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true}),
				fr.WriteData(1, false, []byte("hel")),
				fr.WriteWindowUpdate(0, 1000),
				fr.WriteData(1, true, []byte("lo")),
			)
		}),
		frames(func(fr *http2.Framer) error {
			return errors.Join(
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: postUnknown, EndHeaders: true}),
				fr.WriteDataPadded(1, false, []byte("abc"), []byte{0, 0}),
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: trailers, EndStream: true, EndHeaders: true}),
			)
		}),
		frames(func(fr *http2.Framer) error {
			return errors.Join(
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get[:3], EndStream: true}),
				fr.WriteContinuation(1, true, get[3:]),
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: get, EndStream: true, EndHeaders: true,
					Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}}),
				fr.WritePriority(5, http2.PriorityParam{StreamDep: 3}),
			)
		}),
		frames(func(fr *http2.Framer) error {
			return errors.Join(
				fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14},
					http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}),
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: get, EndStream: true, EndHeaders: true}),
				fr.WriteWindowUpdate(1, 1),
				fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}),
			)
		}),
		frames(func(fr *http2.Framer) error {
			return errors.Join(
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: post, EndHeaders: true}),
				fr.WriteRSTStream(1, http2.ErrCodeCancel),
				fr.WriteData(1, false, []byte("late")),
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: get, EndStream: true, EndHeaders: true}),
				fr.WriteGoAway(0, http2.ErrCodeNo, nil),
			)
		}),
		frames(func(fr *http2.Framer) error {
			var big [4]byte
			binary.BigEndian.PutUint32(big[:], 1<<31-1)
			return errors.Join(
				fr.WriteWindowUpdate(0, 1<<31-1-65535),
				fr.WriteRawFrame(http2.FrameType(0xfa), 0, 0, big[:]),
				fr.WritePing(true, [8]byte{}),
			)
		}),
	}
}
