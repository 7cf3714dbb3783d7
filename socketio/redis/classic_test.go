package redis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/socketio"
)

// cluster is three processes sharing one Redis, each with the same clients
// in namespace /chat: in room a, b, both, x, a and x, and none.
type cluster struct {
	redis   *redisProc
	nodes   []*node
	clients map[string]*client // "<room set>@<node index>"
}

var memberships = map[string][]string{
	"a":    {"a"},
	"b":    {"b"},
	"ab":   {"a", "b"},
	"x":    {"x"},
	"ax":   {"a", "x"},
	"none": nil,
}

func startCluster(t *testing.T, n int, opts Options) *cluster {
	t.Helper()
	return startClusterOf(t, classicKind, n, opts)
}

func startClusterOf(t *testing.T, kind adapterKind, n int, opts Options) *cluster {
	t.Helper()
	cl := &cluster{redis: startRedis(t), clients: map[string]*client{}}
	for i := range n {
		cl.nodes = append(cl.nodes, startNodeOf(t, kind, cl.redis, fmt.Sprintf("node%d", i), opts, "/chat"))
	}
	for i, nd := range cl.nodes {
		for key, rooms := range memberships {
			name := fmt.Sprintf("%s@%d", key, i)
			auth := map[string]any{"rooms": rooms, "data": map[string]any{"name": name}}
			if rooms == nil {
				auth["rooms"] = []string{}
			}
			cl.clients[name] = dial(t, nd, name, "/chat", auth)
		}
	}
	return cl
}

// fence emits "fence" to every socket from node i and returns what each
// client received before it: everything node i sent earlier has arrived.
func (cl *cluster) fence(t *testing.T, i int) map[string][]event {
	t.Helper()
	if err := cl.nodes[i].nsp("/chat").Emit("fence"); err != nil {
		t.Fatal(err)
	}
	out := map[string][]event{}
	for name, c := range cl.clients {
		out[name] = c.waitEvent("fence")
	}
	return out
}

// expectOnce checks that event reached exactly the clients whose room set
// want selects, once each, on every process.
func (cl *cluster) expectOnce(t *testing.T, got map[string][]event, ev string, want func(key string, node int) bool) {
	t.Helper()
	for name, events := range got {
		key, idx, _ := strings.Cut(name, "@")
		node := int(idx[0] - '0')
		n := counts(events)[ev]
		expected := 0
		if want(key, node) {
			expected = 1
		}
		if n != expected {
			t.Errorf("%s: %q received %d times, want %d", name, ev, n, expected)
		}
	}
}

func inAny(key string, rooms ...string) bool {
	for _, r := range rooms {
		if slices.Contains(memberships[key], r) {
			return true
		}
	}
	return false
}

func TestBroadcastReachesEveryProcessExactlyOnce(t *testing.T) {
	forEachKind(t, testBroadcastReachesEveryProcessExactlyOnce)
}

func testBroadcastReachesEveryProcessExactlyOnce(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{})
	chat := func(i int) *socketio.Namespace { return cl.nodes[i].nsp("/chat") }
	target := cl.clients["none@2"]

	cases := []struct {
		name string
		from int
		op   socketio.BroadcastOperator
		want func(key string, node int) bool
	}{
		{"one room", 0, chat(0).To("a"),
			func(k string, _ int) bool { return inAny(k, "a") }},
		{"several rooms", 1, chat(1).To("a", "b"),
			func(k string, _ int) bool { return inAny(k, "a", "b") }},
		{"the same room twice", 1, chat(1).To("b", "b"),
			func(k string, _ int) bool { return inAny(k, "b") }},
		{"room except room", 0, chat(0).To("a").Except("x"),
			func(k string, _ int) bool { return inAny(k, "a") && !inAny(k, "x") }},
		{"rooms except room", 2, chat(2).To("a", "b").Except("x"),
			func(k string, _ int) bool { return inAny(k, "a", "b") && !inAny(k, "x") }},
		{"namespace except room", 0, chat(0).Except("x"),
			func(k string, _ int) bool { return !inAny(k, "x") }},
		{"namespace-wide", 2, chat(2).Except(),
			func(string, int) bool { return true }},
		{"a socket's own room, on another process", 0, chat(0).To(target.sid),
			func(k string, n int) bool { return k == "none" && n == 2 }},
		{"a room nobody holds", 0, chat(0).To("nobody"),
			func(string, int) bool { return false }},
		{"local only", 1, chat(1).Local(),
			func(_ string, n int) bool { return n == 1 }},
		{"volatile", 1, chat(1).To("b").Volatile(),
			func(k string, _ int) bool { return inAny(k, "b") }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := fmt.Sprintf("case-%d", i)
			if err := c.op.Emit(ev, "arg", map[string]any{"n": 1.5}); err != nil {
				t.Fatal(err)
			}
			got := cl.fence(t, c.from)
			cl.expectOnce(t, got, ev, c.want)
			for name, evs := range got {
				for _, e := range evs {
					if e.name == ev && (len(e.args) != 2 || e.args[0] != "arg") {
						t.Errorf("%s: %s arrived with %v", name, ev, e.args)
					}
				}
			}
		})
	}
	// A room held nowhere is dropped unread by the other processes.
	for i, nd := range cl.nodes {
		if nd.adapter.Stats().Ignored == 0 {
			t.Errorf("node%d ignored nothing", i)
		}
		if nd.errors.Load() != 0 {
			t.Errorf("node%d errors: %s", i, nd.errorTexts())
		}
	}
}

