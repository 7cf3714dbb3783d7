package redis

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// vector is one golden vector of testdata/notepack (see gen.js there).
type vector struct {
	Name    string `json:"name"`
	Channel string `json:"channel"`
	File    string `json:"file"`
	Value   any    `json:"value"`
	bytes   []byte
}

func loadVectors(t testing.TB) map[string]*vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "notepack", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list []*vector
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*vector, len(list))
	for _, v := range list {
		if v.bytes, err = os.ReadFile(filepath.Join("testdata", "notepack", v.File)); err != nil {
			t.Fatal(err)
		}
		out[v.Name] = v
	}
	return out
}

// expected turns the typed JSON of gen.js into the Go value the decoder
// must give.
func expected(t testing.TB, v any) any { return typedValue(t, v, true) }

// original turns it into the value Node encoded (NaN stays NaN).
func original(t testing.TB, v any) any { return typedValue(t, v, false) }

func typedValue(t testing.TB, v any, decoded bool) any {
	t.Helper()
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = typedValue(t, e, decoded)
		}
		return out
	case map[string]any:
		switch {
		case v["$json"] != nil:
			return v["$json"]
		case v["$map"] != nil:
			m := v["$map"].(map[string]any)
			out := make(map[string]any, len(m))
			for k, e := range m {
				out[k] = typedValue(t, e, decoded)
			}
			return out
		case v["$bin"] != nil:
			b, err := hex.DecodeString(v["$bin"].(string))
			if err != nil {
				t.Fatal(err)
			}
			return b
		case v["$binrepeat"] != nil:
			return bytes.Repeat([]byte{byte(v["$binrepeat"].(float64))}, int(v["n"].(float64)))
		case v["$repeat"] != nil:
			return strings.Repeat(v["$repeat"].(string), int(v["n"].(float64)))
		case v["$undefined"] != nil:
			return nil
		case len(v) == 1 && hasKey(v, "$date"):
			return v["$date"] // an ISO string, or nil for an invalid Date
		case v["$num"] != nil && decoded:
			// What JSON makes of them (see decodeMsgpack).
			switch v["$num"] {
			case "NaN", "Inf", "-Inf":
				return nil
			case "-0":
				return 0.0
			}
		case v["$num"] != nil:
			switch v["$num"] {
			case "NaN":
				return math.NaN()
			case "Inf":
				return math.Inf(1)
			case "-Inf":
				return math.Inf(-1)
			case "-0":
				return math.Copysign(0, -1)
			}
		}
		t.Fatalf("unknown typed value %v", v)
	}
	return v
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

