package socketio

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/engineio"
)

// waitLimit bounds every wait for an event, so that a broken test fails
// instead of hanging; it is never what a test measures.
const waitLimit = 10 * time.Second

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

type testServer struct {
	srv *Server
	ts  *httptest.Server
	url string
	hc  *http.Client
	tr  *http.Transport
}

// startServer starts a Socket.IO server on a random port; setup runs
// before it serves. The test's cleanup closes it.
func startServer(t testing.TB, eopts engineio.Options, opts Options, setup func(*Server)) *testServer {
	t.Helper()
	if eopts.Pollers == 0 {
		eopts.Pollers = 1
	}
	eopts.AllowEIO3 = true
	srv, err := NewServer(eopts, opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(srv)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", srv)
	ts := httptest.NewServer(mux)
	tr := &http.Transport{}
	s := &testServer{srv: srv, ts: ts, url: ts.URL + "/socket.io/", tr: tr, hc: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_ = srv.Close(ctx)
		tr.CloseIdleConnections()
		ts.Close()
	})
	return s
}

// client is a Socket.IO client over a websocket, speaking the raw
// protocol: Engine.IO v4 (Socket.IO v5) or v3 (Socket.IO v4).
type tclient struct {
	t   testing.TB
	c   *websocket.Conn
	eio int
	sid string // Engine.IO session id
}

func (s *testServer) dial(t testing.TB, eio int) *tclient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + fmt.Sprintf("?EIO=%d&transport=websocket", eio)
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &tclient{t: t, c: c, eio: eio}
	typ, b := cl.readFrame()
	if typ != websocket.TextMessage || len(b) == 0 || b[0] != '0' {
		t.Fatalf("open packet %q", b)
	}
	var open struct{ Sid string }
	_ = json.Unmarshal(b[1:], &open)
	cl.sid = open.Sid
	return cl
}

func (c *tclient) readFrame() (int, []byte) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(waitLimit))
	typ, b, err := c.c.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return typ, b
}

// read returns the next Socket.IO message: text (the packet) or binary (an
// attachment, as "bin:<hex>"). It answers Engine.IO pings.
func (c *tclient) read() string {
	c.t.Helper()
	for {
		typ, b := c.readFrame()
		if typ == websocket.BinaryMessage {
			if c.eio == 3 {
				b = b[1:]
			}
			return fmt.Sprintf("bin:%x", b)
		}
		switch b[0] {
		case '4':
			return string(b[1:])
		case '2':
			c.writeRaw("3")
		case '6':
		default:
			c.t.Fatalf("unexpected Engine.IO packet %q", b)
		}
	}
}

// expect reads the next message and compares it.
func (c *tclient) expect(want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Fatalf("got %s, want %s", got, want)
	}
}

// expectPrefix reads the next message and checks its start.
func (c *tclient) expectPrefix(prefix string) string {
	c.t.Helper()
	got := c.read()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("got %s, want %s...", got, prefix)
	}
	return got
}

