package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// PacketType is a Socket.IO packet type.
type PacketType byte

// The Socket.IO packet types.
const (
	PacketConnect PacketType = iota
	PacketDisconnect
	PacketEvent
	PacketAck
	PacketConnectError
	PacketBinaryEvent
	PacketBinaryAck
)

// NoID marks a packet without an acknowledgement id.
const NoID int64 = -1

// maxAckID bounds acknowledgement ids: JavaScript's largest safe integer.
const maxAckID = 1<<53 - 1

// Packet is a Socket.IO packet. Data holds decoded JSON (map[string]any,
// []any, string, float64, bool, nil) in which binary attachments appear as
// []byte; on the way out it may hold any value encoding/json accepts, with
// []byte for binary data.
type Packet struct {
	Type PacketType
	Nsp  string
	ID   int64 // NoID when absent
	Data any
}

// reservedEvents cannot be sent by clients (nor emitted by the server).
var reservedEvents = map[string]bool{
	"connect": true, "connect_error": true, "disconnect": true,
	"disconnecting": true, "newListener": true, "removeListener": true,
}

// Decoding errors; any of them ends the connection, as in Node.
var (
	errPacketType     = errors.New("socketio: unknown packet type")
	errAttachments    = errors.New("socketio: illegal attachments")
	errTooManyAttach  = errors.New("socketio: too many attachments")
	errAckID          = errors.New("socketio: invalid ack id")
	errPayload        = errors.New("socketio: invalid payload")
	errUnexpectedBin  = errors.New("socketio: binary data when not reconstructing a packet")
	errUnexpectedText = errors.New("socketio: text data while reconstructing a packet")
	errAttachTooBig   = errors.New("socketio: attachments exceed the payload limit")
	errTooDeep        = errors.New("socketio: payload nested too deeply")
)

// maxDepth bounds how deeply a received payload may nest arrays and
// objects; honest payloads are far shallower.
const maxDepth = 64

// decoder turns Engine.IO messages into packets, reassembling binary
// packets from their attachments. It is owned by the connection's strand.
type decoder struct {
	maxAttachments int
	// maxBytes bounds what a partial binary packet holds: its text
	// header and the attachments received so far, in bytes.
	maxBytes int

	pending *Packet // a binary packet waiting for attachments
	want    int
	atts    [][]byte
	size    int // bytes held: the header's text and the attachments
}

// addText decodes a text message. It returns nil, nil when the packet
// waits for attachments.
func (d *decoder) addText(b []byte) (*Packet, error) {
	if d.pending != nil {
		return nil, errUnexpectedText
	}
	p, n, err := d.decodeString(b)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return p, nil
	}
	// The header is held with the attachments: a client that announces
	// attachments and never sends them must not hold more than maxBytes
	// (its decoded form costs more than its text; the text is what a
	// client controls).
	d.pending, d.want, d.atts, d.size = p, n, make([][]byte, 0, n), len(b)
	return nil, nil
}

// addBinary takes one attachment (b is copied). A packet whose header and
// attachments together exceed maxBytes is refused.
func (d *decoder) addBinary(b []byte) (*Packet, error) {
	if d.pending == nil {
		return nil, errUnexpectedBin
	}
	d.size += len(b)
	if d.size > d.maxBytes {
		d.reset()
		return nil, errAttachTooBig
	}
	d.atts = append(d.atts, bytes.Clone(b))
	if len(d.atts) < d.want {
		return nil, nil
	}
	p, atts := d.pending, d.atts
	d.reset()
	data, err := reconstruct(p.Data, atts)
	if err != nil {
		return nil, err
	}
	p.Data = data
	return p, nil
}

func (d *decoder) reset() { d.pending, d.want, d.atts, d.size = nil, 0, nil, 0 }

// decodeString parses "<type>[<n>-][<nsp>,][<id>][<json>]". It returns the
// packet and, for a binary packet, its attachment count.
func (d *decoder) decodeString(b []byte) (*Packet, int, error) {
	if len(b) == 0 || b[0] < '0' || b[0] > '0'+byte(PacketBinaryAck) {
		return nil, 0, errPacketType
	}
	p := &Packet{Type: PacketType(b[0] - '0'), Nsp: "/", ID: NoID}
	i := 1
	attachments := 0
	if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
		j := bytes.IndexByte(b[i:], '-')
		if j <= 0 || j > 9 {
			return nil, 0, errAttachments
		}
		n, err := strconv.Atoi(string(b[i : i+j]))
		if err != nil || n < 1 {
			return nil, 0, errAttachments
		}
		if n > d.maxAttachments {
			return nil, 0, errTooManyAttach
		}
		attachments = n
		i += j + 1
	}
	if i < len(b) && b[i] == '/' {
		j := bytes.IndexByte(b[i:], ',')
		if j < 0 {
			p.Nsp = string(b[i:])
			i = len(b)
		} else {
			p.Nsp = string(b[i : i+j])
			i += j + 1
		}
	}
	if i < len(b) && b[i] >= '0' && b[i] <= '9' {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j-i > 16 {
			return nil, 0, errAckID
		}
		id, err := strconv.ParseInt(string(b[i:j]), 10, 64)
		if err != nil || id > maxAckID {
			return nil, 0, errAckID
		}
		p.ID = id
		i = j
	}
	if i < len(b) {
		rest := b[i:]
		if tooDeep(rest) {
			return nil, 0, errTooDeep
		}
		var v any
		// null is no packet's payload: Node refuses it, where Data would
		// take it for an absent one.
		if err := json.Unmarshal(rest, &v); err != nil || v == nil {
			return nil, 0, errPayload
		}
		p.Data = v
	}
	if !payloadValid(p) {
		return nil, 0, errPayload
	}
	return p, attachments, nil
}

