package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/web"
)

const testSecret = "integration-test-secret"

// ---------------------------------------------------------------- redis ---

// redisProc is a private redis-server on a free port, which a test may kill
// and restart on the same port.
type redisProc struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is missing: apt-get install -y redis-server")
	}
	r := &redisProc{t: t, port: freePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisProc) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	waitFor(r.t, "redis-server to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port))
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// kill stops redis abruptly, as an outage would.
func (r *redisProc) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds; a condition that never holds fails the
// test after a bound, instead of hanging it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --------------------------------------------------------------- server ---

func testConfig() Config {
	return Config{
		Addr:            "127.0.0.1:0",
		JWTSecret:       []byte(testSecret),
		APIKey:          "test-key",
		MaxPayloadBytes: 1_000_000,
		PingInterval:    25 * time.Second,
		PingTimeout:     20 * time.Second,
		RateLimit:       1000,
		RateBurst:       1000,
		ShutdownTimeout: 5 * time.Second,
	}
}

func startServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return startServerLogged(t, mutate, logger)
}

// startServerLogged is startServer logging to logger.
func startServerLogged(t *testing.T, mutate func(*Config), logger *slog.Logger) *Server {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg, logger, web.Static())
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := srv.Open(); err != nil {
		t.Fatalf("open server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

func (s *Server) baseURL() string { return "http://" + s.Addr().String() }

func token(t *testing.T, user string) string {
	t.Helper()
	tok, err := NewTokens([]byte(testSecret), time.Now).Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// --------------------------------------------------------------- client ---

// sioClient is a minimal Socket.IO v5 client over a websocket, enough to
// connect to /socket, emit with acks and collect `message` deliveries.
// (Compatibility with the real npm clients is tested in web/test.)
type sioClient struct {
	conn     *websocket.Conn
	sid, pid string // from the CONNECT reply (pid with recovery on)
	wmu      sync.Mutex
	amu      sync.Mutex
	acks     map[int]chan []any
	nextAck  int
	messages chan map[string]any
	done     chan struct{}

	omu    sync.Mutex
	offset string // the last delivery's offset, as socket.io-client keeps it
}

// connectErr is the data of a connect_error packet.
type connectErr struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

func (e *connectErr) Error() string { return fmt.Sprintf("connect_error %s %v", e.Message, e.Data) }

func dial(t *testing.T, srv *Server, tok string) *sioClient {
	t.Helper()
	c, err := dialSocket(srv.Addr().String(), tok)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(c.close)
	return c
}

func dialSocket(addr, tok string) (*sioClient, error) {
	return dialAuth(addr, map[string]string{"token": tok})
}

// dialAuth connects with a CONNECT auth of its own (a token, and a pid and
// an offset to recover).
func dialAuth(addr string, authFields map[string]string) (*sioClient, error) {
	u := url.URL{Scheme: "ws", Host: addr, Path: "/socket.io/", RawQuery: "EIO=4&transport=websocket"}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(u.String(), http.Header{})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, open, err := conn.ReadMessage(); err != nil || !strings.HasPrefix(string(open), "0{") {
		conn.Close()
		return nil, fmt.Errorf("open packet: %q %v", open, err)
	}
	auth, _ := json.Marshal(authFields)
	if err := conn.WriteMessage(websocket.TextMessage, append([]byte("40/socket,"), auth...)); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		_, p, err := conn.ReadMessage()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("connect reply: %w", err)
		}
		switch s := string(p); {
		case strings.HasPrefix(s, "40/socket,"):
			_ = conn.SetReadDeadline(time.Time{})
			c := &sioClient{conn: conn, acks: map[int]chan []any{}, messages: make(chan map[string]any, 1024), done: make(chan struct{})}
			var reply struct{ SID, PID string }
			_ = json.Unmarshal([]byte(strings.TrimPrefix(s, "40/socket,")), &reply)
			c.sid, c.pid = reply.SID, reply.PID
			go c.read()
			return c, nil
		case strings.HasPrefix(s, "44/socket,"):
			conn.Close()
			var ce connectErr
			if err := json.Unmarshal([]byte(strings.TrimPrefix(s, "44/socket,")), &ce); err != nil {
				return nil, fmt.Errorf("connect_error %q: %w", s, err)
			}
			return nil, &ce
		case s == "2":
			_ = conn.WriteMessage(websocket.TextMessage, []byte("3"))
		}
	}
}

func (c *sioClient) read() {
	defer close(c.done)
	for {
		_, p, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		s := string(p)
		switch {
		case s == "2":
			c.write("3")
		case strings.HasPrefix(s, "42/socket,"):
			var ev []any
			if json.Unmarshal([]byte(strings.TrimPrefix(s, "42/socket,")), &ev) != nil || len(ev) < 2 || ev[0] != "message" {
				continue
			}
			if len(ev) == 3 { // with recovery on, the offset comes last
				off, ok := ev[2].(string)
				if !ok {
					continue
				}
				c.omu.Lock()
				c.offset = off
				c.omu.Unlock()
			} else if len(ev) != 2 {
				continue
			}
			if m, ok := ev[1].(map[string]any); ok {
				c.messages <- m
			}
		case strings.HasPrefix(s, "43/socket,"):
			rest := strings.TrimPrefix(s, "43/socket,")
			i := strings.IndexByte(rest, '[')
			id, err := strconv.Atoi(rest[:max(i, 0)])
			var args []any
			if err != nil || json.Unmarshal([]byte(rest[i:]), &args) != nil {
				continue
			}
			c.amu.Lock()
			ch := c.acks[id]
			delete(c.acks, id)
			c.amu.Unlock()
			if ch != nil {
				ch <- args
			}
		}
	}
}

func (c *sioClient) write(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

// call emits event with args and waits for the acknowledgement's first value.
func (c *sioClient) call(t *testing.T, event string, args ...any) map[string]any {
	t.Helper()
	payload, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan []any, 1)
	c.amu.Lock()
	c.nextAck++
	id := c.nextAck
	c.acks[id] = ch
	c.amu.Unlock()
	c.write("42/socket," + strconv.Itoa(id) + string(payload))
	select {
	case reply := <-ch:
		if len(reply) != 1 {
			t.Fatalf("ack of %s: want one value, got %v", event, reply)
		}
		m, _ := reply[0].(map[string]any)
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no ack for %s", event)
		return nil
	}
}

// next returns the next delivery, failing the test after a bound.
func (c *sioClient) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m := <-c.messages:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a delivery")
		return nil
	}
}

// lastOffset is the offset of the last delivery read.
func (c *sioClient) lastOffset() string {
	c.omu.Lock()
	defer c.omu.Unlock()
	return c.offset
}

func (c *sioClient) close() {
	_ = c.conn.Close()
	<-c.done
}