func TestFetchSocketsAcrossProcesses(t *testing.T) { forEachKind(t, testFetchSocketsAcrossProcesses) }

func testFetchSocketsAcrossProcesses(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{})
	ctx := ctxTimeout(t, 10*time.Second)

	all, err := cl.nodes[0].nsp("/chat").FetchSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(cl.clients) {
		t.Fatalf("fetched %d sockets, want %d", len(all), len(cl.clients))
	}
	byID := map[string]socketio.SocketInfo{}
	for _, info := range all {
		byID[info.ID] = info
	}
	for name, c := range cl.clients {
		info, ok := byID[c.sid]
		if !ok {
			t.Fatalf("%s (%s) missing", name, c.sid)
		}
		key, _, _ := strings.Cut(name, "@")
		wantRooms := append([]string{c.sid}, memberships[key]...)
		if !slices.Equal(info.Rooms, wantRooms) {
			t.Errorf("%s: rooms %v, want %v", name, info.Rooms, wantRooms)
		}
		if d, _ := info.Data.(map[string]any); d["name"] != name {
			t.Errorf("%s: data %v", name, info.Data)
		}
		if info.Handshake.Address != "127.0.0.1" || info.Handshake.Query["EIO"] != "4" || info.Handshake.Issued == 0 {
			t.Errorf("%s: handshake %+v", name, info.Handshake)
		}
	}

	inA, err := cl.nodes[1].nsp("/chat").To("a").Except("x").FetchSockets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, info := range inA {
		names = append(names, info.Data.(map[string]any)["name"].(string))
	}
	slices.Sort(names)
	want := []string{"a@0", "a@1", "a@2", "ab@0", "ab@1", "ab@2"}
	if !slices.Equal(names, want) {
		t.Fatalf("in a except x: %v, want %v", names, want)
	}

	local, err := cl.nodes[2].nsp("/chat").To("a").Local().FetchSockets(ctx)
	if err != nil || len(local) != 3 {
		t.Fatalf("local fetch: %d sockets, %v", len(local), err)
	}
}

func TestAllRoomsAcrossProcesses(t *testing.T) {
	cl := startCluster(t, 3, Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	cl.nodes[2].nsp("/chat").Local().SocketsJoin(ctx, "only-on-2")
	rooms, err := cl.nodes[0].nsp("/chat").Adapter().AllRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b", "x", "only-on-2"} {
		if !slices.Contains(rooms, want) {
			t.Errorf("rooms %v lack %q", rooms, want)
		}
	}
	for name, c := range cl.clients {
		if !slices.Contains(rooms, c.sid) {
			t.Errorf("rooms lack %s's own room", name)
		}
	}
	seen := map[string]bool{}
	for _, r := range rooms {
		if seen[r] {
			t.Errorf("room %q listed twice", r)
		}
		seen[r] = true
	}
}

func TestSocketsJoinLeaveDisconnectAcrossProcesses(t *testing.T) {
	forEachKind(t, testSocketsJoinLeaveDisconnectAcrossProcesses)
}

