package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func ready(t *testing.T, srv *Server) bool {
	code, _ := get(t, srv.baseURL()+"/readyz")
	return code == http.StatusOK
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// expect checks a delivery's exact envelope and returns its args.
func expect(t *testing.T, got map[string]any, event, user string) map[string]any {
	t.Helper()
	if !reflect.DeepEqual(keys(got), []string{"args", "event", "id"}) || got["event"] != event || got["id"] != user {
		t.Fatalf("want %s for %s, got %v", event, user, got)
	}
	args, _ := got["args"].(map[string]any)
	return args
}

// connectCluster waits until a delivery published on from reaches a socket
// on to: subscriptions are established asynchronously at start.
func connectCluster(t *testing.T, from, to *Server) {
	t.Helper()
	waitFor(t, "both processes ready", func() bool { return ready(t, from) && ready(t, to) })
	probe := dial(t, to, token(t, "probe"))
	sender := dial(t, from, token(t, "probe-sender"))
	waitFor(t, "a cross-process delivery", func() bool {
		sender.call(t, "sendMessage", map[string]any{"to": "probe", "text": "ping"})
		select {
		case <-probe.messages:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

func postEvents(t *testing.T, srv *Server, key string, body any) (int, map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, srv.baseURL()+"/api/events", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// One user on two processes, another on the second: every delivery of both
// handlers and of /api/events reaches every device exactly once. The v3.0.2
// Redis adapter drops multi-room broadcasts between processes; this proves
// the per-room dispatch carries everything.
//
// With REDIS_ADAPTER=sharded each process subscribes to a user's room when
// the user connects there, before the CONNECT reply: bob is reachable from
// process a as soon as his client has connected to b.
func TestClusterDeliversEachMessageExactlyOnce(t *testing.T) {
	for _, adapter := range []string{AdapterClassic, AdapterSharded} {
		t.Run(adapter, func(t *testing.T) { testClusterDeliversEachMessageExactlyOnce(t, adapter) })
	}
}

func testClusterDeliversEachMessageExactlyOnce(t *testing.T, adapter string) {
	redis := startRedis(t)
	withRedis := func(c *Config) { c.RedisURL, c.RedisAdapter = redis.url(), adapter }
	a, b := startServer(t, withRedis), startServer(t, withRedis)
	connectCluster(t, a, b)

	laptop := dial(t, a, token(t, "alice")) // alice on process a
	phone := dial(t, b, token(t, "alice"))  // alice on process b
	bob := dial(t, b, token(t, "bob"))

	ack := laptop.call(t, "message", map[string]any{"event": "sendMessage", "args": map[string]any{"to": "bob", "text": "hello"}})
	if ack["ok"] != true {
		t.Fatalf("ack: %v", ack)
	}
	msg, _ := ack["message"].(map[string]any)
	if !reflect.DeepEqual(keys(msg), []string{"from", "id", "sentAt", "text", "to"}) {
		t.Fatalf("message shape: %v", msg)
	}
	if got := expect(t, bob.next(t), "message_sent", "bob"); !reflect.DeepEqual(got, msg) {
		t.Fatalf("bob got %v, ack said %v", got, msg)
	}
	if got := expect(t, phone.next(t), "message_sent", "alice"); !reflect.DeepEqual(got, msg) {
		t.Fatalf("alice's phone got %v, ack said %v", got, msg)
	}

	// Bob replies by the direct route: both of alice's devices get it.
	if ack := bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "hi back"}); ack["ok"] != true {
		t.Fatalf("reply ack: %v", ack)
	}
	expect(t, laptop.next(t), "message_sent", "alice")
	expect(t, phone.next(t), "message_sent", "alice")

	// A mention from process b reaches every device of both users once.
	ack = bob.call(t, "postUpdated", map[string]any{"postId": "p1", "mentions": []string{"alice", "alice", "bob"}})
	if ack["ok"] != true || ack["notified"] != float64(2) {
		t.Fatalf("postUpdated ack: %v", ack)
	}
	want := map[string]any{"postId": "p1", "by": "bob", "message": "bob mentioned you in post p1"}
	for _, c := range []struct {
		client *sioClient
		user   string
	}{{laptop, "alice"}, {phone, "alice"}, {bob, "bob"}} {
		if got := expect(t, c.client.next(t), "post_updated_notification", c.user); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s got %v", c.user, got)
		}
	}

	// The HTTP API on process a reaches devices on both processes.
	code, body := postEvents(t, a, "test-key", map[string]any{"users": []string{"bob", "alice", "bob"}, "event": "deploy", "args": map[string]any{"v": 2}})
	if code != http.StatusAccepted || body["users"] != float64(2) {
		t.Fatalf("api events: %d %v", code, body)
	}
	for _, c := range []struct {
		client *sioClient
		user   string
	}{{laptop, "alice"}, {phone, "alice"}, {bob, "bob"}} {
		if got := expect(t, c.client.next(t), "deploy", c.user); !reflect.DeepEqual(got, map[string]any{"v": float64(2)}) {
			t.Fatalf("%s got %v", c.user, got)
		}
	}

	// Markers: a duplicate of anything above would arrive before them
	// (Redis delivers each subscriber's messages in publish order).
	laptop.call(t, "sendMessage", map[string]any{"to": "bob", "text": "marker"})
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "marker"})
	for name, c := range map[string]*sioClient{"bob": bob, "laptop": laptop} {
		if got := c.next(t)["args"].(map[string]any)["text"]; got != "marker" {
			t.Fatalf("%s: a duplicate arrived before the marker: %v", name, got)
		}
	}
	for range 2 { // the phone sees its own user's two markers
		if got := phone.next(t)["args"].(map[string]any)["text"]; got != "marker" {
			t.Fatalf("phone: a duplicate arrived before the markers: %v", got)
		}
	}

	// The adapter's counters: b holds the rooms of probe, alice and bob.
	metrics := scrape(t, b)
	rooms := 0.0
	if adapter == AdapterSharded {
		rooms = 3
	}
	for name, want := range map[string]float64{
		"switchboard_adapter_room_subscriptions":          rooms,
		"switchboard_adapter_subscriptions_pending":       0,
		"switchboard_adapter_subscription_failures_total": 0,
	} {
		if metrics[name] != want {
			t.Errorf("%s = %v, want %v", name, metrics[name], want)
		}
	}
	for _, name := range []string{
		`switchboard_adapter_messages_published_total{kind="broadcast"}`,
		`switchboard_adapter_messages_received_total{kind="broadcast"}`,
	} {
		if metrics[name] < 1 {
			t.Errorf("%s = %v, want at least 1", name, metrics[name])
		}
	}
}

// scrape reads a server's /metrics into sample → value.
func scrape(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get(srv.baseURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// Redis goes away: both processes keep serving, readiness says why, local
// deliveries still work; Redis comes back on the same port and deliveries
// across processes resume without a restart.
func TestRedisOutageDegradesAndRecovers(t *testing.T) {
	redis := startRedis(t)
	withRedis := func(c *Config) { c.RedisURL = redis.url() }
	a, b := startServer(t, withRedis), startServer(t, withRedis)
	connectCluster(t, a, b)
	alice := dial(t, a, token(t, "alice"))
	carol := dial(t, a, token(t, "carol"))
	bob := dial(t, b, token(t, "bob"))

	redis.kill()
	for _, srv := range []*Server{a, b} {
		waitFor(t, "readyz 503", func() bool { return !ready(t, srv) })
		code, body := get(t, srv.baseURL()+"/readyz")
		if reason, _ := body["reason"].(string); code != http.StatusServiceUnavailable || !strings.HasPrefix(reason, "redis: ") {
			t.Fatalf("readyz during the outage: %d %v", code, body)
		}
		if code, _ := get(t, srv.baseURL()+"/healthz"); code != http.StatusOK {
			t.Fatalf("healthz during the outage: %d", code)
		}
	}
	if ack := alice.call(t, "sendMessage", map[string]any{"to": "carol", "text": "same process"}); ack["ok"] != true {
		t.Fatalf("ack during the outage: %v", ack)
	}
	expect(t, carol.next(t), "message_sent", "carol")

	redis.start()
	waitFor(t, "readyz 200 again", func() bool { return ready(t, a) && ready(t, b) })
	waitFor(t, "cross-process delivery to resume", func() bool {
		alice.call(t, "sendMessage", map[string]any{"to": "bob", "text": "are you there?"})
		select {
		case m := <-bob.messages:
			expect(t, m, "message_sent", "bob")
			return true
		case <-time.After(300 * time.Millisecond):
			return false
		}
	})
}

// Sockets that connect, talk and close leave no goroutine behind.
func TestNoGoroutineLeftAfterSocketsClose(t *testing.T) {
	srv := startServer(t, nil)
	warm := dial(t, srv, token(t, "warm"))
	warm.call(t, "sendMessage", map[string]any{"to": "nobody", "text": "warm up"})
	warm.close()
	waitFor(t, "the warm-up socket to be gone", func() bool { return srv.app.Sockets() == 0 })
	baseline := runtime.NumGoroutine()

	const n = 200
	clients := make([]*sioClient, 0, n)
	for i := range n {
		c, err := dialSocket(srv.Addr().String(), token(t, fmt.Sprintf("u%d", i%20)))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		clients = append(clients, c)
	}
	for i, c := range clients {
		c.call(t, "sendMessage", map[string]any{"to": fmt.Sprintf("u%d", (i+1)%20), "text": "hi"})
	}
	if during := runtime.NumGoroutine(); during < baseline+n {
		t.Fatalf("%d goroutines with %d sockets open, baseline %d: the measure is not sensitive", during, n, baseline)
	}
	for _, c := range clients {
		c.close()
	}
	waitFor(t, "sockets to close", func() bool { return srv.app.Sockets() == 0 })
	// A few goroutines of the HTTP server and timers may come and go; a
	// leak per socket would be hundreds.
	var now int
	deadline := time.Now().Add(15 * time.Second)
	for now = runtime.NumGoroutine(); now > baseline+10 && time.Now().Before(deadline); now = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	if now > baseline+10 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after %d sockets closed, baseline %d:\n%s", now, n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

// Shutdown closes connected sockets at the transport (clients reconnect) and
// returns although a client never completes its close.
func TestShutdownIsBoundedByAStuckClient(t *testing.T) {
	srv := startServer(t, nil)
	c := dial(t, srv, token(t, "alice"))

	// A websocket handshake that is never read from again.
	stuck, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	// And a request that never finishes sending its body.
	slow, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	select {
	case <-c.done: // the server closed the client's transport
	case <-time.After(10 * time.Second):
		t.Fatal("the connected client was not closed")
	}
	if code, _ := getNoFail(srv.baseURL() + "/healthz"); code != 0 {
		t.Fatalf("still accepting after shutdown: %d", code)
	}
}

func getNoFail(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
