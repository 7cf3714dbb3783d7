package engineio

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync"
	"unicode/utf8"
)

// RFC 6455 framing, server side: client frames are masked, server frames
// are not; no extensions are negotiated, so the RSV bits must be clear.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// Close codes used here.
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// wsError is a protocol violation: the connection is closed with code.
type wsError struct {
	code   int
	reason string
}

func (e *wsError) Error() string { return "websocket: " + e.reason }

var (
	errMaskRequired   = &wsError{closeProtocolError, "client frame not masked"}
	errReservedBits   = &wsError{closeProtocolError, "reserved bits set"}
	errBadOpcode      = &wsError{closeProtocolError, "unknown opcode"}
	errControlFrame   = &wsError{closeProtocolError, "fragmented or oversized control frame"}
	errContinuation   = &wsError{closeProtocolError, "unexpected continuation frame"}
	errInterleaved    = &wsError{closeProtocolError, "data frame inside a fragmented message"}
	errMessageTooBig  = &wsError{closeTooBig, "message exceeds the payload limit"}
	errInvalidUTF8    = &wsError{closeInvalidData, "text frame is not valid UTF-8"}
	errNonMinimalSize = &wsError{closeProtocolError, "length not in its shortest form"}
)

// errPeerClosed reports that the peer sent a close frame.
var errPeerClosed = errors.New("websocket: closed by peer")

// frameHandler receives complete messages (op is opText or opBinary, the
// payload reassembled) and control frames (opClose, opPing, opPong). The
// payload is valid only during the call.
type frameHandler func(op byte, payload []byte) error

// wsReader reassembles frames from the bytes a connection reads. Idle, it
// holds no buffer: bytes are kept only while a frame or a fragmented
// message is incomplete, in buffers from a pool.
//
// It is used by one goroutine at a time (the goroutine that reads the
// connection).
type wsReader struct {
	maxMessage int // largest message (reassembled), in bytes

	pending *[]byte // bytes of an incomplete frame
	msg     *[]byte // fragments of an incomplete message
	msgOp   byte
}

// bufPool holds buffers for incomplete frames and messages. Buffers that
// grew past maxPooledBuffer are dropped rather than pooled, so one big
// message does not pin memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBuffer = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// feed consumes data, which the reader may modify in place (unmasking) and
// does not keep, and calls h for each complete message or control frame.
// An error ends the connection.
func (r *wsReader) feed(data []byte, h frameHandler) error {
	if r.pending != nil {
		*r.pending = append(*r.pending, data...)
		data = *r.pending
	}
	for len(data) > 0 {
		n, err := r.frame(data, h)
		if err != nil {
			r.release()
			return err
		}
		if n == 0 {
			break // incomplete
		}
		data = data[n:]
	}
	switch {
	case len(data) == 0:
		if r.pending != nil {
			putBuf(r.pending)
			r.pending = nil
		}
	case r.pending == nil:
		p := getBuf()
		*p = append(*p, data...)
		r.pending = p
	default:
		// data is a suffix of *r.pending: move it to the front.
		n := copy(*r.pending, data)
		*r.pending = (*r.pending)[:n]
	}
	return nil
}

// release returns the reader's buffers to the pool.
func (r *wsReader) release() {
	if r.pending != nil {
		putBuf(r.pending)
		r.pending = nil
	}
	if r.msg != nil {
		putBuf(r.msg)
		r.msg = nil
	}
}

// frame parses one frame at the start of data. It returns the bytes it
// consumed, 0 if the frame is incomplete.
func (r *wsReader) frame(data []byte, h frameHandler) (int, error) {
	if len(data) < 2 {
		return 0, nil
	}
	b0, b1 := data[0], data[1]
	fin := b0&0x80 != 0
	if b0&0x70 != 0 {
		return 0, errReservedBits
	}
	op := b0 & 0x0f
	if b1&0x80 == 0 {
		return 0, errMaskRequired
	}
	size := uint64(b1 & 0x7f)
	hdr := 2
	switch size {
	case 126:
		if len(data) < 4 {
			return 0, nil
		}
		size = uint64(binary.BigEndian.Uint16(data[2:]))
		if size < 126 {
			return 0, errNonMinimalSize
		}
		hdr = 4
	case 127:
		if len(data) < 10 {
			return 0, nil
		}
		size = binary.BigEndian.Uint64(data[2:])
		if size <= 0xffff {
			return 0, errNonMinimalSize
		}
		hdr = 10
	}
	switch op {
	case opClose, opPing, opPong:
		if !fin || size > 125 {
			return 0, errControlFrame
		}
	case opText, opBinary:
		if r.msg != nil {
			return 0, errInterleaved
		}
		if size > uint64(r.maxMessage) {
			return 0, errMessageTooBig
		}
	case opContinuation:
		if r.msg == nil {
			return 0, errContinuation
		}
		if size > uint64(r.maxMessage-len(*r.msg)) {
			return 0, errMessageTooBig
		}
	default:
		return 0, errBadOpcode
	}
	total := hdr + 4 + int(size)
	if len(data) < total {
		return 0, nil
	}
	key := data[hdr : hdr+4]
	payload := data[hdr+4 : total]
	unmask(payload, key)

	switch op {
	case opClose, opPing, opPong:
		return total, h(op, payload)
	case opText, opBinary:
		if fin {
			if op == opText && !utf8.Valid(payload) {
				return 0, errInvalidUTF8
			}
			return total, h(op, payload)
		}
		m := getBuf()
		*m = append(*m, payload...)
		r.msg, r.msgOp = m, op
		return total, nil
	default: // continuation
		*r.msg = append(*r.msg, payload...)
		if !fin {
			return total, nil
		}
		m, mop := r.msg, r.msgOp
		r.msg = nil
		defer putBuf(m)
		if mop == opText && !utf8.Valid(*m) {
			return 0, errInvalidUTF8
		}
		return total, h(mop, *m)
	}
}

func unmask(b, key []byte) {
	var k [4]byte
	copy(k[:], key)
	k8 := uint64(binary.LittleEndian.Uint32(k[:]))
	k8 |= k8 << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// appendFrameHeader appends the header of an unmasked, final frame of
// opcode op carrying n payload bytes.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// frameHeaderLen is the size of appendFrameHeader's output for n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// closeFrame is a close frame with code and no reason.
func closeFrame(code int) []byte {
	b := appendFrameHeader(make([]byte, 0, 4), opClose, 2)
	return binary.BigEndian.AppendUint16(b, uint16(code))
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(wsGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
