package engineio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// clientFrame builds a masked client frame. size, when not -1, forces the
// length field's form (0: 7 bits, 126: 16 bits, 127: 64 bits).
func clientFrame(fin bool, op byte, payload []byte, mask [4]byte, form int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	n := len(payload)
	if form < 0 {
		switch {
		case n < 126:
			form = 0
		case n <= 0xffff:
			form = 126
		default:
			form = 127
		}
	}
	switch form {
	case 0:
		f = append(f, 0x80|byte(n))
	case 126:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	case 127:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	f = append(f, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i%4])
	}
	return f
}

func frame(op byte, payload string) []byte {
	return clientFrame(true, op, []byte(payload), [4]byte{0x37, 0xfa, 0x21, 0x3d}, -1)
}

func fragment(fin bool, op byte, payload string) []byte {
	return clientFrame(fin, op, []byte(payload), [4]byte{1, 2, 3, 4}, -1)
}

type gotFrame struct {
	op      byte
	payload string
}

// readAll feeds data to a new reader in chunks of at most split bytes (all
// at once when split is 0) and returns the frames and the error.
func readAll(data []byte, maxMessage, split int) ([]gotFrame, error) {
	r := wsReader{maxMessage: maxMessage}
	data = bytes.Clone(data) // feed unmasks in place
	var got []gotFrame
	h := func(op byte, payload []byte) error {
		got = append(got, gotFrame{op, string(payload)})
		return nil
	}
	if split <= 0 {
		split = len(data) + 1
	}
	for len(data) > 0 {
		n := min(split, len(data))
		// Each chunk in its own buffer, as the event loop reads them.
		if err := r.feed(bytes.Clone(data[:n]), h); err != nil {
			return got, err
		}
		data = data[n:]
	}
	return got, nil
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestWSReader(t *testing.T) {
	big := strings.Repeat("x", 70_000)
	mid := strings.Repeat("é", 200) // 400 bytes: a 16-bit length
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    []gotFrame
		wantErr *wsError
	}{
		{name: "text", in: frame(opText, "4hello"), want: []gotFrame{{opText, "4hello"}}},
		{name: "empty text", in: frame(opText, ""), want: []gotFrame{{opText, ""}}},
		{name: "binary", in: frame(opBinary, "\x00\xff\x01"), want: []gotFrame{{opBinary, "\x00\xff\x01"}}},
		{name: "16-bit length", in: frame(opText, mid), want: []gotFrame{{opText, mid}}},
		{name: "64-bit length", in: frame(opBinary, big), max: 100_000, want: []gotFrame{{opBinary, big}}},
		{name: "two frames", in: cat(frame(opText, "4a"), frame(opBinary, "b")), want: []gotFrame{{opText, "4a"}, {opBinary, "b"}}},
		{name: "fragmented", in: cat(fragment(false, opText, "4he"), fragment(false, opContinuation, "l"), fragment(true, opContinuation, "lo")),
			want: []gotFrame{{opText, "4hello"}}},
		{name: "control between fragments", in: cat(fragment(false, opBinary, "ab"), frame(opPing, "p"), frame(opPong, ""), fragment(true, opContinuation, "cd")),
			want: []gotFrame{{opPing, "p"}, {opPong, ""}, {opBinary, "abcd"}}},
		{name: "utf8 split across fragments", in: cat(fragment(false, opText, "4\xc3"), fragment(true, opContinuation, "\xa9")),
			want: []gotFrame{{opText, "4é"}}},
		{name: "close", in: frame(opClose, "\x03\xe8"), want: []gotFrame{{opClose, "\x03\xe8"}}},
		{name: "unmasked", in: []byte{0x81, 0x01, '4'}, wantErr: errMaskRequired},
		{name: "rsv1", in: func() []byte { f := frame(opText, "4"); f[0] |= 0x40; return f }(), wantErr: errReservedBits},
		{name: "rsv3", in: func() []byte { f := frame(opText, "4"); f[0] |= 0x10; return f }(), wantErr: errReservedBits},
		{name: "opcode 3", in: frame(3, "x"), wantErr: errBadOpcode},
		{name: "opcode 0xb", in: frame(0xb, "x"), wantErr: errBadOpcode},
		{name: "fragmented ping", in: fragment(false, opPing, "x"), wantErr: errControlFrame},
		{name: "long ping", in: frame(opPing, strings.Repeat("p", 126)), wantErr: errControlFrame},
		{name: "lone continuation", in: frame(opContinuation, "x"), wantErr: errContinuation},
		{name: "text inside fragmented", in: cat(fragment(false, opText, "4a"), frame(opText, "4b")), wantErr: errInterleaved},
		{name: "too big", in: frame(opText, strings.Repeat("x", 101)), max: 100, wantErr: errMessageTooBig},
		{name: "just fits", in: frame(opText, strings.Repeat("x", 100)), max: 100, want: []gotFrame{{opText, strings.Repeat("x", 100)}}},
		{name: "fragments too big", in: cat(fragment(false, opBinary, strings.Repeat("x", 60)), fragment(true, opContinuation, strings.Repeat("x", 41))),
			max: 100, wantErr: errMessageTooBig},
		{name: "fragments just fit", in: cat(fragment(false, opBinary, strings.Repeat("x", 60)), fragment(true, opContinuation, strings.Repeat("x", 40))),
			max: 100, want: []gotFrame{{opBinary, strings.Repeat("x", 100)}}},
		{name: "incomplete header", in: []byte{0x82, 0x80 | 127, 0}},
		{name: "invalid utf8", in: frame(opText, "4\xff"), wantErr: errInvalidUTF8},
		{name: "invalid utf8 fragmented", in: cat(fragment(false, opText, "4\xc3"), fragment(true, opContinuation, "(")), wantErr: errInvalidUTF8},
		{name: "surrogate", in: frame(opText, "4\xed\xa0\x80"), wantErr: errInvalidUTF8},
		{name: "binary need not be utf8", in: frame(opBinary, "\xff"), want: []gotFrame{{opBinary, "\xff"}}},
		{name: "non-minimal 16-bit", in: clientFrame(true, opText, []byte("4"), [4]byte{}, 126), wantErr: errNonMinimalSize},
		{name: "non-minimal 64-bit", in: clientFrame(true, opText, []byte(mid), [4]byte{}, 127), wantErr: errNonMinimalSize},
		{name: "frames before an error are delivered", in: cat(frame(opText, "4a"), frame(3, "")),
			want: []gotFrame{{opText, "4a"}}, wantErr: errBadOpcode},
	}
	// A 64-bit length above the limit is refused from its header alone.
	hdr := []byte{0x82, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<62)
	tests = append(tests, struct {
		name    string
		in      []byte
		max     int
		want    []gotFrame
		wantErr *wsError
	}{name: "2^62 length", in: hdr, max: 1000, wantErr: errMessageTooBig})
	hdr = []byte{0x82, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<63|5)
	tests = append(tests, struct {
		name    string
		in      []byte
		max     int
		want    []gotFrame
		wantErr *wsError
	}{name: "64-bit length with its top bit", in: hdr, max: 1000, wantErr: errMessageTooBig})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.max
			if max == 0 {
				max = 1000
			}
			// Whole, then split at every byte boundary, then byte by byte.
			splits := []int{0, 1}
			for i := 1; i < len(tt.in) && i < 40; i++ {
				splits = append(splits, -i) // two chunks: [:i], [i:]
			}
			for _, split := range splits {
				var got []gotFrame
				var err error
				if split < 0 {
					got, err = readTwo(tt.in, max, -split)
				} else {
					got, err = readAll(tt.in, max, split)
				}
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("split %d: err %v, want %v", split, err, tt.wantErr)
					}
				} else if err != nil {
					t.Fatalf("split %d: %v", split, err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Fatalf("split %d: got %q, want %q", split, got, tt.want)
				}
			}
		})
	}
}

