package edge

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"sync/atomic"
)

// clientCertLineMax bounds a Client-Cert-Chain line as a node reads it
// ("Client-Cert-Chain: " + value + CRLF): 8 KiB, the field line nginx
// (large_client_header_buffers 8k) and Apache httpd
// (LimitRequestFieldSize 8190) take by default. A longer chain is not
// sent (Client-Cert alone still is): the chain is optional (RFC 9440
// 2.3), a backend that knows its CAs builds it again from the leaf, and
// a node refusing the whole request (400, 431) for it would cost the
// client its answer.
const clientCertLineMax = 8 << 10

// clientCertFields are RFC 9440's fields for one connection's client
// certificate: cert is Client-Cert's value, the leaf's DER as an RFC 8941
// byte sequence (":base64:"); chain is Client-Cert-Chain's, the
// certificates between the leaf and the CA of client_ca_file that
// verified it, in the order TLS sends them (each issued the one before),
// as a list of byte sequences, "" when there are none or they do not fit
// in clientCertLineMax. The CA itself (the trust anchor, which the
// backend that trusted client_ca_file before has) is left out, as RFC
// 9440 allows. cert is "" when the connection has no verified chain.
type clientCertFields struct {
	cert, chain string
}

// newClientCertFields encodes a connection's first verified chain: the
// one crypto/tls found first, of which the leaf is every chain's.
func newClientCertFields(st *tls.ConnectionState) *clientCertFields {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return &clientCertFields{}
	}
	chain := st.VerifiedChains[0]
	f := &clientCertFields{cert: string(appendByteSequence(nil, chain[0].Raw))}
	if len(chain) > 2 {
		mid := chain[1 : len(chain)-1]
		n := 2 * (len(mid) - 1) // the ", " between items
		for _, c := range mid {
			n += 1 + base64.StdEncoding.EncodedLen(len(c.Raw)) + 1
		}
		if len("Client-Cert-Chain: ")+n+len("\r\n") <= clientCertLineMax {
			b := make([]byte, 0, n)
			for i, c := range mid {
				if i > 0 {
					b = append(b, ", "...)
				}
				b = appendByteSequence(b, c.Raw)
			}
			f.chain = string(b)
		}
	}
	return f
}

// appendByteSequence appends der as an RFC 8941 byte sequence.
func appendByteSequence(b, der []byte) []byte {
	b = append(b, ':')
	b = base64.StdEncoding.AppendEncode(b, der)
	return append(b, ':')
}

// clientCertCache is a connection's clientCertFields, encoded at its
// first request that forwards them (its virtual host has
// forward_client_cert) and kept for the others: a connection's
// certificate never changes, and encoding it costs an allocation and a
// few KiB of base64 per request otherwise. Connections whose requests
// never forward it pay nothing. HTTP/2's streams of one connection may
// race to fill it: each encodes the same fields, and one is kept.
type clientCertCache struct {
	p atomic.Pointer[clientCertFields]
}

func (c *clientCertCache) get(st *tls.ConnectionState) *clientCertFields {
	if f := c.p.Load(); f != nil {
		return f
	}
	f := newClientCertFields(st)
	c.p.Store(f)
	return f
}

// clientCertOf is the client certificate fields of r's connection, from
// its cache when edged's servers serve it (a request from elsewhere,
// tests, has them encoded anew).
func clientCertOf(w http.ResponseWriter, r *http.Request) *clientCertFields {
	if p, _ := peerOf(w); p != nil {
		return p.clientCert.get(r.TLS)
	}
	return newClientCertFields(r.TLS)
}
