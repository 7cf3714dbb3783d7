package engineio

import (
	"encoding/base64"
	"errors"
)

// PacketType is an Engine.IO packet type; its wire form is the ASCII digit.
type PacketType byte

// The Engine.IO packet types (the same in protocol v3 and v4).
const (
	PacketOpen PacketType = iota
	PacketClose
	PacketPing
	PacketPong
	PacketMessage
	PacketUpgrade
	PacketNoop
)

func (t PacketType) valid() bool { return t <= PacketNoop }

// packet is one decoded Engine.IO packet. data aliases the buffer it was
// decoded from unless the decoder says otherwise.
type packet struct {
	typ    PacketType
	data   []byte
	binary bool // a binary message (only PacketMessage may be binary)
}

var (
	errEmptyPacket = errors.New("empty packet")
	errPacketType  = errors.New("unknown packet type")
	errBase64      = errors.New("bad base64 packet")
)

// decodeText decodes a packet received as text: a websocket text frame or
// one packet of a polling payload. "b" followed by base64 is a binary
// message ("b4..." in protocol v3, "b..." in v4).
func decodeText(b []byte, protocol int) (packet, error) {
	if len(b) == 0 {
		return packet{}, errEmptyPacket
	}
	if b[0] == 'b' {
		body := b[1:]
		if protocol == 3 {
			if len(body) == 0 || body[0] != '0'+byte(PacketMessage) {
				return packet{}, errBase64
			}
			body = body[1:]
		}
		data := make([]byte, base64.StdEncoding.DecodedLen(len(body)))
		n, err := base64.StdEncoding.Decode(data, body)
		if err != nil {
			return packet{}, errBase64
		}
		return packet{typ: PacketMessage, data: data[:n], binary: true}, nil
	}
	t := PacketType(b[0] - '0')
	if b[0] < '0' || !t.valid() {
		return packet{}, errPacketType
	}
	return packet{typ: t, data: b[1:]}, nil
}

// decodeBinaryFrame decodes a websocket binary frame: in protocol v4 the
// frame is the message itself; in v3 its first byte is the packet type.
func decodeBinaryFrame(b []byte, protocol int) (packet, error) {
	if protocol == 3 {
		if len(b) == 0 {
			return packet{}, errEmptyPacket
		}
		t := PacketType(b[0])
		if t != PacketMessage {
			// Only messages carry binary data; v3 clients never send
			// anything else as a binary frame.
			return packet{}, errPacketType
		}
		return packet{typ: t, data: b[1:], binary: true}, nil
	}
	return packet{typ: PacketMessage, data: b, binary: true}, nil
}

// appendText appends the text form of a control packet (type digit, then
// data).
func appendText(dst []byte, t PacketType, data string) []byte {
	dst = append(dst, '0'+byte(t))
	return append(dst, data...)
}

// appendBase64 appends a binary message in its text form: "b" + base64 in
// v4, "b4" + base64 in v3.
func appendBase64(dst []byte, data []byte, protocol int) []byte {
	dst = append(dst, 'b')
	if protocol == 3 {
		dst = append(dst, '0'+byte(PacketMessage))
	}
	return base64.StdEncoding.AppendEncode(dst, data)
}
