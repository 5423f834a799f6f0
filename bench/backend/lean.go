package main

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The lean mode answers over a read loop of its own instead of net/http's
// server, which costs 17–33 µs a request on bench/'s machine (`direct`), and
// more beside wrk: as much as the proxies in front of it. With that backend on CPU 1 beside the load
// generator, CPU 1 fills before the proxy's CPU 0 does, and req/s measures
// CPU 1 (bench/README, "Why a cheaper proxy gets fewer req/s here"). The lean
// loop serves only what the bench sends: heads that end in CRLF CRLF, without
// a body or with a Content-Length one; a chunked body or a bad length is
// answered 400 and the connection closed, and so is a head that fills the
// buffer without ending.

const (
	leanMaxHead = 64 << 10        // a request head larger than this: 400, close
	leanIdle    = 5 * time.Minute // a read or write that takes longer closes the connection
)

// leanDate is the Date field's line, set before the first answer and
// refreshed every second.
var leanDate atomic.Pointer[[]byte]

func setDate() {
	line := []byte("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	leanDate.Store(&line)
}

func serveLean(ln net.Listener) error {
	setDate()
	go func() {
		for range time.Tick(time.Second) {
			setDate()
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go leanConn(c)
	}
}

var (
	crlfcrlf     = []byte("\r\n\r\n")
	okHead       = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	closeField   = []byte("Connection: close\r\n")
	badRequest   = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	fieldCL      = []byte("\r\ncontent-length:")
	fieldTE      = []byte("\r\ntransfer-encoding:")
	fieldConn    = []byte("\r\nconnection:")
	tokenClose   = []byte("close")
	versionHTTP1 = []byte(" http/1.1\r\n") // as lower() leaves it
)

// leanConn serves one connection: every complete request head in what one
// read returned is answered, and the answers go out in one write.
func leanConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, leanMaxHead)
	out := make([]byte, 0, 4096)
	held, skip := 0, 0 // bytes in buf; body bytes still to discard
	for {
		c.SetDeadline(time.Now().Add(leanIdle)) // for this read and the writes it leads to
		n, err := c.Read(buf[held:])
		if n == 0 && err != nil {
			return
		}
		held += n
		start, closing := 0, false
		for !closing {
			if skip > 0 {
				d := min(skip, held-start)
				start += d
				skip -= d
				if skip > 0 {
					break
				}
			}
			end := bytes.Index(buf[start:held], crlfcrlf)
			if end < 0 {
				break
			}
			head := lower(buf[start : start+end+2]) // ends in the last field's CRLF
			start += end + 4
			cl, ok := leanBodyLength(head)
			if !ok {
				c.Write(append(out, badRequest...))
				return
			}
			skip = cl
			closing = leanCloses(head)
			out = append(out, okHead...)
			out = append(out, *leanDate.Load()...)
			if closing {
				out = append(out, closeField...)
			}
			out = append(out, "\r\n"...)
			out = append(out, body...)
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil || closing {
				return
			}
			out = out[:0]
		}
		held = copy(buf, buf[start:held])
		if held == len(buf) {
			c.Write(badRequest)
			return
		}
	}
}

// leanBodyLength says how many body bytes follow the lowercased head: 0
// without Content-Length, false for a chunked body or a malformed length.
func leanBodyLength(head []byte) (int, bool) {
	if bytes.Contains(head, fieldTE) {
		return 0, false
	}
	i := bytes.Index(head, fieldCL)
	if i < 0 {
		return 0, true
	}
	v := head[i+len(fieldCL):]
	v = bytes.TrimSpace(v[:bytes.IndexByte(v, '\r')])
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 || n > 1<<30 {
		return 0, false
	}
	return n, true
}

// leanCloses says whether the connection ends after this answer: HTTP/1.0,
// or "Connection: close".
func leanCloses(head []byte) bool {
	line := head[:bytes.IndexByte(head, '\n')+1]
	if !bytes.HasSuffix(line, versionHTTP1) {
		return true
	}
	i := bytes.Index(head, fieldConn)
	if i < 0 {
		return false
	}
	v := head[i+len(fieldConn):]
	return bytes.Contains(v[:bytes.IndexByte(v, '\r')], tokenClose)
}

// lower turns b's ASCII letters to lower case in place and returns it.
func lower(b []byte) []byte {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}
