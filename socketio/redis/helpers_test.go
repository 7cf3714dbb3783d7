package redis

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/engineio"
	"github.com/switchboard-rt/switchboard/socketio"
)

// ---------------------------------------------------------------- redis ---

// redisProc is a private redis-server on a free port, which a test may
// kill, stop and restart on the same port.
type redisProc struct {
	t    *testing.T
	port int
	dir  string
	args []string // more arguments (a cluster node's)
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

func (r *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir}, r.args...)...)
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	waitFor(r.t, "redis-server to answer", func() bool {
		c := goredis.NewClient(&goredis.Options{Addr: r.addr(), MaxRetries: -1})
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
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

// freeze and thaw stop and resume the process: its connections stay open
// and answer nothing, as a peer gone without a reset.
func (r *redisProc) freeze() { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }
func (r *redisProc) thaw()   { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

func (r *redisProc) client(t *testing.T) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: r.addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
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

// waitFor polls cond until it holds, failing the test after a bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// ----------------------------------------------------------------- node ---

// node is one Socket.IO process: its Redis clients, its Classic, its
// server and its HTTP listener. Sockets join the rooms named in their auth
// ("rooms") and take its "data" as their data.
type node struct {
	t       *testing.T
	name    string
	pub     goredis.UniversalClient
	sub     goredis.UniversalClient
	classic *Classic // one of these two
	sharded *Sharded
	adapter nodeAdapter
	io      *socketio.Server
	http    *httptest.Server

	errors   atomic.Int64
	errMu    sync.Mutex
	errTexts []string

	closeOnce sync.Once
}

// nodeAdapter is what the tests need of Classic and Sharded.
type nodeAdapter interface {
	Factory() socketio.AdapterFactory
	WaitSubscribed(ctx context.Context) error
	Subscribed() bool
	Stats() Stats
	UID() string
	Close() error
}

// adapterKind picks the adapter of a test node.
type adapterKind string

const (
	classicKind adapterKind = "classic"
	shardedKind adapterKind = "sharded"
)

// forEachKind runs a test against both adapters.
func forEachKind(t *testing.T, test func(t *testing.T, kind adapterKind)) {
	for _, kind := range []adapterKind{classicKind, shardedKind} {
		t.Run(string(kind), func(t *testing.T) { test(t, kind) })
	}
}

func startNode(t *testing.T, r *redisProc, name string, opts Options, nsps ...string) *node {
	t.Helper()
	return startNodeOf(t, classicKind, r, name, opts, nsps...)
}

// startNodeOf starts a node with the adapter of kind on the one Redis r.
func startNodeOf(t *testing.T, kind adapterKind, r *redisProc, name string, opts Options, nsps ...string) *node {
	t.Helper()
	pub := goredis.NewClient(&goredis.Options{Addr: r.addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
	sub := goredis.NewClient(&goredis.Options{Addr: r.addr(), Protocol: 2, DialTimeout: time.Second})
	return startNodeWith(t, kind, pub, sub, name, opts, nsps...)
}

// startNodeWith starts a node over the given clients, which it closes.
func startNodeWith(t *testing.T, kind adapterKind, pub, sub goredis.UniversalClient, name string, opts Options, nsps ...string) *node {
	t.Helper()
	return startNodeFull(t, kind, pub, sub, name, opts, socketio.Options{}, nsps...)
}

// startNodeFull is startNodeWith with socketio options (their Adapter and
// Logger are the node's).
func startNodeFull(t *testing.T, kind adapterKind, pub, sub goredis.UniversalClient, name string, opts Options, sopts socketio.Options, nsps ...string) *node {
	t.Helper()
	n := &node{t: t, name: name, pub: pub, sub: sub}
	if opts.Logger == nil {
		opts.Logger = testLogger().With("node", name)
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) {
			n.errors.Add(1)
			n.errMu.Lock()
			n.errTexts = append(n.errTexts, err.Error())
			n.errMu.Unlock()
		}
	}
	switch kind {
	case shardedKind:
		sh, err := NewSharded(n.pub, n.sub, opts)
		if err != nil {
			t.Fatal(err)
		}
		n.sharded, n.adapter = sh, sh
	default:
		n.classic = NewClassic(n.pub, n.sub, opts)
		n.adapter = n.classic
	}
	sopts.Adapter, sopts.Logger = n.adapter.Factory(), opts.Logger
	srv, err := socketio.NewServer(engineioOptions(), sopts)
	if err != nil {
		t.Fatal(err)
	}
	n.io = srv
	for _, name := range append([]string{"/"}, nsps...) {
		// In a middleware, so that the rooms are joined before the client
		// has its CONNECT reply (OnConnection runs after it).
		srv.Of(name).Use(func(s *socketio.Socket, next func(error)) {
			auth := s.Auth()
			if rooms, ok := auth["rooms"].([]any); ok {
				for _, r := range rooms {
					s.Join(r.(string))
				}
			}
			if d, ok := auth["data"]; ok {
				s.SetData(d)
			}
			next(nil)
		})
	}
	n.http = httptest.NewServer(srv)
	t.Cleanup(n.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.adapter.WaitSubscribed(ctx); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// engineioOptions keep heartbeats out of the tests' way.
func engineioOptions() engineio.Options {
	return engineio.Options{PingInterval: time.Minute, PingTimeout: time.Minute}
}

func (n *node) nsp(name string) *socketio.Namespace { return n.io.Of(name) }

// close shuts the node down in the server's order: Socket.IO (with its
// adapters), then the Classic or Sharded, then the clients.
func (n *node) close() {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.io.Close(ctx)
		n.http.Close()
		if err := n.adapter.Close(); err != nil {
			n.t.Errorf("%s: close: %v", n.name, err)
		}
		_ = n.pub.Close()
		_ = n.sub.Close()
	})
}

func (n *node) errorTexts() string {
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return strings.Join(n.errTexts, "\n")
}

// --------------------------------------------------------------- client ---

// event is an event a client received.
type event struct {
	name string
	args []any
	ack  int64 // -1: none wanted
}

// client is a minimal socket.io-client v4 over a websocket: one namespace,
// events recorded, acknowledgements answered by onAck.
type client struct {
	t    *testing.T
	name string
	nsp  string
	conn *websocket.Conn
	sid  string
	pid  string // with recovery on

	wmu sync.Mutex // writes

	mu           sync.Mutex
	events       []event
	disconnected bool
	changed      chan struct{}

	onAck func(e event) []any // answers an event that wants an ack; nil: no answer
	done  chan struct{}
}

func dial(t *testing.T, n *node, name, nsp string, auth map[string]any) *client {
	t.Helper()
	url := "ws" + strings.TrimPrefix(n.http.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	c := &client{t: t, name: name, nsp: nsp, conn: conn, changed: make(chan struct{}), done: make(chan struct{})}
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
	want := "40" + c.prefix()
	if !strings.HasPrefix(p, want) {
		t.Fatalf("connect reply %q", p)
	}
	var ok struct {
		SID string `json:"sid"`
		PID string `json:"pid"`
	}
	if err := json.Unmarshal([]byte(p[len(want):]), &ok); err != nil {
		t.Fatalf("connect reply %q: %v", p, err)
	}
	c.sid, c.pid = ok.SID, ok.PID
	go c.read()
	return c
}

// prefix is the namespace part of a packet: "/chat," or nothing for "/".
func (c *client) prefix() string {
	if c.nsp == "/" {
		return ""
	}
	return c.nsp + ","
}

func (c *client) write(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

func (c *client) close() {
	_ = c.conn.Close()
	<-c.done
}

func (c *client) read() {
	defer close(c.done)
	var binary string // a binary event waiting for its attachments
	var want int
	var atts [][]byte
	for {
		typ, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.BinaryMessage {
			atts = append(atts, msg) // Engine.IO v4 sends attachments bare
			if len(atts) == want {
				c.onEvent(binary, atts)
				binary, want, atts = "", 0, nil
			}
			continue
		}
		p := string(msg)
		switch {
		case p == "2":
			c.write("3")
		case strings.HasPrefix(p, "45"):
			n, rest, _ := strings.Cut(p[2:], "-")
			want, _ = strconv.Atoi(n)
			binary = strings.TrimPrefix(rest, c.prefix())
		case strings.HasPrefix(p, "42"+c.prefix()):
			c.onEvent(p[2+len(c.prefix()):], nil)
		case p == "41"+c.prefix() || p == "41"+strings.TrimSuffix(c.prefix(), ","):
			c.mu.Lock()
			c.disconnected = true
			c.notifyLocked()
			c.mu.Unlock()
		}
	}
}

// placeholders puts the binary attachments in place of their
// placeholders.
func placeholders(v any, atts [][]byte) any {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			v[i] = placeholders(e, atts)
		}
	case map[string]any:
		if v["_placeholder"] == true {
			return atts[int(v["num"].(float64))]
		}
		for k, e := range v {
			v[k] = placeholders(e, atts)
		}
	}
	return v
}

func (c *client) onEvent(s string, atts [][]byte) {
	e := event{ack: -1}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > 0 {
		e.ack, _ = strconv.ParseInt(s[:i], 10, 64)
	}
	var data []any
	if err := json.Unmarshal([]byte(s[i:]), &data); err != nil || len(data) == 0 {
		c.t.Errorf("%s: bad event %q", c.name, s)
		return
	}
	data = placeholders(data, atts).([]any)
	e.name, _ = data[0].(string)
	e.args = data[1:]
	if e.ack >= 0 && c.onAck != nil {
		if answer := c.onAck(e); answer != nil {
			b, _ := json.Marshal(answer)
			c.write("43" + c.prefix() + strconv.FormatInt(e.ack, 10) + string(b))
		}
	}
	c.mu.Lock()
	c.events = append(c.events, e)
	c.notifyLocked()
	c.mu.Unlock()
}

func (c *client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// emit sends an event to the server.
func (c *client) emit(name string, args ...any) {
	b, _ := json.Marshal(append([]any{name}, args...))
	c.write("42" + c.prefix() + string(b))
}

// waitEvent waits for the first event named name and returns the events
// received before it (and forgets them all).
func (c *client) waitEvent(name string) []event {
	c.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, e := range c.events {
			if e.name == name {
				before := append([]event(nil), c.events[:i]...)
				c.events = append([]event(nil), c.events[i+1:]...)
				c.mu.Unlock()
				return before
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			c.t.Fatalf("%s: no %q event", c.name, name)
		}
	}
}

func (c *client) waitDisconnected() {
	c.t.Helper()
	waitFor(c.t, c.name+" to be disconnected", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.disconnected
	})
}

// counts counts events by name.
func counts(events []event) map[string]int {
	m := map[string]int{}
	for _, e := range events {
		m[e.name]++
	}
	return m
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
