package engineio_test

// Behaviour pinned by the Engine.IO protocol's conformance suite
// (socketio/engine.io-protocol, test-suite/), checked here over real TCP
// connections with the suite's options.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/engineio"
)

// confEcho sends every message back to its session.
type confEcho struct{}

func (confEcho) Open(s *engineio.Session) engineio.Receiver { return &confEchoReceiver{s} }

type confEchoReceiver struct{ s *engineio.Session }

func (r *confEchoReceiver) OnMessage(data []byte, binary bool) {
	b := append([]byte(nil), data...)
	if binary {
		_ = r.s.Send(engineio.NewBinaryMessage(b))
		return
	}
	_ = r.s.Send(engineio.NewTextMessage(b))
}

func (*confEchoReceiver) OnClose(string) {}

// confServer serves an echoing engineio.Server at /engine.io/ on a free
// loopback port, with the conformance suite's options, and returns its
// base URL.
func confServer(t *testing.T) string {
	t.Helper()
	eng, err := engineio.NewServer(engineio.Options{
		PingInterval: 300 * time.Millisecond,
		PingTimeout:  200 * time.Millisecond,
		MaxPayload:   1_000_000,
	}, confEcho{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", eng)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return hs.URL
}

// confRequest sends a polling request and returns the status and body.
func confRequest(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// confPollingSession opens a v4 polling session and returns its URL.
func confPollingSession(t *testing.T, base string) string {
	t.Helper()
	status, body := confRequest(t, http.MethodGet, base+"/engine.io/?EIO=4&transport=polling", "")
	if status != http.StatusOK || !strings.HasPrefix(body, "0") {
		t.Fatalf("handshake: %d %q", status, body)
	}
	var open struct{ Sid string }
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil {
		t.Fatalf("handshake %q: %v", body, err)
	}
	return base + "/engine.io/?EIO=4&transport=polling&sid=" + open.Sid
}

// A client that closes a polling session ("1" in a POST) while a GET is
// parked gets a noop on that GET, not a close packet back, as Node's
// polling transport answers; the session is gone afterwards.
func TestPollingClientCloseAnswersParkedGetWithNoop(t *testing.T) {
	url := confPollingSession(t, confServer(t))
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- answer{body: err.Error()}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got <- answer{res.StatusCode, string(b)}
	}()
	time.Sleep(100 * time.Millisecond) // the GET is parked
	if status, body := confRequest(t, http.MethodPost, url, "1"); status != http.StatusOK {
		t.Fatalf("POST close: %d %q", status, body)
	}
	select {
	case a := <-got:
		if a.status != http.StatusOK || a.body != "6" {
			t.Fatalf("parked GET answered %d %q, want 200 \"6\"", a.status, a.body)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("parked GET not answered after the client's close")
	}
	if status, _ := confRequest(t, http.MethodGet, url, ""); status != http.StatusBadRequest {
		t.Fatalf("GET after close: %d, want 400", status)
	}
}

// confWS dials url (http://...) as a websocket.
func confWS(t *testing.T, url string) (*websocket.Conn, error) {
	t.Helper()
	c, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http"), nil)
	if res != nil {
		res.Body.Close()
	}
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func confWrite(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		t.Fatalf("write %q: %v", text, err)
	}
}

func confRead(t *testing.T, c *websocket.Conn) (string, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, b, err := c.ReadMessage()
	return string(b), err
}

// The upgrade of a polling session, as the suite runs it: the probe is
// answered from the event loop's goroutine, the parked GET gets a noop, and
// after "5" the websocket carries the session. Run with -race: the loop
// goroutine writes on a connection that the handler goroutine attached.
func TestUpgradeFromPollingToWebsocket(t *testing.T) {
	url := confPollingSession(t, confServer(t))
	ws, err := confWS(t, strings.Replace(url, "transport=polling", "transport=websocket", 1))
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	confWrite(t, ws, "2probe")
	if got, err := confRead(t, ws); got != "3probe" {
		t.Fatalf("probe answered %q, %v", got, err)
	}
	if status, body := confRequest(t, http.MethodGet, url, ""); status != http.StatusOK || body != "6" {
		t.Fatalf("GET during the upgrade: %d %q, want 200 \"6\"", status, body)
	}
	confWrite(t, ws, "5")
	confWrite(t, ws, "4hello")
	if got, err := confRead(t, ws); got != "4hello" {
		t.Fatalf("echo after the upgrade: %q, %v", got, err)
	}
}

// A second websocket for a session that is upgrading or upgraded is
// accepted and closed at once, as the protocol asks ("the server MUST close
// the WebSocket connection") and Node does: the client sees a close, not a
// failed handshake, and the first websocket goes on working.
func TestSecondWebsocketOfASessionIsAcceptedThenClosed(t *testing.T) {
	for _, upgraded := range []bool{false, true} {
		name := "while upgrading"
		if upgraded {
			name = "after the upgrade"
		}
		t.Run(name, func(t *testing.T) {
			url := confPollingSession(t, confServer(t))
			wsURL := strings.Replace(url, "transport=polling", "transport=websocket", 1)
			ws1, err := confWS(t, wsURL)
			if err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			confWrite(t, ws1, "2probe")
			if got, err := confRead(t, ws1); got != "3probe" {
				t.Fatalf("probe answered %q, %v", got, err)
			}
			if upgraded {
				confWrite(t, ws1, "5")
				// The upgrade is done once polling is refused.
				deadline := time.Now().Add(2 * time.Second)
				for {
					status, _ := confRequest(t, http.MethodGet, url, "")
					if status == http.StatusBadRequest {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("polling still served after the upgrade packet")
					}
				}
			}

			ws2, err := confWS(t, wsURL)
			if err != nil {
				t.Fatalf("second websocket refused at the handshake: %v", err)
			}
			_, err = confRead(t, ws2)
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("second websocket: read %v, want a close frame", err)
			}

			if !upgraded {
				confWrite(t, ws1, "5")
			}
			confWrite(t, ws1, "4hello")
			if got, err := confRead(t, ws1); got != "4hello" {
				t.Fatalf("first websocket after the second: %q, %v", got, err)
			}
		})
	}
}
