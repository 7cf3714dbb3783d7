package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// waitShardSubscribers waits until channel has n sharded subscribers.
func waitShardSubscribers(t *testing.T, c goredis.UniversalClient, channel string, n int) {
	t.Helper()
	waitFor(t, channel+" to have its subscribers", func() bool {
		got, err := countSubscribers(context.Background(), c, true, channel)
		return err == nil && got == n
	})
}

// shardChannels lists the sharded channels of namespace nsp with at
// least one subscriber.
func shardChannels(t *testing.T, c *goredis.Client, nsp string) []string {
	t.Helper()
	chs, err := c.PubSubShardChannels(context.Background(), "socket.io#"+nsp+"#*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(chs)
	return chs
}

func TestShardedSubscriptionsFollowRooms(t *testing.T) {
	r := startRedis(t)
	rc := r.client(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{}, "/chat")
	n1 := startNodeOf(t, shardedKind, r, "node1", Options{}, "/chat")
	base := shardChannels(t, rc, "/chat")
	want := []string{"socket.io#/chat#", "socket.io#/chat#" + n0.sharded.UID() + "#", "socket.io#/chat#" + n1.sharded.UID() + "#"}
	slices.Sort(want)
	if !slices.Equal(base, want) {
		t.Fatalf("channels before any socket: %q, want %q", base, want)
	}
	if n, err := n0.nsp("/chat").Adapter().ServerCount(context.Background()); err != nil || n != 2 {
		t.Fatalf("server count %d, %v; want 2", n, err)
	}

	c1 := dial(t, n0, "c1", "/chat", map[string]any{"rooms": []string{"a", "b"}})
	c2 := dial(t, n0, "c2", "/chat", map[string]any{"rooms": []string{"a"}})
	c3 := dial(t, n1, "c3", "/chat", map[string]any{"rooms": []string{"a", c1.sid}})
	waitShardSubscribers(t, rc, "socket.io#/chat#a#", 2)
	waitShardSubscribers(t, rc, "socket.io#/chat#b#", 1)
	// A room named after a socket of another process gets a channel (it
	// is not a local socket id), as in Node.
	waitShardSubscribers(t, rc, "socket.io#/chat#"+c1.sid+"#", 1)
	waitFor(t, "node0 to count its rooms", func() bool {
		st := n0.sharded.Subscriptions()
		return st.Rooms == 2 && st.Pending == 0
	})

	c1.close()
	waitShardSubscribers(t, rc, "socket.io#/chat#b#", 0)
	waitShardSubscribers(t, rc, "socket.io#/chat#a#", 2) // c2 holds it on node0
	c2.close()
	waitShardSubscribers(t, rc, "socket.io#/chat#a#", 1)
	c3.close()
	waitFor(t, "the room channels to go", func() bool { return slices.Equal(shardChannels(t, rc, "/chat"), base) })
	if st := n0.sharded.Subscriptions(); st.Rooms != 0 || st.Pending != 0 || st.Failures != 0 {
		t.Fatalf("node0 subscriptions after: %+v", st)
	}

	// Many users come and go: no subscription is left behind.
	const users = 300
	clients := make([]*client, 0, users)
	for i := range users {
		nd := []*node{n0, n1}[i%2]
		clients = append(clients, dial(t, nd, "u", "/chat", map[string]any{"rooms": []string{fmt.Sprintf("user:%d", i), "all"}}))
	}
	waitFor(t, "every user's room to be subscribed", func() bool {
		return len(shardChannels(t, rc, "/chat")) == len(base)+users+1
	})
	for _, c := range clients {
		c.close()
	}
	waitFor(t, "the subscriptions to return where they started", func() bool {
		return slices.Equal(shardChannels(t, rc, "/chat"), base)
	})
}

func TestShardedRoomTrafficReachesOnlyItsHolders(t *testing.T) {
	r := startRedis(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{}, "/chat")
	n1 := startNodeOf(t, shardedKind, r, "node1", Options{}, "/chat")
	n2 := startNodeOf(t, shardedKind, r, "node2", Options{}, "/chat")
	c0 := dial(t, n0, "c0", "/chat", map[string]any{"rooms": []string{"a"}})
	c2 := dial(t, n2, "c2", "/chat", map[string]any{"rooms": []string{"b"}})
	waitShardSubscribers(t, r.client(t), "socket.io#/chat#a#", 1)
	before := n2.sharded.Stats().Received.Broadcasts
	for i := range 20 {
		if err := n1.nsp("/chat").To("a").Emit("to-a", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.nsp("/chat").Emit("fence"); err != nil { // everyone, on the namespace channel
		t.Fatal(err)
	}
	if got := counts(c0.waitEvent("fence"))["to-a"]; got != 20 {
		t.Fatalf("c0 got %d to-a, want 20", got)
	}
	if got := c2.waitEvent("fence"); len(got) != 0 {
		t.Fatalf("c2 got %v", got)
	}
	// node2 read the fence and none of room a's traffic.
	if got := n2.sharded.Stats().Received.Broadcasts - before; got != 1 {
		t.Fatalf("node2 received %d broadcasts, want 1 (the fence)", got)
	}
	if got := n1.sharded.Stats().Published.Broadcasts; got != 21 {
		t.Fatalf("node1 published %d broadcasts, want 21", got)
	}
}

// rawShard subscribes to sharded channels with a plain client and returns
// the next message's payload on each call.
func rawShard(t *testing.T, r *redisProc, channels ...string) func() map[string]any {
	t.Helper()
	ps := r.client(t).SSubscribe(context.Background(), channels...)
	t.Cleanup(func() { _ = ps.Close() })
	for range channels {
		if _, err := ps.ReceiveTimeout(context.Background(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return func() map[string]any {
		t.Helper()
		m, err := ps.ReceiveMessage(ctxTimeout(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		v, err := decodeMessage(m.Payload)
		if err != nil {
			t.Fatalf("%q: %v", m.Payload, err)
		}
		return v
	}
}

func TestShardedWire(t *testing.T) {
	r := startRedis(t)
	rc := r.client(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{}, "/chat")
	c0 := dial(t, n0, "c0", "/chat", map[string]any{"rooms": []string{"a"}, "data": "zero"})
	waitShardSubscribers(t, rc, "socket.io#/chat#a#", 1)
	chat := n0.nsp("/chat")

	// What we publish to one room: on its channel, as Node's JSON.
	next := rawShard(t, r, "socket.io#/chat#a#", "socket.io#/chat#")
	if err := chat.To("a").Except("z").Emit("hi", 1); err != nil {
		t.Fatal(err)
	}
	got := next()
	want := map[string]any{"uid": n0.sharded.UID(), "nsp": "/chat", "type": 3.0, "data": map[string]any{
		"packet": map[string]any{"type": 2.0, "data": []any{"hi", 1.0}, "nsp": "/chat"},
		"opts":   map[string]any{"rooms": []any{"a"}, "except": []any{"z"}, "flags": map[string]any{}},
	}}
	if !same(got, want) {
		t.Fatalf("published %v\nwant %v", got, want)
	}
	// A 20-character room is taken for a socket id: the namespace channel.
	if err := chat.To("abcdefghijklmnopqrs\u00e9").Emit("sid"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got["type"] != 3.0 || !same(got["data"].(map[string]any)["opts"].(map[string]any)["rooms"], []any{"abcdefghijklmnopqrs\u00e9"}) {
		t.Fatalf("20-character room: %v", got)
	}
	c0.waitEvent("hi")

	// What Node publishes: its field order, no nsp in the packet.
	node := `{"type":3,"data":{"packet":{"type":2,"data":["hey",{"x":1}]},"opts":{"rooms":["a"],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/chat"}`
	if err := rc.SPublish(context.Background(), "socket.io#/chat#a#", node).Err(); err != nil {
		t.Fatal(err)
	}
	if got := next(); got["uid"] != "0123456789abcdef" {
		t.Fatalf("read back %v", got)
	}
	ev := c0.waitEvent("hey")
	if len(ev) != 0 {
		t.Fatalf("before hey: %v", ev)
	}

	// Node asks for the sockets in room a; the answer goes to its own
	// response channel.
	answers := rawShard(t, r, "socket.io#/chat#0123456789abcdef#")
	ask := `{"type":7,"data":{"opts":{"rooms":["a"],"except":[],"flags":{}},"requestId":"r1"},"uid":"0123456789abcdef","nsp":"/chat"}`
	if err := rc.SPublish(context.Background(), "socket.io#/chat#", ask).Err(); err != nil {
		t.Fatal(err)
	}
	if got := next(); got["type"] != 7.0 {
		t.Fatalf("read back %v", got)
	}
	resp := answers()
	data, _ := resp["data"].(map[string]any)
	socks, _ := data["sockets"].([]any)
	if resp["type"] != 8.0 || data["requestId"] != "r1" || len(socks) != 1 ||
		socks[0].(map[string]any)["id"] != c0.sid || socks[0].(map[string]any)["data"] != "zero" {
		t.Fatalf("fetch answer %v", resp)
	}

	// Binary goes as msgpack, and our own comes back unread.
	ignored := n0.sharded.Stats().Ignored
	if err := chat.To("a").Emit("bin", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	bin := next()
	if d := bin["data"].(map[string]any)["packet"].(map[string]any)["data"].([]any); !same(d, []any{"bin", []byte{1, 2}}) {
		t.Fatalf("binary: %v", bin)
	}
	c0.waitEvent("bin")
	waitFor(t, "our own binary broadcast to be dropped unread", func() bool {
		return n0.sharded.Stats().Ignored > ignored
	})
	if st := n0.sharded.Stats(); st.Malformed != 0 {
		t.Fatalf("malformed %d", st.Malformed)
	}
}

func TestShardedResubscribesAfterRedisRestart(t *testing.T) {
	r := startRedis(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{}, "/chat")
	n1 := startNodeOf(t, shardedKind, r, "node1", Options{}, "/chat")
	c0 := dial(t, n0, "c0", "/chat", map[string]any{"rooms": []string{"a"}})
	waitShardSubscribers(t, r.client(t), "socket.io#/chat#a#", 1)

	r.kill()
	waitFor(t, "the lost subscriptions to be noticed", func() bool {
		return !n0.sharded.Subscribed() && n0.sharded.Subscriptions().Pending > 0
	})
	r.start()
	for _, n := range []*node{n0, n1} {
		if err := n.sharded.WaitSubscribed(ctxTimeout(t, 15*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	waitShardSubscribers(t, r.client(t), "socket.io#/chat#a#", 1)
	waitFor(t, "the room to be confirmed", func() bool { return n0.sharded.Subscriptions().Pending == 0 })
	if err := n1.nsp("/chat").To("a").Emit("back"); err != nil {
		t.Fatal(err)
	}
	c0.waitEvent("back")
	if n0.sharded.Subscriptions().Failures == 0 || n0.errors.Load() == 0 {
		t.Fatal("the failures were not counted and reported")
	}
}

func TestShardedWhenSubscribed(t *testing.T) {
	r := startRedis(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{}, "/chat")
	type waiter interface {
		WhenSubscribed(room string, timeout time.Duration, fn func(error))
	}
	w := n0.nsp("/chat").Adapter().(waiter)
	result := make(chan error, 1)
	var sock *socketio.Socket
	n0.nsp("/chat").Use(func(s *socketio.Socket, next func(error)) {
		sock = s
		s.Join("w")
		w.WhenSubscribed("w", 5*time.Second, func(err error) {
			result <- err
			next(nil)
		})
	})
	dial(t, n0, "c", "/chat", map[string]any{})
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if got, _ := countSubscribers(context.Background(), r.client(t), true, "socket.io#/chat#w#"); got != 1 {
		t.Fatalf("the connect came before the subscription: %d subscribers", got)
	}

	// Redis answers nothing: the wait is bounded.
	r.freeze()
	defer r.thaw()
	w2 := make(chan error, 1)
	sock.Join("frozen")
	w.WhenSubscribed("frozen", 300*time.Millisecond, func(err error) { w2 <- err })
	if err := <-w2; !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("got %v, want ErrNotConfirmed", err)
	}
}

// While the other processes are out of reach nothing is waited for: the
// deliveries stay local then anyway.
func TestShardedWhenSubscribedDoesNotWaitWhileNotPublishing(t *testing.T) {
	r := startRedis(t)
	n0 := startNodeOf(t, shardedKind, r, "node0", Options{Publishing: func() bool { return false }}, "/chat")
	got := make(chan error, 1)
	n0.nsp("/chat").Use(func(s *socketio.Socket, next func(error)) {
		s.Join("offline")
		s.Namespace().Adapter().(interface {
			WhenSubscribed(string, time.Duration, func(error))
		}).WhenSubscribed("offline", time.Hour, func(err error) { got <- err; next(nil) })
	})
	r.freeze() // Redis answers nothing: a wait would never end
	defer r.thaw()
	dial(t, n0, "c", "/chat", map[string]any{})
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}
