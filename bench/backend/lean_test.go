package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func startLean(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go serveLean(ln)
	return ln.Addr().String()
}

// exchange writes raw to a new connection, reads answers, and says whether
// the server then closed the connection (EOF, or a reset when it closed with
// bytes of ours unread) rather than leaving it open until the 2 s deadline.
func exchange(t *testing.T, addr, raw string, answers int) ([]*http.Response, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	var got []*http.Response
	for range answers {
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, resp.ContentLength, int64(len(b)))
		got = append(got, resp)
	}
	_, err = br.ReadByte()
	var ne net.Error
	return got, err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestLeanAnswersPipelinedRequestsAndSkipsBodies(t *testing.T) {
	addr := startLean(t)
	raw := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	got, closed := exchange(t, addr, raw, 3)
	for _, r := range got {
		assert.Equal(t, 200, r.StatusCode)
		assert.Equal(t, "text/plain", r.Header.Get("Content-Type"))
		assert.NotEmpty(t, r.Header.Get("Date"))
	}
	assert.True(t, got[2].Close, "the third answer says Connection: close")
	assert.True(t, closed, "the connection ends after Connection: close, and the body was not read as a request")
}

func TestLeanClosesAfterHTTP10(t *testing.T) {
	got, closed := exchange(t, startLean(t), "GET / HTTP/1.0\r\n\r\n", 1)
	assert.Equal(t, 200, got[0].StatusCode)
	assert.True(t, closed)
}

func TestLeanRefusesWhatItCannotFrame(t *testing.T) {
	addr := startLean(t)
	for name, raw := range map[string]string{
		"chunked":      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
		"bad length":   "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"head too big": "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", leanMaxHead) + "\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, closed := exchange(t, addr, raw, 1)
			assert.Equal(t, 400, got[0].StatusCode)
			assert.True(t, closed)
		})
	}
}