func testSocketsJoinLeaveDisconnectAcrossProcesses(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	chat := cl.nodes[0].nsp("/chat")

	// Joins are applied here at once, and on the other processes before
	// anything this process publishes afterwards.
	if err := chat.To("a").Except("x").SocketsJoin(ctx, "joined", "joined-too"); err != nil {
		t.Fatal(err)
	}
	if kind == shardedKind {
		// A room joined from afar is reachable on a process once it has
		// subscribed to the room's channel (Node's dynamic mode too).
		waitShardSubscribers(t, cl.redis.client(t), "socket.io#/chat#joined#", 3)
	}
	if err := chat.To("joined").Emit("to-joined"); err != nil {
		t.Fatal(err)
	}
	got := cl.fence(t, 0)
	cl.expectOnce(t, got, "to-joined", func(k string, _ int) bool { return inAny(k, "a") && !inAny(k, "x") })

	if err := chat.To("b").SocketsLeave(ctx, "joined"); err != nil {
		t.Fatal(err)
	}
	if err := chat.To("joined").Emit("to-joined-after-leave"); err != nil {
		t.Fatal(err)
	}
	got = cl.fence(t, 0)
	cl.expectOnce(t, got, "to-joined-after-leave", func(k string, _ int) bool { return k == "a" })

	if err := chat.To("x").DisconnectSockets(ctx, false); err != nil {
		t.Fatal(err)
	}
	for name, c := range cl.clients {
		key, _, _ := strings.Cut(name, "@")
		if inAny(key, "x") {
			c.waitDisconnected()
		}
	}
	waitFor(t, "the x sockets to be gone everywhere", func() bool {
		left, err := chat.To("x").FetchSockets(ctx)
		return err == nil && len(left) == 0
	})
	all, err := chat.FetchSockets(ctx)
	if err != nil || len(all) != len(cl.clients)-6 {
		t.Fatalf("after disconnect: %d sockets (%v), want %d", len(all), err, len(cl.clients)-6)
	}
}

func TestServerSideEmit(t *testing.T) { forEachKind(t, testServerSideEmit) }

func testServerSideEmit(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	type got struct {
		node int
		args []any
	}
	var mu sync.Mutex
	var received []got
	for i, nd := range cl.nodes {
		nd.nsp("/chat").OnServerSideEmit(func(args []any, ack func(any)) {
			mu.Lock()
			received = append(received, got{i, args})
			mu.Unlock()
			if ack != nil {
				ack(map[string]any{"from": float64(i), "echo": args[1]})
			}
		})
	}

	if err := cl.nodes[0].nsp("/chat").ServerSideEmit(ctx, "hello", "world", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two processes to hear it", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) == 2
	})
	for _, g := range received {
		if g.node == 0 || !slices.Equal(g.args, []any{"hello", "world", 1.0}) {
			t.Errorf("node%d got %v", g.node, g.args)
		}
	}

	answers, err := cl.nodes[1].nsp("/chat").ServerSideEmitWithAck(ctx, "ping", "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(answers) != 2 {
		t.Fatalf("answers %v", answers)
	}
	from := []float64{}
	for _, a := range answers {
		m := a.(map[string]any)
		from = append(from, m["from"].(float64))
		if m["echo"] != "x" {
			t.Errorf("answer %v", m)
		}
	}
	slices.Sort(from)
	if !slices.Equal(from, []float64{0, 2}) {
		t.Errorf("answers from %v", from)
	}
}

func TestServerSideEmitWithAckTimesOut(t *testing.T) {
	forEachKind(t, testServerSideEmitWithAckTimesOut)
}

