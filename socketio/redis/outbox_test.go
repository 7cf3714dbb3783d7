package redis

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// outboxOpts are the options of a node with the outbox on; the probe is
// left out (Publishing nil): the writer finds the outage itself.
func outboxOpts(max int) Options {
	return Options{
		PublishTimeout: 300 * time.Millisecond,
		PingInterval:   200 * time.Millisecond,
		Outbox:         OutboxOptions{MaxMessages: max, MaxAge: time.Minute},
	}
}

// emitNumbered emits "m" with 0..n-1 from n's namespace /chat to room.
func emitNumbered(t *testing.T, n *node, from, count int) {
	t.Helper()
	for i := from; i < from+count; i++ {
		if err := n.nsp("/chat").To("room").Emit("m", i); err != nil {
			t.Fatalf("emit %d: %v", i, err)
		}
	}
}

// numbers returns the arguments of the "m" events, in order of arrival.
func numbers(events []event) []int {
	var got []int
	for _, e := range events {
		if e.name == "m" && len(e.args) == 1 {
			f, _ := e.args[0].(float64)
			got = append(got, int(f))
		}
	}
	return got
}

// wantSequence fails unless got is from, from+1, … to-1: each once, in
// order.
func wantSequence(t *testing.T, got []int, from, to int) {
	t.Helper()
	seen := map[int]int{}
	dups := 0
	for _, v := range got {
		seen[v]++
		if seen[v] == 2 {
			dups++
		}
	}
	missing := 0
	for i := from; i < to; i++ {
		if seen[i] == 0 {
			missing++
		}
	}
	ordered := true
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			ordered = false
		}
	}
	if missing > 0 || dups > 0 || !ordered || len(got) != to-from {
		t.Fatalf("received %d messages, want %d to %d once each in order: %d missing, %d duplicated, in order: %v\n%v",
			len(got), from, to-1, missing, dups, ordered, got)
	}
}

// TestOutboxKeepsBroadcastsThroughRestart: Redis is killed and started
// again on the same port; what was emitted meanwhile reaches the other
// process once each, in order, after the messages before it.
func TestOutboxKeepsBroadcastsThroughRestart(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind adapterKind) {
		r := startRedis(t)
		n0 := startNodeOf(t, kind, r, "node0", outboxOpts(1000), "/chat")
		n1 := startNodeOf(t, kind, r, "node1", outboxOpts(1000), "/chat")
		c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
		ctx := ctxTimeout(t, 30*time.Second)
		waitRoomSubscribed(t, kind, n0, n1)

		emitNumbered(t, n0, 0, 10)
		c1.waitEventCount("m", 10)
		waitCounted(t, n0, 2)
		r.kill()
		waitFor(t, "node1 to notice", func() bool { return !n1.adapter.Subscribed() })
		emitNumbered(t, n0, 10, 200)
		waitWriterDown(t, n0)
		r.start()
		for _, n := range []*node{n0, n1} {
			if err := n.adapter.WaitSubscribed(ctx); err != nil {
				t.Fatalf("%s: %v", n.name, err)
			}
		}
		if err := n0.nsp("/chat").To("room").Emit("end"); err != nil {
			t.Fatal(err)
		}
		wantSequence(t, numbers(c1.waitEvent("end")), 0, 210)
		// c1 has them once Redis ran the batch, maybe before the writer
		// read its answer and counted.
		waitFor(t, "the outbox to drain", func() bool { return n0.adapter.Stats().Outbox.Waiting == 0 })
		st := n0.adapter.Stats()
		if st.Outbox.Held == 0 || st.Outbox.DroppedCount+st.Outbox.DroppedAge != 0 || st.Outbox.Waiting != 0 {
			t.Fatalf("outbox stats %+v", st.Outbox)
		}
	})
}

// waitCounted waits until n's outbox has counted the subscribers it waits
// for after an outage.
func waitCounted(t *testing.T, n *node, want int64) {
	t.Helper()
	waitFor(t, n.name+" to count the subscribers", func() bool { return n.adapter.Stats().Outbox.Subscribers == want })
}

// waitWriterDown waits until n's writer has reported a failed publish
// (once per outage).
func waitWriterDown(t *testing.T, n *node) {
	t.Helper()
	waitFor(t, n.name+"'s writer to fail", func() bool { return strings.Contains(n.errorTexts(), "redis adapter: publish: ") })
}

// waitRoomSubscribed waits, for the sharded adapter, until node1's room
// channel is subscribed (its subscriptions follow the rooms).
func waitRoomSubscribed(t *testing.T, kind adapterKind, nodes ...*node) {
	t.Helper()
	if kind != shardedKind {
		return
	}
	for _, n := range nodes {
		waitFor(t, n.name+"'s rooms", func() bool { return n.sharded.Subscriptions().Pending == 0 })
	}
}

