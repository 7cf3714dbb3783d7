package server

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Two processes on one Redis with RECOVERY_WINDOW on: alice's phone drops
// from one, bob keeps writing to her (through both handlers and
// /api/events), and the phone comes back on the other process with its pid
// and offset: it gets each missed delivery once, in order, with its socket
// id, and /metrics counts it. Bob asking for her session with his own valid
// token gets a fresh session and none of her messages.
func TestRecoveryAcrossServers(t *testing.T) {
	redis := startRedis(t)
	with := func(c *Config) {
		c.RedisURL = redis.url()
		c.RecoveryWindow = time.Minute
	}
	a, b := startServer(t, with), startServer(t, with)
	connectCluster(t, a, b)

	phone := dial(t, a, token(t, "alice"))
	if phone.pid == "" {
		t.Fatal("no pid in the CONNECT reply")
	}
	bob := dial(t, b, token(t, "bob"))
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "before"})
	expect(t, phone.next(t), "message_sent", "alice")
	offset := phone.lastOffset()
	if offset == "" {
		t.Fatal("a delivery without an offset")
	}
	n := a.app.Sockets()
	phone.close()
	waitFor(t, "a to end the phone's socket", func() bool { return a.app.Sockets() == n-1 })

	var texts []string
	for i := range 3 {
		text := fmt.Sprintf("away-%d", i)
		texts = append(texts, text)
		bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": text})
	}
	bob.call(t, "postUpdated", map[string]any{"postId": "p1", "mentions": []string{"alice"}})
	if code, _ := postEvents(t, a, "test-key", map[string]any{"users": []string{"alice"}, "event": "ops", "args": map[string]any{"n": 1}}); code != http.StatusAccepted {
		t.Fatalf("/api/events: %d", code)
	}
	// Bob's own probe after them proves they were stored (one writer per
	// process, in order).
	bobPhone := dial(t, b, token(t, "bob"))
	bob.call(t, "sendMessage", map[string]any{"to": "bob", "text": "probe"})
	bobPhone.next(t)

	mallory, err := dialAuth(b.Addr().String(), map[string]string{"token": token(t, "bob"), "pid": phone.pid, "offset": offset})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mallory.close)
	if mallory.pid == phone.pid || mallory.sid == phone.sid {
		t.Fatal("alice's session was restored with bob's token")
	}

	back, err := dialAuth(b.Addr().String(), map[string]string{"token": token(t, "alice"), "pid": phone.pid, "offset": offset})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.close)
	if back.pid != phone.pid || back.sid != phone.sid {
		t.Fatalf("not recovered: sid %q pid %q", back.sid, back.pid)
	}
	// What bob's process sent comes in its order; the /api/events delivery,
	// published by the other process, may come anywhere among them (an ack
	// says the publish is queued, not done: the two writers race).
	var fromB []map[string]any
	ops := 0
	for range len(texts) + 2 {
		m := back.next(t)
		if m["event"] == "ops" {
			expect(t, m, "ops", "alice")
			ops++
			continue
		}
		fromB = append(fromB, m)
	}
	if ops != 1 || len(fromB) != len(texts)+1 {
		t.Fatalf("replay: %d ops deliveries and %v", ops, fromB)
	}
	for i, text := range texts {
		if got := expect(t, fromB[i], "message_sent", "alice"); got["text"] != text {
			t.Fatalf("got %v, want %s", got, text)
		}
	}
	expect(t, fromB[len(texts)], "post_updated_notification", "alice")
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "live"})
	if got := expect(t, back.next(t), "message_sent", "alice"); got["text"] != "live" {
		t.Fatalf("after the replay: %v", got)
	}
	// Bob's socket gets bob's own deliveries (it is one of his devices),
	// never one of alice's.
	for len(mallory.messages) > 0 {
		if m := <-mallory.messages; m["id"] != "bob" {
			t.Fatalf("bob's socket got %v", m)
		}
	}

	metrics := scrape(t, b)
	for name, want := range map[string]float64{
		"switchboard_recovery_sessions_recovered_total":                    1,
		`switchboard_recovery_sessions_refused_total{reason="other_user"}`: 1,
		`switchboard_recovery_sessions_refused_total{reason="invalid"}`:    0,
		"switchboard_recovery_sessions_expired_total":                      0,
	} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("b's /metrics: %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if got := scrape(t, a)["switchboard_recovery_sessions_persisted_total"]; got != 1 {
		t.Errorf("a's /metrics counts %v kept sessions, want 1", got)
	}
}

// On shutdown the sessions are kept before the connections close: the
// client finds its session on the other process right away.
func TestRecoveryAfterShutdown(t *testing.T) {
	redis := startRedis(t)
	with := func(c *Config) {
		c.RedisURL = redis.url()
		c.RecoveryWindow = time.Minute
	}
	a, b := startServer(t, with), startServer(t, with)
	connectCluster(t, a, b)
	phone := dial(t, a, token(t, "alice"))
	bob := dial(t, b, token(t, "bob"))
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "before"})
	phone.next(t)
	offset := phone.lastOffset()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-phone.done
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "during the restart"})
	back, err := dialAuth(b.Addr().String(), map[string]string{"token": token(t, "alice"), "pid": phone.pid, "offset": offset})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.close)
	if back.pid != phone.pid {
		t.Fatal("not recovered after a shutdown")
	}
	if got := expect(t, back.next(t), "message_sent", "alice"); got["text"] != "during the restart" {
		t.Fatalf("got %v", got)
	}
}

// Without Redis, the one process recovers its own sessions.
func TestRecoveryInMemory(t *testing.T) {
	srv := startServer(t, func(c *Config) { c.RecoveryWindow = time.Minute })
	phone := dial(t, srv, token(t, "alice"))
	bob := dial(t, srv, token(t, "bob"))
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "before"})
	phone.next(t)
	offset := phone.lastOffset()
	phone.close()
	waitFor(t, "the phone's socket to end", func() bool { return srv.app.Sockets() == 1 })
	bob.call(t, "sendMessage", map[string]any{"to": "alice", "text": "away"})
	back, err := dialAuth(srv.Addr().String(), map[string]string{"token": token(t, "alice"), "pid": phone.pid, "offset": offset})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.close)
	if back.pid != phone.pid || back.sid != phone.sid {
		t.Fatal("not recovered")
	}
	if got := expect(t, back.next(t), "message_sent", "alice"); got["text"] != "away" {
		t.Fatalf("got %v", got)
	}
}
