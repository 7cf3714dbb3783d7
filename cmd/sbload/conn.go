package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Engine.IO v4 / Socket.IO v5 packets spoken over one websocket, one packet
// per text frame: "0{...}" open, "2" ping, "3" pong, "1" close, and Socket.IO
// packets prefixed with "4": "40/nsp,{...}" CONNECT, "44/nsp,{...}"
// CONNECT_ERROR, "42/nsp,[...]" EVENT, "43/nsp,<id>[...]" ACK.

// errStalled marks a connect whose namespace CONNECT reply never came.
var errStalled = errors.New("no namespace CONNECT reply in time")

// device is one socket of one user.
type device struct {
	idx    int // index in run.devices
	user   int
	target int

	ws  *wsConn
	wmu sync.Mutex // one writer at a time

	amu     sync.Mutex
	nextAck uint64
	acks    map[uint64]pendingAck
}

type pendingAck struct {
	sent time.Time
	seq  int
}

// handler receives what a device's read loop sees.
type handler interface {
	delivery(d *device, seq int, at time.Time)
	ack(d *device, p pendingAck, ok bool, code string, at time.Time)
	otherEvent(d *device, name string)
	broadcast(d *device, seq int, at time.Time)
	closed(d *device, err error)
}

// connectError is a refused namespace CONNECT (a 44 packet).
type connectError struct{ payload string }

func (e *connectError) Error() string { return "connect_error " + e.payload }

// dialer opens websockets from a rotating set of source addresses.
type dialer struct {
	namespace string
	sources   []netip.Addr
	timeout   time.Duration
	browser   bool // send browserHeaders
}

// browserHeaders are what a desktop Chrome sends, besides the websocket
// handshake itself, when a page of the site opens a websocket: a server
// that keeps the opening request pays for them per connection. The cookie
// stands for a site's session and preference cookies (about 500 bytes).
func browserHeaders(target string) http.Header {
	return http.Header{
		"Origin":          {"http://" + target},
		"User-Agent":      {"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		"Accept-Language": {"en-GB,en-US;q=0.9,en;q=0.8"},
		"Accept-Encoding": {"gzip, deflate, br, zstd"},
		"Cache-Control":   {"no-cache"},
		"Pragma":          {"no-cache"},
		"Cookie":          {"session=" + strings.Repeat("s0Me5e55i0nT0k3n", 16) + "; prefs=" + strings.Repeat("theme%3Ddark%26lang%3Den-GB%26", 8) + "; _ga=GA1.1.1234567890.1700000000; _ga_X1Y2Z3=GS1.1.1700000000.1.1.1700000001.0.0.0"},
	}
}

func (dl *dialer) netDialer(source int) *net.Dialer {
	nd := &net.Dialer{Timeout: dl.timeout}
	if len(dl.sources) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: dl.sources[source%len(dl.sources)].AsSlice()}
	}
	return nd
}

// connect dials target, completes the Engine.IO handshake and joins the
// namespace with token. The deadline bounds the whole exchange; when the
// websocket is up but no CONNECT reply comes by then, the error wraps
// errStalled.
func (dl *dialer) connect(ctx context.Context, d *device, target, token string, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var header http.Header
	if dl.browser {
		header = browserHeaders(target)
	}
	ws, err := dialWS(ctx, dl.netDialer(d.idx), target, "/socket.io/?EIO=4&transport=websocket", header)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	// The read deadline also unblocks the reads below when ctx ends.
	stop := context.AfterFunc(ctx, func() { ws.SetReadDeadline(time.Now()) })
	defer stop()
	ws.SetReadDeadline(deadline)
	open, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return fmt.Errorf("read open packet: %w", stalledIfTimeout(err))
	}
	if len(open) == 0 || open[0] != '0' {
		ws.Close()
		return fmt.Errorf("want an open packet, got %q", truncate(open))
	}
	// Like socket.io-client on a websocket-only connection: CONNECT goes out
	// at once, in reply to the open packet.
	pkt := make([]byte, 0, 64+len(token))
	pkt = append(pkt, "40"...)
	pkt = append(pkt, dl.namespace...)
	pkt = append(pkt, `,{"token":`...)
	pkt = strconv.AppendQuote(pkt, token)
	pkt = append(pkt, '}')
	if err := ws.WriteText(pkt); err != nil {
		ws.Close()
		return fmt.Errorf("write CONNECT: %w", err)
	}
	okPrefix := []byte("40" + dl.namespace + ",")
	errPrefix := []byte("44" + dl.namespace + ",")
	for {
		msg, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			return fmt.Errorf("await CONNECT reply: %w", stalledIfTimeout(err))
		}
		switch {
		case bytes.HasPrefix(msg, okPrefix):
			ws.SetReadDeadline(time.Time{})
			d.ws = ws
			return nil
		case bytes.HasPrefix(msg, errPrefix):
			ws.Close()
			return &connectError{payload: string(msg[len(errPrefix):])}
		case len(msg) == 1 && msg[0] == '2':
			if err := ws.WriteText([]byte{'3'}); err != nil {
				ws.Close()
				return fmt.Errorf("write pong: %w", err)
			}
		}
	}
}

func stalledIfTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w", errStalled, err)
	}
	return err
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// write sends one text frame.
func (d *device) write(p []byte) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return d.ws.WriteText(p)
}

// sendMessage emits sendMessage{to, text:"sb-<seq>"} with an ack id; sent is
// the time the ack latency counts from. buf is scratch space.
func (d *device) sendMessage(namespace, to string, seq int, sent time.Time, buf []byte) error {
	d.amu.Lock()
	if d.acks == nil {
		d.acks = make(map[uint64]pendingAck)
	}
	id := d.nextAck
	d.nextAck++
	d.acks[id] = pendingAck{sent: sent, seq: seq}
	d.amu.Unlock()

	buf = append(buf[:0], "42"...)
	buf = append(buf, namespace...)
	buf = append(buf, ',')
	buf = strconv.AppendUint(buf, id, 10)
	buf = append(buf, `["sendMessage",{"to":`...)
	buf = strconv.AppendQuote(buf, to)
	buf = append(buf, `,"text":"sb-`...)
	buf = strconv.AppendInt(buf, int64(seq), 10)
	buf = append(buf, `"}]`...)
	if err := d.write(buf); err != nil {
		d.amu.Lock()
		delete(d.acks, id)
		d.amu.Unlock()
		return err
	}
	return nil
}

// close ends the websocket; the read loop then returns.
func (d *device) close() {
	if d.ws != nil {
		d.ws.Close()
	}
}

// readLoop answers pings and hands deliveries and acks to h until the
// connection ends.
func (d *device) readLoop(namespace string, h handler) {
	evPrefix := []byte("42" + namespace + ",")
	ackPrefix := []byte("43" + namespace + ",")
	for {
		msg, err := d.ws.ReadMessage()
		if err != nil {
			h.closed(d, err)
			return
		}
		at := time.Now()
		switch {
		case bytes.HasPrefix(msg, evPrefix):
			d.onEvent(msg[len(evPrefix):], at, h)
		case bytes.HasPrefix(msg, ackPrefix):
			d.onAck(msg[len(ackPrefix):], at, h)
		case len(msg) == 1 && msg[0] == '2':
			if err := d.write([]byte{'3'}); err != nil {
				h.closed(d, err)
				return
			}
		case len(msg) == 1 && msg[0] == '1':
			h.closed(d, errors.New("server sent close packet"))
			return
		}
	}
}

const (
	markText     = `"text":"sb-`
	markDelivery = `"event":"message_sent"`
)

// onEvent handles the body of an EVENT packet, `["message",{...}]`. It finds
// the sequence number in the text without decoding the whole payload: the
// load tool shares the machine with the servers, so it spends as little CPU
// as it can.
func (d *device) onEvent(body []byte, at time.Time, h handler) {
	if bytes.Contains(body, []byte(markDelivery)) {
		if i := bytes.Index(body, []byte(markText)); i >= 0 {
			rest := body[i+len(markText):]
			j := bytes.IndexByte(rest, '"')
			if j > 0 {
				if seq, err := strconv.Atoi(string(rest[:j])); err == nil {
					h.delivery(d, seq, at)
					return
				}
			}
		}
	}
	if d.onBroadcast(body, at, h) {
		return
	}
	h.otherEvent(d, eventName(body))
}

// eventName returns the inner event of a `["message",{"event":NAME,...}]`
// body, or the outer one.
func eventName(body []byte) string {
	if i := bytes.Index(body, []byte(`"event":"`)); i >= 0 {
		rest := body[i+9:]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
	}
	return "?"
}

// onAck handles `<id>[{"ok":...}]`.
func (d *device) onAck(body []byte, at time.Time, h handler) {
	i := bytes.IndexByte(body, '[')
	if i <= 0 {
		return
	}
	id, err := strconv.ParseUint(string(body[:i]), 10, 64)
	if err != nil {
		return
	}
	d.amu.Lock()
	p, found := d.acks[id]
	delete(d.acks, id)
	d.amu.Unlock()
	if !found {
		return
	}
	rest := body[i:]
	// The message text is "sb-<seq>", so "ok":true can only be the reply's.
	if bytes.Contains(rest, []byte(`"ok":true`)) {
		h.ack(d, p, true, "", at)
		return
	}
	code := "?"
	if k := bytes.Index(rest, []byte(`"code":"`)); k >= 0 {
		c := rest[k+8:]
		if j := bytes.IndexByte(c, '"'); j >= 0 {
			code = string(c[:j])
		}
	}
	h.ack(d, p, false, code, at)
}
