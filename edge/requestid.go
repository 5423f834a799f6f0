package edge

import (
	"crypto/rand"
	"encoding/binary"
	"net/http"
	"sync"
	"sync/atomic"
)

// Request ids are 32 hex digits: 8 random bytes drawn at start, then a
// counter. Unique per process without a syscall per request.
var (
	ridPrefix  [16]byte // hex of the random part
	ridCounter atomic.Uint64
)

func init() {
	var r [8]byte
	_, _ = rand.Read(r[:])
	for i, c := range r {
		ridPrefix[2*i] = hexDigits[c>>4]
		ridPrefix[2*i+1] = hexDigits[c&0xf]
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	ridCounter.Store(binary.BigEndian.Uint64(seed[:]))
}

// requestID is the id of a request: the client's X-Request-Id when valid,
// else a fresh one.
func requestID(r *http.Request) string {
	// Looked up by its canonical name, which both servers store fields
	// under: Header.Get would canonicalise the name on every request.
	if v := r.Header["X-Request-Id"]; len(v) > 0 && validRequestID(v[0]) {
		return v[0]
	}
	return newRequestID()
}

// newRequestID returns a fresh id. Ids are made 64 at a time, from a
// block of the counter, into one string that they slice: one allocation
// per 64 requests instead of one each (an id kept by a log line or a
// header keeps its 2 KiB block alive, no more).
func newRequestID() string {
	a := ridArenas.Get().(*ridArena)
	if a.next == len(a.ids) {
		a.fill()
	}
	id := a.ids[a.next : a.next+32]
	a.next += 32
	ridArenas.Put(a)
	return id
}

const ridsPerArena = 64

// ridArena is a string of ridsPerArena ids, handed out in order.
type ridArena struct {
	ids  string
	next int // offset of the next id in ids
}

var ridArenas = sync.Pool{New: func() any { return new(ridArena) }}

func (a *ridArena) fill() {
	n := ridCounter.Add(ridsPerArena) - ridsPerArena + 1
	var b [32 * ridsPerArena]byte
	for k := 0; k < ridsPerArena; k, n = k+1, n+1 {
		id := b[32*k : 32*k+32]
		copy(id[:16], ridPrefix[:])
		v := n
		for i := 31; i >= 16; i-- {
			id[i] = hexDigits[v&0xf]
			v >>= 4
		}
	}
	a.ids, a.next = string(b[:]), 0
}

// validRequestID accepts what a client may hand us to keep: 1 to 128
// characters of letters, digits and ".-_:". Anything else is replaced, so
// an id never breaks a log line or a header.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}
