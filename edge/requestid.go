package edge

import (
	"crypto/rand"
	"encoding/binary"
	"net/http"
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
	if rid := r.Header.Get("X-Request-Id"); validRequestID(rid) {
		return rid
	}
	return newRequestID()
}

// newRequestID returns a fresh id.
func newRequestID() string {
	n := ridCounter.Add(1)
	var b [32]byte
	copy(b[:16], ridPrefix[:])
	for i := 31; i >= 16; i-- {
		b[i] = hexDigits[n&0xf]
		n >>= 4
	}
	return string(b[:])
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
