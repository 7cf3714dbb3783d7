package engineio

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodePayload(t *testing.T) {
	type want struct {
		typ    PacketType
		data   string
		binary bool
	}
	tests := []struct {
		name     string
		in       string
		protocol int
		binary   bool
		want     []want
		wantErr  bool
	}{
		{name: "v4 one", in: "4hello", protocol: 4, want: []want{{PacketMessage, "hello", false}}},
		{name: "v4 several", in: "4a\x1ebAQID\x1e3\x1e1", protocol: 4,
			want: []want{{PacketMessage, "a", false}, {PacketMessage, "\x01\x02\x03", true}, {PacketPong, "", false}, {PacketClose, "", false}}},
		{name: "v4 utf8", in: "4é€😀", protocol: 4, want: []want{{PacketMessage, "é€😀", false}}},
		{name: "v4 empty body", in: "", protocol: 4, wantErr: true},
		{name: "v4 empty record", in: "4a\x1e", protocol: 4, wantErr: true},
		{name: "v4 leading separator", in: "\x1e4a", protocol: 4, wantErr: true},
		{name: "v4 bad type", in: "4a\x1e9", protocol: 4, wantErr: true},
		{name: "v4 too many records", in: strings.Repeat("6\x1e", maxPacketsPerPayload) + "6", protocol: 4, wantErr: true},
		{name: "v4 as many records as allowed", in: strings.Repeat("6\x1e", maxPacketsPerPayload-1) + "6", protocol: 4,
			want: func() []want {
				w := make([]want, maxPacketsPerPayload)
				for i := range w {
					w[i] = want{PacketNoop, "", false}
				}
				return w
			}()},

		{name: "v3 one", in: "6:4hello", protocol: 3, want: []want{{PacketMessage, "hello", false}}},
		{name: "v3 several", in: "6:4hello1:26:b4AQID", protocol: 3,
			want: []want{{PacketMessage, "hello", false}, {PacketPing, "", false}, {PacketMessage, "\x01\x02\x03", true}}},
		{name: "v3 utf16 units", in: "3:4😀4:4héé", protocol: 3, want: []want{{PacketMessage, "😀", false}, {PacketMessage, "héé", false}}},
		{name: "v3 bytes are not units", in: "5:4héé", protocol: 3, wantErr: true},
		{name: "v3 surrogate pair split", in: "2:4😀", protocol: 3, wantErr: true},
		{name: "v3 empty packets skipped", in: "0:6:4hello", protocol: 3, want: []want{{PacketMessage, "hello", false}}},
		{name: "v3 only empty", in: "0:", protocol: 3, wantErr: true},
		{name: "v3 empty body", in: "", protocol: 3, wantErr: true},
		{name: "v3 no length", in: ":4", protocol: 3, wantErr: true},
		{name: "v3 no colon", in: "4hello", protocol: 3, wantErr: true},
		{name: "v3 short", in: "9:4abc", protocol: 3, wantErr: true},
		{name: "v3 trailing", in: "4:4abc1", protocol: 3, wantErr: true},
		{name: "v3 negative", in: "-1:4", protocol: 3, wantErr: true},
		{name: "v3 huge length", in: "99999999999:4", protocol: 3, wantErr: true},
		{name: "v3 bad packet", in: "1:x", protocol: 3, wantErr: true},

		{name: "v3 binary string", in: "\x00\x06\xff4hello", protocol: 3, binary: true, want: []want{{PacketMessage, "hello", false}}},
		{name: "v3 binary binary", in: "\x01\x04\xff\x04\x01\x02\x03", protocol: 3, binary: true, want: []want{{PacketMessage, "\x01\x02\x03", true}}},
		{name: "v3 binary two", in: "\x00\x01\xff2\x01\x01\x00\xff\x04\x05\x05\x05\x05\x05\x05\x05\x05\x05", protocol: 3, binary: true,
			want: []want{{PacketPing, "", false}, {PacketMessage, "\x05\x05\x05\x05\x05\x05\x05\x05\x05", true}}},
		{name: "v3 binary bad marker", in: "\x02\x01\xff2", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary no length", in: "\x00\xff2", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary digit too big", in: "\x00\x0a\xff2", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary no terminator", in: "\x00\x01\x02", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary short", in: "\x00\x09\xff4abc", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary long length", in: "\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\xff4", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary non-message", in: "\x01\x01\xff\x02", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary empty", in: "", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary invalid utf8", in: "\x00\x03\xff4\xed\xa0", protocol: 3, binary: true, wantErr: true},
		{name: "v3 binary truncated utf8", in: "\x00\x02\xff4\xc3", protocol: 3, binary: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := decodePayload([]byte(tt.in), tt.protocol, tt.binary)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %d packets, want an error", len(ps))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d packets, want %d", len(ps), len(tt.want))
			}
			for i, w := range tt.want {
				p := ps[i]
				if p.typ != w.typ || string(p.data) != w.data || p.binary != w.binary {
					t.Errorf("packet %d = {%v %q %v}, want {%v %q %v}", i, p.typ, p.data, p.binary, w.typ, w.data, w.binary)
				}
			}
		})
	}
}

