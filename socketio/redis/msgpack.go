package redis

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MessagePack as Node's notepack.io (3.x, and what 2.x wrote) speaks it:
// the format of every broadcast, of broadcasts with acknowledgements and of
// their answers. The codec is this package's own, with nothing registered
// globally.
//
// Decoding gives the values a JSON decoder gives, so that a value means the
// same whether it came over msgpack or over a JSON request:
//
//   - every number is a float64. JavaScript has no other number, so Node
//     sends nothing a float64 cannot hold (notepack reads uint64 and int64
//     into a double too, rounding the same way); the socketio package holds
//     JSON numbers as float64 as well. NaN and the infinities become nil,
//     and -0 0, as JSON.stringify writes them: a client gets what Node
//     would send it (encoding/json would refuse the packet);
//   - maps are map[string]any (a number, boolean or nil key becomes the
//     string JavaScript would make of it), arrays []any, bin []byte (a copy);
//   - a timestamp (extension -1, how a Date travels since adapter 8.0) and
//     notepack 2.x's date (fixext 8 of type 0) become the string
//     Date.toISOString gives ("2023-11-14T22:13:20.123Z"): Node sends a
//     Date to a client as that string, and so the same delivery from a Go
//     process is byte for byte what Node's would be. A time.Time would
//     marshal differently ("2023-11-14T22:13:20Z"). A date outside the
//     range of JavaScript's Date becomes nil, as JSON.stringify writes null;
//   - notepack 2.x's undefined (fixext 1 of type 0: d4 00 00) becomes nil,
//     and its ArrayBuffer (ext of type 0) []byte; any other extension
//     becomes []any{type, data}, as notepack gives it.
//
// The decoder trusts nothing: nesting is bounded by maxMsgpackDepth, every
// length is checked against the bytes that remain before anything is
// allocated (an array element or a map entry takes at least one byte, so
// what is allocated stays proportional to the input), trailing bytes are an
// error, and it never panics.

// maxMsgpackDepth bounds nesting, in both directions. Socket.IO payloads
// from clients are limited to 64 levels by package socketio; a broadcast
// wraps them in three more.
const maxMsgpackDepth = 100

var (
	errMsgpackShort    = errors.New("msgpack: unexpected end of data")
	errMsgpackDepth    = errors.New("msgpack: nested too deeply")
	errMsgpackTrailing = errors.New("msgpack: trailing bytes")
)

// decodeMsgpack decodes one value that must span all of s.
func decodeMsgpack(s string) (any, error) {
	d := mpDecoder{s: s}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.i != len(d.s) {
		return nil, errMsgpackTrailing
	}
	return v, nil
}

// mpDecoder reads from a string, so that a message from Redis is decoded
// without a copy and its strings are slices of it.
type mpDecoder struct {
	s string
	i int
}

func (d *mpDecoder) remaining() int { return len(d.s) - d.i }

