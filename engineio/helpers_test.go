package engineio

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waitLimit bounds every wait for an event, so that a broken test fails
// instead of hanging; it is never what a test measures.
const waitLimit = 10 * time.Second

// waitFor polls cond until it holds.
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

// recv receives from ch or fails the test.
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

type msg struct {
	data   string
	binary bool
}

// recorder is a Receiver that records what it gets and checks the order
// guarantees: one OnMessage at a time, OnClose once, never during nor
// before an OnMessage that follows it.
type recorder struct {
	t      testing.TB
	sess   *Session
	msgs   chan msg
	closed chan string

	busy       atomic.Int32
	closedFlag atomic.Bool
	closes     atomic.Int32
	onMessage  func(r *recorder, m msg) // optional, called inside OnMessage
	onClose    func(reason string)      // optional, called inside OnClose
}

func newRecorder(t testing.TB, s *Session) *recorder {
	return &recorder{t: t, sess: s, msgs: make(chan msg, 10_000), closed: make(chan string, 2)}
}

func (r *recorder) OnMessage(data []byte, binary bool) {
	if r.busy.Add(1) != 1 {
		r.t.Errorf("OnMessage called concurrently")
	}
	if r.closedFlag.Load() {
		r.t.Errorf("OnMessage after OnClose")
	}
	m := msg{string(data), binary}
	if r.onMessage != nil {
		r.onMessage(r, m)
	}
	r.msgs <- m
	r.busy.Add(-1)
}

func (r *recorder) OnClose(reason string) {
	if r.busy.Load() != 0 {
		r.t.Errorf("OnClose during OnMessage")
	}
	if r.closes.Add(1) != 1 {
		r.t.Errorf("OnClose called twice")
	}
	r.closedFlag.Store(true)
	if r.onClose != nil {
		r.onClose(reason)
	}
	r.closed <- reason
}

func (r *recorder) next(t testing.TB) msg {
	t.Helper()
	return recv(t, r.msgs, "a message")
}

func (r *recorder) reason(t testing.TB) string {
	t.Helper()
	return recv(t, r.closed, "OnClose")
}

// testHandler hands each new session's recorder to the test.
type testHandler struct {
	t      testing.TB
	opened chan *recorder
	open   func(s *Session, r *recorder) // optional, called inside Open
}

func (h *testHandler) Open(s *Session) Receiver {
	r := newRecorder(h.t, s)
	if h.open != nil {
		h.open(s, r)
	}
	h.opened <- r
	return r
}

type testServer struct {
	srv  *Server
	ts   *httptest.Server
	h    *testHandler
	url  string // http://127.0.0.1:port/engine.io/
	hc   *http.Client
	tr   *http.Transport
	done bool
}

// startServer starts a server on a random port; the test's cleanup closes
// it.
func startServer(t testing.TB, opts Options, open func(s *Session, r *recorder)) *testServer {
	t.Helper()
	if opts.Pollers == 0 {
		opts.Pollers = 1
	}
	h := &testHandler{t: t, opened: make(chan *recorder, 1000), open: open}
	srv, err := NewServer(opts, h)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", srv)
	ts := httptest.NewServer(mux)
	tr := &http.Transport{MaxIdleConnsPerHost: 10}
	s := &testServer{srv: srv, ts: ts, h: h, url: ts.URL + "/engine.io/", tr: tr, hc: &http.Client{Transport: tr}}
	t.Cleanup(s.close)
	return s
}

func (s *testServer) close() {
	if s.done {
		return
	}
	s.done = true
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_ = s.srv.Close(ctx)
	s.tr.CloseIdleConnections()
	s.ts.Close()
}

func (s *testServer) opened(t testing.TB) *recorder {
	t.Helper()
	return recv(t, s.h.opened, "a new session")
}

// pollClient speaks Engine.IO over long-polling.
type pollClient struct {
	s     *testServer
	eio   int
	sid   string
	extra string // more query parameters ("&b64=1")
	open  map[string]any
}

// handshake opens a polling session.
func (s *testServer) handshake(t testing.TB, eio int, extra string) *pollClient {
	t.Helper()
	c := &pollClient{s: s, eio: eio, extra: extra}
	status, _, body := c.do(t, http.MethodGet, s.url+fmt.Sprintf("?EIO=%d&transport=polling%s", eio, extra), "", "")
	if status != http.StatusOK {
		t.Fatalf("handshake: %d %s", status, body)
	}
	ps := c.decode(t, body, false)
	if len(ps) != 1 || ps[0].typ != PacketOpen {
		t.Fatalf("handshake answered %q", body)
	}
	if err := json.Unmarshal(ps[0].data, &c.open); err != nil {
		t.Fatalf("open packet %q: %v", ps[0].data, err)
	}
	c.sid = c.open["sid"].(string)
	return c
}

