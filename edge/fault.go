package edge

import (
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"edged/internal/termsafe"
)

// Fault codes: the stable part of every error answer (the README's fault
// table lists them).
const (
	faultHostUnknown     = "host.unknown"
	faultMisdirected     = "host.misdirected"
	faultNotFound        = "proxy.not_found"
	faultOverloaded      = "env.overloaded"
	faultUnavailable     = "upstream.unavailable"
	faultUpstreamFailed  = "upstream.failed"
	faultUpstreamTimeout = "upstream.timeout"
	faultTooLarge        = "request.too_large"
	faultInvalid         = "request.invalid"
	faultMethod          = "method.not_allowed"
	faultInternal        = "internal.error"
)

var faultBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// writeFault answers with the one fault shape:
//
//	{"fault":{"code":"...","message":"...","request_id":"..."}}
//
// and the request id in X-Request-Id too, as on every proxied answer. The
// message is escaped for JSON (it may carry a client's Host or path). It
// returns the body bytes written.
func writeFault(w http.ResponseWriter, status int, code, message, requestID string) int {
	bp := faultBufs.Get().(*[]byte)
	b := appendFault((*bp)[:0], code, message, requestID)
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Cache-Control"] = cacheNoStore
	// One allocation backs both per-answer values; the header outlives
	// this call (the HTTP/1.1 and HTTP/2 servers write it after
	// WriteHeader returns), so it cannot be pooled.
	vals := make([]string, 2)
	vals[0], vals[1] = strconv.Itoa(len(b)), requestID
	h["Content-Length"] = vals[0:1:1]
	h["X-Request-Id"] = vals[1:2:2]
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	n, _ := w.Write(b)
	*bp = b
	faultBufs.Put(bp)
	return n
}

// appendFault appends the fault body of code, message and request id.
func appendFault(b []byte, code, message, requestID string) []byte {
	b = append(b, `{"fault":{"code":"`...)
	b = append(b, code...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, message)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, requestID)
	return append(b, "}}\n"...)
}

// Shared header values: the server only reads them, so one slice serves
// every response.
var (
	contentTypeJSON = []string{"application/json"}
	cacheNoStore    = []string{"no-store"}
	nosniff         = []string{"nosniff"}
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8
// becomes U+FFFD, so the body is always valid JSON.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			case c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r <= 0x9f || r == 0x2028 || r == 0x2029 || termsafe.Bidi(r):
			// The C1 controls (CSI, U+009B, is ESC [ to a terminal
			// that honours 8-bit controls), the line and paragraph
			// separators and the bidirectional controls (after which
			// a terminal shows the line reordered: a client
			// certificate's name in an audit line): escaped like the
			// C0 ones, for whoever reads the log with tail.
			b = append(b, '\\', 'u', hexDigits[r>>12], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
