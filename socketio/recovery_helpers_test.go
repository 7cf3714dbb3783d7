package socketio

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/engineio"
)

// recHTTP is a Socket.IO server on a loopback listener.
type recHTTP struct {
	t    *testing.T
	io   *Server
	http *httptest.Server
}

func startRecHTTP(t *testing.T, opts Options) *recHTTP {
	t.Helper()
	srv, err := NewServer(engineio.Options{PingInterval: time.Minute, PingTimeout: time.Minute}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := &recHTTP{t: t, io: srv, http: httptest.NewServer(srv)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		ts.http.Close()
	})
	return ts
}

// testEvent is an event a client received.
type testEvent struct {
	name string
	args []any
}

// testClient is a minimal socket.io-client v4 over a websocket, for one
// namespace, that records the events it gets.
type testClient struct {
	t    *testing.T
	nsp  string
	conn *websocket.Conn
	sid  string
	pid  string
	// connectErr is the CONNECT_ERROR payload when the connect was refused.
	connectErr map[string]any

	wmu sync.Mutex

	mu      sync.Mutex
	events  []testEvent
	closed  bool
	changed chan struct{}
	done    chan struct{}
}

// dialTest connects to nsp with auth; the connect may be refused
// (connectErr set).
func dialTest(t *testing.T, ts *recHTTP, nsp string, auth map[string]any) *testClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &testClient{t: t, nsp: nsp, conn: conn, changed: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(c.close)
	if _, msg, err := conn.ReadMessage(); err != nil || msg[0] != '0' {
		t.Fatalf("open packet: %q, %v", msg, err)
	}
	body, _ := json.Marshal(auth)
	c.write("40" + c.prefix() + string(body))
	_, msg, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	p := string(msg)
	switch {
	case strings.HasPrefix(p, "40"+c.prefix()):
		var ok struct {
			SID string `json:"sid"`
			PID string `json:"pid"`
		}
		if err := json.Unmarshal([]byte(p[2+len(c.prefix()):]), &ok); err != nil {
			t.Fatalf("connect reply %q: %v", p, err)
		}
		c.sid, c.pid = ok.SID, ok.PID
	case strings.HasPrefix(p, "44"+c.prefix()):
		_ = json.Unmarshal([]byte(p[2+len(c.prefix()):]), &c.connectErr)
		close(c.done)
		return c
	default:
		t.Fatalf("connect reply %q", p)
	}
	go c.read()
	return c
}

func (c *testClient) prefix() string {
	if c.nsp == "/" {
		return ""
	}
	return c.nsp + ","
}

func (c *testClient) write(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

// close drops the connection without a word: the server sees a transport
// close.
func (c *testClient) close() {
	_ = c.conn.Close()
	<-c.done
}

func (c *testClient) read() {
	defer close(c.done)
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.notifyLocked()
		c.mu.Unlock()
	}()
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		p := string(msg)
		switch {
		case p == "2":
			c.write("3")
		case strings.HasPrefix(p, "42"+c.prefix()):
			body := p[2+len(c.prefix()):]
			body = strings.TrimLeft(body, "0123456789") // an ack id
			var data []any
			if err := json.Unmarshal([]byte(body), &data); err != nil || len(data) == 0 {
				c.t.Errorf("bad event %q", p)
				continue
			}
			name, _ := data[0].(string)
			c.mu.Lock()
			c.events = append(c.events, testEvent{name: name, args: data[1:]})
			c.notifyLocked()
			c.mu.Unlock()
		}
	}
}

func (c *testClient) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// emit sends an event.
func (c *testClient) emit(name string, args ...any) {
	b, _ := json.Marshal(append([]any{name}, args...))
	c.write("42" + c.prefix() + string(b))
}

// waitEvents waits until the client has n events and returns them all.
func (c *testClient) waitEvents(n int) []testEvent {
	c.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.events) >= n {
			out := append([]testEvent(nil), c.events...)
			c.mu.Unlock()
			return out
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			c.mu.Lock()
			got := len(c.events)
			c.mu.Unlock()
			c.t.Fatalf("waited for %d events, got %d", n, got)
		}
	}
}
