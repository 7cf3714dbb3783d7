package engineio

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReceiverOrder drives a session from every side at once: the client's
// messages, Serialize from other goroutines, and a Close. The recorder
// fails the test if OnMessage overlaps itself, Serialize's function or
// OnClose, or if anything runs after OnClose.
func TestReceiverOrder(t *testing.T) {
	s := startServer(t, Options{}, nil)
	for _, transport := range []string{"websocket", "polling"} {
		t.Run(transport, func(t *testing.T) {
			const n = 300
			var r *recorder
			var send func(i int)
			if transport == "websocket" {
				var w *wsClient
				w, r, _ = s.openWS(t, 4)
				send = func(i int) { _ = w.c.WriteMessage(1, fmt.Appendf(nil, "4%d", i)) }
			} else {
				c := s.handshake(t, 4, "")
				r = s.opened(t)
				send = func(i int) {
					req, _ := http.NewRequest(http.MethodPost, c.query(), strings.NewReader(fmt.Sprintf("4%d", i)))
					if resp, err := s.hc.Do(req); err == nil {
						resp.Body.Close()
					}
				}
			}
			var afterClose atomic.Int32
			serialize := func() {
				r.sess.Serialize(func() {
					if r.busy.Add(1) != 1 {
						t.Errorf("Serialize's function runs beside OnMessage")
					}
					if r.closedFlag.Load() {
						afterClose.Add(1)
					}
					runtime.Gosched()
					r.busy.Add(-1)
				})
			}
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for range n / 4 {
						serialize()
					}
				})
			}
			wg.Go(func() {
				for i := range n {
					send(i)
				}
			})
			// Close once the first third has arrived.
			for i := range n / 3 {
				if m := r.next(t); m.data != fmt.Sprint(i) {
					t.Fatalf("message %d: %q", i, m.data)
				}
			}
			r.sess.Close()
			wg.Wait()
			if reason := r.reason(t); reason != ReasonForced {
				t.Fatalf("reason %q", reason)
			}
			// Whatever arrived before the close came in order.
			for i := n / 3; len(r.msgs) > 0; i++ {
				if m := <-r.msgs; m.data != fmt.Sprint(i) {
					t.Fatalf("message %d: %q", i, m.data)
				}
			}
			if afterClose.Load() != 0 {
				t.Fatalf("Serialize ran %d functions after OnClose", afterClose.Load())
			}
			if r.sess.Serialize(func() {}) {
				t.Fatal("Serialize ran on a closed session")
			}
		})
	}
}

// TestCloseFromOnMessage: a receiver that closes its session from
// OnMessage gets OnClose after OnMessage returns, on the same session.
func TestCloseFromOnMessage(t *testing.T) {
	s := startServer(t, Options{}, func(sess *Session, r *recorder) {
		r.onMessage = func(r *recorder, m msg) {
			if m.data == "bye" {
				r.sess.Close()
				if r.closedFlag.Load() {
					t.Error("OnClose ran inside OnMessage")
				}
			}
		}
	})
	w, r, _ := s.openWS(t, 4)
	w.send(t, "4bye")
	w.send(t, "4ignored")
	if m := r.next(t); m.data != "bye" {
		t.Fatalf("got %+v", m)
	}
	if reason := r.reason(t); reason != ReasonForced {
		t.Fatalf("reason %q", reason)
	}
	if code := w.readClose(t); code != 1000 {
		t.Fatalf("close code %d", code)
	}
}

func TestSlowClientPolling(t *testing.T) {
	s := startServer(t, Options{MaxPayload: 1000, MaxQueuedBytes: 4096}, nil)
	c := s.handshake(t, 4, "")
	r := s.opened(t)
	payload := []byte(strings.Repeat("x", 100))
	sent := 0
	for ; sent < 1000; sent++ {
		if err := r.sess.Send(NewTextMessage(payload)); err != nil {
			break
		}
	}
	if sent == 1000 || sent*len(payload) > 4096 {
		t.Fatalf("%d messages of %d bytes queued for a client that does not poll", sent, len(payload))
	}
	if reason := r.reason(t); reason != ReasonSlowClient {
		t.Fatalf("reason %q", reason)
	}
	if err := r.sess.Send(NewTextMessage(payload)); err != ErrClosed {
		t.Fatalf("send after close: %v", err)
	}
	if n := s.srv.Stats().SlowClients.Load(); n != 1 {
		t.Fatalf("%d slow clients counted", n)
	}
	// The queue that closed it is dropped: the client's next GET gets the
	// close packet alone.
	if ps := c.get(t); types(ps) != "1" {
		t.Fatalf("GET after the slow client's close: %s", types(ps))
	}
	// SendAll is bounded the same way.
	c2 := s.handshake(t, 4, "")
	r2 := s.opened(t)
	_ = c2
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = r2.sess.SendAll([]*Message{NewTextMessage(payload), NewBinaryMessage(payload)})
	}
	if err == nil {
		t.Fatal("SendAll queued without bound")
	}
	if reason := r2.reason(t); reason != ReasonSlowClient {
		t.Fatalf("reason %q", reason)
	}
}