// readTwo feeds data in two chunks, split at i.
func readTwo(data []byte, maxMessage, i int) ([]gotFrame, error) {
	r := wsReader{maxMessage: maxMessage}
	var got []gotFrame
	h := func(op byte, payload []byte) error {
		got = append(got, gotFrame{op, string(payload)})
		return nil
	}
	if err := r.feed(bytes.Clone(data[:i]), h); err != nil {
		return got, err
	}
	return got, r.feed(bytes.Clone(data[i:]), h)
}

func TestWSReaderKeepsNoBufferWhenIdle(t *testing.T) {
	r := wsReader{maxMessage: 1000}
	h := func(byte, []byte) error { return nil }
	f := cat(fragment(false, opText, "4ab"), fragment(true, opContinuation, "c"))
	for i := 1; i < len(f); i++ {
		if err := r.feed(bytes.Clone(f[:i]), h); err != nil {
			t.Fatal(err)
		}
		if err := r.feed(bytes.Clone(f[i:]), h); err != nil {
			t.Fatal(err)
		}
		if r.pending != nil || r.msg != nil {
			t.Fatalf("split %d: buffers kept after a complete message", i)
		}
	}
}

func TestWSReaderHandlerError(t *testing.T) {
	r := wsReader{maxMessage: 1000}
	boom := errors.New("boom")
	err := r.feed(cat(frame(opText, "4a"), frame(opText, "4b")), func(byte, []byte) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestUnmask(t *testing.T) {
	key := []byte{0xde, 0xad, 0xbe, 0xef}
	for n := range 40 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		want := bytes.Clone(b)
		for i := range want {
			want[i] ^= key[i%4]
		}
		unmask(b, key)
		if !bytes.Equal(b, want) {
			t.Fatalf("n=%d: got %x, want %x", n, b, want)
		}
	}
}

func TestFrameHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 0xffff, 0x10000, 1 << 20} {
		h := appendFrameHeader(nil, opBinary, n)
		if len(h) != frameHeaderLen(n) {
			t.Errorf("n=%d: header %d bytes, frameHeaderLen %d", n, len(h), frameHeaderLen(n))
		}
		// A server frame read back through a client-side parser (masked
		// with a zero key, which leaves the payload as is).
		f := append(bytes.Clone(h), make([]byte, n)...)
		f[1] |= 0x80
		f = append(f[:len(h)], append([]byte{0, 0, 0, 0}, f[len(h):]...)...)
		got, err := readAll(f, 1<<21, 0)
		if err != nil || len(got) != 1 || len(got[0].payload) != n {
			t.Errorf("n=%d: read back %d frames, %v", n, len(got), err)
		}
	}
	if got := closeFrame(1001); !bytes.Equal(got, []byte{0x88, 2, 0x03, 0xe9}) {
		t.Errorf("closeFrame = %x", got)
	}
	// RFC 6455 §1.3's example.
	if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("acceptKey = %s", got)
	}
}