// TestOutboxKeepsBroadcastsThroughFreeze: Redis is stopped (SIGSTOP), so
// that publishes hang rather than fail, then resumed.
func TestOutboxKeepsBroadcastsThroughFreeze(t *testing.T) {
	r := startRedis(t)
	n0 := startNode(t, r, "node0", outboxOpts(1000), "/chat")
	n1 := startNode(t, r, "node1", outboxOpts(1000), "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)

	emitNumbered(t, n0, 0, 10)
	c1.waitEventCount("m", 10)
	waitCounted(t, n0, 2)
	r.freeze()
	thawed := false
	defer func() {
		if !thawed {
			r.thaw()
		}
	}()
	emitNumbered(t, n0, 10, 100)
	// Long enough for an attempt to time out and the subscription to be
	// dropped as silent.
	waitWriterDown(t, n0)
	waitFor(t, "node1 to notice", func() bool { return !n1.classic.Subscribed() })
	emitNumbered(t, n0, 110, 100)
	r.thaw()
	thawed = true
	for _, n := range []*node{n0, n1} {
		if err := n.classic.WaitSubscribed(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	if err := n0.nsp("/chat").To("room").Emit("end"); err != nil {
		t.Fatal(err)
	}
	wantSequence(t, numbers(c1.waitEvent("end")), 0, 210)
}

// replyDropper is a TCP proxy in front of Redis that can swallow Redis's
// answers: while drop is set, a connection that sends EXEC hears nothing
// more, so that a transaction runs and its client never hears of it, as
// when a connection breaks between the two.
type replyDropper struct {
	ln   net.Listener
	drop atomic.Bool
	mu   sync.Mutex
	conn []net.Conn
}

func startReplyDropper(t *testing.T, target string) *replyDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln}
	t.Cleanup(p.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conn = append(p.conn, c, s)
			p.mu.Unlock()
			var mute atomic.Bool
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if p.drop.Load() && bytes.Contains(bytes.ToLower(buf[:n]), []byte("\r\nexec\r\n")) {
							mute.Store(true)
						}
						if _, werr := s.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = s.Close()
			}()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !mute.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = c.Close()
			}()
		}
	}()
	return p
}

func (p *replyDropper) addr() string { return p.ln.Addr().String() }

func (p *replyDropper) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conn {
		_ = c.Close()
	}
}

// TestOutboxExactlyOnceWhenAnswersAreLost: the publishing client's
// transactions run but their answers are lost; the writer cannot tell
// whether they ran, and must not publish them twice (nor lose them).
func TestOutboxExactlyOnceWhenAnswersAreLost(t *testing.T) {
	r := startRedis(t)
	proxy := startReplyDropper(t, r.addr())
	pub := goredis.NewClient(&goredis.Options{Addr: proxy.addr(), DialTimeout: time.Second, ReadTimeout: 200 * time.Millisecond, WriteTimeout: time.Second, MaxRetries: 1})
	sub := goredis.NewClient(&goredis.Options{Addr: r.addr(), Protocol: 2, DialTimeout: time.Second})
	n0 := startNodeWith(t, classicKind, pub, sub, "node0", outboxOpts(1000), "/chat")
	n1 := startNode(t, r, "node1", outboxOpts(1000), "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})

	emitNumbered(t, n0, 0, 10)
	c1.waitEventCount("m", 10)
	proxy.drop.Store(true)
	defer proxy.drop.Store(false)
	emitNumbered(t, n0, 10, 50)
	// They ran: node1's client has them, while node0 heard nothing.
	c1.waitEventCount("m", 60)
	waitFor(t, "node0 to miss an answer", func() bool { return n0.errors.Load() > 0 })
	proxy.drop.Store(false)
	if err := n0.nsp("/chat").To("room").Emit("end"); err != nil {
		t.Fatal(err)
	}
	wantSequence(t, numbers(c1.waitEvent("end")), 0, 60)
	waitFor(t, "61 broadcasts counted as published", func() bool { return n0.classic.Stats().Published.Broadcasts == 61 })
}

// waitEventCount waits until the client has at least n events named name
// (and keeps them).
func (c *client) waitEventCount(name string, n int) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("%s: %d %q events", c.name, n, name), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return counts(c.events)[name] >= n
	})
}

