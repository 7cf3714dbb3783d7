package socketio

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func newDecoder() *decoder { return &decoder{maxAttachments: 10, maxBytes: 1000} }

// feed decodes msgs (strings are text, []byte binary) and returns the
// packets and the first error.
func feed(d *decoder, msgs ...any) ([]*Packet, error) {
	var out []*Packet
	for _, m := range msgs {
		var p *Packet
		var err error
		switch m := m.(type) {
		case string:
			p, err = d.addText([]byte(m))
		case []byte:
			p, err = d.addBinary(m)
		}
		if err != nil {
			return out, err
		}
		if p != nil {
			out = append(out, p)
		}
	}
	return out, nil
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name    string
		in      []any
		want    *Packet
		wantErr error
	}{
		{"connect", []any{"0"}, &Packet{Type: PacketConnect, Nsp: "/", ID: NoID}, nil},
		{"connect nsp auth", []any{`0/admin,{"token":"t"}`}, &Packet{Type: PacketConnect, Nsp: "/admin", ID: NoID, Data: map[string]any{"token": "t"}}, nil},
		{"connect nsp no comma", []any{"0/admin"}, &Packet{Type: PacketConnect, Nsp: "/admin", ID: NoID}, nil},
		{"connect v4 query", []any{"0/admin?token=1,"}, &Packet{Type: PacketConnect, Nsp: "/admin?token=1", ID: NoID}, nil},
		{"connect array", []any{"0[]"}, nil, errPayload},
		{"connect null", []any{"0null"}, nil, errPayload},
		{"disconnect", []any{"1/admin,"}, &Packet{Type: PacketDisconnect, Nsp: "/admin", ID: NoID}, nil},
		{"disconnect with data", []any{"1{}"}, nil, errPayload},
		{"disconnect null", []any{"1null"}, nil, errPayload},
		{"event", []any{`2["a",1,{"b":[true,null]}]`}, &Packet{Type: PacketEvent, Nsp: "/", ID: NoID,
			Data: []any{"a", 1.0, map[string]any{"b": []any{true, nil}}}}, nil},
		{"event ack id nsp", []any{`2/admin,12["a"]`}, &Packet{Type: PacketEvent, Nsp: "/admin", ID: 12, Data: []any{"a"}}, nil},
		{"event number name", []any{`2[1.5]`}, &Packet{Type: PacketEvent, Nsp: "/", ID: NoID, Data: []any{1.5}}, nil},
		{"event no args", []any{"2[]"}, nil, errPayload},
		{"event no data", []any{"2"}, nil, errPayload},
		{"event object", []any{"2{}"}, nil, errPayload},
		{"event null name", []any{"2[null]"}, nil, errPayload},
		{"event bad json", []any{`2["a"`}, nil, errPayload},
		{"event trailing", []any{`2["a"]x`}, nil, errPayload},
		{"ack", []any{"31[]"}, &Packet{Type: PacketAck, Nsp: "/", ID: 1, Data: []any{}}, nil},
		{"ack object", []any{"3{}"}, nil, errPayload},
		{"connect error", []any{`4{"message":"m"}`}, &Packet{Type: PacketConnectError, Nsp: "/", ID: NoID, Data: map[string]any{"message": "m"}}, nil},
		{"unknown type", []any{"7"}, nil, errPacketType},
		{"empty", []any{""}, nil, errPacketType},
		{"not a digit", []any{"x"}, nil, errPacketType},

		{"binary event", []any{`51-["a",{"_placeholder":true,"num":0}]`, []byte{1, 2}},
			&Packet{Type: PacketBinaryEvent, Nsp: "/", ID: NoID, Data: []any{"a", []byte{1, 2}}}, nil},
		{"binary event nested", []any{`52-/admin,7["a",{"x":{"_placeholder":true,"num":1}},[{"_placeholder":true,"num":0}]]`, []byte{1}, []byte{2}},
			&Packet{Type: PacketBinaryEvent, Nsp: "/admin", ID: 7, Data: []any{"a", map[string]any{"x": []byte{2}}, []any{[]byte{1}}}}, nil},
		{"binary ack", []any{`61-3[{"_placeholder":true,"num":0}]`, []byte{9}},
			&Packet{Type: PacketBinaryAck, Nsp: "/", ID: 3, Data: []any{[]byte{9}}}, nil},
		{"count says more: waits", []any{`52-["a",{"_placeholder":true,"num":0}]`, []byte{1}}, nil, nil},
		{"count says more, unused attachment", []any{`52-["a",{"_placeholder":true,"num":0}]`, []byte{1}, []byte{2}},
			&Packet{Type: PacketBinaryEvent, Nsp: "/", ID: NoID, Data: []any{"a", []byte{1}}}, nil},
		{"placeholder past the attachments", []any{`51-["a",{"_placeholder":true,"num":1}]`, []byte{1}}, nil, errAttachments},
		{"placeholder negative", []any{`51-["a",{"_placeholder":true,"num":-1}]`, []byte{1}}, nil, errAttachments},
		{"placeholder string num", []any{`51-["a",{"_placeholder":true,"num":"0"}]`, []byte{1}}, nil, errAttachments},
		{"placeholder fraction", []any{`51-["a",{"_placeholder":true,"num":0.5}]`, []byte{1}}, nil, errAttachments},
		{"placeholder without num", []any{`51-["a",{"_placeholder":true}]`, []byte{1}}, nil, errAttachments},
		{"zero attachments", []any{`50-["a"]`}, nil, errAttachments},
		{"no count", []any{`5-["a"]`}, nil, errAttachments},
		{"no dash", []any{`5["a"]`}, nil, errAttachments},
		{"bad count", []any{`5a-["a"]`}, nil, errAttachments},
		{"huge count", []any{`51234567890-["a"]`}, nil, errAttachments},
		{"too many attachments", []any{`511-["a"]`}, nil, errTooManyAttach},
		{"binary reserved name", []any{`51-["connect",{"_placeholder":true,"num":0}]`}, nil, errPayload},
		{"binary placeholder as name", []any{`51-[{"_placeholder":true,"num":0}]`}, nil, errPayload},
		{"text while waiting", []any{`51-["a",{"_placeholder":true,"num":0}]`, `2["b"]`}, nil, errUnexpectedText},
		{"binary unasked", []any{[]byte{1}}, nil, errUnexpectedBin},
		{"extra binary", []any{`51-["a",{"_placeholder":true,"num":0}]`, []byte{1}, []byte{2}}, nil, errUnexpectedBin},
		{"attachments too big", []any{`52-["a",{"_placeholder":true,"num":0}]`, make([]byte, 600), make([]byte, 600)}, nil, errAttachTooBig},
		// The header counts: 960 bytes of it and 50 of attachment are more
		// than the 1000 a partial packet may hold.
		{"header and attachment too big", []any{`51-["a",{"_placeholder":true,"num":0},"` + strings.Repeat("x", 960-41) + `"]`, make([]byte, 50)}, nil, errAttachTooBig},
		{"header and attachment at the limit", []any{`51-["a",{"_placeholder":true,"num":0},"` + strings.Repeat("x", 960-41) + `"]`, make([]byte, 40)},
			&Packet{Type: PacketBinaryEvent, Nsp: "/", ID: NoID, Data: []any{"a", make([]byte, 40), strings.Repeat("x", 960-41)}}, nil},

		{"largest ack id", []any{`29007199254740991["a"]`}, &Packet{Type: PacketEvent, Nsp: "/", ID: 1<<53 - 1, Data: []any{"a"}}, nil},
		{"ack id past 2^53", []any{`29007199254740992["a"]`}, nil, errAckID},
		{"ack id of 21 digits", []any{`2123456789012345678901["a"]`}, nil, errAckID},
		{"ack id of 40 digits", []any{"2" + strings.Repeat("9", 40) + `["a"]`}, nil, errAckID},
		{"deep", []any{`2["a",` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + "]"}, nil, errTooDeep},
		{"deep enough", []any{`2["a",` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + "]"}, &Packet{Type: PacketEvent, Nsp: "/", ID: NoID,
			Data: []any{"a", func() any {
				var v any = []any{}
				for range 62 {
					v = []any{v}
				}
				return v
			}()}}, nil},
		{"brackets in strings do not count", []any{`2["a","` + strings.Repeat("[{", 100) + `\"` + `"]`},
			&Packet{Type: PacketEvent, Nsp: "/", ID: NoID, Data: []any{"a", strings.Repeat("[{", 100) + `"`}}, nil},
	}
	for _, name := range []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"} {
		tests = append(tests, struct {
			name    string
			in      []any
			want    *Packet
			wantErr error
		}{"reserved " + name, []any{`2["` + name + `"]`}, nil, errPayload})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder()
			ps, err := feed(d, tt.in...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if tt.want == nil {
				if len(ps) != 0 {
					t.Fatalf("got %+v, want nothing yet", ps[0])
				}
				return
			}
			if len(ps) != 1 || !reflect.DeepEqual(ps[0], tt.want) {
				t.Fatalf("got %+v, want %+v", ps, tt.want)
			}
		})
	}
}

