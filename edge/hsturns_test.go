package edge

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A handshake waiting for a turn goes on only after the goroutines that
// the same poll made ready: with one P, a reader whose socket became
// readable just before the turn came back runs first. Its yield puts it on
// the global run queue, which the scheduler serves first once in 61
// schedules; so the order is counted over 20 tries, and the reader must
// come first in at least 17 (without the yield it came first in none).
func TestHandshakeTurnsGoAfterWhatThePollReadied(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	readerFirst := 0
	for range 20 {
		if order := pollOrder(t); order[0] == "reader" {
			readerFirst++
		}
	}
	assert.GreaterOrEqual(t, readerFirst, 17, "tries in which the reader ran before the handshake, of 20")
}

// pollOrder makes a socket readable and gives a turn back while a reader
// and a handshake wait for them, and says in which order the two went on.
func pollOrder(t *testing.T) []string {
	turns, err := newHandshakeTurns(1)
	require.NoError(t, err)
	defer turns.close()
	require.NoError(t, turns.take("test", time.Time{})) // the only turn is out

	client, server := tcpPair(t)

	var mu sync.Mutex
	var order []string
	record := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	readerDone, takeDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(readerDone)
		var b [1]byte
		if _, err := server.Read(b[:]); err == nil {
			record("reader")
		}
	}()
	go func() {
		defer close(takeDone)
		if turns.take("test", time.Time{}) == nil {
			record("handshake")
		}
	}()
	// Both park: the reader on its socket, the handshake on the pipe.
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	require.Empty(t, order, "nothing is ready yet")
	mu.Unlock()

	// The socket becomes readable, then the turn comes back; the next
	// poll finds both.
	_, err = client.Write([]byte("x"))
	require.NoError(t, err)
	turns.give()
	<-readerDone
	<-takeDone
	require.Len(t, order, 2)
	return order
}

// Every handshake gives its turn back, however it ends: completed over
// HTTP/1.1 or HTTP/2, refused for its TLS version, or left by a client
// that closes after its ClientHello (an unknown server name takes none).
// Many at once, more than there are turns, all finish.
func TestHandshakeTurnsComeBack(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"env.toml": envTOML("ht", "") + groupTOML("ht", "ht-g", "test.acme.com", "test.acme.com") +
			proxyTOML("ht", "p", "/p", b.addr),
	})
	good := func(protos ...string) *tls.Config {
		return &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: protos}
	}
	kinds := []struct {
		name   string
		cfg    *tls.Config
		hangUp bool // close right after the ClientHello
		ok     bool
	}{
		{"http/1.1", good("http/1.1"), false, true},
		{"h2", good("h2"), false, true},
		{"tls1.1", &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false, false},
		{"unknown sni", &tls.Config{ServerName: "nobody.acme.com", RootCAs: caPool(t)}, false, false},
		{"hang-up", good("http/1.1"), true, false},
	}
	const each = 20
	var wg sync.WaitGroup
	for _, k := range kinds {
		for range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				raw := dialFor(t, te.addr, 10*time.Second)
				if raw == nil {
					return
				}
				defer raw.Close()
				var c net.Conn = raw
				if k.hangUp {
					c = &closeAfterWrite{Conn: raw}
				}
				tc := tls.Client(c, k.cfg)
				err := tc.Handshake()
				if k.ok {
					assert.NoError(t, err, k.name)
				} else {
					assert.Error(t, err, k.name)
				}
			}()
		}
	}
	wg.Wait()
	// Every turn is back: all of them can be taken at once (a turn still
	// out would keep the last take waiting).
	n := runtime.GOMAXPROCS(0)
	took := make(chan struct{})
	go func() {
		defer close(took)
		for range n {
			if te.srv.turns.take("test", time.Time{}) != nil {
				return
			}
		}
	}()
	select {
	case <-took:
	case <-time.After(5 * time.Second):
		t.Fatalf("a turn did not come back: %d could not all be taken", n)
	}
	for range n {
		te.srv.turns.give()
	}
	_, err := handshake(t, te.addr, good("http/1.1"))
	require.NoError(t, err, "and the next handshake gets one")
}

