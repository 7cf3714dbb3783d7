package engineio

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

var packetNames = map[PacketType]string{
	PacketOpen: "open", PacketClose: "close", PacketPing: "ping", PacketPong: "pong",
	PacketMessage: "message", PacketUpgrade: "upgrade", PacketNoop: "noop",
}

func TestDecodeText(t *testing.T) {
	tests := []struct {
		in       string
		protocol int
		typ      PacketType
		data     string
		binary   bool
		wantErr  bool
	}{
		{in: "4hello", protocol: 4, typ: PacketMessage, data: "hello"},
		{in: "4", protocol: 4, typ: PacketMessage, data: ""},
		{in: "2probe", protocol: 4, typ: PacketPing, data: "probe"},
		{in: "3", protocol: 3, typ: PacketPong},
		{in: "6", protocol: 4, typ: PacketNoop},
		{in: "0{}", protocol: 4, typ: PacketOpen, data: "{}"},
		{in: "bAQID", protocol: 4, typ: PacketMessage, data: "\x01\x02\x03", binary: true},
		{in: "b", protocol: 4, typ: PacketMessage, data: "", binary: true},
		{in: "b4AQID", protocol: 3, typ: PacketMessage, data: "\x01\x02\x03", binary: true},
		{in: "b4", protocol: 3, typ: PacketMessage, data: "", binary: true},
		{in: "", protocol: 4, wantErr: true},
		{in: "7", protocol: 4, wantErr: true},
		{in: "/", protocol: 4, wantErr: true}, // '0'-1
		{in: " 4", protocol: 4, wantErr: true},
		{in: "b!!!", protocol: 4, wantErr: true},   // Node decodes leniently; refusing is safe
		{in: "bAQI", protocol: 4, wantErr: true},   // unpadded
		{in: "b2AQID", protocol: 3, wantErr: true}, // only messages are binary
		{in: "b", protocol: 3, wantErr: true},
	}
	for _, tt := range tests {
		p, err := decodeText([]byte(tt.in), tt.protocol)
		if tt.wantErr {
			if err == nil {
				t.Errorf("decodeText(%q, v%d) = %+v, want an error", tt.in, tt.protocol, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("decodeText(%q, v%d): %v", tt.in, tt.protocol, err)
			continue
		}
		if p.typ != tt.typ || string(p.data) != tt.data || p.binary != tt.binary {
			t.Errorf("decodeText(%q, v%d) = {%v %q %v}, want {%v %q %v}", tt.in, tt.protocol,
				p.typ, p.data, p.binary, tt.typ, tt.data, tt.binary)
		}
	}
}

func TestDecodeBinaryFrame(t *testing.T) {
	p, err := decodeBinaryFrame([]byte{1, 2}, 4)
	if err != nil || p.typ != PacketMessage || !p.binary || !bytes.Equal(p.data, []byte{1, 2}) {
		t.Errorf("v4: got %+v, %v", p, err)
	}
	p, err = decodeBinaryFrame(nil, 4)
	if err != nil || len(p.data) != 0 {
		t.Errorf("v4 empty: got %+v, %v", p, err)
	}
	p, err = decodeBinaryFrame([]byte{4, 9}, 3)
	if err != nil || p.typ != PacketMessage || !bytes.Equal(p.data, []byte{9}) {
		t.Errorf("v3: got %+v, %v", p, err)
	}
	for _, in := range [][]byte{nil, {2}, {'4', 1}} {
		if _, err := decodeBinaryFrame(in, 3); err == nil {
			t.Errorf("v3 %v: no error", in)
		}
	}
}

// nodeVectors are Node's answers for a set of inputs (testdata/node_vectors.js
// made them).
type nodeVectors struct {
	V4Packet  []nodePacket `json:"v4packet"`
	V4Payload []struct {
		In      string       `json:"in"`
		OK      bool         `json:"ok"`
		Packets []nodePacket `json:"packets"`
	} `json:"v4payload"`
	V3Payload []struct {
		In      string       `json:"in"`
		OK      bool         `json:"ok"`
		Packets []nodePacket `json:"packets"`
	} `json:"v3payload"`
	V3Binary []struct {
		Hex     string       `json:"hex"`
		OK      bool         `json:"ok"`
		Packets []nodePacket `json:"packets"`
	} `json:"v3binary"`
}

type nodePacket struct {
	In     string `json:"in"`
	OK     bool   `json:"ok"`
	Type   string `json:"type"`
	Data   string `json:"data"`
	Binary bool   `json:"binary"`
	Hex    string `json:"hex"`
}

func loadNodeVectors(t *testing.T) nodeVectors {
	t.Helper()
	b, err := os.ReadFile("testdata/node_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v nodeVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// samePacket compares a Go packet with Node's.
func samePacket(p packet, n nodePacket) bool {
	if packetNames[p.typ] != n.Type || p.binary != n.Binary {
		return false
	}
	if n.Binary {
		return hex.EncodeToString(p.data) == n.Hex
	}
	return string(p.data) == n.Data
}

// goStricter lists what Go refuses on purpose although Node accepts it:
// base64 that only Node's lenient decoder takes, binary packets that are not
// messages (v3), and payloads without a packet.
func goStricter(in string, protocol int) bool {
	if len(in) > 0 && in[0] == 'b' {
		body := in[1:]
		if protocol == 3 {
			if len(body) == 0 || body[0] != '4' {
				return true
			}
			body = body[1:]
		}
		_, err := base64.StdEncoding.DecodeString(body)
		return err != nil
	}
	return false
}

func TestDecodeMatchesNode(t *testing.T) {
	v := loadNodeVectors(t)
	for _, n := range v.V4Packet {
		p, err := decodeText([]byte(n.In), 4)
		switch {
		case !n.OK && err == nil:
			t.Errorf("v4 packet %q: Node refuses it, Go accepts %+v", n.In, p)
		case n.OK && err != nil && !goStricter(n.In, 4):
			t.Errorf("v4 packet %q: Node accepts it, Go says %v", n.In, err)
		case n.OK && err == nil && !samePacket(p, n):
			t.Errorf("v4 packet %q: Go %+v, Node %+v", n.In, p, n)
		}
	}
	for _, n := range v.V4Payload {
		ps, err := decodePayload([]byte(n.In), 4, false)
		switch {
		case !n.OK && err == nil:
			t.Errorf("v4 payload %q: Node refuses it, Go accepts %+v", n.In, ps)
		case n.OK && err != nil:
			stricter := false
			for _, np := range n.Packets {
				stricter = stricter || goStricter(np.In, 4)
			}
			for part := range bytes.SplitSeq([]byte(n.In), []byte{recordSeparator}) {
				stricter = stricter || goStricter(string(part), 4)
			}
			if !stricter {
				t.Errorf("v4 payload %q: Node accepts it, Go says %v", n.In, err)
			}
		case n.OK && err == nil:
			if len(ps) != len(n.Packets) {
				t.Errorf("v4 payload %q: Go %d packets, Node %d", n.In, len(ps), len(n.Packets))
				continue
			}
			for i := range ps {
				if !samePacket(ps[i], n.Packets[i]) {
					t.Errorf("v4 payload %q packet %d: Go %+v, Node %+v", n.In, i, ps[i], n.Packets[i])
				}
			}
		}
	}
	for _, n := range v.V3Payload {
		ps, err := decodePayload([]byte(n.In), 3, false)
		switch {
		case !n.OK && err == nil:
			t.Errorf("v3 payload %q: Node refuses it, Go accepts %+v", n.In, ps)
		case n.OK && err != nil:
			stricter := len(n.Packets) == 0 // "0:" carries nothing: refused
			for _, np := range n.Packets {
				stricter = stricter || np.Type == "undefined" || np.Binary && np.Type != "message"
			}
			if !stricter && !v3Base64Stricter(n.In) {
				t.Errorf("v3 payload %q: Node accepts it, Go says %v", n.In, err)
			}
		case n.OK && err == nil:
			if len(ps) != len(n.Packets) {
				t.Errorf("v3 payload %q: Go %d packets, Node %d", n.In, len(ps), len(n.Packets))
				continue
			}
			for i := range ps {
				if !samePacket(ps[i], n.Packets[i]) {
					t.Errorf("v3 payload %q packet %d: Go %+v, Node %+v", n.In, i, ps[i], n.Packets[i])
				}
			}
		}
	}
	for _, n := range v.V3Binary {
		body, _ := hex.DecodeString(n.Hex)
		ps, err := decodePayload(body, 3, true)
		switch {
		case !n.OK && err == nil:
			t.Errorf("v3 binary payload %s: Node refuses it, Go accepts %+v", n.Hex, ps)
		case n.OK && err != nil && !v3BinaryOverlong(body):
			t.Errorf("v3 binary payload %s: Node accepts it, Go says %v", n.Hex, err)
		case n.OK && err == nil:
			if len(ps) != len(n.Packets) {
				t.Errorf("v3 binary payload %s: Go %d packets, Node %d", n.Hex, len(ps), len(n.Packets))
				continue
			}
			for i := range ps {
				if !samePacket(ps[i], n.Packets[i]) {
					t.Errorf("v3 binary payload %s packet %d: Go %+v, Node %+v", n.Hex, i, ps[i], n.Packets[i])
				}
			}
		}
	}
}

// v3Base64Stricter reports a v3 text payload holding a "b" packet that Go
// refuses on purpose (goStricter).
func v3Base64Stricter(in string) bool {
	body := []byte(in)
	for len(body) > 0 {
		colon := bytes.IndexByte(body, ':')
		if colon < 0 {
			return false
		}
		var n int
		for _, c := range body[:colon] {
			n = n*10 + int(c-'0')
		}
		body = body[colon+1:]
		end, ok := utf16Prefix(body, n)
		if !ok {
			return false
		}
		if goStricter(string(body[:end]), 3) {
			return true
		}
		body = body[end:]
	}
	return false
}

// v3BinaryOverlong reports a v3 binary payload whose last packet claims more
// bytes than follow: Node takes what there is, Go refuses it.
func v3BinaryOverlong(body []byte) bool {
	for len(body) > 0 {
		i, n := 1, 0
		for ; i < len(body) && body[i] != 0xff; i++ {
			n = n*10 + int(body[i])
		}
		if i >= len(body) {
			return false
		}
		if len(body)-i-1 < n {
			return true
		}
		body = body[i+1+n:]
	}
	return false
}