// A decoder that failed starts afresh: the next packet decodes.
func TestDecoderAfterAttachmentError(t *testing.T) {
	d := newDecoder()
	if _, err := feed(d, `51-["a",{"_placeholder":true,"num":4}]`, []byte{1}); err == nil {
		t.Fatal("no error")
	}
	ps, err := feed(d, `2["b"]`)
	if err != nil || len(ps) != 1 {
		t.Fatalf("%v %v", ps, err)
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		p    Packet
		text string
		atts [][]byte
	}{
		{Packet{Type: PacketConnect, Nsp: "/", ID: NoID, Data: map[string]any{"sid": "x"}}, `0{"sid":"x"}`, nil},
		{Packet{Type: PacketConnect, Nsp: "/admin", ID: NoID}, `0/admin,`, nil},
		{Packet{Type: PacketDisconnect, Nsp: "/admin", ID: NoID}, `1/admin,`, nil},
		{Packet{Type: PacketEvent, Nsp: "/", ID: NoID, Data: []any{"a", "<&>", 1}}, `2["a","<&>",1]`, nil},
		{Packet{Type: PacketEvent, Nsp: "/admin", ID: 0, Data: []any{"a"}}, `2/admin,0["a"]`, nil},
		{Packet{Type: PacketAck, Nsp: "/", ID: 5, Data: []any{}}, `35[]`, nil},
		{Packet{Type: PacketConnectError, Nsp: "/x", ID: NoID, Data: map[string]any{"message": "m"}}, `4/x,{"message":"m"}`, nil},
		{Packet{Type: PacketEvent, Nsp: "/", ID: NoID, Data: []any{"a", []byte{1}, map[string]any{"b": []byte{2}}}},
			`52-["a",{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}}]`, [][]byte{{1}, {2}}},
		{Packet{Type: PacketAck, Nsp: "/n", ID: 9, Data: []any{[]byte{}}}, `61-/n,9[{"_placeholder":true,"num":0}]`, [][]byte{{}}},
	}
	for _, tt := range tests {
		data := tt.p.Data
		text, atts, err := tt.p.encode()
		if err != nil {
			t.Fatal(err)
		}
		if string(text) != tt.text || !reflect.DeepEqual(atts, tt.atts) {
			t.Errorf("encode %+v = %s %v, want %s %v", tt.p, text, atts, tt.text, tt.atts)
		}
		if !reflect.DeepEqual(tt.p.Data, data) {
			t.Errorf("encode changed the packet's data")
		}
	}
	if _, _, err := (&Packet{Type: PacketEvent, Nsp: "/", ID: NoID, Data: []any{"a", make(chan int)}}).encode(); err == nil {
		t.Error("no error for data JSON cannot encode")
	}
}