// TestSlowClientSendDoesNotCallOnClose: a send that overflows the queue
// closes the session, but OnClose must not run inside Send: its caller may
// hold locks that OnClose needs (a Socket.IO broadcast holds its adapter's,
// and OnClose leaves the rooms).
func TestSlowClientSendDoesNotCallOnClose(t *testing.T) {
	var mu sync.Mutex // held by the sender, needed by OnClose
	s := startServer(t, Options{MaxPayload: 1000, MaxQueuedBytes: 4096}, func(sess *Session, r *recorder) {
		r.onClose = func(string) { mu.Lock(); mu.Unlock() }
	})
	s.handshake(t, 4, "") // and never polls
	r := s.opened(t)
	done := make(chan error, 1)
	go func() {
		mu.Lock()
		defer mu.Unlock()
		var err error
		for i := 0; i < 1000 && err == nil; i++ {
			if i%2 == 0 {
				err = r.sess.Send(NewTextMessage(make([]byte, 100)))
			} else {
				err = r.sess.SendAll([]*Message{NewTextMessage(make([]byte, 100))})
			}
		}
		done <- err
	}()
	if err := recv(t, done, "the sends (OnClose ran inside Send and waits for its caller)"); err == nil {
		t.Fatal("no error")
	}
	if reason := r.reason(t); reason != ReasonSlowClient {
		t.Fatalf("reason %q", reason)
	}
}

func TestSlowClientWebsocket(t *testing.T) {
	s := startServer(t, Options{MaxPayload: 32 << 10, MaxQueuedBytes: 64 << 10}, nil)
	w, r, _ := s.openWS(t, 4)
	_ = w // it never reads
	payload := []byte(strings.Repeat("x", 32<<10))
	msg := NewTextMessage(payload)
	var err error
	sent := 0
	// The kernel's socket buffers take some megabytes first.
	for ; sent < 10_000 && err == nil; sent++ {
		err = r.sess.Send(msg)
	}
	if err == nil {
		t.Fatalf("%d messages of 32 KiB sent to a client that does not read", sent)
	}
	if reason := r.reason(t); reason != ReasonSlowClient {
		t.Fatalf("reason %q", reason)
	}
	if err := r.sess.Send(msg); err != ErrClosed {
		t.Fatalf("send after close: %v", err)
	}
	if n := s.srv.Stats().SlowClients.Load(); n != 1 {
		t.Fatalf("%d slow clients counted", n)
	}
}

func TestServerClose(t *testing.T) {
	s := startServer(t, Options{AllowEIO3: true}, nil)
	w, rw, _ := s.openWS(t, 4)
	w3, rw3, _ := s.openWS(t, 3)
	c := s.handshake(t, 4, "")
	rp := s.opened(t)
	poll := c.getAsync(t)
	parked(t, rp.sess)
	c3 := s.handshake(t, 3, "")
	rp3 := s.opened(t)
	poll3 := c3.getAsync(t)
	parked(t, rp3.sess)

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := s.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if code := w.readClose(t); code != 1001 {
		t.Errorf("websocket close code %d", code)
	}
	if code := w3.readClose(t); code != 1001 {
		t.Errorf("v3 websocket close code %d", code)
	}
	if got := types(recv(t, poll, "the parked GET")); got != "1" {
		t.Errorf("parked GET: %s", got)
	}
	if got := types(recv(t, poll3, "the parked v3 GET")); got != "1" {
		t.Errorf("parked v3 GET: %s", got)
	}
	for _, r := range []*recorder{rw, rw3, rp, rp3} {
		if reason := r.reason(t); reason != ReasonShutdown {
			t.Errorf("reason %q", reason)
		}
	}
	// New sessions are refused; Close again is harmless.
	status, _, body := c.do(t, http.MethodGet, s.url+"?EIO=4&transport=polling", "", "")
	var e struct{ Code int }
	_ = json.Unmarshal(body, &e)
	if status != http.StatusServiceUnavailable || e.Code != CodeBadRequest {
		t.Errorf("handshake after Close: %d %s", status, body)
	}
	if err := s.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s.srv.Count() != 0 {
		t.Errorf("%d sessions", s.srv.Count())
	}
}

// TestNoGoroutineLeak opens and closes many sessions on each transport,
// ended from either side: the number of goroutines comes back to where it
// was.
func TestNoGoroutineLeak(t *testing.T) {
	s := startServer(t, Options{}, nil)
	// Warm up: the event loop's helpers start on first use.
	w, r, _ := s.openWS(t, 4)
	w.c.Close()
	r.reason(t)

	t.Run("websocket", func(t *testing.T) {
		s.tr.CloseIdleConnections()
		base := runtime.NumGoroutine()
		for i := range 40 {
			w, r, _ := s.openWS(t, 4)
			w.send(t, "4x")
			r.next(t)
			switch i % 3 {
			case 0:
				w.c.Close()
			case 1:
				r.sess.Close()
				w.readClose(t)
				w.c.Close()
			case 2:
				w.send(t, "1")
				w.readClose(t)
				w.c.Close()
			}
			r.reason(t)
		}
		goroutinesSettle(t, base)
	})
	t.Run("polling", func(t *testing.T) {
		s.tr.CloseIdleConnections()
		base := runtime.NumGoroutine()
		for i := range 40 {
			c := s.handshake(t, 4, "")
			r := s.opened(t)
			switch i % 4 {
			case 0:
				c.post(t, "1")
			case 1:
				poll := c.getAsync(t)
				parked(t, r.sess)
				r.sess.Close()
				recv(t, poll, "the parked GET")
			case 2:
				// The client gives up a parked GET.
				conn, err := net.Dial("tcp", s.ts.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", c.sid)
				parked(t, r.sess)
				conn.Close()
			case 3:
				poll := c.getAsync(t)
				parked(t, r.sess)
				if status, _, _ := c.do(t, http.MethodGet, c.query(), "", ""); status != 400 {
					t.Fatalf("overlapping GET: %d", status)
				}
				recv(t, poll, "the parked GET")
			}
			r.reason(t)
		}
		s.tr.CloseIdleConnections()
		goroutinesSettle(t, base)
	})
}