// same compares decoded values, NaN equal to NaN.
func same(a, b any) bool {
	switch a := a.(type) {
	case float64:
		bf, ok := b.(float64)
		return ok && (a == bf || math.IsNaN(a) && math.IsNaN(bf))
	case []byte:
		bb, ok := b.([]byte)
		return ok && bytes.Equal(a, bb)
	case []any:
		bb, ok := b.([]any)
		if !ok || len(a) != len(bb) {
			return false
		}
		for i := range a {
			if !same(a[i], bb[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bb, ok := b.(map[string]any)
		if !ok || len(a) != len(bb) {
			return false
		}
		for k, v := range a {
			w, ok := bb[k]
			if !ok || !same(v, w) {
				return false
			}
		}
		return true
	}
	return a == b
}

// TestDecodeNotepackVectors decodes every msgpack vector Node produced into
// what notepack itself decodes it to.
func TestDecodeNotepackVectors(t *testing.T) {
	for name, v := range loadVectors(t) {
		if v.bytes[0] == '{' {
			continue // JSON
		}
		t.Run(name, func(t *testing.T) {
			got, err := decodeMsgpack(string(v.bytes))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if want := expected(t, v.Value); !same(got, want) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

// TestEncodeLikeNotepack encodes the values notepack encoded, and must
// write the same bytes.
func TestEncodeLikeNotepack(t *testing.T) {
	vs := loadVectors(t)
	for _, name := range []string{"notepack_numbers", "notepack_strings", "notepack_containers"} {
		t.Run(name, func(t *testing.T) {
			v := vs[name]
			got, err := appendMsgpack(nil, original(t, v.Value))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.bytes) {
				t.Fatalf("encoded\n%x\nnotepack\n%x", got, v.bytes)
			}
		})
	}
	t.Run("notepack_dates", func(t *testing.T) {
		v := vs["notepack_dates"]
		var dates []any
		for _, e := range expected(t, v.Value).([]any) {
			d, err := time.Parse("2006-01-02T15:04:05.000Z", e.(string))
			if err != nil {
				// The six-digit years: parse them by hand.
				var y, mo, dd int
				if _, err := fmt.Sscanf(e.(string)[:14], "%d-%d-%d", &y, &mo, &dd); err != nil {
					t.Fatalf("%s: %v", e, err)
				}
				d = time.Date(y, time.Month(mo), dd, 0, 0, 0, 0, time.UTC)
			}
			dates = append(dates, d)
		}
		got, err := appendMsgpack(nil, dates)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v.bytes) {
			t.Fatalf("encoded\n%x\nnotepack\n%x", got, v.bytes)
		}
	})
}

// TestDecodeLegacy covers what notepack 2.x (adapter 7.x and older, old
// emitters) wrote, and the extensions notepack hands back raw.
func TestDecodeLegacy(t *testing.T) {
	cases := []struct {
		name string
		hex  string
		want any
	}{
		{"undefined", "d40000", nil},
		{"undefined in an array", "92d40000c3", []any{nil, true}},
		{"undefined as a map value", "81a161d40000", map[string]any{"a": nil}},
		{"date of notepack 2", "d700" + "0000018bcfe5687b", "2023-11-14T22:13:20.123Z"},
		{"arraybuffer", "c70300010203", []byte{1, 2, 3}},
		{"arraybuffer ext16", "c800020009ff", []byte{9, 0xff}},
		{"other fixext", "d40507", []any{5.0, []byte{7}}},
		{"other ext", "c70205abcd", []any{5.0, []byte{0xab, 0xcd}}},
		{"float32", "ca3fc00000", 1.5},
		{"NaN", "cb7ff8000000000000", nil},
		{"-Infinity", "cbfff0000000000000", nil},
		{"-0", "cb8000000000000000", 0.0},
		{"uint64 above 2^53", "cf0020000000000001", float64(1<<53 + 1)},
		{"int64", "d3fff0000000000000", float64(-1 << 52)},
		{"numeric key", "8101a161", map[string]any{"1": "a"}},
		{"float key", "81cb3ff8000000000000c0", map[string]any{"1.5": nil}},
		{"bool and nil keys", "82c3c0c0c2", map[string]any{"true": nil, "null": false}},
		{"duplicate key, last wins", "82a16101a16102", map[string]any{"a": 2.0}},
		{"invalid date", "c70cff" + "00000000" + "7fffffffffffffff", nil},
		{"timestamp 96 before 1970", "c70cff" + "1dcd6500" + "ffffffffffffffff", "1969-12-31T23:59:59.500Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := hex.DecodeString(c.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeMsgpack(string(b))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !same(got, c.want) {
				t.Fatalf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

// TestDecodeRefuses covers hostile and broken input: errors, never a panic
// or a large allocation.
func TestDecodeRefuses(t *testing.T) {
	deep := strings.Repeat("\x91", maxMsgpackDepth+2) + "\xc0"
	cases := map[string]string{
		"empty":                      "",
		"unused type byte":           "\xc1",
		"truncated str":              "\xa5abc",
		"str32 claims 4 GiB":         "\xdb\xff\xff\xff\xffab",
		"array32 claims 4G elements": "\xdd\xff\xff\xff\xff\xc0",
		"map32 claims 4G entries":    "\xdf\xff\xff\xff\xff\xc0\xc0",
		"map claims more than fits":  "\x82\xa1a\xc0",
		"bin32 claims 4 GiB":         "\xc6\xff\xff\xff\xff",
		"ext32 claims 4 GiB":         "\xc9\xff\xff\xff\xff\x00",
		"truncated uint64":           "\xcf\x00\x01",
		"truncated fixext":           "\xd7\xff\x00",
		"timestamp 96 wrong length":  "\xc7\x08\xff\x00\x00\x00\x00\x00\x00\x00\x00",
		"trailing bytes":             "\xc0\xc0",
		"array key":                  "\x81\x90\xc0",
		"too deep":                   deep,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if v, err := decodeMsgpack(in); err == nil {
				t.Fatalf("decoded %#v, want an error", v)
			}
		})
	}
	// Exactly at the limit is fine.
	ok := strings.Repeat("\x91", maxMsgpackDepth) + "\xc0"
	if _, err := decodeMsgpack(ok); err != nil {
		t.Fatalf("depth %d: %v", maxMsgpackDepth, err)
	}
}

func TestRoundTrip(t *testing.T) {
	type point struct {
		X int    `json:"x"`
		Y string `json:"y"`
	}
	big := strings.Repeat("s", 70000)
	cases := []struct {
		in   any
		want any
	}{
		{nil, nil},
		{true, true},
		{"", ""},
		{big, big},
		{[]byte{}, []byte{}},
		{bytes.Repeat([]byte{1}, 70000), bytes.Repeat([]byte{1}, 70000)},
		{42, 42.0},
		{int64(-1 << 40), float64(-1 << 40)},
		{uint64(1 << 40), float64(1 << 40)},
		{int8(-5), -5.0},
		{float32(0.5), 0.5},
		{json.Number("12.5"), 12.5},
		{math.Copysign(0, -1), 0.0},
		{1e300, 1e300},
		{-1e300, -1e300},
		{[]string{"a", "b"}, []any{"a", "b"}},
		{map[string]any{"z": 1, "a": []any{"x", nil}}, map[string]any{"z": 1.0, "a": []any{"x", nil}}},
		{point{1, "two"}, map[string]any{"x": 1.0, "y": "two"}},
		{map[string]int{"n": 3}, map[string]any{"n": 3.0}},
		{time.UnixMilli(1700000000123), "2023-11-14T22:13:20.123Z"},
		{time.Date(12000, 1, 2, 3, 4, 5, 6e6, time.UTC), "+012000-01-02T03:04:05.006Z"},
		{time.Date(-5, 1, 2, 3, 4, 5, 0, time.UTC), "-000005-01-02T03:04:05.000Z"},
		{slices.Repeat([]any{1.0}, 70000), slices.Repeat([]any{1.0}, 70000)},
		{mpMap{{"b", 1}, {"a", 2}}, map[string]any{"b": 1.0, "a": 2.0}},
	}
	for i, c := range cases {
		b, err := appendMsgpack(nil, c.in)
		if err != nil {
			t.Fatalf("%d: encode %T: %v", i, c.in, err)
		}
		got, err := decodeMsgpack(string(b))
		if err != nil {
			t.Fatalf("%d: decode %T: %v", i, c.in, err)
		}
		if !same(got, c.want) {
			t.Fatalf("%d: %T round trip: got %#v, want %#v", i, c.in, got, c.want)
		}
	}
	big16 := make(map[string]any, 70000)
	for i := range 70000 {
		big16[fmt.Sprint(i)] = nil
	}
	b, err := appendMsgpack(nil, big16)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xdf {
		t.Fatalf("a map of 70000 entries starts with %x, want map 32", b[0])
	}
	got, err := decodeMsgpack(string(b))
	if err != nil || !same(got, big16) {
		t.Fatalf("map 32 round trip: %v", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, err := appendMsgpack(nil, cyclic); err == nil {
		t.Fatal("a cyclic map encoded")
	}
	if _, err := appendMsgpack(nil, make(chan int)); err == nil {
		t.Fatal("a channel encoded")
	}
}

func TestJSNumber(t *testing.T) {
	cases := map[float64]string{
		0: "0", 1: "1", -1: "-1", 1.5: "1.5", 0.1: "0.1", 123456789: "123456789",
		1e20: "100000000000000000000", 1e21: "1e+21", 1.5e21: "1.5e+21", 1e-6: "0.000001",
		1e-7: "1e-7", 1.25e-7: "1.25e-7", -2.5e-10: "-2.5e-10", 9007199254740993: "9007199254740992",
		math.Inf(1): "Infinity", math.Inf(-1): "-Infinity", math.NaN(): "NaN", 123.456: "123.456",
	}
	for f, want := range cases {
		if got := jsNumber(f); got != want {
			t.Errorf("jsNumber(%v) = %q, want %q", f, got, want)
		}
	}
}

// FuzzDecodeMsgpack: the decoder never panics, and what it decodes encodes
// and decodes again to the same value. The seed corpus in
// testdata/fuzz/FuzzDecodeMsgpack holds the bytes Node publishes.
func FuzzDecodeMsgpack(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		// Recovery's peek reads broadcasts without decoding them: it must
		// not panic on anything, and skip must span exactly what decode
		// reads.
		_, _, _ = peekStamp(string(in))
		d := mpDecoder{s: string(in)}
		skipErr := d.skip(0)
		v, err := decodeMsgpack(string(in))
		if err != nil {
			return
		}
		if skipErr != nil || d.i != len(in) {
			t.Fatalf("skip of %x: %v, at %d of %d", in, skipErr, d.i, len(in))
		}
		b, err := appendMsgpack(nil, v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", v, err)
		}
		w, err := decodeMsgpack(string(b))
		if err != nil {
			t.Fatalf("decode re-encoded %x: %v", b, err)
		}
		if !same(v, w) {
			t.Fatalf("round trip changed %#v into %#v", v, w)
		}
	})
}
