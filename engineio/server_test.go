package engineio

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestHandshakePolling(t *testing.T) {
	s := startServer(t, Options{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond, MaxPayload: 1e6, AllowEIO3: true}, nil)
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			c := &pollClient{s: s, eio: eio}
			status, h, body := c.do(t, http.MethodGet, s.url+fmt.Sprintf("?EIO=%d&transport=polling", eio), "", "")
			if status != http.StatusOK || h.Get("Content-Type") != "text/plain; charset=UTF-8" {
				t.Fatalf("%d %s", status, h.Get("Content-Type"))
			}
			var open struct {
				Sid          string   `json:"sid"`
				Upgrades     []string `json:"upgrades"`
				PingInterval int      `json:"pingInterval"`
				PingTimeout  int      `json:"pingTimeout"`
				MaxPayload   int      `json:"maxPayload"`
			}
			text := string(body)
			if eio == 3 {
				prefix, rest, ok := strings.Cut(text, ":")
				if !ok || prefix != fmt.Sprint(len(rest)) {
					t.Fatalf("v3 open payload %q", body)
				}
				text = rest
			}
			if text[0] != '0' {
				t.Fatalf("open packet %q", body)
			}
			if err := json.Unmarshal([]byte(text[1:]), &open); err != nil {
				t.Fatal(err)
			}
			if len(open.Sid) != 20 || fmt.Sprint(open.Upgrades) != "[websocket]" || open.PingInterval != 300 || open.PingTimeout != 200 || open.MaxPayload != 1e6 {
				t.Errorf("open packet %+v", open)
			}
			r := s.opened(t)
			if r.sess.ID() != open.Sid || r.sess.Protocol() != eio || r.sess.Transport() != "polling" || s.srv.Session(open.Sid) != r.sess {
				t.Errorf("session %s v%d %s", r.sess.ID(), r.sess.Protocol(), r.sess.Transport())
			}
		})
	}
}