// tooDeep reports JSON that nests deeper than maxDepth (strings skipped).
func tooDeep(b []byte) bool {
	depth := 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > maxDepth {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

func payloadValid(p *Packet) bool {
	switch p.Type {
	case PacketConnect:
		if p.Data == nil {
			return true
		}
		_, ok := p.Data.(map[string]any)
		return ok
	case PacketDisconnect:
		return p.Data == nil
	case PacketConnectError:
		switch p.Data.(type) {
		case string, map[string]any:
			return true
		}
		return false
	case PacketEvent, PacketBinaryEvent:
		a, ok := p.Data.([]any)
		if !ok || len(a) == 0 {
			return false
		}
		switch e := a[0].(type) {
		case float64:
			return true
		case string:
			return !reservedEvents[e]
		}
		return false
	case PacketAck, PacketBinaryAck:
		_, ok := p.Data.([]any)
		return ok
	}
	return false
}

// reconstruct replaces attachment placeholders ({"_placeholder": true,
// "num": n}) with the attachments.
func reconstruct(v any, atts [][]byte) (any, error) {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			r, err := reconstruct(e, atts)
			if err != nil {
				return nil, err
			}
			v[i] = r
		}
		return v, nil
	case map[string]any:
		if ph, _ := v["_placeholder"].(bool); ph {
			n, ok := v["num"].(float64)
			if !ok || n < 0 || n >= float64(len(atts)) || n != float64(int(n)) {
				return nil, errAttachments
			}
			return atts[int(n)], nil
		}
		for k, e := range v {
			r, err := reconstruct(e, atts)
			if err != nil {
				return nil, err
			}
			v[k] = r
		}
		return v, nil
	}
	return v, nil
}

// hasBinary reports whether v holds []byte anywhere.
func hasBinary(v any) bool {
	switch v := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range v {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if hasBinary(e) {
				return true
			}
		}
	}
	return false
}

// deconstruct returns v with every []byte replaced by a placeholder, and
// the attachments in order. It copies the containers it changes.
func deconstruct(v any, atts *[][]byte) any {
	switch v := v.(type) {
	case []byte:
		*atts = append(*atts, v)
		return map[string]any{"_placeholder": true, "num": len(*atts) - 1}
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deconstruct(e, atts)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deconstruct(e, atts)
		}
		return out
	}
	return v
}

// encoderPool holds JSON encoders writing into their own buffers.
var encoderPool = sync.Pool{New: func() any {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// appendJSON appends the JSON encoding of v, without HTML escaping (as
// JSON.stringify writes it).
func appendJSON(dst []byte, v any) ([]byte, error) {
	e := encoderPool.Get().(*jsonEncoder)
	defer func() {
		if e.buf.Cap() <= 64<<10 {
			e.buf.Reset()
			encoderPool.Put(e)
		}
	}()
	if err := e.enc.Encode(v); err != nil {
		return dst, err
	}
	b := e.buf.Bytes()
	return append(dst, b[:len(b)-1]...), nil // Encode adds a newline
}

// encode returns the packet's text and its attachments. Binary data in an
// event or ack makes it a binary packet.
func (p *Packet) encode() ([]byte, [][]byte, error) {
	typ, data := p.Type, p.Data
	var atts [][]byte
	if (typ == PacketEvent || typ == PacketAck) && hasBinary(data) {
		data = deconstruct(data, &atts)
		if typ == PacketEvent {
			typ = PacketBinaryEvent
		} else {
			typ = PacketBinaryAck
		}
	}
	b := make([]byte, 0, 64)
	b = append(b, '0'+byte(typ))
	if len(atts) > 0 {
		b = strconv.AppendInt(b, int64(len(atts)), 10)
		b = append(b, '-')
	}
	if p.Nsp != "" && p.Nsp != "/" {
		b = append(b, p.Nsp...)
		b = append(b, ',')
	}
	if p.ID >= 0 {
		b = strconv.AppendInt(b, p.ID, 10)
	}
	if data != nil {
		var err error
		if b, err = appendJSON(b, data); err != nil {
			return nil, nil, fmt.Errorf("socketio: encode packet: %w", err)
		}
	}
	return b, atts, nil
}