func testServerSideEmitWithAckTimesOut(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{RequestsTimeout: 300 * time.Millisecond})
	ctx := ctxTimeout(t, 10*time.Second)
	// Node 1 answers, node 2 does not.
	cl.nodes[1].nsp("/chat").OnServerSideEmit(func(_ []any, ack func(any)) { ack("one") })
	start := time.Now()
	answers, err := cl.nodes[0].nsp("/chat").ServerSideEmitWithAck(ctx, "ping")
	if !errors.Is(err, socketio.ErrTimeout) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if !slices.Equal(answers, []any{"one"}) {
		t.Fatalf("answers %v", answers)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestBroadcastWithAcksAcrossProcesses(t *testing.T) {
	forEachKind(t, testBroadcastWithAcksAcrossProcesses)
}

func testBroadcastWithAcksAcrossProcesses(t *testing.T, kind adapterKind) {
	cl := startClusterOf(t, kind, 3, Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	for name, c := range cl.clients {
		c.onAck = func(e event) []any { return []any{name + ":" + e.args[0].(string)} }
	}
	answers, err := cl.nodes[0].nsp("/chat").To("a", "b").Timeout(5*time.Second).EmitWithAck(ctx, "question", "q")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range answers {
		got = append(got, a.(string))
	}
	slices.Sort(got)
	var want []string
	for name := range cl.clients {
		key, _, _ := strings.Cut(name, "@")
		if inAny(key, "a", "b") {
			want = append(want, name+":q")
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("answers\n%v\nwant\n%v", got, want)
	}

	// A client that does not answer: a timeout with the answers that came.
	cl.clients["b@2"].onAck = nil
	answers, err = cl.nodes[1].nsp("/chat").To("b").Timeout(500*time.Millisecond).EmitWithAck(ctx, "question", "r")
	if !errors.Is(err, socketio.ErrTimeout) || len(answers) != 5 {
		t.Fatalf("%d answers, %v; want 5 and a timeout", len(answers), err)
	}
}

// TestSpecificResponseChannel: with PublishOnSpecificResponseChannel the
// answers go to the asking process's own channel (except a server-side
// emit's, which Node always sends to the shared one).
func TestSpecificResponseChannel(t *testing.T) {
	r := startRedis(t)
	raw := subscribeRaw(t, r, "socket.io-response#*")
	opts := Options{PublishOnSpecificResponseChannel: true}
	n0 := startNode(t, r, "node0", opts, "/chat")
	n1 := startNode(t, r, "node1", opts, "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"room"}})
	c1.onAck = func(event) []any { return []any{"yes"} }
	n1.nsp("/chat").OnServerSideEmit(func(_ []any, ack func(any)) { ack("pong") })
	ctx := ctxTimeout(t, 10*time.Second)

	all, err := n0.nsp("/chat").FetchSockets(ctx)
	if err != nil || len(all) != 1 || all[0].ID != c1.sid {
		t.Fatalf("fetch: %v, %v", all, err)
	}
	answers, err := n0.nsp("/chat").Except().Timeout(5*time.Second).EmitWithAck(ctx, "q")
	if err != nil || !slices.Equal(answers, []any{"yes"}) {
		t.Fatalf("emitWithAck: %v, %v", answers, err)
	}
	answers, err = n0.nsp("/chat").ServerSideEmitWithAck(ctx, "ping")
	if err != nil || !slices.Equal(answers, []any{"pong"}) {
		t.Fatalf("serverSideEmitWithAck: %v, %v", answers, err)
	}
	own := "socket.io-response#/chat#" + n0.classic.UID() + "#"
	waitFor(t, "three answers on "+own, func() bool { return len(raw.on(own)) == 3 })
	waitFor(t, "an answer on the shared channel", func() bool { return len(raw.on("socket.io-response#/chat#")) > 0 })
	if shared := raw.on("socket.io-response#/chat#"); len(shared) != 1 || !strings.Contains(shared[0], `"type":6`) {
		t.Fatalf("on the shared channel: %q", shared)
	}
}

// TestBinaryAcrossProcesses: binary data travels as msgpack bin and
// reaches a client on another process as an attachment; a time.Time
// arrives as JavaScript's ISO string.
func TestBinaryAcrossProcesses(t *testing.T) { forEachKind(t, testBinaryAcrossProcesses) }

func testBinaryAcrossProcesses(t *testing.T, kind adapterKind) {
	r := startRedis(t)
	n0 := startNodeOf(t, kind, r, "node0", Options{}, "/chat")
	n1 := startNodeOf(t, kind, r, "node1", Options{}, "/chat")
	c1 := dial(t, n1, "c1", "/chat", map[string]any{"rooms": []string{"a"}})
	// Sharded: node1 subscribes to room a's channel as c1 joins it, in the
	// background; a broadcast before that is not for node1 yet.
	waitRoomSubscribed(t, kind, n1)
	at := time.UnixMilli(1700000000120)
	if err := n0.nsp("/chat").To("a").Emit("bin", []byte{1, 2, 3}, map[string]any{"at": at, "raw": []byte{}}); err != nil {
		t.Fatal(err)
	}
	if err := n0.nsp("/chat").To("a").Emit("end"); err != nil {
		t.Fatal(err)
	}
	got := c1.waitEvent("end")
	want := []any{[]byte{1, 2, 3}, map[string]any{"at": "2023-11-14T22:13:20.120Z", "raw": []byte{}}}
	if len(got) != 1 || !same(got[0].args, want) {
		t.Fatalf("got %+v, want bin%v", got, want)
	}
}
