package redis

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/socketio"
)

// TestDeliveryResumesAfterRedisRestart kills redis-server and starts it
// again on the same port: go-redis redials and subscribes again, and
// deliveries between the processes resume.
func TestDeliveryResumesAfterRedisRestart(t *testing.T) {
	r := startRedis(t)
	n0 := startNode(t, r, "node0", Options{}, "/chat")
	n1 := startNode(t, r, "node1", Options{}, "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)

	if err := n0.nsp("/chat").To("room").Emit("before"); err != nil {
		t.Fatal(err)
	}
	c1.waitEvent("before")

	r.kill()
	waitFor(t, "both processes to notice", func() bool {
		return !n0.classic.Subscribed() && !n1.classic.Subscribed()
	})
	// With Redis gone an emit still returns at once; the publish fails
	// in the writer and is reported.
	start := time.Now()
	if err := n0.nsp("/chat").To("room").Emit("during"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("an emit during the outage took %v", d)
	}

	r.start()
	for _, n := range []*node{n0, n1} {
		if err := n.classic.WaitSubscribed(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	if err := n0.nsp("/chat").To("room").Emit("after"); err != nil {
		t.Fatal(err)
	}
	// The emit made during the outage is lost, or (when the client's
	// retry outlives the outage) late; never twice.
	if c := counts(c1.waitEvent("after")); c["during"] > 1 {
		t.Fatalf("the emit made during the outage arrived %d times", c["during"])
	}
	// Requests work again too.
	all, err := n0.nsp("/chat").FetchSockets(ctx)
	if err != nil || len(all) != 1 || all[0].ID != c1.sid {
		t.Fatalf("fetch after restart: %v, %v", all, err)
	}
	if n0.errors.Load() == 0 || n1.errors.Load() == 0 {
		t.Fatalf("the outage went unreported: %d, %d errors", n0.errors.Load(), n1.errors.Load())
	}
}

// TestFrozenRedis stops redis-server without closing anything (SIGSTOP),
// as a host gone without a reset: emits return at once and reach this
// process's sockets, what does not fit the queue is dropped and reported,
// the silent subscription is noticed by its ping and redialled, and all is
// well once Redis answers again.
func TestFrozenRedis(t *testing.T) {
	r := startRedis(t)
	opts := Options{QueueSize: 4, PublishTimeout: 300 * time.Millisecond, PingInterval: 100 * time.Millisecond}
	n0 := startNode(t, r, "node0", opts, "/chat")
	n1 := startNode(t, r, "node1", opts, "/chat")
	c0 := dial(t, n0, "c0", "/chat", map[string]any{"rooms": []string{"room"}})
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)

	r.freeze()
	thawed := false
	defer func() {
		if !thawed {
			r.thaw()
		}
	}()
	var full int
	var slowest time.Duration
	for range 50 {
		start := time.Now()
		err := n0.nsp("/chat").To("room").Emit("frozen")
		slowest = max(slowest, time.Since(start))
		switch {
		case errors.Is(err, ErrQueueFull):
			full++
		case err != nil:
			t.Fatal(err)
		}
	}
	if slowest > 50*time.Millisecond {
		t.Fatalf("an emit took %v while Redis was frozen", slowest)
	}
	if full == 0 {
		t.Fatal("50 emits fitted a queue of 4 while Redis was frozen")
	}
	if got := n0.classic.Stats().Dropped; got < uint64(full) {
		t.Fatalf("dropped %d, want at least %d", got, full)
	}
	if err := n0.nsp("/chat").To("room").Emit("end"); err != nil && !errors.Is(err, ErrQueueFull) {
		t.Fatal(err)
	}
	if got := counts(c0.waitEvent("end"))["frozen"]; got != 50 {
		t.Fatalf("the local socket got %d of 50", got)
	}
	waitFor(t, "the silent subscription to be noticed", func() bool { return !n1.classic.Subscribed() })

	r.thaw()
	thawed = true
	for _, n := range []*node{n0, n1} {
		if err := n.classic.WaitSubscribed(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	// What was queued before the freeze may still arrive; a fresh event
	// must.
	waitFor(t, "the queue to drain", func() bool {
		return n0.nsp("/chat").To("room").Emit("after") == nil
	})
	c1.waitEvent("after")
	if !strings.Contains(n1.errorTexts(), "subscription connection") {
		t.Fatalf("node1 reported no lost subscription: %s", n1.errorTexts())
	}
}

// TestPublishingOff: while Options.Publishing says no, the adapter acts as
// if this process were alone.
func TestPublishingOff(t *testing.T) {
	r := startRedis(t)
	var on atomic.Bool
	on.Store(true)
	publishing := on.Load
	n0 := startNode(t, r, "node0", Options{Publishing: publishing}, "/chat")
	n1 := startNode(t, r, "node1", Options{}, "/chat")
	c0 := dial(t, n0, "c0", "/chat", map[string]any{"rooms": []string{"room"}})
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 10*time.Second)

	on.Store(false)
	if err := n0.nsp("/chat").To("room").Emit("local-only"); err != nil {
		t.Fatal(err)
	}
	c0.waitEvent("local-only")
	if st := n0.classic.Stats(); st.Skipped != 1 || st.Published.Broadcasts != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n, err := n0.nsp("/chat").Adapter().ServerCount(ctx); err != nil || n != 1 {
		t.Fatalf("server count %d, %v", n, err)
	}
	all, err := n0.nsp("/chat").FetchSockets(ctx)
	if err != nil || len(all) != 1 || all[0].ID != c0.sid {
		t.Fatalf("fetch: %v, %v", all, err)
	}
	on.Store(true)
	if err := n0.nsp("/chat").To("room").Emit("published"); err != nil {
		t.Fatal(err)
	}
	if c := counts(c1.waitEvent("published")); c["local-only"] != 0 {
		t.Fatal("the local-only emit reached the other process")
	}
}

// TestCloseEndsEverything: Close returns once every goroutine it started
// has, is idempotent, fails pending requests, and unsubscribes.
func TestCloseEndsEverything(t *testing.T) {
	r := startRedis(t)
	probe := r.client(t)
	ctx := ctxTimeout(t, 10*time.Second)
	n0 := startNode(t, r, "node0", Options{RequestsTimeout: 5 * time.Second}, "/chat")
	n1 := startNode(t, r, "node1", Options{}, "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	if err := n0.nsp("/chat").To("room").Emit("traffic"); err != nil {
		t.Fatal(err)
	}
	c1.waitEvent("traffic")
	if n, _ := n0.nsp("/chat").Adapter().ServerCount(ctx); n != 2 {
		t.Fatalf("server count %d", n)
	}

	// A request that will not be answered (node1 has no handler) waits
	// until Close.
	n1.nsp("/chat").OnServerSideEmit(func([]any, func(any)) {})
	errc := make(chan error, 1)
	go func() {
		_, err := n0.nsp("/chat").ServerSideEmitWithAck(ctx, "unanswered")
		errc <- err
	}()
	waitFor(t, "the request to be pending", func() bool {
		a := n0.nsp("/chat").Adapter().(*adapter)
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.requests) == 1
	})
	if err := n0.classic.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending request: %v, want ErrClosed", err)
	}
	if err := n0.classic.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := n0.nsp("/chat").To("room").Emit("after-close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("emit after close: %v", err)
	}
	n0.close()
	n1.close()
	c1.close()
	if n, err := probe.PubSubNumSub(ctx, "socket.io-request#/chat#").Result(); err != nil || n["socket.io-request#/chat#"] != 0 {
		t.Fatalf("subscribers left: %v, %v", n, err)
	}
	waitFor(t, "no adapter goroutine left", func() bool { return leftovers() == "" })
}

// TestNamespaceCloseUnsubscribes: a namespace adapter's Close ends its
// subscriptions while the Classic serves on.
func TestNamespaceCloseUnsubscribes(t *testing.T) {
	r := startRedis(t)
	probe := r.client(t)
	ctx := ctxTimeout(t, 10*time.Second)
	n0 := startNode(t, r, "node0", Options{}, "/chat", "/other")
	if err := n0.nsp("/other").Adapter().Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the namespace's subscriptions to end", func() bool {
		n, err := probe.PubSubNumSub(ctx, "socket.io-request#/other#", "socket.io-request#/chat#").Result()
		return err == nil && n["socket.io-request#/other#"] == 0 && n["socket.io-request#/chat#"] == 1
	})
	if !n0.classic.Subscribed() {
		t.Fatal("not subscribed after a namespace closed")
	}
}

