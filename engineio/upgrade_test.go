package engineio

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestUpgrade(t *testing.T) {
	s := startServer(t, Options{AllowEIO3: true}, nil)
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			c := s.handshake(t, eio, "")
			r := s.opened(t)
			_ = r.sess.Send(NewTextMessage([]byte("m0")))
			if got := types(c.get(t)); got != "4m0" {
				t.Fatalf("GET: %s", got)
			}
			poll := c.getAsync(t)
			parked(t, r.sess)

			w := s.dialWS(t, eio, c.sid)
			w.send(t, "2probe")
			if p := w.read(t); p.typ != PacketPong || string(p.data) != "probe" {
				t.Fatalf("probe answered %+v", p)
			}
			// The parked GET is answered with a noop at once, so that the
			// client can pause polling.
			if got := types(recv(t, poll, "the parked GET")); got != "6" {
				t.Fatalf("parked GET: %s", got)
			}
			// Until the upgrade, packets go out on polling: queued.
			_ = r.sess.Send(NewTextMessage([]byte("m1")))
			_ = r.sess.Send(NewBinaryMessage([]byte{1}))
			_ = r.sess.Send(NewTextMessage([]byte("m2")))
			if r.sess.Transport() != "polling" {
				t.Fatal("upgraded before 5")
			}
			// The client may still post on polling meanwhile.
			c.postPackets(t, "4p")
			if got := r.next(t); got.data != "p" {
				t.Fatalf("got %+v", got)
			}

			w.send(t, "5")
			for _, want := range []string{"m1", "\x01", "m2"} {
				if p := w.read(t); string(p.data) != want {
					t.Fatalf("got %+v, want %q", p, want)
				}
			}
			waitFor(t, "the websocket transport", func() bool { return r.sess.Transport() == "websocket" })
			_ = r.sess.Send(NewTextMessage([]byte("m3")))
			if p := w.read(t); string(p.data) != "m3" {
				t.Fatalf("got %+v", p)
			}
			w.send(t, "4w")
			if got := r.next(t); got.data != "w" {
				t.Fatalf("got %+v", got)
			}
			// Polling is over for this session.
			status, _, _ := c.do(t, "GET", c.query(), "", "")
			if status != 400 {
				t.Fatalf("GET after the upgrade: %d", status)
			}
			if s.srv.Session(c.sid) == nil {
				t.Fatal("a GET after the upgrade closed the session")
			}
			w.c.Close()
			if reason := r.reason(t); reason != ReasonTransportClose {
				t.Fatalf("reason %q", reason)
			}
		})
	}
	if n := s.srv.Stats().Upgrades.Load(); n != 2 {
		t.Errorf("%d upgrades counted", n)
	}
}

// TestUpgradeOrder sends continuously while the session upgrades: the
// client must see every message once, in order, across the two transports.
// The sender stays at most a window ahead of the reader, so that it sends
// during every step of the upgrade without flooding the queue.
func TestUpgradeOrder(t *testing.T) {
	s := startServer(t, Options{}, nil)
	for range 5 {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		credits := make(chan struct{}, 64)
		for range cap(credits) {
			credits <- struct{}{}
		}
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			i := 0
			defer func() { sent <- i }()
			for {
				select {
				case <-stop:
					return
				case <-credits:
				}
				if r.sess.Send(NewTextMessage(fmt.Appendf(nil, "%d", i))) != nil {
					return
				}
				i++
			}
		}()
		next := 0
		expect := func(p packet) {
			t.Helper()
			if p.typ == PacketNoop {
				return
			}
			if p.typ != PacketMessage || string(p.data) != fmt.Sprint(next) {
				t.Fatalf("got %d %q, want %d", p.typ, p.data, next)
			}
			next++
			credits <- struct{}{}
		}
		for _, p := range c.get(t) {
			expect(p)
		}
		w := s.dialWS(t, 4, c.sid)
		w.send(t, "2probe")
		if p := w.read(t); p.typ != PacketPong {
			t.Fatalf("got %+v", p)
		}
		// One more poll, answered at once (with messages or a noop), then
		// the client pauses polling and sends "5", as engine.io-client does.
		for _, p := range c.get(t) {
			expect(p)
		}
		w.send(t, "5")
		for target := next + 200; next < target; {
			expect(w.read(t))
		}
		close(stop)
		for n := recv(t, sent, "the sender"); next < n; {
			expect(w.read(t))
		}
		w.c.Close()
		r.reason(t)
	}
}