func TestEncodePayload(t *testing.T) {
	text := func(s string) outPacket { return outPacket{msg: NewTextMessage([]byte(s))} }
	bin := func(s string) outPacket { return outPacket{msg: NewBinaryMessage([]byte(s))} }
	ctl := func(t PacketType, d string) outPacket { return outPacket{typ: t, data: d} }
	tests := []struct {
		name       string
		items      []outPacket
		protocol   int
		binary     bool
		want       string
		wantBinary bool
	}{
		{name: "v4", items: []outPacket{text("a"), ctl(PacketPing, ""), bin("\x01\x02\x03"), ctl(PacketClose, "")}, protocol: 4,
			want: "4a\x1e2\x1ebAQID\x1e1"},
		{name: "v4 binary ignored", items: []outPacket{bin("\x01")}, protocol: 4, binary: true, want: "bAQ=="},
		{name: "v4 none", protocol: 4, want: ""},
		{name: "v3 text", items: []outPacket{text("hello"), ctl(PacketPong, "probe")}, protocol: 3, want: "6:4hello6:3probe"},
		{name: "v3 utf16", items: []outPacket{text("😀é"), text(strings.Repeat("x", 99))}, protocol: 3,
			want: "4:4😀é100:4" + strings.Repeat("x", 99)},
		{name: "v3 base64", items: []outPacket{bin("\x01\x02\x03")}, protocol: 3, want: "6:b4AQID"},
		{name: "v3 none", protocol: 3, want: "0:"},
		{name: "v3 binary", items: []outPacket{text("hé"), bin("\x01\x02"), ctl(PacketNoop, "")}, protocol: 3, binary: true,
			want: "\x00\x04\xff4hé\x01\x03\xff\x04\x01\x02\x00\x01\xff6", wantBinary: true},
		{name: "v3 binary without binary", items: []outPacket{text("a")}, protocol: 3, binary: true, want: "2:4a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, binary := encodePayload(nil, tt.items, tt.protocol, tt.binary)
			if string(got) != tt.want || binary != tt.wantBinary {
				t.Errorf("got %q (binary %v), want %q (binary %v)", got, binary, tt.want, tt.wantBinary)
			}
		})
	}
}

// FuzzDecodePayload checks that no body makes the payload decoder panic and
// that what it accepts encodes back to the same packets. mode picks v4, v3
// text or v3 binary.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []struct {
		b    string
		mode byte
	}{
		{"4hello\x1ebAQID\x1e2", 0},
		{"4a\x1e", 0},
		{"6:4hello1:26:b4AQID", 1},
		{"3:4😀", 1},
		{"0:", 1},
		{"\x00\x06\xff4hello\x01\x04\xff\x04\x01\x02\x03", 2},
		{"\x00\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\xff4", 2},
	} {
		f.Add([]byte(s.b), s.mode)
	}
	f.Fuzz(func(t *testing.T, body []byte, mode byte) {
		protocol, binary := 4, false
		switch mode % 3 {
		case 1:
			protocol = 3
		case 2:
			protocol, binary = 3, true
		}
		ps, err := decodePayload(bytes.Clone(body), protocol, binary)
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > maxPacketsPerPayload {
			t.Fatalf("%d packets without an error", len(ps))
		}
		items := make([]outPacket, len(ps))
		for i, p := range ps {
			switch {
			case p.typ == PacketMessage && p.binary:
				items[i] = outPacket{msg: NewBinaryMessage(bytes.Clone(p.data))}
			case p.typ == PacketMessage:
				items[i] = outPacket{msg: NewTextMessage(bytes.Clone(p.data))}
			default:
				items[i] = outPacket{typ: p.typ, data: string(p.data)}
			}
		}
		enc, encBinary := encodePayload(nil, items, protocol, binary)
		again, err := decodePayload(enc, protocol, encBinary)
		if err != nil {
			t.Fatalf("re-encoded %q: %v", enc, err)
		}
		if len(again) != len(ps) {
			t.Fatalf("re-encoded %q: %d packets, want %d", enc, len(again), len(ps))
		}
		for i := range ps {
			if again[i].typ != ps[i].typ || again[i].binary != ps[i].binary || !bytes.Equal(again[i].data, ps[i].data) {
				t.Fatalf("packet %d: %+v, then %+v", i, ps[i], again[i])
			}
		}
	})
}

// FuzzDecodeText checks single packets: no panic, only valid types, and
// the text or base64 form decodes back to the packet.
func FuzzDecodeText(f *testing.F) {
	for _, s := range []string{"4hello", "2probe", "bAQID", "b4AQID", "", "7", "b!!!"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, v3 bool) {
		protocol := 4
		if v3 {
			protocol = 3
		}
		p, err := decodeText(bytes.Clone(b), protocol)
		if err != nil {
			return
		}
		if !p.typ.valid() || p.binary && p.typ != PacketMessage {
			t.Fatalf("decoded %+v", p)
		}
		var enc []byte
		if p.binary {
			enc = appendBase64(nil, p.data, protocol)
		} else {
			enc = appendText(nil, p.typ, string(p.data))
		}
		again, err := decodeText(enc, protocol)
		if err != nil || again.typ != p.typ || again.binary != p.binary || !bytes.Equal(again.data, p.data) {
			t.Fatalf("%q: %+v; re-encoded %q: %+v, %v", b, p, enc, again, err)
		}
	})
}