// FuzzWSReader feeds arbitrary bytes, whole and in two chunks: the reader
// must not panic, must deliver the same frames either way, never a message
// over the limit nor a text message that is not UTF-8.
func FuzzWSReader(f *testing.F) {
	f.Add(frame(opText, "4hello"), uint16(100), uint8(3))
	f.Add(cat(fragment(false, opText, "4\xc3"), frame(opPing, "p"), fragment(true, opContinuation, "\xa9")), uint16(100), uint8(5))
	f.Add(clientFrame(true, opBinary, bytes.Repeat([]byte{1}, 300), [4]byte{9, 8, 7, 6}, -1), uint16(1000), uint8(100))
	f.Add(clientFrame(true, opText, []byte("4"), [4]byte{}, 126), uint16(100), uint8(1))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 1, 0}, uint16(100), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, max uint16, split uint8) {
		maxMessage := int(max)
		whole, errWhole := readAll(data, maxMessage, 0)
		i := 0
		if len(data) > 0 {
			i = int(split) % len(data)
		}
		two, errTwo := readTwo(data, maxMessage, i)
		if (errWhole == nil) != (errTwo == nil) || fmt.Sprint(whole) != fmt.Sprint(two) {
			t.Fatalf("whole: %q, %v; split at %d: %q, %v", whole, errWhole, i, two, errTwo)
		}
		for _, g := range whole {
			switch g.op {
			case opText, opBinary:
				if len(g.payload) > maxMessage {
					t.Fatalf("message of %d bytes over %d", len(g.payload), maxMessage)
				}
				if g.op == opText && !utf8.ValidString(g.payload) {
					t.Fatalf("text message not UTF-8: %q", g.payload)
				}
			case opClose, opPing, opPong:
				if len(g.payload) > 125 {
					t.Fatalf("control frame of %d bytes", len(g.payload))
				}
			default:
				t.Fatalf("opcode %d delivered", g.op)
			}
		}
	})
}