func (d *mpDecoder) take(n uint64) (string, error) {
	if n > uint64(d.remaining()) {
		return "", errMsgpackShort
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s, nil
}

func (d *mpDecoder) uint(size int) (uint64, error) {
	b, err := d.take(uint64(size))
	if err != nil {
		return 0, err
	}
	var u uint64
	for i := 0; i < size; i++ {
		u = u<<8 | uint64(b[i])
	}
	return u, nil
}

func (d *mpDecoder) value(depth int) (any, error) {
	if depth > maxMsgpackDepth {
		return nil, errMsgpackDepth
	}
	if d.i >= len(d.s) {
		return nil, errMsgpackShort
	}
	c := d.s[d.i]
	d.i++
	switch {
	case c < 0x80: // positive fixint
		return float64(c), nil
	case c < 0x90:
		return d.mapN(uint64(c&0x0f), depth)
	case c < 0xa0:
		return d.arrayN(uint64(c&0x0f), depth)
	case c < 0xc0:
		return d.take(uint64(c & 0x1f))
	case c >= 0xe0: // negative fixint
		return float64(int8(c)), nil
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6: // bin 8, 16, 32
		n, err := d.uint(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(n)
		return []byte(b), err
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
		n, err := d.uint(1 << (c - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.ext(n, c == 0xc7)
	case 0xca:
		u, err := d.uint(4)
		return jsonNumber(float64(math.Float32frombits(uint32(u)))), err
	case 0xcb:
		u, err := d.uint(8)
		return jsonNumber(math.Float64frombits(u)), err
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8, 16, 32, 64
		u, err := d.uint(1 << (c - 0xcc))
		return float64(u), err
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8, 16, 32, 64
		size := 1 << (c - 0xd0)
		u, err := d.uint(size)
		shift := 64 - 8*size
		return float64(int64(u<<shift) >> shift), err
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return d.fixext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb: // str 8, 16, 32
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.take(n)
	case 0xdc, 0xdd: // array 16, 32
		n, err := d.uint(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayN(n, depth)
	case 0xde, 0xdf: // map 16, 32
		n, err := d.uint(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapN(n, depth)
	}
	return nil, fmt.Errorf("msgpack: unknown type byte 0x%02x", c)
}

// jsonNumber is what JSON makes of a number: NaN and the infinities
// become null (JSON.stringify writes null; encoding/json would refuse the
// whole packet), -0 becomes 0.
func jsonNumber(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	if f == 0 {
		return 0.0
	}
	return f
}

func (d *mpDecoder) arrayN(n uint64, depth int) (any, error) {
	if n > uint64(d.remaining()) {
		return nil, errMsgpackShort
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *mpDecoder) mapN(n uint64, depth int) (any, error) {
	if n > uint64(d.remaining())/2 {
		return nil, errMsgpackShort
	}
	m := make(map[string]any, n)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		key, ok := jsKey(k)
		if !ok {
			return nil, fmt.Errorf("msgpack: unsupported map key of type %T", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
	return m, nil
}

// jsKey is the property name JavaScript makes of a decoded key.
func jsKey(k any) (string, bool) {
	switch k := k.(type) {
	case string:
		return k, true
	case float64:
		return jsNumber(k), true
	case bool:
		return strconv.FormatBool(k), true
	case nil:
		return "null", true
	}
	return "", false
}

// fixext reads a fixext of size bytes (the type byte is next).
func (d *mpDecoder) fixext(size int) (any, error) {
	t, err := d.take(1)
	if err != nil {
		return nil, err
	}
	typ := int8(t[0])
	data, err := d.take(uint64(size))
	if err != nil {
		return nil, err
	}
	switch {
	case size == 1 && typ == 0: // notepack 2.x: undefined
		return nil, nil
	case size == 4 && typ == -1: // timestamp 32
		return jsDate(int64(binary.BigEndian.Uint32([]byte(data))), 0), nil
	case size == 8 && typ == -1: // timestamp 64
		u := binary.BigEndian.Uint64([]byte(data))
		return jsDate(int64(u&(1<<34-1)), int64(u>>34)), nil
	case size == 8 && typ == 0: // notepack 2.x: a Date, in milliseconds
		ms := int64(binary.BigEndian.Uint64([]byte(data)))
		return jsDateMillis(float64(ms)), nil
	}
	return []any{float64(typ), []byte(data)}, nil
}

// ext reads an ext of n bytes (the type byte is next); ext8 carries the
// 96-bit timestamp.
func (d *mpDecoder) ext(n uint64, ext8 bool) (any, error) {
	t, err := d.take(1)
	if err != nil {
		return nil, err
	}
	typ := int8(t[0])
	data, err := d.take(n)
	if err != nil {
		return nil, err
	}
	switch {
	case typ == 0: // notepack: an ArrayBuffer
		return []byte(data), nil
	case ext8 && typ == -1:
		if n != 12 {
			return nil, errors.New("msgpack: timestamp 96 of a wrong length")
		}
		ns := binary.BigEndian.Uint32([]byte(data[:4]))
		sec := int64(binary.BigEndian.Uint64([]byte(data[4:])))
		return jsDate(sec, int64(ns)), nil
	}
	return []any{float64(typ), []byte(data)}, nil
}

// maxJSDate is the largest magnitude of a JavaScript Date, in milliseconds.
const maxJSDate = 8.64e15

// jsDate is what a JavaScript Date of sec seconds and ns nanoseconds
// becomes in JSON (nil when the Date would be invalid).
func jsDate(sec, ns int64) any {
	return jsDateMillis(float64(sec)*1e3 + float64(ns)/1e6)
}

func jsDateMillis(ms float64) any {
	ms = math.Trunc(ms) // a Date holds whole milliseconds (TimeClip)
	if math.IsNaN(ms) || math.Abs(ms) > maxJSDate {
		return nil
	}
	return isoString(time.UnixMilli(int64(ms)).UTC())
}

// isoString formats t as Date.prototype.toISOString does: milliseconds
// always, and a six-digit signed year outside 0000-9999.
func isoString(t time.Time) string {
	var b strings.Builder
	y := t.Year()
	switch {
	case y < 0:
		fmt.Fprintf(&b, "-%06d", -y)
	case y > 9999:
		fmt.Fprintf(&b, "+%06d", y)
	default:
		fmt.Fprintf(&b, "%04d", y)
	}
	fmt.Fprintf(&b, "-%02d-%02dT%02d:%02d:%02d.%03dZ", t.Month(), t.Day(),
		t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e6)
	return b.String()
}

// jsNumber formats f as JavaScript's Number.prototype.toString does (a
// numeric room name, a numeric map key).
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// The shortest digits that round-trip, and the decimal exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddddde±xx
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	n := x + 1 // the decimal point sits after n digits
	k := len(digits)
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	expSign := "+"
	if n-1 < 0 {
		expSign = "-"
	}
	m := digits[:1]
	if k > 1 {
		m += "." + digits[1:]
	}
	return sign + m + "e" + expSign + strconv.Itoa(abs(n-1))
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// mpMap is a map whose keys are written in order: the adapter's own
// envelopes, written field for field as Node writes them.
type mpMap []mpField

type mpField struct {
	key string
	val any
}

// appendMsgpack appends the encoding of v. It writes what notepack writes
// for the same JavaScript value: the smallest integer encoding for a whole
// number (also a float64, -0 included, as notepack does), float 64
// otherwise, str 8 as well as fixstr, bin (never str) for []byte, a
// timestamp for a time.Time. The keys of a map[string]any are sorted, so
// that the bytes are reproducible. Values of other types take a round trip
// through encoding/json (so a []byte inside a struct becomes base64 text).
func appendMsgpack(b []byte, v any) ([]byte, error) {
	return appendMsgpackDepth(b, v, 0)
}

func appendMsgpackDepth(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxMsgpackDepth {
		return b, errMsgpackDepth
	}
	switch v := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		if v {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case string:
		return appendMsgpackString(b, v), nil
	case []byte:
		n := len(v)
		switch {
		case n < 1<<8:
			b = append(b, 0xc4, byte(n))
		case n < 1<<16:
			b = append(b, 0xc5, byte(n>>8), byte(n))
		case uint64(n) < 1<<32:
			b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
		default:
			return b, errors.New("msgpack: binary data too long")
		}
		return append(b, v...), nil
	case float64:
		return appendMsgpackFloat(b, v), nil
	case float32:
		return appendMsgpackFloat(b, float64(v)), nil
	case int:
		return appendMsgpackInt(b, int64(v)), nil
	case int8:
		return appendMsgpackInt(b, int64(v)), nil
	case int16:
		return appendMsgpackInt(b, int64(v)), nil
	case int32:
		return appendMsgpackInt(b, int64(v)), nil
	case int64:
		return appendMsgpackInt(b, v), nil
	case uint:
		return appendMsgpackUint(b, uint64(v)), nil
	case uint8:
		return appendMsgpackUint(b, uint64(v)), nil
	case uint16:
		return appendMsgpackUint(b, uint64(v)), nil
	case uint32:
		return appendMsgpackUint(b, uint64(v)), nil
	case uint64:
		return appendMsgpackUint(b, v), nil
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return b, fmt.Errorf("msgpack: %w", err)
		}
		return appendMsgpackFloat(b, f), nil
	case time.Time:
		return appendMsgpackTime(b, v), nil
	case []any:
		b = appendMsgpackLen(b, len(v), 0x90, 0xdc)
		for _, e := range v {
			var err error
			if b, err = appendMsgpackDepth(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []string:
		b = appendMsgpackLen(b, len(v), 0x90, 0xdc)
		for _, e := range v {
			b = appendMsgpackString(b, e)
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = appendMsgpackLen(b, len(v), 0x80, 0xde)
		for _, k := range keys {
			b = appendMsgpackString(b, k)
			var err error
			if b, err = appendMsgpackDepth(b, v[k], depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case mpMap:
		b = appendMsgpackLen(b, len(v), 0x80, 0xde)
		for _, f := range v {
			b = appendMsgpackString(b, f.key)
			var err error
			if b, err = appendMsgpackDepth(b, f.val, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	// Anything else is what encoding/json makes of it.
	raw, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("msgpack: %w", err)
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return b, fmt.Errorf("msgpack: %w", err)
	}
	return appendMsgpackDepth(b, generic, depth)
}

func appendMsgpackString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 1<<8:
		b = append(b, 0xd9, byte(n))
	case n < 1<<16:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// appendMsgpackLen writes an array or map header: fix (under 16), 16 or 32
// bits (fix16 is the 16-bit type byte, fix16+1 the 32-bit one).
func appendMsgpackLen(b []byte, n int, fix, fix16 byte) []byte {
	switch {
	case n < 16:
		return append(b, fix|byte(n))
	case n < 1<<16:
		return append(b, fix16, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint32(append(b, fix16+1), uint32(n))
}

func appendMsgpackFloat(b []byte, f float64) []byte {
	if f == math.Trunc(f) && !math.IsInf(f, 0) {
		switch {
		case f >= 0 && f < 1<<64:
			return appendMsgpackUint(b, uint64(f))
		case f < 0 && f >= -(1<<63):
			return appendMsgpackInt(b, int64(f))
		}
	}
	bits := math.Float64bits(f)
	if f != f {
		bits = 0x7ff8000000000000 // JavaScript's NaN
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcb), bits)
}

func appendMsgpackUint(b []byte, u uint64) []byte {
	switch {
	case u < 0x80:
		return append(b, byte(u))
	case u < 1<<8:
		return append(b, 0xcc, byte(u))
	case u < 1<<16:
		return append(b, 0xcd, byte(u>>8), byte(u))
	case u < 1<<32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(u))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), u)
}

func appendMsgpackInt(b []byte, i int64) []byte {
	switch {
	case i >= 0:
		return appendMsgpackUint(b, uint64(i))
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, 0xd0, byte(i))
	case i >= math.MinInt16:
		return append(b, 0xd1, byte(i>>8), byte(i))
	case i >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(i))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(i))
}

// appendMsgpackTime writes the timestamp extension as notepack writes a
// Date: 32 bits when whole seconds fit, 64 bits up to 2^34 s, else 96.
func appendMsgpackTime(b []byte, t time.Time) []byte {
	sec, ns := t.Unix(), int64(t.Nanosecond())
	if sec >= 0 && sec < 1<<34 {
		if ns == 0 && sec < 1<<32 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(sec))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), uint64(ns)<<34|uint64(sec))
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xc7, 12, 0xff), uint32(ns))
	return binary.BigEndian.AppendUint64(b, uint64(sec))
}

// peekUID reads the first element of a broadcast, [uid, packet, opts], if
// it is a string, without decoding the rest.
func peekUID(s string) (string, bool) {
	d := mpDecoder{s: s}
	if d.remaining() < 1 {
		return "", false
	}
	switch b := d.s[0]; {
	case b >= 0x90 && b <= 0x9f:
		d.i = 1
	case b == 0xdc:
		d.i = 3
	case b == 0xdd:
		d.i = 5
	default:
		return "", false
	}
	if d.remaining() < 1 {
		return "", false
	}
	var n uint64
	switch b := d.s[d.i]; {
	case b >= 0xa0 && b <= 0xbf:
		n = uint64(b & 0x1f)
		d.i++
	case b == 0xd9 && d.remaining() >= 2:
		n = uint64(d.s[d.i+1])
		d.i += 2
	default:
		return "", false
	}
	uid, err := d.take(n)
	return uid, err == nil
}

// skip advances over one value without decoding it.
func (d *mpDecoder) skip(depth int) error {
	if depth > maxMsgpackDepth {
		return errMsgpackDepth
	}
	if d.i >= len(d.s) {
		return errMsgpackShort
	}
	c := d.s[d.i]
	d.i++
	var n uint64 // bytes to skip, or elements for containers
	var err error
	switch {
	case c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return nil
	case c < 0x90:
		return d.skipN(2*uint64(c&0x0f), depth)
	case c < 0xa0:
		return d.skipN(uint64(c&0x0f), depth)
	case c < 0xc0:
		n = uint64(c & 0x1f)
	case c == 0xc4 || c == 0xc5 || c == 0xc6:
		n, err = d.uint(1 << (c - 0xc4))
	case c == 0xc7 || c == 0xc8 || c == 0xc9:
		n, err = d.uint(1 << (c - 0xc7))
		n++ // the type byte
	case c == 0xca:
		n = 4
	case c == 0xcb:
		n = 8
	case c >= 0xcc && c <= 0xcf:
		n = 1 << (c - 0xcc)
	case c >= 0xd0 && c <= 0xd3:
		n = 1 << (c - 0xd0)
	case c >= 0xd4 && c <= 0xd8:
		n = 1 + 1<<(c-0xd4)
	case c == 0xd9 || c == 0xda || c == 0xdb:
		n, err = d.uint(1 << (c - 0xd9))
	case c == 0xdc || c == 0xdd:
		if n, err = d.uint(2 << (c - 0xdc)); err != nil {
			return err
		}
		return d.skipN(n, depth)
	case c == 0xde || c == 0xdf:
		if n, err = d.uint(2 << (c - 0xde)); err != nil {
			return err
		}
		return d.skipN(2*n, depth)
	default:
		return fmt.Errorf("msgpack: unknown type byte 0x%02x", c)
	}
	if err != nil {
		return err
	}
	_, err = d.take(n)
	return err
}

func (d *mpDecoder) skipN(n uint64, depth int) error {
	if n > uint64(d.remaining()) {
		return errMsgpackShort
	}
	for range n {
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

// header reads an array or map header (as kind 0x90 or 0x80) and its
// length.
func (d *mpDecoder) header() (kind byte, n uint64, err error) {
	if d.i >= len(d.s) {
		return 0, 0, errMsgpackShort
	}
	c := d.s[d.i]
	d.i++
	switch {
	case c >= 0x80 && c <= 0x8f:
		return 0x80, uint64(c & 0x0f), nil
	case c >= 0x90 && c <= 0x9f:
		return 0x90, uint64(c & 0x0f), nil
	case c == 0xdc || c == 0xdd:
		n, err = d.uint(2 << (c - 0xdc))
		return 0x90, n, err
	case c == 0xde || c == 0xdf:
		n, err = d.uint(2 << (c - 0xde))
		return 0x80, n, err
	}
	return 0, 0, fmt.Errorf("msgpack: 0x%02x is not an array or a map", c)
}

// str reads a string value.
func (d *mpDecoder) str() (string, error) {
	if d.i >= len(d.s) {
		return "", errMsgpackShort
	}
	c := d.s[d.i]
	switch {
	case c >= 0xa0 && c <= 0xbf:
		d.i++
		return d.take(uint64(c & 0x1f))
	case c == 0xd9 || c == 0xda || c == 0xdb:
		d.i++
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return "", err
		}
		return d.take(n)
	}
	return "", fmt.Errorf("msgpack: 0x%02x is not a string", c)
}

// peekStamp reads, without decoding the rest, the last argument of a
// broadcast's packet ([uid, {…, data: […, last], …}, {…, flags: {volatile}}])
// when it is a string, and whether the broadcast is volatile.
func peekStamp(s string) (last string, volatile bool, ok bool) {
	d := mpDecoder{s: s}
	kind, n, err := d.header()
	if err != nil || kind != 0x90 || n < 3 {
		return "", false, false
	}
	if d.skip(1) != nil { // uid
		return "", false, false
	}
	kind, n, err = d.header()
	if err != nil || kind != 0x80 {
		return "", false, false
	}
	found := false
	for range n {
		k, err := d.str()
		if err != nil {
			return "", false, false
		}
		if k != "data" {
			if d.skip(2) != nil {
				return "", false, false
			}
			continue
		}
		kind, m, err := d.header()
		if err != nil || kind != 0x90 || m == 0 || d.skipN(m-1, 2) != nil {
			return "", false, false
		}
		if last, err = d.str(); err != nil {
			return "", false, false
		}
		found = true
	}
	if !found {
		return "", false, false
	}
	kind, n, err = d.header() // opts
	if err != nil || kind != 0x80 {
		return last, false, true
	}
	for range n {
		k, err := d.str()
		if err != nil {
			return last, false, true
		}
		if k != "flags" {
			if d.skip(2) != nil {
				return last, false, true
			}
			continue
		}
		kind, m, err := d.header()
		if err != nil || kind != 0x80 {
			return last, false, true
		}
		for range m {
			fk, err := d.str()
			if err != nil {
				return last, false, true
			}
			if fk == "volatile" && d.i < len(d.s) && d.s[d.i] == 0xc3 {
				volatile = true
			}
			if d.skip(3) != nil {
				return last, volatile, true
			}
		}
		return last, volatile, true
	}
	return last, false, true
}