// dialFor dials addr for a client goroutine of a test: a connection
// whose reads and writes end d from now, or nil when the dial failed (the
// failure asserted).
func dialFor(t *testing.T, addr string, d time.Duration) net.Conn {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if !assert.NoError(t, err) {
		return nil
	}
	_ = raw.SetDeadline(time.Now().Add(d))
	return raw
}

// closeAfterWrite closes the connection once its first write (a
// ClientHello) is sent.
type closeAfterWrite struct{ net.Conn }

func (c *closeAfterWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}

// queued returns how many handshakes wait in turns' lines (the one
// reading the pipe not counted).
func (t *handshakeTurns) queued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, line := range t.lines {
		n += len(line)
	}
	return n
}

// waitQueued waits (at most 5 s) until n handshakes wait in turns' lines.
func waitQueued(t *testing.T, turns *handshakeTurns, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return turns.queued() == n }, 5*time.Second, time.Millisecond,
		"%d handshakes should wait in line", n)
}

// The virtual hosts' lines take the pipe in rotation: a handshake to
// host b that comes after ten to host a waits for two of them, not ten.
// Closing the turns fails every waiter.
func TestHandshakeTurnsRotateByHost(t *testing.T) {
	turns, err := newHandshakeTurns(1)
	require.NoError(t, err)
	require.NoError(t, turns.take("hold", time.Time{})) // the only turn is out

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	taker := func(host string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if assert.NoError(t, turns.take(host, time.Time{})) {
				mu.Lock()
				order = append(order, host)
				mu.Unlock()
				turns.give()
			}
		}()
	}
	for range 10 {
		taker("a")
	}
	waitQueued(t, turns, 9) // one reads the pipe, nine in a's line
	taker("b")
	waitQueued(t, turns, 10)
	turns.give()
	wg.Wait()
	require.Len(t, order, 11)
	assert.Equal(t, []string{"a", "a", "b"}, order[:3], "b takes the pipe after the a that held it and the next a")

	// All turns out again: waiters in line and at the pipe fail on close.
	require.NoError(t, turns.take("hold", time.Time{}))
	errs := make(chan error, 5)
	for _, h := range []string{"a", "a", "b", "c", "c"} {
		go func() { errs <- turns.take(h, time.Time{}) }()
	}
	waitQueued(t, turns, 4)
	turns.close()
	for range 5 {
		select {
		case err := <-errs:
			assert.Error(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was left waiting after close")
		}
	}
	assert.Error(t, turns.take("a", time.Time{}), "and a take after close fails at once")
}

// A flood of handshakes to one virtual host, waiting for turns, does not
// stand in front of another host's new connection: over real TLS, a
// handshake to prod.acme.com that comes after 30 waiting ones to
// test.acme.com completes before most of them.
func TestHandshakeFloodOfOneHostLetsAnotherThrough(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), ""),
		"test.toml": envTOML("t", "") + groupTOML("t", "t-g", "test.acme.com", "test.acme.com") +
			proxyTOML("t", "tp", "/p", b.addr),
		"prod.toml": envTOML("p", "") + groupTOML("p", "p-g", "prod.acme.com", "prod.acme.com") +
			proxyTOML("p", "pp", "/p", b.addr),
	})
	turns := te.srv.turns
	n := runtime.GOMAXPROCS(0)
	for range n { // no handshake goes on until the test gives a turn back
		require.NoError(t, turns.take("hold", time.Time{}))
	}

	var mu sync.Mutex
	var done []string
	var wg sync.WaitGroup
	client := func(host string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw := dialFor(t, te.addr, 20*time.Second)
			if raw == nil {
				return
			}
			defer raw.Close()
			tc := tls.Client(raw, &tls.Config{ServerName: host, RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
			if assert.NoError(t, tc.Handshake(), host) {
				mu.Lock()
				done = append(done, host)
				mu.Unlock()
			}
		}()
	}
	const flood = 30
	for range flood {
		client("test.acme.com")
	}
	waitQueued(t, turns, flood-1)
	client("prod.acme.com")
	waitQueued(t, turns, flood)
	turns.give() // one turn goes round; the others stay out
	wg.Wait()
	for range n - 1 {
		turns.give()
	}
	require.Len(t, done, flood+1)
	at := 0
	for i, h := range done {
		if h == "prod.acme.com" {
			at = i
		}
	}
	// Per-host lines serve prod second or third (2 of test's before it,
	// run alone); one line for all would serve it last. The order is the
	// clients' completions, which CPU contention (make test runs packages
	// side by side, under -race) shuffles by a few places: 6 was seen.
	t.Logf("prod's handshake completed after %d of test's", at)
	assert.LessOrEqual(t, at, flood/3, "prod's handshake waited for %d of test's (one line for all: %d)", at, flood)
}

