package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// A minimal RFC 6455 echo: enough to see that upgrades and long-lived
// connections pass through edged, nothing more (no extensions, no
// reassembly: each frame goes back as it came, fragments included).

const (
	wsGUID       = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsMaxPayload = 1 << 20
	wsIdle       = 10 * time.Minute

	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "WebSocket upgrade expected", http.StatusUpgradeRequired)
		return
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Header.Get("Sec-WebSocket-Version") != "13" || key == "" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "Sec-WebSocket-Version 13 and a Sec-WebSocket-Key expected", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{}) // the server's timeouts were for HTTP
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	if err := brw.Flush(); err != nil {
		return
	}
	ws := &wsConn{conn: conn, r: brw.Reader}
	// On shutdown say "going away" and end the read loop.
	stop := context.AfterFunc(r.Context(), func() {
		ws.write(true, opClose, binary.BigEndian.AppendUint16(nil, 1001))
		conn.Close()
	})
	defer stop()
	ws.echo()
}

type wsConn struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex // one frame written at a time
}

func (c *wsConn) echo() {
	for {
		c.conn.SetReadDeadline(time.Now().Add(wsIdle))
		fin, op, payload, err := c.read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.write(true, opClose, append(binary.BigEndian.AppendUint16(nil, 1002), err.Error()...))
			}
			return
		}
		switch op {
		case opClose:
			c.write(true, opClose, payload[:min(len(payload), 2)])
			return
		case opPing:
			c.write(true, opPong, payload)
		case opPong:
		case opCont, opText, opBin:
			if c.write(fin, op, payload) != nil {
				return
			}
		default:
			c.write(true, opClose, binary.BigEndian.AppendUint16(nil, 1002))
			return
		}
	}
}

func (c *wsConn) read() (fin bool, op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return false, 0, nil, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[0]&0x70 != 0 {
		return false, 0, nil, errors.New("reserved bits set")
	}
	if h[1]&0x80 == 0 {
		return false, 0, nil, errors.New("client frames must be masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.r, b[:]); err != nil {
			return false, 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > wsMaxPayload || op >= opClose && (n > 125 || !fin) {
		return false, 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	if _, err := io.ReadFull(c.r, mask[:]); err != nil {
		return false, 0, nil, err
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		return false, 0, nil, err
	}
	for i := range payload {
		payload[i] ^= mask[i%4]
	}
	return fin, op, payload, nil
}

// write sends one unmasked frame, as servers must.
func (c *wsConn) write(fin bool, op byte, payload []byte) error {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	frame := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		frame = append(frame, byte(n))
	case n <= 0xffff:
		frame = binary.BigEndian.AppendUint16(append(frame, 126), uint16(n))
	default:
		frame = binary.BigEndian.AppendUint64(append(frame, 127), uint64(n))
	}
	frame = append(frame, payload...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.conn.Write(frame)
	return err
}