// TestOneClassicPerServer: a second server on the same Classic gets
// adapters that serve it alone, and an error says why.
func TestOneClassicPerServer(t *testing.T) {
	r := startRedis(t)
	n0 := startNode(t, r, "node0", Options{})
	srv, err := socketio.NewServer(engineioOptions(), socketio.Options{Adapter: n0.classic.Factory()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Bounded: nbio 1.6.8 can miss a Stop that comes right after its
		// Start (a poller clears its shutdown flag when it starts), and
		// this server is closed at once.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	}()
	if !strings.Contains(n0.errorTexts(), "already served") {
		t.Fatalf("errors: %q", n0.errorTexts())
	}
	if n, err := srv.Of("/").Adapter().ServerCount(context.Background()); err != nil || n != 1 {
		t.Fatalf("detached server count %d, %v", n, err)
	}
}

// leftovers describes the goroutines of this package and of go-redis that
// are still running outside tests.
func leftovers() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.(*T).Run") {
			continue
		}
		if strings.Contains(g, "switchboard/socketio/redis.") || strings.Contains(g, "redis/go-redis/v9.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestCloseWhileRedisIsFrozen: Close is bounded even when Redis answers
// nothing: PublishTimeout for the queue, then what a command in flight
// takes to time out by the client's own ReadTimeout (1 s in these tests;
// go-redis applies it, not the context, to a new connection's handshake).
func TestCloseWhileRedisIsFrozen(t *testing.T) {
	r := startRedis(t)
	opts := Options{PublishTimeout: 300 * time.Millisecond}
	n0 := startNode(t, r, "node0", opts, "/chat")
	r.freeze()
	defer r.thaw()
	for range 100 {
		_ = n0.nsp("/chat").Emit("queued")
	}
	start := time.Now()
	if err := n0.classic.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > opts.PublishTimeout+time.Second+500*time.Millisecond {
		t.Fatalf("Close took %v", d)
	}
	if n0.classic.Stats().Dropped == 0 {
		t.Fatal("nothing reported dropped")
	}
}
