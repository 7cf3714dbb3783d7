package engineio

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestWebsocketSession(t *testing.T) {
	s := startServer(t, Options{AllowEIO3: true}, func(sess *Session, r *recorder) {
		// Sent from Open, before the connection is attached: still the
		// first packet after the open packet.
		_ = sess.Send(NewTextMessage([]byte("welcome")))
	})
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			w, r, open := s.openWS(t, eio)
			if fmt.Sprint(open["upgrades"]) != "[]" || open["sid"] != r.sess.ID() {
				t.Fatalf("open packet %v", open)
			}
			if r.sess.Transport() != "websocket" {
				t.Fatalf("transport %s", r.sess.Transport())
			}
			if p := w.read(t); p.typ != PacketMessage || string(p.data) != "welcome" {
				t.Fatalf("got %+v", p)
			}

			// Client to server: text, and binary in the protocol's form.
			w.send(t, "4hello")
			if eio == 3 {
				w.sendBinary(t, []byte{4, 1, 2})
			} else {
				w.sendBinary(t, []byte{1, 2})
			}
			w.send(t, "4")
			for _, want := range []msg{{"hello", false}, {"\x01\x02", true}, {"", false}} {
				if got := r.next(t); got != want {
					t.Fatalf("got %+v, want %+v", got, want)
				}
			}

			// Server to client.
			_ = r.sess.Send(NewTextMessage([]byte("hé")))
			_ = r.sess.SendAll([]*Message{NewBinaryMessage([]byte{9}), NewTextMessage([]byte("after"))})
			_ = w.c.SetReadDeadline(deadline())
			typ, b, err := w.c.ReadMessage()
			if err != nil || typ != websocket.TextMessage || string(b) != "4hé" {
				t.Fatalf("%d %q %v", typ, b, err)
			}
			typ, b, err = w.c.ReadMessage()
			wantBin := "\x09"
			if eio == 3 {
				wantBin = "\x04\x09"
			}
			if err != nil || typ != websocket.BinaryMessage || string(b) != wantBin {
				t.Fatalf("%d %q %v", typ, b, err)
			}
			if p := w.read(t); string(p.data) != "after" {
				t.Fatalf("got %+v", p)
			}

			// A websocket ping frame is answered with a pong frame.
			pong := make(chan string, 1)
			w.c.SetPongHandler(func(s string) error { pong <- s; return nil })
			_ = w.c.WriteControl(websocket.PingMessage, []byte("hb"), deadline())
			// The server handles frames in order: once it has the message
			// after the ping, the pong is written, and the read of what it
			// sends next runs the pong handler.
			w.send(t, "4sync")
			r.next(t)
			_ = r.sess.Send(NewTextMessage([]byte("flush")))
			w.read(t)
			if got := recv(t, pong, "a pong frame"); got != "hb" {
				t.Fatalf("pong %q", got)
			}

			// The client closes: OnClose with "transport close", and the
			// server echoes the close frame.
			_ = w.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), deadline())
			if reason := r.reason(t); reason != ReasonTransportClose {
				t.Fatalf("reason %q", reason)
			}
			if code := w.readClose(t); code != websocket.CloseNormalClosure {
				t.Fatalf("close code %d", code)
			}
			if err := r.sess.Send(NewTextMessage(nil)); err != ErrClosed {
				t.Fatalf("send after close: %v", err)
			}
		})
	}
}

func TestWebsocketProtocolErrors(t *testing.T) {
	s := startServer(t, Options{MaxPayload: 100, AllowEIO3: true}, nil)
	tests := []struct {
		name   string
		eio    int
		send   func(w *wsClient)
		code   int
		reason string
	}{
		{"bad packet", 4, func(w *wsClient) { _ = w.c.WriteMessage(websocket.TextMessage, []byte("9")) }, 1007, ReasonTransportError},
		{"too big", 4, func(w *wsClient) { _ = w.c.WriteMessage(websocket.TextMessage, []byte("4"+strings.Repeat("x", 100))) }, 1009, ReasonTransportError},
		{"v4 client ping", 4, func(w *wsClient) { _ = w.c.WriteMessage(websocket.TextMessage, []byte("2")) }, 1002, ReasonTransportError},
		{"v3 client pong", 3, func(w *wsClient) { _ = w.c.WriteMessage(websocket.TextMessage, []byte("3")) }, 1002, ReasonTransportError},
		{"v3 binary ping", 3, func(w *wsClient) { _ = w.c.WriteMessage(websocket.BinaryMessage, []byte{2}) }, 1007, ReasonTransportError},
		{"close packet", 4, func(w *wsClient) { _ = w.c.WriteMessage(websocket.TextMessage, []byte("1")) }, 1000, ReasonTransportClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.srv.Stats().TooLarge.Load()
			w, r, _ := s.openWS(t, tt.eio)
			tt.send(w)
			if reason := r.reason(t); reason != tt.reason {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
			if code := w.readClose(t); code != tt.code {
				t.Errorf("close code %d, want %d", code, tt.code)
			}
			// Only a message over MaxPayload counts as too large.
			want := int64(0)
			if tt.code == 1009 {
				want = 1
			}
			if n := s.srv.Stats().TooLarge.Load() - before; n != want {
				t.Errorf("%d sessions counted too large, want %d", n, want)
			}
		})
	}
}

func TestWebsocketHandshakeErrors(t *testing.T) {
	s := startServer(t, Options{}, nil)
	for _, tt := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"bad version", http.Header{"Sec-Websocket-Version": {"12"}}, 400},
		{"bad key", http.Header{"Sec-Websocket-Key": {"short"}}, 400},
		{"cross-origin", http.Header{"Origin": {"http://evil.example"}}, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.url+"?EIO=4&transport=websocket", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := s.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if s.srv.Count() != 0 {
		t.Errorf("%d sessions", s.srv.Count())
	}
	// The same origin is allowed.
	u := "ws" + strings.TrimPrefix(s.url, "http") + "?EIO=4&transport=websocket"
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {s.ts.URL}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestWebsocketClosedWhileOpening closes a websocket session before its
// connection is handed to the event loop (from Open): the client must still
// see the connection end.
func TestWebsocketClosedWhileOpening(t *testing.T) {
	s := startServer(t, Options{}, func(sess *Session, r *recorder) { sess.Close() })
	w := s.dialWS(t, 4, "")
	r := s.opened(t)
	if reason := r.reason(t); reason != ReasonForced {
		t.Fatalf("reason %q", reason)
	}
	w.readClose(t)
	if s.srv.Count() != 0 {
		t.Fatalf("%d sessions", s.srv.Count())
	}
}