// roundTrip re-encodes a decoded packet and decodes it again.
func roundTrip(t *testing.T, p *Packet) *Packet {
	t.Helper()
	q := *p
	switch q.Type { // the decoder keeps the wire type; the encoder picks it
	case PacketBinaryEvent:
		q.Type = PacketEvent
	case PacketBinaryAck:
		q.Type = PacketAck
	}
	text, atts, err := q.encode()
	if err != nil {
		t.Fatalf("encode %+v: %v", p, err)
	}
	d := &decoder{maxAttachments: 1 << 20, maxBytes: 1 << 30}
	msgs := []any{string(text)}
	for _, a := range atts {
		msgs = append(msgs, a)
	}
	ps, err := feed(d, msgs...)
	if err != nil || len(ps) != 1 {
		t.Fatalf("%+v encoded as %s %v: %v %v", p, text, atts, ps, err)
	}
	return ps[0]
}

type nodeVector struct {
	In     []json.RawMessage `json:"in"`
	OK     bool              `json:"ok"`
	Err    string            `json:"err"`
	Packet *struct {
		Type int     `json:"type"`
		Nsp  string  `json:"nsp"`
		ID   float64 `json:"id"`
		Data any     `json:"data"`
	} `json:"packet"`
}

// nodeDifferences are the inputs Node's parser accepts and the Go decoder
// refuses or reads otherwise, on purpose.
var nodeDifferences = map[string]string{
	`["2"]`:                             "an event without data: Node dispatches an undefined event",
	`["2/admin,"]`:                      "an event without data",
	`["2/[\"a\"]"]`:                     "an event without data (the namespace swallowed it)",
	`["31"]`:                            "an ack without data",
	`["4"]`:                             "a connect error without data (refused from clients anyway)",
	`["2 [\"a\"]"]`:                     "JavaScript reads the space as the ack id 0",
	`["2\n[\"a\"]"]`:                    "JavaScript reads the newline as the ack id 0",
	`["2[\"a\",1e400]"]`:                "Infinity has no JSON form",
	`["2[\"a\",-0]"]`:                   "the same value: JSON.stringify writes -0 as 0",
	`["2[\"\\ud800\"]"]`:                "a lone surrogate becomes U+FFFD in Go",
	`["29007199254740992[\"a\"]"]`:      "ack ids stop at 2^53-1, where JavaScript numbers stop being exact",
	`["2123456789012345678901[\"a\"]"]`: "ack ids stop at 2^53-1",
}

