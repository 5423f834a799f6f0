package edge

import (
	"crypto/tls"
	"net/http"
	"testing"
)

// BenchmarkPrepareHeader rewrites a request's header for the node as
// forward does, on the connection's reused header map: the bench's
// request (wrk sends Host alone, which the server keeps out of the
// header) and a browser's (twelve fields, Connection: keep-alive among
// them). Each round fills the map as the parser would and clears it after,
// as the server does; the outgoing URI is the request's target, as with
// the bench's proxy (base_path and target_path "/api").
func BenchmarkPrepareHeader(b *testing.B) {
	for _, c := range []struct {
		name   string
		fields http.Header
	}{
		{"bench", http.Header{}},
		{"browser", http.Header{
			"User-Agent":                {"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"},
			"Accept":                    {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
			"Accept-Language":           {"en-US,en;q=0.5"},
			"Accept-Encoding":           {"gzip, deflate, br, zstd"},
			"Referer":                   {"https://test.acme.com/"},
			"Cookie":                    {"session=0123456789abcdef; theme=dark"},
			"Connection":                {"keep-alive"},
			"Upgrade-Insecure-Requests": {"1"},
			"Sec-Fetch-Dest":            {"document"},
			"Sec-Fetch-Mode":            {"navigate"},
			"Sec-Fetch-Site":            {"same-origin"},
			"Priority":                  {"u=0, i"},
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			hdr := make(http.Header, h1HeaderHint)
			r := &http.Request{Method: "GET", Host: "test.acme.com", RequestURI: "/api/x", Header: hdr, ProtoMajor: 1, ProtoMinor: 1, TLS: &tls.ConnectionState{}}
			var v forwardedValues
			var fc forwardedCache // the connection's
			var text [512]byte
			b.ReportAllocs()
			for b.Loop() {
				for k, vv := range c.fields {
					hdr[k] = vv
				}
				prepareHeader(r, "127.0.0.1", &fc, "0123456789abcdef0123456789abcdef", &v, append(text[:0], "/api/x"...))
				clear(hdr)
			}
		})
	}
}