func (c *tclient) writeRaw(s string) {
	c.t.Helper()
	if err := c.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// send sends a Socket.IO packet.
func (c *tclient) send(packet string) { c.t.Helper(); c.writeRaw("4" + packet) }

// sendBinary sends an attachment.
func (c *tclient) sendBinary(b []byte) {
	c.t.Helper()
	if c.eio == 3 {
		b = append([]byte{4}, b...)
	}
	if err := c.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

// connect joins nsp ("/" or "/admin") with the CONNECT packet of the
// protocol and returns the socket id (v5) from the answer.
func (c *tclient) connect(nsp, auth string) string {
	c.t.Helper()
	prefix := ""
	if nsp != "/" {
		prefix = nsp + ","
	}
	if c.eio == 3 {
		c.send("0" + prefix)
		c.expect("0" + prefix)
		return ""
	}
	c.send("0" + prefix + auth)
	got := c.expectPrefix("0" + prefix)
	var data struct{ Sid string }
	if err := json.Unmarshal([]byte(got[len("0"+prefix):]), &data); err != nil || data.Sid == "" {
		c.t.Fatalf("CONNECT answer %s", got)
	}
	return data.Sid
}

// closed waits for the server to close the connection and returns the
// close code (1006 when it just went away).
func (c *tclient) closed() int {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		_, b, err := c.c.ReadMessage()
		if err == nil {
			if len(b) > 0 && b[0] == '2' {
				_ = c.c.WriteMessage(websocket.TextMessage, []byte("3"))
			}
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		if strings.Contains(err.Error(), "timeout") {
			c.t.Fatalf("the connection was not closed: %v", err)
		}
		return websocket.CloseAbnormalClosure
	}
}

// poller is a Socket.IO client over long-polling.
type poller struct {
	t   testing.TB
	s   *testServer
	eio int
	sid string
}

func (s *testServer) poll(t testing.TB, eio int) *poller {
	t.Helper()
	p := &poller{t: t, s: s, eio: eio}
	status, body := p.do(http.MethodGet, s.url+fmt.Sprintf("?EIO=%d&transport=polling&b64=1", eio), "")
	if status != 200 {
		t.Fatalf("handshake: %d %s", status, body)
	}
	msgs := p.split(body)
	var open struct{ Sid string }
	if len(msgs) == 0 || msgs[0][0] != '0' || json.Unmarshal([]byte(msgs[0][1:]), &open) != nil {
		t.Fatalf("handshake %q", body)
	}
	p.sid = open.Sid
	return p
}

func (p *poller) do(method, url, body string) (int, string) {
	p.t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	resp, err := p.s.hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *poller) query() string {
	return p.s.url + fmt.Sprintf("?EIO=%d&transport=polling&sid=%s&b64=1", p.eio, p.sid)
}

// split cuts a text payload into Engine.IO packets.
func (p *poller) split(body string) []string {
	if p.eio == 4 {
		return strings.Split(body, "\x1e")
	}
	var out []string
	for body != "" {
		n, rest, _ := strings.Cut(body, ":")
		var units int
		fmt.Sscan(n, &units)
		// ASCII in these tests: units are bytes.
		out = append(out, rest[:units])
		body = rest[units:]
	}
	return out
}

// get polls once and returns the Engine.IO packets.
func (p *poller) get() []string {
	p.t.Helper()
	status, body := p.do(http.MethodGet, p.query(), "")
	if status != 200 {
		p.t.Fatalf("GET: %d %s", status, body)
	}
	return p.split(body)
}

func (p *poller) getAsync() <-chan []string {
	ch := make(chan []string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, p.query(), nil)
		resp, err := p.s.hc.Do(req)
		if err != nil {
			ch <- []string{"error: " + err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			ch <- []string{fmt.Sprintf("status %d: %s", resp.StatusCode, b)}
			return
		}
		ch <- p.split(string(b))
	}()
	return ch
}

// send posts Socket.IO packets.
func (p *poller) send(packets ...string) {
	p.t.Helper()
	var b strings.Builder
	for i, pk := range packets {
		if p.eio == 3 {
			fmt.Fprintf(&b, "%d:4%s", len(pk)+1, pk)
		} else {
			if i > 0 {
				b.WriteByte(0x1e)
			}
			b.WriteString("4" + pk)
		}
	}
	status, body := p.do(http.MethodPost, p.query(), b.String())
	if status != 200 {
		p.t.Fatalf("POST: %d %s", status, body)
	}
}

// events collects what handlers see, for tests to await in order.
type events chan string

func newEvents() events { return make(events, 1000) }

func (e events) add(format string, args ...any) { e <- fmt.Sprintf(format, args...) }

func (e events) expect(t testing.TB, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := recv(t, (<-chan string)(e), w); got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func goroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pollParked reports whether a long-polling GET waits in engineio (seen
// from its goroutine's stack: engineio keeps that state to itself).
func pollParked() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "[select") && strings.Contains(g, "engineio.(*Session).servePoll") {
			return true
		}
	}
	return false
}
