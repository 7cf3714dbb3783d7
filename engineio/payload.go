package engineio

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Polling payloads: several packets in one HTTP body.
//
// v4: packets in their text form joined by the record separator 0x1e.
// v3 text: each packet prefixed with its length in UTF-16 code units and a
// colon ("6:4hello"). v3 binary (a client that supports binary and a
// payload with binary data; Content-Type application/octet-stream): each
// packet is a marker byte (0 string, 1 binary), its byte length as one byte
// per decimal digit, 0xff, then the packet; a string packet is its text
// form in UTF-8, a binary one its type byte and data.

const recordSeparator = 0x1e

var errPayload = errors.New("malformed payload")

// maxPacketsPerPayload bounds how many packets one POST may carry, so a
// body of empty records cannot make the server loop over millions of
// nothings. The bound is far above what a client batches.
const maxPacketsPerPayload = 10_000

// decodePayload splits a POST body into packets. binaryBody is true for a
// v3 body sent as application/octet-stream. The packets alias body.
func decodePayload(body []byte, protocol int, binaryBody bool) ([]packet, error) {
	switch {
	case protocol == 3 && binaryBody:
		return decodeBinaryPayloadV3(body)
	case protocol == 3:
		return decodeTextPayloadV3(body)
	default:
		return decodePayloadV4(body)
	}
}

func decodePayloadV4(body []byte) ([]packet, error) {
	if len(body) == 0 {
		return nil, errPayload
	}
	n := bytes.Count(body, []byte{recordSeparator}) + 1
	if n > maxPacketsPerPayload {
		return nil, errPayload
	}
	out := make([]packet, 0, n)
	for part := range bytes.SplitSeq(body, []byte{recordSeparator}) {
		p, err := decodeText(part, 4)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func decodeTextPayloadV3(body []byte) ([]packet, error) {
	if len(body) == 0 {
		return nil, errPayload
	}
	var out []packet
	for len(body) > 0 {
		colon := bytes.IndexByte(body, ':')
		if colon < 1 || colon > 10 {
			return nil, errPayload
		}
		units, err := strconv.Atoi(string(body[:colon]))
		if err != nil || units < 0 {
			return nil, errPayload
		}
		body = body[colon+1:]
		n, ok := utf16Prefix(body, units)
		if !ok {
			return nil, errPayload
		}
		if n > 0 { // an empty packet ("0:") is skipped, as Node does
			p, err := decodeText(body[:n], 3)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
			if len(out) > maxPacketsPerPayload {
				return nil, errPayload
			}
		}
		body = body[n:]
	}
	if len(out) == 0 {
		return nil, errPayload
	}
	return out, nil
}

// utf16Prefix returns the byte length of the prefix of b that is units
// UTF-16 code units long. Invalid UTF-8 bytes count as one unit each (they
// decode to U+FFFD, as in Node).
func utf16Prefix(b []byte, units int) (int, bool) {
	i := 0
	for units > 0 {
		if i >= len(b) {
			return 0, false
		}
		r, size := utf8.DecodeRune(b[i:])
		if r >= 0x10000 {
			units -= 2
		} else {
			units--
		}
		i += size
	}
	return i, units == 0
}

// utf16Len is the length of s in UTF-16 code units.
func utf16Len(s []byte) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
		i += size
	}
	return n
}

func decodeBinaryPayloadV3(body []byte) ([]packet, error) {
	var out []packet
	for len(body) > 0 {
		isString := body[0] == 0
		if body[0] > 1 {
			return nil, errPayload
		}
		n, i := 0, 1
		for ; i < len(body) && body[i] != 0xff; i++ {
			if body[i] > 9 || i > 10 {
				return nil, errPayload
			}
			n = n*10 + int(body[i])
		}
		if i == 1 || i >= len(body) || len(body)-i-1 < n {
			return nil, errPayload
		}
		msg := body[i+1 : i+1+n]
		body = body[i+1+n:]
		var p packet
		var err error
		if isString {
			// Node decodes the string as UTF-8 and refuses the payload
			// when it is not.
			if !utf8.Valid(msg) {
				return nil, errPayload
			}
			p, err = decodeText(msg, 3)
		} else {
			p, err = decodeBinaryFrame(msg, 3)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		if len(out) > maxPacketsPerPayload {
			return nil, errPayload
		}
	}
	if len(out) == 0 {
		return nil, errPayload
	}
	return out, nil
}

// outPacket is a packet waiting in a polling session's queue: either a
// message or a control packet.
type outPacket struct {
	msg  *Message   // a message, or nil
	typ  PacketType // control packets
	data string
}

// encodePayload writes the queued packets as one GET response body and
// reports whether it is a v3 binary payload (application/octet-stream).
func encodePayload(dst []byte, items []outPacket, protocol int, supportsBinary bool) ([]byte, bool) {
	if protocol != 3 {
		for i, it := range items {
			if i > 0 {
				dst = append(dst, recordSeparator)
			}
			dst = appendItem(dst, it, 4)
		}
		return dst, false
	}
	if supportsBinary && anyBinary(items) {
		for _, it := range items {
			dst = appendBinaryItemV3(dst, it)
		}
		return dst, true
	}
	if len(items) == 0 {
		return append(dst, "0:"...), false
	}
	for _, it := range items {
		start := len(dst)
		dst = appendItem(dst, it, 3)
		enc := dst[start:]
		// The length prefix goes before the packet: write the packet, then
		// move it right by the prefix's width.
		prefix := strconv.AppendInt(nil, int64(utf16Len(enc)), 10)
		prefix = append(prefix, ':')
		dst = append(dst, prefix...)
		copy(dst[start+len(prefix):], dst[start:len(dst)-len(prefix)])
		copy(dst[start:], prefix)
	}
	return dst, false
}

func anyBinary(items []outPacket) bool {
	for _, it := range items {
		if it.msg != nil && it.msg.binary {
			return true
		}
	}
	return false
}

// appendItem appends one packet in its text form.
func appendItem(dst []byte, it outPacket, protocol int) []byte {
	if it.msg == nil {
		return appendText(dst, it.typ, it.data)
	}
	if it.msg.binary {
		return appendBase64(dst, it.msg.data, protocol)
	}
	dst = append(dst, '0'+byte(PacketMessage))
	return append(dst, it.msg.data...)
}

func appendBinaryItemV3(dst []byte, it outPacket) []byte {
	if it.msg != nil && it.msg.binary {
		dst = append(dst, 1)
		dst = appendDigits(dst, len(it.msg.data)+1)
		dst = append(dst, 0xff, byte(PacketMessage))
		return append(dst, it.msg.data...)
	}
	var n int
	if it.msg == nil {
		n = 1 + len(it.data)
	} else {
		n = 1 + len(it.msg.data)
	}
	dst = append(dst, 0)
	dst = appendDigits(dst, n)
	dst = append(dst, 0xff)
	return appendItem(dst, it, 3)
}

// appendDigits appends n as one byte per decimal digit (0-9, not ASCII).
func appendDigits(dst []byte, n int) []byte {
	s := strconv.Itoa(n)
	for i := 0; i < len(s); i++ {
		dst = append(dst, s[i]-'0')
	}
	return dst
}