func TestDecoderMatchesNode(t *testing.T) {
	b, err := os.ReadFile("testdata/node_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []nodeVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		key, _ := json.Marshal(v.In)
		var msgs []any
		for _, raw := range v.In {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				msgs = append(msgs, s)
				continue
			}
			var bin struct{ Bin string }
			_ = json.Unmarshal(raw, &bin)
			h, _ := hex.DecodeString(bin.Bin)
			msgs = append(msgs, h)
		}
		d := newDecoder()
		ps, err := feed(d, msgs...)
		accepted := err == nil && len(ps) == 1 && d.pending == nil
		why, known := nodeDifferences[string(key)]
		switch {
		case !v.OK && accepted:
			t.Errorf("%s: Node refuses it (%s), Go accepts %+v", key, v.Err, ps[0])
		case v.OK && !accepted && !known && !isDeep(string(key)) && !strings.Contains(string(key), `"num\":0.5`):
			t.Errorf("%s: Node accepts it, Go: %v", key, err)
		case v.OK && accepted && !known:
			got := ps[0]
			typ := got.Type
			switch typ { // Node reports binary packets with their plain type
			case PacketBinaryEvent:
				typ = PacketEvent
			case PacketBinaryAck:
				typ = PacketAck
			}
			gotData, _ := json.Marshal(nodeForm(got.Data))
			wantData, _ := json.Marshal(v.Packet.Data)
			if int(typ) != v.Packet.Type || got.Nsp != v.Packet.Nsp || float64(got.ID) != v.Packet.ID || string(gotData) != string(wantData) {
				t.Errorf("%s: Go {%d %s %d %s}, Node {%d %s %v %s}", key, typ, got.Nsp, got.ID, gotData,
					v.Packet.Type, v.Packet.Nsp, v.Packet.ID, wantData)
			}
		case known && accepted == v.OK && v.Packet != nil && why == "":
			t.Errorf("%s: listed as a difference without a reason", key)
		}
	}
}

func isDeep(s string) bool { return strings.Count(s, "[") > maxDepth }

// nodeForm writes attachments as the vectors do.
func nodeForm(v any) any {
	switch v := v.(type) {
	case []byte:
		return map[string]any{"$bin": hex.EncodeToString(v)}
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = nodeForm(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = nodeForm(e)
		}
		return out
	}
	return v
}

// FuzzDecoder feeds a text message and up to two attachments: the decoder
// must not panic, must refuse reserved event names and too many
// attachments, and what it accepts must encode back to the same packet.
func FuzzDecoder(f *testing.F) {
	f.Add(`2["a",1]`, []byte(nil), []byte(nil), uint8(0))
	f.Add(`21/admin,["a",{"b":null}]`, []byte(nil), []byte(nil), uint8(0))
	f.Add(`51-["a",{"_placeholder":true,"num":0}]`, []byte{1, 2}, []byte(nil), uint8(1))
	f.Add(`62-/x,3[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]`, []byte{1}, []byte{2}, uint8(2))
	f.Add(`0/admin,{"token":"x"}`, []byte(nil), []byte(nil), uint8(0))
	f.Add(`2["connect"]`, []byte(nil), []byte(nil), uint8(0))
	f.Add(`29007199254740992["a"]`, []byte(nil), []byte(nil), uint8(0))
	f.Add(`4{"message":"m","data":[1]}`, []byte(nil), []byte(nil), uint8(0))
	f.Fuzz(func(t *testing.T, text string, b1, b2 []byte, n uint8) {
		msgs := []any{text}
		if n%3 >= 1 {
			msgs = append(msgs, b1)
		}
		if n%3 == 2 {
			msgs = append(msgs, b2)
		}
		d := newDecoder()
		ps, err := feed(d, msgs...)
		if err != nil || len(ps) != 1 {
			return
		}
		p := ps[0]
		if !payloadValid(p) {
			t.Fatalf("accepted an invalid payload: %+v", p)
		}
		if p.ID != NoID && (p.ID < 0 || p.ID > maxAckID) {
			t.Fatalf("ack id %d", p.ID)
		}
		if p.Type == PacketEvent || p.Type == PacketBinaryEvent {
			if name, ok := p.Data.([]any)[0].(string); ok && reservedEvents[name] {
				t.Fatalf("reserved event %q accepted", name)
			}
		}
		again := roundTrip(t, p)
		if again.Nsp != p.Nsp || again.ID != p.ID || !reflect.DeepEqual(nodeForm(again.Data), nodeForm(p.Data)) {
			t.Fatalf("%+v came back as %+v", p, again)
		}
	})
}
