package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/switchboard-rt/switchboard/engineio"
	"github.com/switchboard-rt/switchboard/relay"
)

// startRedis runs a private redis-server on a free port for the test.
func startRedis(t testing.TB) *goredis.Client {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is missing: apt-get install -y redis-server")
	}
	port := freePort(t)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = c.Close() })
	waitFor(t, "redis-server to answer", func() bool { return c.Ping(context.Background()).Err() == nil })
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echo sends every message back to its session and records why sessions
// closed.
type echo struct {
	mu     sync.Mutex
	closed map[string]string // sid → reason
}

func (e *echo) Open(s *engineio.Session) engineio.Receiver { return &echoReceiver{e, s} }

// closeReason is why sid closed, "" while it is open.
func (e *echo) closeReason(sid string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed[sid]
}

type echoReceiver struct {
	e *echo
	s *engineio.Session
}

func (r *echoReceiver) OnMessage(data []byte, binary bool) {
	_ = r.s.Send(engineio.NewTextMessage(append([]byte(nil), data...)))
}

func (r *echoReceiver) OnClose(reason string) {
	r.e.mu.Lock()
	r.e.closed[r.s.ID()] = reason
	r.e.mu.Unlock()
}

const (
	testPath       = "/engine.io/"
	testMaxPayload = 1000
)

// proc is one process of a test cluster: an echoing engine behind its
// relay, on a loopback port, naming itself in the X-Node header.
type proc struct {
	name   string
	relay  *relay.Relay
	engine *engineio.Server
	echo   *echo
	srv    *http.Server
	ln     net.Listener
	base   string
	// requests counts the Engine.IO requests that reached p; bodyBytes
	// the request body bytes its engine read.
	requests  atomic.Int64
	bodyBytes atomic.Int64
}

func startProc(t testing.TB, name string, rdb goredis.Cmdable) *proc {
	t.Helper()
	r, err := relay.New(relay.Options{
		Redis:         rdb,
		Path:          testPath,
		MaxPayload:    testMaxPayload,
		AnswerTimeout: 5 * time.Second,
		NodeHeader:    "X-Node",
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{closed: make(map[string]string)}
	eng, err := engineio.NewServer(engineio.Options{
		PingInterval:   2 * time.Second,
		PingTimeout:    2 * time.Second,
		MaxPayload:     testMaxPayload,
		NewID:          r.NewID,
		ForeignSession: r.Serve,
		AllowOrigin:    func(string) bool { return true },
	}, e)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, relay: r, engine: eng, echo: e}
	mux := http.NewServeMux()
	mux.Handle(testPath, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p.requests.Add(1)
		w.Header().Set("X-Node", name)
		req.Body = countingBody{req.Body, &p.bodyBytes}
		eng.ServeHTTP(w, req)
	}))
	mux.HandleFunc("/elsewhere/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "not the engine") })
	p.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.base = "http://" + p.ln.Addr().String()
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(p.ln) }()
	if err := r.Start(p.ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	waitFor(t, name+" to register", func() bool {
		v, err := rdb.Get(context.Background(), relay.KeyPrefix+r.Tag()).Result()
		return err == nil && v == p.ln.Addr().String()
	})
	return p
}

// stop closes the process in order: relay, engine, HTTP server.
func (p *proc) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.relay.Close(ctx); err != nil {
		t.Errorf("%s: relay close: %v", p.name, err)
	}
	_ = p.engine.Close(ctx)
	_ = p.srv.Close()
}

// crash ends the process without a word to the cluster: its registration
// stays in Redis until it expires.
func (p *proc) crash() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Close()
	_ = p.engine.Close(ctx)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// answer is one HTTP answer.
type answer struct {
	status      int
	body        string
	node, owner string
	header      http.Header
}

func request(t testing.TB, method, url string, body io.Reader, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return answer{res.StatusCode, string(b), res.Header.Get("X-Node"), res.Header.Get(relay.OwnerHeader), res.Header}
}

// handshake opens a polling session on p and returns its id.
func handshake(t testing.TB, p *proc) string {
	t.Helper()
	a := request(t, http.MethodGet, p.base+testPath+"?EIO=4&transport=polling", nil, nil)
	if a.status != 200 || !strings.HasPrefix(a.body, "0{") {
		t.Fatalf("handshake on %s: %d %q", p.name, a.status, a.body)
	}
	var open struct{ SID string }
	if err := json.Unmarshal([]byte(a.body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(open.SID, p.relay.Tag()) || len(open.SID) != 32 {
		t.Fatalf("session id %q does not start with %s's tag %s, or is not 32 characters", open.SID, p.name, p.relay.Tag())
	}
	return open.SID
}

func pollURL(p *proc, sid string) string {
	return p.base + testPath + "?EIO=4&transport=polling&sid=" + sid
}

const sessionUnknown = `{"code":1,"message":"Session ID unknown"}`