// TestOutboxOverflow: past its count, the outbox drops the oldest; what
// overflowed is counted and logged once for the outage, and the rest is
// delivered in order.
func TestOutboxOverflow(t *testing.T) {
	r := startRedis(t)
	var logs syncBuffer
	opts := outboxOpts(20)
	opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	n0 := startNode(t, r, "node0", opts, "/chat")
	n1 := startNode(t, r, "node1", outboxOpts(20), "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)

	if err := n0.nsp("/chat").To("room").Emit("first"); err != nil {
		t.Fatal(err)
	}
	c1.waitEvent("first")
	waitCounted(t, n0, 2)
	r.kill()
	waitFor(t, "node1 to notice", func() bool { return !n1.classic.Subscribed() })
	emitNumbered(t, n0, 0, 1)
	waitWriterDown(t, n0)
	emitNumbered(t, n0, 1, 99)
	waitFor(t, "the outbox to overflow", func() bool { return n0.classic.Stats().Outbox.DroppedCount == 80 })
	r.start()
	for _, n := range []*node{n0, n1} {
		if err := n.classic.WaitSubscribed(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	// "end" must not push another message out of the full outbox.
	waitFor(t, "the outbox to drain", func() bool { return n0.classic.Stats().Outbox.Waiting == 0 })
	if err := n0.nsp("/chat").To("room").Emit("end"); err != nil {
		t.Fatal(err)
	}
	wantSequence(t, numbers(c1.waitEvent("end")), 80, 100)
	// The line is written once the writer has the batch's answer, which
	// may be after c1 has the batch.
	waitFor(t, "the line with the number dropped", func() bool { return strings.Contains(logs.String(), `"dropped":80`) })
	if st := n0.classic.Stats(); st.Outbox.DroppedCount != 80 || st.Outbox.DroppedAge != 0 || st.Dropped < 80 {
		t.Fatalf("stats %+v", st)
	}
	if got := strings.Count(logs.String(), `"dropped":80`); got != 1 {
		t.Fatalf("%d log lines with the number dropped, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "messages are kept in the outbox"); got != 1 {
		t.Fatalf("%d log lines for the outage, want 1:\n%s", got, logs.String())
	}
}

// TestOutboxMaxAge: what waited past MaxAge is dropped and counted.
func TestOutboxMaxAge(t *testing.T) {
	r := startRedis(t)
	opts := outboxOpts(1000)
	opts.Outbox.MaxAge = 100 * time.Millisecond
	n0 := startNode(t, r, "node0", opts, "/chat")
	n1 := startNode(t, r, "node1", outboxOpts(1000), "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)

	r.kill()
	emitNumbered(t, n0, 0, 10)
	waitFor(t, "the messages to expire", func() bool { return n0.classic.Stats().Outbox.DroppedAge == 10 })
	r.start()
	for _, n := range []*node{n0, n1} {
		if err := n.classic.WaitSubscribed(ctx); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
	}
	if err := n0.nsp("/chat").To("room").Emit("end"); err != nil {
		t.Fatal(err)
	}
	if got := numbers(c1.waitEvent("end")); len(got) != 0 {
		t.Fatalf("expired messages arrived: %v", got)
	}
}

// TestOutboxCloseGivesUp: Close with Redis away waits PublishTimeout for
// the outbox, then drops what is left and says so.
func TestOutboxCloseGivesUp(t *testing.T) {
	r := startRedis(t)
	n0 := startNode(t, r, "node0", outboxOpts(1000), "/chat")
	r.kill()
	emitNumbered(t, n0, 0, 5)
	done := make(chan struct{})
	go func() { n0.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return")
	}
	if !strings.Contains(n0.errorTexts(), "left unpublished at close") {
		t.Fatalf("errors: %s", n0.errorTexts())
	}
}

// TestSubscriptionDroppedByRedis: Redis closes the subscriber past its
// client-output-buffer-limit; the loss is seen at once, counted and logged
// once, Subscribed is false until the subscriptions are back, and
// deliveries work again.
func TestSubscriptionDroppedByRedis(t *testing.T) {
	r := startRedis(t)
	var logs syncBuffer
	opts := Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	n0 := startNode(t, r, "node0", Options{}, "/chat")
	n1 := startNode(t, r, "node1", opts, "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	ctx := ctxTimeout(t, 30*time.Second)
	admin := r.client(t)
	if err := admin.ConfigSet(ctx, "client-output-buffer-limit", "pubsub 64kb 32kb 1").Err(); err != nil {
		t.Fatal(err)
	}
	// One message larger than the hard limit: Redis drops every
	// subscriber it is for.
	lost := make(chan struct{})
	go func() {
		waitFor(t, "node1 to lose its subscription", func() bool { return !n1.classic.Subscribed() })
		close(lost)
	}()
	if err := n0.nsp("/chat").To("room").Emit("big", strings.Repeat("x", 200<<10)); err != nil {
		t.Fatal(err)
	}
	<-lost
	if err := n1.classic.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n1.classic.Stats().SubscriptionLost; got != 1 {
		t.Fatalf("subscription losses: %d, want 1", got)
	}
	if got := strings.Count(logs.String(), "subscription connection lost"); got != 1 {
		t.Fatalf("%d log lines for the loss, want 1:\n%s", got, logs.String())
	}
	if !strings.Contains(n1.errorTexts(), ErrSubscriptionLost.Error()) {
		t.Fatalf("errors: %s", n1.errorTexts())
	}
	if err := n0.nsp("/chat").To("room").Emit("after"); err != nil {
		t.Fatal(err)
	}
	c1.waitEvent("after")

	// CLIENT KILL TYPE pubsub, twice: two losses.
	for i := range 2 {
		if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the loss to be counted", func() bool { return n1.classic.Stats().SubscriptionLost == uint64(2+i) })
		if err := n1.classic.WaitSubscribed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := n0.nsp("/chat").To("room").Emit("again"); err != nil {
		t.Fatal(err)
	}
	c1.waitEvent("again")
}

// syncBuffer is a bytes.Buffer for a logger written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