func (c *pollClient) query() string {
	return c.s.url + fmt.Sprintf("?EIO=%d&transport=polling&sid=%s%s", c.eio, c.sid, c.extra)
}

func (c *pollClient) do(t testing.TB, method, url, body, contentType string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.s.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func (c *pollClient) decode(t testing.TB, body []byte, binary bool) []packet {
	t.Helper()
	ps, err := decodePayload(body, c.eio, binary)
	if err != nil {
		t.Fatalf("payload %q: %v", body, err)
	}
	return ps
}

// get polls once and returns the packets.
func (c *pollClient) get(t testing.TB) []packet {
	t.Helper()
	status, h, body := c.do(t, http.MethodGet, c.query(), "", "")
	if status != http.StatusOK {
		t.Fatalf("GET: %d %s", status, body)
	}
	return c.decode(t, body, h.Get("Content-Type") == "application/octet-stream")
}

// post sends a payload and checks the "ok".
func (c *pollClient) post(t testing.TB, body string) {
	t.Helper()
	status, _, b := c.do(t, http.MethodPost, c.query(), body, "text/plain;charset=UTF-8")
	if status != http.StatusOK || string(b) != "ok" {
		t.Fatalf("POST %q: %d %s", body, status, b)
	}
}

// getAsync starts a GET and returns its packets on a channel.
func (c *pollClient) getAsync(t testing.TB) <-chan []packet {
	ch := make(chan []packet, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, c.query(), nil)
		resp, err := c.s.hc.Do(req)
		if err != nil {
			t.Errorf("GET: %v", err)
			ch <- nil
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET: %d %s", resp.StatusCode, b)
			ch <- nil
			return
		}
		ps, err := decodePayload(b, c.eio, resp.Header.Get("Content-Type") == "application/octet-stream")
		if err != nil {
			t.Errorf("GET payload %q: %v", b, err)
		}
		ch <- ps
	}()
	return ch
}

// parked waits until the session has a GET parked.
func parked(t testing.TB, s *Session) {
	t.Helper()
	waitFor(t, "a parked GET", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pollWaiting
	})
}

func types(ps []packet) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d", p.typ)
		if p.binary {
			fmt.Fprintf(&b, "b%x", p.data)
		} else {
			b.Write(p.data)
		}
	}
	return b.String()
}

// wsClient speaks Engine.IO over a websocket.
type wsClient struct {
	c   *websocket.Conn
	eio int
}

func (s *testServer) dialWS(t testing.TB, eio int, sid string) *wsClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + fmt.Sprintf("?EIO=%d&transport=websocket", eio)
	if sid != "" {
		u += "&sid=" + sid
	}
	c, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (%d)", u, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return &wsClient{c: c, eio: eio}
}

// read reads one packet.
func (w *wsClient) read(t testing.TB) packet {
	t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(waitLimit))
	typ, b, err := w.c.ReadMessage()
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	var p packet
	if typ == websocket.BinaryMessage {
		p, err = decodeBinaryFrame(b, w.eio)
	} else {
		p, err = decodeText(b, w.eio)
	}
	if err != nil {
		t.Fatalf("websocket frame %q: %v", b, err)
	}
	return p
}

// readClose reads until the server closes and returns the close code.
func (w *wsClient) readClose(t testing.TB) int {
	t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(waitLimit))
	for {
		_, _, err := w.c.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		if strings.Contains(err.Error(), "timeout") {
			t.Fatalf("the server did not close the websocket: %v", err)
		}
		return websocket.CloseAbnormalClosure
	}
}

func (w *wsClient) send(t testing.TB, s string) {
	t.Helper()
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (w *wsClient) sendBinary(t testing.TB, b []byte) {
	t.Helper()
	if err := w.c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
}

// openWS opens a websocket session and returns it with its recorder.
func (s *testServer) openWS(t testing.TB, eio int) (*wsClient, *recorder, map[string]any) {
	t.Helper()
	w := s.dialWS(t, eio, "")
	p := w.read(t)
	if p.typ != PacketOpen {
		t.Fatalf("first packet %+v", p)
	}
	var open map[string]any
	if err := json.Unmarshal(p.data, &open); err != nil {
		t.Fatal(err)
	}
	return w, s.opened(t), open
}

// goroutinesSettle waits until the number of goroutines is back to base.
func goroutinesSettle(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func deadline() time.Time { return time.Now().Add(waitLimit) }

// postPackets posts packets in their text form, as one payload of the
// client's protocol.
func (c *pollClient) postPackets(t testing.TB, packets ...string) {
	t.Helper()
	var b strings.Builder
	for i, p := range packets {
		if c.eio == 3 {
			fmt.Fprintf(&b, "%d:%s", utf16Len([]byte(p)), p)
		} else {
			if i > 0 {
				b.WriteByte(recordSeparator)
			}
			b.WriteString(p)
		}
	}
	c.post(t, b.String())
}
