package engineio_test

// Behaviour pinned by the Engine.IO protocol's conformance suite
// (socketio/engine.io-protocol, test-suite/), checked here over real TCP
// connections with the suite's options.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
