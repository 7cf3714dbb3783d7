package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// wsConn is the smallest websocket client the load needs: one handshake,
// text frames out (masked with the connection's own key), text and binary
// frames in. The load tool shares the machine's cores with the servers it
// measures, so it spends as little as it can per connection and per
// message: no HTTP machinery for the handshake, one small read buffer, no
// allocation per frame written.
type wsConn struct {
	conn net.Conn
	r    *bufio.Reader
	mask [4]byte
	wbuf []byte // frame being written (guarded by device.wmu)
	msg  []byte // fragments of a message being read
}

// The handshake key is fixed (the server only hashes it), so its expected
// answer is computed once.
const wsKey = "c2JibG9hZC1rZXktMDAwMA=="

var errHandshake = errors.New("websocket handshake refused")

var wsAccept = func() string {
	h := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}()

// dialWS opens a websocket to ws://target+path with extra headers.
func dialWS(ctx context.Context, nd *net.Dialer, target, path string, extra http.Header) (*wsConn, error) {
	conn, err := nd.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, target, wsKey)
	for k, vs := range extra {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 1024)
	status, err := r.ReadSlice('\n')
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		conn.Close()
		return nil, fmt.Errorf("%w: %q", errHandshake, bytes.TrimSpace(status))
	}
	accepted := false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			conn.Close()
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Accept")) {
			accepted = string(bytes.TrimSpace(v)) == wsAccept
		}
	}
	if !accepted {
		conn.Close()
		return nil, fmt.Errorf("%w: wrong Sec-WebSocket-Accept", errHandshake)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &wsConn{conn: conn, r: r}
	binary.LittleEndian.PutUint32(c.mask[:], uint32(time.Now().UnixNano()))
	return c, nil
}

func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
func (c *wsConn) Close() error                       { return c.conn.Close() }

// WriteText writes one masked text frame; one writer at a time.
func (c *wsConn) WriteText(p []byte) error {
	b := c.wbuf[:0]
	b = append(b, 0x81)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, c.mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range b[start:] {
		b[start+i] ^= c.mask[i&3]
	}
	c.wbuf = b
	_, err := c.conn.Write(b)
	return err
}

var errClosedByServer = errors.New("websocket closed by the server")

// ReadMessage returns the next data message (fragments joined); the slice
// is valid until the next call. Server pings are answered, a close frame
// ends the connection.
func (c *wsConn) ReadMessage() ([]byte, error) {
	c.msg = c.msg[:0]
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(c.r, ext[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			if _, err := io.ReadFull(c.r, ext[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(ext[:])
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("websocket frame of %d bytes", n)
		}
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, c.msg[start:]); err != nil {
			return nil, err
		}
		switch op {
		case 0x8:
			return nil, errClosedByServer
		case 0x9, 0xa: // websocket pings and pongs: neither server sends pings (Engine.IO has its own)
			c.msg = c.msg[:start]
			continue
		}
		if fin {
			return c.msg, nil
		}
	}
}
