package engineio

import (
	"testing"
	"time"
)

// A short interval, so that pings come at once, and a timeout long enough
// for a loaded machine to answer: tests wait for what the heartbeat causes,
// never for a duration.
var fastHeartbeat = Options{PingInterval: 10 * time.Millisecond, PingTimeout: 300 * time.Millisecond, AllowEIO3: true}

func TestHeartbeatV4Websocket(t *testing.T) {
	s := startServer(t, fastHeartbeat, nil)
	w, r, _ := s.openWS(t, 4)
	for range 5 {
		if p := w.read(t); p.typ != PacketPing {
			t.Fatalf("got %+v, want a ping", p)
		}
		w.send(t, "3")
	}
	// No pong: the session closes.
	if p := w.read(t); p.typ != PacketPing {
		t.Fatalf("got %+v, want a ping", p)
	}
	if reason := r.reason(t); reason != ReasonPingTimeout {
		t.Fatalf("reason %q", reason)
	}
	if code := w.readClose(t); code != 1000 {
		t.Fatalf("close code %d", code)
	}
}

func TestHeartbeatV4Polling(t *testing.T) {
	s := startServer(t, fastHeartbeat, nil)
	c := s.handshake(t, 4, "")
	r := s.opened(t)
	for range 3 {
		if got := types(c.get(t)); got != "2" {
			t.Fatalf("GET: %s, want a ping", got)
		}
		c.post(t, "3")
	}
	if got := types(c.get(t)); got != "2" {
		t.Fatalf("GET: %s, want a ping", got)
	}
	// The next GET parks; without a pong the session closes and the GET
	// gets the close packet.
	if got := types(c.get(t)); got != "1" {
		t.Fatalf("GET: %s, want the close packet", got)
	}
	if reason := r.reason(t); reason != ReasonPingTimeout {
		t.Fatalf("reason %q", reason)
	}
}

func TestHeartbeatV3(t *testing.T) {
	s := startServer(t, fastHeartbeat, nil)
	t.Run("websocket", func(t *testing.T) {
		w, r, _ := s.openWS(t, 3)
		for range 5 {
			w.send(t, "2")
			if p := w.read(t); p.typ != PacketPong || len(p.data) != 0 {
				t.Fatalf("got %+v, want a pong", p)
			}
		}
		w.send(t, "2probe")
		if p := w.read(t); p.typ != PacketPong || string(p.data) != "probe" {
			t.Fatalf("got %+v", p)
		}
		// Silence: the session closes.
		if reason := r.reason(t); reason != ReasonPingTimeout {
			t.Fatalf("reason %q", reason)
		}
		w.readClose(t)
	})
	t.Run("polling", func(t *testing.T) {
		c := s.handshake(t, 3, "")
		r := s.opened(t)
		for range 3 {
			c.postPackets(t, "2")
			if got := types(c.get(t)); got != "3" {
				t.Fatalf("GET: %s, want a pong", got)
			}
		}
		if got := types(c.get(t)); got != "1" {
			t.Fatalf("GET: %s, want the close packet", got)
		}
		if reason := r.reason(t); reason != ReasonPingTimeout {
			t.Fatalf("reason %q", reason)
		}
	})
}

// TestHeartbeatBusyClient: a v4 client that keeps sending messages may see
// its pong delayed; a message refreshes the deadline once per ping, as in
// Node, so the client is not cut off at once.
func TestHeartbeatBusyClient(t *testing.T) {
	s := startServer(t, Options{PingInterval: 10 * time.Millisecond, PingTimeout: time.Hour}, nil)
	w, r, _ := s.openWS(t, 4)
	if p := w.read(t); p.typ != PacketPing {
		t.Fatalf("got %+v", p)
	}
	w.send(t, "4busy")
	r.next(t)
	r.sess.mu.Lock()
	refreshed, awaiting := r.sess.refreshed, r.sess.awaitingPong
	r.sess.mu.Unlock()
	if !refreshed || !awaiting {
		t.Fatalf("refreshed %v, awaiting pong %v", refreshed, awaiting)
	}
	w.send(t, "3")
	waitFor(t, "the pong", func() bool {
		r.sess.mu.Lock()
		defer r.sess.mu.Unlock()
		return !r.sess.awaitingPong
	})
}
