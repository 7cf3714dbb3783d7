package engineio

import "sync/atomic"

// Message is an Engine.IO message, built once and sent to any number of
// sessions: a broadcast encodes its packet once for all recipients. A
// Message is immutable; its websocket frame is built the first time a
// websocket session sends it and shared from then on.
type Message struct {
	data   []byte
	binary bool
	frame  atomic.Pointer[[]byte] // text frame: header, "4", data
}

// NewTextMessage returns a text message. It keeps data, which the caller
// must not modify afterwards.
func NewTextMessage(data []byte) *Message { return &Message{data: data} }

// NewBinaryMessage returns a binary message. It keeps data, which the
// caller must not modify afterwards.
func NewBinaryMessage(data []byte) *Message { return &Message{data: data, binary: true} }

// Data is the message's payload.
func (m *Message) Data() []byte { return m.data }

// Binary reports whether the message is binary.
func (m *Message) Binary() bool { return m.binary }

// size is what the message costs in a send queue.
func (m *Message) size() int { return len(m.data) + 16 }

// wsFrame is the message as one websocket frame for protocol.
func (m *Message) wsFrame(protocol int) []byte {
	if !m.binary {
		if f := m.frame.Load(); f != nil {
			return *f
		}
		n := 1 + len(m.data)
		f := make([]byte, 0, frameHeaderLen(n)+n)
		f = appendFrameHeader(f, opText, n)
		f = append(f, '0'+byte(PacketMessage))
		f = append(f, m.data...)
		m.frame.Store(&f) // concurrent builders store equal frames
		return f
	}
	// Binary frames differ per protocol (v3 prefixes the packet type);
	// they are rare, so they are not cached.
	n := len(m.data)
	if protocol == 3 {
		n++
	}
	f := make([]byte, 0, frameHeaderLen(n)+n)
	f = appendFrameHeader(f, opBinary, n)
	if protocol == 3 {
		f = append(f, byte(PacketMessage))
	}
	return append(f, m.data...)
}