func TestUpgradeAborted(t *testing.T) {
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		abort   func(t *testing.T, w *wsClient)
	}{
		{"client closes", 0, func(t *testing.T, w *wsClient) { w.c.Close() }},
		{"message before 5", 0, func(t *testing.T, w *wsClient) {
			w.send(t, "4early")
			w.readClose(t)
		}},
		{"timeout", time.Millisecond, func(t *testing.T, w *wsClient) { w.readClose(t) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Options{UpgradeTimeout: tt.timeout}, nil)
			c := s.handshake(t, 4, "")
			r := s.opened(t)
			w := s.dialWS(t, 4, c.sid)
			if tt.timeout == 0 { // else the probe may come too late
				w.send(t, "2probe")
				if p := w.read(t); p.typ != PacketPong {
					t.Fatalf("got %+v", p)
				}
			}
			tt.abort(t, w)
			waitFor(t, "the upgrade's end", func() bool {
				r.sess.mu.Lock()
				defer r.sess.mu.Unlock()
				return r.sess.upgrade == nil
			})
			// The session lives on over polling.
			_ = r.sess.Send(NewTextMessage([]byte("still")))
			var got string
			for got == "" || got == "6" {
				got = types(c.get(t))
			}
			if got != "4still" {
				t.Fatalf("GET: %s", got)
			}
			c.postPackets(t, "4here")
			if m := r.next(t); m.data != "here" {
				t.Fatalf("got %+v", m)
			}
			if r.sess.Transport() != "polling" {
				t.Fatal("upgraded")
			}
			if tt.timeout != 0 {
				return // a later upgrade would time out too
			}
			// A later upgrade works.
			w2 := s.dialWS(t, 4, c.sid)
			w2.send(t, "2probe")
			w2.read(t)
			w2.send(t, "5")
			_ = r.sess.Send(NewTextMessage([]byte("ws")))
			if p := w2.read(t); string(p.data) != "ws" {
				t.Fatalf("got %+v", p)
			}
			w2.c.Close()
			r.reason(t)
		})
	}
}

// TestUpgradeRefused: a second websocket for a session that is upgrading
// or has upgraded, or for a websocket session, is accepted and closed at
// once (as Node does: the protocol says the server must close it), and the
// session goes on.
func TestUpgradeRefused(t *testing.T) {
	s := startServer(t, Options{}, nil)
	refused := func(sid string) {
		t.Helper()
		u := "ws" + s.url[len("http"):] + "?EIO=4&transport=websocket&sid=" + sid
		c, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if code := (&wsClient{c: c, eio: 4}).readClose(t); code != 1000 {
			t.Fatalf("close code %d", code)
		}
	}
	c := s.handshake(t, 4, "")
	r := s.opened(t)
	w := s.dialWS(t, 4, c.sid)
	refused(c.sid) // while one is in progress
	w.send(t, "2probe")
	w.read(t)
	w.send(t, "5")
	waitFor(t, "the upgrade", func() bool { return r.sess.Transport() == "websocket" })
	refused(c.sid) // once upgraded
	_ = r.sess.Send(NewTextMessage([]byte("still")))
	if p := w.read(t); string(p.data) != "still" {
		t.Fatalf("got %+v", p)
	}
	w2, r2, _ := s.openWS(t, 4)
	refused(r2.sess.ID()) // a websocket session
	_ = r2.sess.Send(NewTextMessage([]byte("still")))
	if p := w2.read(t); string(p.data) != "still" {
		t.Fatalf("got %+v", p)
	}
	w2.c.Close()
	w.c.Close()
}

// TestNoGoroutineLeakUpgrade: sessions that upgrade, or try to, leave no
// goroutine behind.
func TestNoGoroutineLeakUpgrade(t *testing.T) {
	long := startServer(t, Options{}, nil)
	short := startServer(t, Options{UpgradeTimeout: time.Millisecond}, nil)
	for _, s := range []*testServer{long, short} {
		w, r, _ := s.openWS(t, 4) // warm up the event loop
		w.c.Close()
		r.reason(t)
		s.tr.CloseIdleConnections()
	}
	base := runtime.NumGoroutine()
	for i := range 30 {
		s := long
		if i%3 == 2 {
			s = short
		}
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		poll := c.getAsync(t)
		parked(t, r.sess)
		w := s.dialWS(t, 4, c.sid)
		if i%3 != 2 {
			w.send(t, "2probe")
			w.read(t)
			recv(t, poll, "the parked GET")
		}
		switch i % 3 {
		case 0:
			w.send(t, "5")
			waitFor(t, "the upgrade", func() bool { return r.sess.Transport() == "websocket" })
			w.c.Close()
		case 1:
			w.send(t, "5")
			waitFor(t, "the upgrade", func() bool { return r.sess.Transport() == "websocket" })
			r.sess.Close()
			w.readClose(t)
			w.c.Close()
		case 2:
			w.readClose(t) // the upgrade times out
			w.c.Close()
			c.post(t, "1")
			recv(t, poll, "the parked GET")
		}
		r.reason(t)
	}
	long.tr.CloseIdleConnections()
	short.tr.CloseIdleConnections()
	goroutinesSettle(t, base)
}