func TestHandshakeErrors(t *testing.T) {
	s := startServer(t, Options{AllowRequest: func(r *http.Request) error {
		if r.Header.Get("X-Refuse") != "" {
			return errors.New("no")
		}
		return nil
	}}, nil)
	c := s.handshake(t, 4, "")
	s.opened(t)
	tests := []struct {
		name    string
		method  string
		query   string
		header  http.Header
		status  int
		code    int
		message string
	}{
		{"no transport", "GET", "?EIO=4", nil, 400, 0, "Transport unknown"},
		{"unknown transport", "GET", "?EIO=4&transport=flash", nil, 400, 0, "Transport unknown"},
		{"unknown sid", "GET", "?EIO=4&transport=polling&sid=nope", nil, 400, 1, "Session ID unknown"},
		{"unknown sid POST", "POST", "?EIO=4&transport=polling&sid=nope", nil, 400, 1, "Session ID unknown"},
		{"POST handshake", "POST", "?EIO=4&transport=polling", nil, 400, 2, "Bad handshake method"},
		{"PUT handshake", "PUT", "?EIO=4&transport=polling", nil, 400, 2, "Bad handshake method"},
		{"websocket without upgrade", "GET", "?EIO=4&transport=websocket", nil, 400, 3, "Bad request"},
		{"protocol mismatch", "GET", "?EIO=3&transport=polling&sid=" + c.sid, nil, 400, 3, "Bad request"},
		{"websocket transport on a polling sid", "GET", "?EIO=4&transport=websocket&sid=" + c.sid, nil, 400, 3, "Bad request"},
		{"bad query", "GET", "?EIO=4&transport=polling&x=%zz", nil, 400, 3, "Bad request"},
		{"forbidden", "GET", "?EIO=4&transport=polling", http.Header{"X-Refuse": {"1"}}, 403, 4, "Forbidden"},
		{"EIO3 not allowed", "GET", "?EIO=3&transport=polling", nil, 400, 5, "Unsupported protocol version"},
		{"no EIO means v3", "GET", "?transport=polling", nil, 400, 5, "Unsupported protocol version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.url+tt.query, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := s.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Code    *int   `json:"code"`
				Message string `json:"message"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/json" ||
				e.Code == nil || *e.Code != tt.code || e.Message != tt.message {
				t.Errorf("got %d %s {%v %q}, want %d {%d %q}", resp.StatusCode, resp.Header.Get("Content-Type"),
					e.Code, e.Message, tt.status, tt.code, tt.message)
			}
		})
	}
	// A header Go's client will not send: written by hand. net/http itself
	// refuses it before the handler sees it.
	t.Run("invalid origin", func(t *testing.T) {
		conn, err := net.Dial("tcp", s.ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nOrigin: a\x01b\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || s.srv.Count() != 1 {
			t.Errorf("got %d %s; %d sessions", resp.StatusCode, b, s.srv.Count())
		}
	})
	// The session whose sid the table used is still open: errors about a
	// request do not close it.
	if s.srv.Session(c.sid) == nil {
		t.Error("a refused request closed the session")
	}
}

func TestPollingV4(t *testing.T) {
	s := startServer(t, Options{}, func(sess *Session, r *recorder) {
		// Sent from Open: waits for the first GET.
		if err := sess.Send(NewTextMessage([]byte("welcome"))); err != nil {
			t.Error(err)
		}
	})
	c := s.handshake(t, 4, "")
	r := s.opened(t)
	if got := types(c.get(t)); got != "4welcome" {
		t.Fatalf("first GET: %s", got)
	}

	// Several packets in one POST arrive in order, binary included.
	c.post(t, "4a\x1ebAQID\x1e4é€")
	for _, want := range []msg{{"a", false}, {"\x01\x02\x03", true}, {"é€", false}} {
		if got := r.next(t); got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}

	// Queued packets go out together, binary as base64.
	_ = r.sess.Send(NewTextMessage([]byte("x")))
	_ = r.sess.SendAll([]*Message{NewTextMessage([]byte("y")), NewBinaryMessage([]byte{1, 2})})
	if got := types(c.get(t)); got != "4x 4y 4b0102" {
		t.Fatalf("GET: %s", got)
	}

	// A parked GET is answered by the next send.
	ch := c.getAsync(t)
	parked(t, r.sess)
	_ = r.sess.Send(NewTextMessage([]byte("woken")))
	if got := types(recv(t, ch, "the parked GET")); got != "4woken" {
		t.Fatalf("parked GET: %s", got)
	}

	// The client's close packet ends the session.
	c.post(t, "1")
	if reason := r.reason(t); reason != ReasonTransportClose {
		t.Fatalf("reason %q", reason)
	}
	if s.srv.Session(c.sid) != nil || s.srv.Count() != 0 {
		t.Fatal("the session is still registered")
	}
}

func TestPollingV3(t *testing.T) {
	s := startServer(t, Options{AllowEIO3: true}, nil)
	t.Run("binary payloads", func(t *testing.T) {
		c := s.handshake(t, 3, "")
		r := s.opened(t)
		_ = r.sess.Send(NewTextMessage([]byte("hé")))
		_ = r.sess.Send(NewBinaryMessage([]byte{1, 2, 3}))
		status, h, body := c.do(t, http.MethodGet, c.query(), "", "")
		if status != 200 || h.Get("Content-Type") != "application/octet-stream" ||
			string(body) != "\x00\x04\xff4hé\x01\x04\xff\x04\x01\x02\x03" {
			t.Fatalf("%d %s %q", status, h.Get("Content-Type"), body)
		}
		// Without binary data, a text payload.
		_ = r.sess.Send(NewTextMessage([]byte("😀")))
		status, h, body = c.do(t, http.MethodGet, c.query(), "", "")
		if status != 200 || h.Get("Content-Type") != "text/plain; charset=UTF-8" || string(body) != "3:4😀" {
			t.Fatalf("%d %s %q", status, h.Get("Content-Type"), body)
		}
		// The client posts text and binary payloads.
		c.post(t, "6:4hello6:b4AQID")
		status, _, body = c.do(t, http.MethodPost, c.query(), "\x00\x02\xff4a\x01\x03\xff\x04\x09\x08", "application/octet-stream")
		if status != 200 || string(body) != "ok" {
			t.Fatalf("binary POST: %d %s", status, body)
		}
		for _, want := range []msg{{"hello", false}, {"\x01\x02\x03", true}, {"a", false}, {"\x09\x08", true}} {
			if got := r.next(t); got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}
	})
	t.Run("b64", func(t *testing.T) {
		c := s.handshake(t, 3, "&b64=1")
		r := s.opened(t)
		_ = r.sess.Send(NewBinaryMessage([]byte{1, 2, 3}))
		status, h, body := c.do(t, http.MethodGet, c.query(), "", "")
		if status != 200 || h.Get("Content-Type") != "text/plain; charset=UTF-8" || string(body) != "6:b4AQID" {
			t.Fatalf("%d %s %q", status, h.Get("Content-Type"), body)
		}
	})
	t.Run("empty poll on close", func(t *testing.T) {
		c := s.handshake(t, 3, "")
		r := s.opened(t)
		ch := c.getAsync(t)
		parked(t, r.sess)
		r.sess.Close()
		if got := types(recv(t, ch, "the parked GET")); got != "1" {
			t.Fatalf("parked GET: %s", got)
		}
		if reason := r.reason(t); reason != ReasonForced {
			t.Fatalf("reason %q", reason)
		}
	})
}

func TestPollingOverlap(t *testing.T) {
	s := startServer(t, Options{}, nil)
	t.Run("GET", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		ch := c.getAsync(t)
		parked(t, r.sess)
		status, _, body := c.do(t, http.MethodGet, c.query(), "", "")
		if status != 400 {
			t.Fatalf("second GET: %d %s", status, body)
		}
		// The first GET gets the close packet; the session is gone.
		if got := types(recv(t, ch, "the parked GET")); got != "1" {
			t.Fatalf("parked GET: %s", got)
		}
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
	})
	t.Run("POST", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		// A POST whose body is still coming.
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, c.query(), pr)
		req.ContentLength = -1
		first := make(chan int, 1)
		go func() {
			resp, err := s.hc.Do(req)
			if err != nil {
				first <- 0
				return
			}
			resp.Body.Close()
			first <- resp.StatusCode
		}()
		_, _ = pw.Write([]byte("4a"))
		waitFor(t, "the first POST", func() bool {
			r.sess.mu.Lock()
			defer r.sess.mu.Unlock()
			return r.sess.posting
		})
		status, _, body := c.do(t, http.MethodPost, c.query(), "4b", "text/plain")
		if status != 400 {
			t.Fatalf("second POST: %d %s", status, body)
		}
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
		pw.Close()
		recv(t, first, "the first POST's answer")
	})
}

func TestPollingBadPosts(t *testing.T) {
	s := startServer(t, Options{MaxPayload: 100}, nil)
	t.Run("oversized", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		status, _, body := c.do(t, http.MethodPost, c.query(), "4"+strings.Repeat("x", 100), "text/plain")
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d %s", status, body)
		}
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
	})
	t.Run("oversized chunked", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		req, _ := http.NewRequest(http.MethodPost, c.query(), io.MultiReader(strings.NewReader("4"), strings.NewReader(strings.Repeat("x", 200))))
		req.ContentLength = -1
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d", resp.StatusCode)
		}
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
		if n := s.srv.Stats().TooLarge.Load(); n != 2 {
			t.Fatalf("%d sessions counted too large, want 2 (this one and the one before)", n)
		}
	})
	t.Run("exactly MaxPayload", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		c.post(t, "4"+strings.Repeat("x", 99))
		if got := r.next(t); len(got.data) != 99 {
			t.Fatalf("got %d bytes", len(got.data))
		}
	})
	t.Run("undecodable", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		status, _, body := c.do(t, http.MethodPost, c.query(), "4a\x1e9", "text/plain")
		if status != 400 {
			t.Fatalf("%d %s", status, body)
		}
		if reason := r.reason(t); reason != ReasonParseError {
			t.Fatalf("reason %q", reason)
		}
	})
	t.Run("v4 client ping", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		c.post(t, "2")
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
	})
	t.Run("aborted GET", func(t *testing.T) {
		c := s.handshake(t, 4, "")
		r := s.opened(t)
		conn, err := net.Dial("tcp", s.ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n\r\n", c.sid)
		parked(t, r.sess)
		conn.Close()
		if reason := r.reason(t); reason != ReasonTransportError {
			t.Fatalf("reason %q", reason)
		}
	})
}

// TestPollingCloseBetweenPolls: a session closed while its client is
// between two polls (no GET parked) still hands the client what was
// queued, then the close packet in an answer of its own, as Node does:
// a Socket.IO kick (DISCONNECT, then close) must reach the client.
func TestPollingCloseBetweenPolls(t *testing.T) {
	s := startServer(t, Options{AllowEIO3: true}, nil)
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			c := s.handshake(t, eio, "")
			r := s.opened(t)
			_ = r.sess.Send(NewTextMessage([]byte("bye")))
			r.sess.Close()
			if reason := r.reason(t); reason != ReasonForced {
				t.Fatalf("reason %q", reason)
			}
			// Closed is closed, even while it waits for the last GET.
			if s.srv.Session(c.sid) != nil || s.srv.Count() != 0 {
				t.Fatalf("Session %v, Count %d after Close", s.srv.Session(c.sid), s.srv.Count())
			}
			if got := types(c.get(t)); got != "4bye" {
				t.Fatalf("GET: %s", got)
			}
			if got := types(c.get(t)); got != "1" {
				t.Fatalf("GET: %s", got)
			}
			// Then the session is gone.
			status, _, body := c.do(t, http.MethodGet, c.query(), "", "")
			if status != 400 {
				t.Fatalf("GET after the close packet: %d %s", status, body)
			}
			// Closed with nothing queued: the next GET gets the close
			// packet rather than an error.
			c = s.handshake(t, eio, "")
			r = s.opened(t)
			r.sess.Close()
			if got := types(c.get(t)); got != "1" {
				t.Fatalf("GET: %s", got)
			}
			// A POST meanwhile is refused.
			c = s.handshake(t, eio, "")
			r = s.opened(t)
			r.sess.Close()
			if status, _, _ := c.do(t, http.MethodPost, c.query(), "1:6", "text/plain"); status != 400 {
				t.Fatalf("POST to a closed session: %d", status)
			}
		})
	}
	// Server.Close does not wait for such clients.
	s.handshake(t, 4, "")
	s.opened(t).sess.Close()
	s.close()
	if n := s.srv.Count(); n != 0 {
		t.Fatalf("%d sessions after Close", n)
	}
	if opened, closed := s.srv.Stats().Opened.Load(), s.srv.Stats().Closed.Load(); opened != closed {
		t.Fatalf("%d sessions opened, %d closed", opened, closed)
	}
}

func TestCORSAndHeaders(t *testing.T) {
	s := startServer(t, Options{
		AllowOrigin: func(origin string) bool { return origin == "https://app.example" },
		KeepHeaders: []string{"user-agent", "X-Token", "host"},
	}, nil)
	do := func(method, url, origin string, extra http.Header) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range extra {
			req.Header[k] = v
		}
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	handshake := s.url + "?EIO=4&transport=polling"
	resp := do("GET", handshake, "https://app.example", http.Header{"X-Token": {"t"}, "X-Other": {"o"}})
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Vary") != "Origin" {
		t.Fatalf("allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	r := s.opened(t)
	h := r.sess.Request().Header
	if h.Get("X-Token") != "t" || h.Get("X-Other") != "" || h.Get("User-Agent") == "" || h.Get("Host") != s.ts.Listener.Addr().String() {
		t.Fatalf("kept headers %v", h)
	}
	resp = do("GET", handshake, "https://evil.example", nil)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("refused origin: %v", resp.Header)
	}
	s.opened(t)
	resp = do("OPTIONS", handshake, "https://app.example", http.Header{"Access-Control-Request-Method": {"POST"}})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// HEAD answers without opening a session.
	before := s.srv.Count()
	if resp := do("HEAD", handshake, "", nil); resp.StatusCode != 200 || s.srv.Count() != before {
		t.Fatalf("HEAD: %d, %d sessions", resp.StatusCode, s.srv.Count())
	}
	// An allowed origin may open a websocket from another host.
	u := "ws" + strings.TrimPrefix(s.url, "http") + "?EIO=4&transport=websocket"
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://app.example"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