// read_header_timeout bounds a handshake's wait for a turn too: under a
// flood, a handshake whose client has given up must leave its line at
// its deadline, closing the connection, rather than wait on and then
// spend a turn's key exchange and signature on a client long gone. The
// turns all come back: a handshake after the stale ones completes.
func TestHandshakeWaitForATurnEndsAtItsDeadline(t *testing.T) {
	testCertDir(t)
	b := nameBackend(t, "b")
	te := startEdge(t, map[string]string{
		"server.toml": serverTOML(t.TempDir(), `read_header_timeout = "300ms"`),
		"env.toml": envTOML("ht", "") + groupTOML("ht", "ht-g", "test.acme.com", "test.acme.com") +
			proxyTOML("ht", "p", "/p", b.addr),
	})
	turns := te.srv.turns
	n := runtime.GOMAXPROCS(0)
	for range n { // no handshake goes on until the test gives the turns back
		require.NoError(t, turns.take("hold", time.Time{}))
	}
	const stale = 4 // one reads the pipe, three wait in line
	took := make(chan time.Duration, stale)
	for range stale {
		go func() {
			raw := dialFor(t, te.addr, 10*time.Second)
			if raw == nil {
				took <- 0
				return
			}
			defer raw.Close()
			start := time.Now()
			tc := tls.Client(raw, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
			assert.Error(t, tc.Handshake(), "no turn came within read_header_timeout")
			took <- time.Since(start)
		}()
	}
	waitQueued(t, turns, stale-1)
	hold := time.After(3 * time.Second)
	for range stale {
		select {
		case d := <-took:
			assert.Less(t, d, 2*time.Second, "the handshake ends about read_header_timeout after it began")
		case <-hold:
			t.Fatal("handshakes waiting for a turn outlived read_header_timeout")
		}
	}
	assert.Zero(t, turns.queued(), "no stale handshake is left in a line")
	vc := te.srv.Snapshot().groups["ht-g"].counters
	// Counted after crypto/tls sent its alert, which the client may have
	// read first.
	assert.Eventually(t, func() bool { return vc.handshakes[handshakeTimeout].Load() == stale }, 2*time.Second, 5*time.Millisecond, "counted as outcome timeout")
	assert.Zero(t, vc.handshakes[handshakeOther].Load())
	for range n {
		turns.give()
	}
	_, err := handshake(t, te.addr, &tls.Config{ServerName: "test.acme.com", RootCAs: caPool(t), NextProtos: []string{"http/1.1"}})
	require.NoError(t, err, "the turns came back")
}

// A client can have the server's key exchange and signature come after a
// HelloRetryRequest: its first ClientHello offers no key share the server
// takes, the server asks for one (its first write), and the second
// ClientHello brings it. That work is the handshake's CPU-heavy part as
// much as the first flight's, and takes a turn of its own once the second
// ClientHello has been read whole; it went on with none, the turn given
// back at the HelloRetryRequest, so a flood that asked for retries ran its
// handshakes ahead of established connections' requests as if there were
// no turns. Also when the client sends the second ClientHello right
// behind the first, without waiting for the request, which crypto/tls
// then reads from what it has read already.
func TestHandshakeAfterHelloRetryWaitsForATurn(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		name := "after the HelloRetryRequest"
		if pipelined {
			name = "sent with the first ClientHello"
		}
		t.Run(name, func(t *testing.T) {
			testCertDir(t)
			b := nameBackend(t, "b")
			te := startEdge(t, map[string]string{
				"server.toml": serverTOML(t.TempDir(), ""),
				"env.toml": envTOML("ht", "") + groupTOML("ht", "ht-g", "test.acme.com", "test.acme.com") +
					proxyTOML("ht", "p", "/p", b.addr),
			})
			turns := te.srv.turns
			n := runtime.GOMAXPROCS(0)
			for range n { // no handshake goes on until the test gives a turn back
				require.NoError(t, turns.take("hold", time.Time{}))
			}
			raw := dialFor(t, te.addr, 20*time.Second)
			require.NotNil(t, raw)
			defer raw.Close()
			key, err := ecdh.X25519().GenerateKey(rand.Reader)
			require.NoError(t, err)
			random, sid := make([]byte, 32), make([]byte, 32)
			_, _ = rand.Read(random)
			_, _ = rand.Read(sid)
			first := clientHello13("test.acme.com", random, sid, nil)
			second := clientHello13("test.acme.com", random, sid, key.PublicKey().Bytes())
			second[2] = 3 // records after the first say TLS 1.2 (RFC 8446 5.1)
			if pipelined {
				_, err = raw.Write(append(first, second...))
			} else {
				_, err = raw.Write(first)
			}
			require.NoError(t, err)
			waitAtPipe(t, turns) // the first ClientHello's handshake waits for a turn

			// Another waiter stands in line behind it: it takes the turn
			// the HelloRetryRequest gives back, so that none is free for
			// the second ClientHello.
			other := make(chan struct{})
			go func() {
				if assert.NoError(t, turns.take("other", time.Time{})) {
					close(other)
				}
			}()
			waitQueued(t, turns, 1)
			turns.give()
			typ, rec, err := readTLSRecord(raw)
			require.NoError(t, err)
			require.Equal(t, byte(22), typ)
			require.True(t, isHelloRetryRecord(rec), "the server asks for another key share")
			<-other
			if !pipelined {
				_, err = raw.Write(second)
				require.NoError(t, err)
			}

			flight := make(chan struct{})
			go func() {
				defer close(flight)
				for {
					typ, rec, err := readTLSRecord(raw)
					if !assert.NoError(t, err) {
						return
					}
					if typ != 20 { // the dummy ChangeCipherSpec
						assert.Equal(t, byte(22), typ, "a handshake record, not an alert: % x", rec)
						assert.False(t, isHelloRetryRecord(rec), "a ServerHello")
						return
					}
				}
			}()
			waiting := func() bool {
				turns.mu.Lock()
				defer turns.mu.Unlock()
				return turns.atPipe
			}
			ok := assert.Eventually(t, waiting, 5*time.Second, time.Millisecond,
				"the second ClientHello's handshake waits for a turn")
			select {
			case <-flight:
				t.Error("the server's flight came while every turn was out")
			default:
			}
			turns.give() // other's
			for range n - 1 {
				turns.give()
			}
			if ok {
				select {
				case <-flight:
				case <-time.After(10 * time.Second):
					t.Fatal("no ServerHello once a turn came back")
				}
			}
		})
	}
}

// waitAtPipe waits (at most 5 s) until a handshake waits at turns' pipe.
func waitAtPipe(t *testing.T, turns *handshakeTurns) {
	t.Helper()
	require.Eventually(t, func() bool {
		turns.mu.Lock()
		defer turns.mu.Unlock()
		return turns.atPipe
	}, 5*time.Second, time.Millisecond, "a handshake should wait at the pipe")
}

// clientHello13 is a TLS 1.3 ClientHello record for sni that offers
// X25519 only, with pub as its key share, or with no key share when pub
// is nil (the server then asks for one with a HelloRetryRequest).
func clientHello13(sni string, random, sid, pub []byte) []byte {
	u16 := func(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
	ext := func(b []byte, typ int, body []byte) []byte {
		return append(u16(u16(b, typ), len(body)), body...)
	}
	name := append(u16([]byte{0}, len(sni)), sni...)
	var shares []byte
	if pub != nil {
		shares = append(u16(u16(nil, 0x001d), len(pub)), pub...)
	}
	var exts []byte
	exts = ext(exts, 0x0000, append(u16(nil, len(name)), name...))     // server_name
	exts = ext(exts, 0x000a, []byte{0, 2, 0x00, 0x1d})                 // supported_groups: x25519
	exts = ext(exts, 0x000d, []byte{0, 4, 0x04, 0x03, 0x08, 0x04})     // signature_algorithms
	exts = ext(exts, 0x002b, []byte{2, 0x03, 0x04})                    // supported_versions: TLS 1.3
	exts = ext(exts, 0x0033, append(u16(nil, len(shares)), shares...)) // key_share
	body := []byte{0x03, 0x03}
	body = append(body, random...)
	body = append(append(body, byte(len(sid))), sid...)
	body = append(body, 0, 2, 0x13, 0x01, 1, 0) // TLS_AES_128_GCM_SHA256; no compression
	body = append(u16(body, len(exts)), exts...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append(u16([]byte{22, 3, 1}, len(hs)), hs...)
}

// readTLSRecord reads one TLS record: its type, and the record whole.
func readTLSRecord(c net.Conn) (byte, []byte, error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return 0, nil, err
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	_, err := io.ReadFull(c, rec[5:])
	return hdr[0], rec, err
}

// isHelloRetryRecord reports whether a handshake record starts with a
// HelloRetryRequest: a ServerHello whose random is RFC 8446's constant.
func isHelloRetryRecord(rec []byte) bool {
	hrr := []byte{
		0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
		0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
	}
	return len(rec) >= 43 && rec[0] == 22 && rec[5] == 2 && bytes.Equal(rec[11:43], hrr)
}

// helloRecords counts a ClientHello once its last byte is read, however
// the reads cut the records and however the records cut the message, and
// skips records of other types (a ChangeCipherSpec, an empty record).
func TestHelloRecordsCountClientHellosWhole(t *testing.T) {
	random, sid := make([]byte, 32), make([]byte, 32)
	first := clientHello13("test.acme.com", random, sid, nil)
	second := clientHello13("test.acme.com", random, sid, make([]byte, 32))
	// The second message in two records, cut 10 bytes into its body.
	msg := second[5:]
	split := append([]byte{22, 3, 3, 0, 14}, msg[:14]...)
	split = append(split, 22, 3, 3, byte((len(msg)-14)>>8), byte(len(msg)-14))
	split = append(split, msg[14:]...)
	stream := append(append([]byte{}, first...), 20, 3, 3, 0, 1, 1, 22, 3, 3, 0, 0) // ChangeCipherSpec, empty record
	stream = append(stream, split...)
	ends := []int{len(first), len(stream)}

	for _, size := range []int{1, 3, 7, 64, len(stream)} {
		var h helloRecords
		var counted []int // where each count went up
		for at := 0; at < len(stream); at += size {
			before := h.messages
			h.feed(stream[at:min(at+size, len(stream))])
			if h.messages != before {
				counted = append(counted, min(at+size, len(stream)))
			}
		}
		if size == len(stream) {
			assert.Equal(t, 2, h.messages)
			continue
		}
		require.Len(t, counted, 2, "reads of %d bytes", size)
		for i, end := range ends {
			assert.True(t, counted[i] >= end && counted[i] < end+size, "reads of %d bytes: message %d counted at %d, ends at %d", size, i+1, counted[i], end)
		}
	}
}
