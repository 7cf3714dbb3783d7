package redis

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// recoveryNode is a node with recovery on: a socket's owner is its data
// (auth "data", a string), and outcomes of restores are recorded.
type recoveryNode struct {
	*node
	mu       sync.Mutex
	outcomes []socketio.RecoveryOutcome
}

func startRecoveryNode(t *testing.T, r *redisProc, name string, ro RecoveryOptions) *recoveryNode {
	t.Helper()
	pub := goredis.NewClient(&goredis.Options{Addr: r.addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
	sub := goredis.NewClient(&goredis.Options{Addr: r.addr(), Protocol: 2, DialTimeout: time.Second})
	return startRecoveryNodeWith(t, pub, sub, name, ro)
}

// startRecoveryNodeWith starts a recovery node over the given clients.
func startRecoveryNodeWith(t *testing.T, pub, sub goredis.UniversalClient, name string, ro RecoveryOptions) *recoveryNode {
	t.Helper()
	if ro.Window == 0 {
		ro.Window = time.Minute
	}
	rn := &recoveryNode{}
	rn.node = startNodeFull(t, classicKind, pub, sub, name, Options{Recovery: ro}, socketio.Options{Recovery: socketio.RecoveryOptions{
		Owner: func(s *socketio.Socket) string {
			d, _ := s.Data().(string)
			return d
		},
		OnRestore: func(_ *socketio.Socket, o socketio.RecoveryOutcome) {
			rn.mu.Lock()
			rn.outcomes = append(rn.outcomes, o)
			rn.mu.Unlock()
		},
	}}, "/chat")
	return rn
}

func (rn *recoveryNode) lastOutcome() socketio.RecoveryOutcome {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if len(rn.outcomes) == 0 {
		rn.t.Fatal("no restore attempted")
	}
	return rn.outcomes[len(rn.outcomes)-1]
}

// userAuth is the auth of a user's device: its user room and its owner.
func userAuth(user, pid, offset string) map[string]any {
	auth := map[string]any{"rooms": []any{"user:" + user}, "data": user}
	if pid != "" {
		auth["pid"] = pid
	}
	if offset != "" {
		auth["offset"] = offset
	}
	return auth
}

// dropClient closes a client's connection and waits until its node has
// ended the socket (and so kept its session).
func dropClient(t *testing.T, n *node, c *client) {
	t.Helper()
	c.close()
	waitFor(t, "the socket to end", func() bool { return n.nsp("/chat").Socket(c.sid) == nil })
}

// lastOffset is the offset an event carries as its last argument.
func lastOffset(t *testing.T, e event) socketio.Offset {
	t.Helper()
	s, _ := e.args[len(e.args)-1].(string)
	off, ok := socketio.ParseOffset(s)
	if !ok {
		t.Fatalf("event %s %v carries no offset", e.name, e.args)
	}
	return off
}

// waitN waits until c has n events and returns them.
func waitN(t *testing.T, c *client, n int) []event {
	t.Helper()
	var out []event
	waitFor(t, fmt.Sprintf("%d events", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		out = slices.Clone(c.events)
		return len(out) >= n
	})
	return out
}

// labels are the events' first arguments.
func labels(events []event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = fmt.Sprint(e.args[0])
	}
	return out
}

func TestRecoveryAcrossProcesses(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	n3 := startRecoveryNode(t, r, "n3", RecoveryOptions{})
	chat := func(n *recoveryNode) *socketio.Namespace { return n.nsp("/chat") }

	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	if a.pid == "" || !strings.HasPrefix(a.pid, stampPrefix) {
		t.Fatalf("pid %q", a.pid)
	}
	_ = chat(n2).To("user:alice").Emit("m", "1")
	o1 := lastOffset(t, waitN(t, a, 1)[0])
	sid, pid := a.sid, a.pid
	dropClient(t, n1.node, a)

	// While away, from every process, interleaved with what is not hers.
	_ = chat(n1).To("user:alice").Emit("m", "2")
	_ = chat(n2).To("user:bob").Emit("m", "bob")
	_ = chat(n3).To("user:alice").Emit("m", "3")
	_ = chat(n2).Emit("m", "4")
	_ = chat(n3).Except(sid).Emit("m", "not-this-socket")
	_ = chat(n1).To("user:alice", "user:bob").Emit("m", "5")
	_ = chat(n1).To("user:alice").Volatile().Emit("m", "volatile")
	// Stored once Redis ran the EVALs: a marker from each process after
	// them (a node's messages reach Redis in order).
	probe := dial(t, n2.node, "probe", "/chat", userAuth("alice", "", ""))
	for _, n := range []*recoveryNode{n1, n2, n3} {
		_ = chat(n).To("user:alice").Emit("m", "probe-"+n.name)
	}
	waitN(t, probe, 3)

	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", pid, o1.String()))
	if a2.sid != sid || a2.pid != pid {
		t.Fatalf("recovered as %q %q, want %q %q (%v)", a2.sid, a2.pid, sid, pid, n2.lastOutcome())
	}
	_ = chat(n3).To("user:alice").Emit("m", "live")
	ev := waitN(t, a2, 8)
	got := labels(ev)
	// Redis orders what different processes send; each process's own
	// messages keep their order, and the live one comes after the replay.
	sorted := slices.Clone(got[:7])
	slices.Sort(sorted)
	if want := []string{"2", "3", "4", "5", "probe-n1", "probe-n2", "probe-n3"}; !slices.Equal(sorted, want) || got[7] != "live" {
		t.Fatalf("recovered %v, want %v then live", got, want)
	}
	for _, order := range [][]string{{"2", "5", "probe-n1"}, {"4", "probe-n2"}, {"3", "probe-n3"}} {
		for i := 1; i < len(order); i++ {
			if slices.Index(got, order[i-1]) > slices.Index(got, order[i]) {
				t.Fatalf("recovered %v: %s came before %s", got, order[i], order[i-1])
			}
		}
	}
	prev := o1
	for _, e := range ev {
		o := lastOffset(t, e)
		if !prev.Before(o) {
			t.Fatalf("offsets not increasing: %v then %v", prev, o)
		}
		prev = o
	}
	_ = chat(n2).To(sid).Emit("m", "marker")
	if got := labels(waitN(t, a2, 9)); got[8] != "marker" {
		t.Fatalf("after the replay: %v", got)
	}
	if st := n2.io.RecoveryStats(); st.Recovered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Every socket gets its stored packets in offset order, whichever process
// sent them, this one's included: the property recovery rests on.
func TestRecoveryDeliversInOffsetOrder(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	a1 := dial(t, n1.node, "a1", "/chat", userAuth("alice", "", ""))
	a2 := dial(t, n2.node, "a2", "/chat", userAuth("alice", "", ""))
	const each = 300
	var wg sync.WaitGroup
	for _, n := range []*recoveryNode{n1, n2} {
		wg.Go(func() {
			for i := range each {
				_ = n.nsp("/chat").To("user:alice").Emit("m", fmt.Sprintf("%s-%d", n.name, i))
			}
		})
	}
	wg.Wait()
	seqs := make([][]string, 2)
	for i, c := range []*client{a1, a2} {
		ev := waitN(t, c, 2*each)
		var prev socketio.Offset
		for _, e := range ev {
			o := lastOffset(t, e)
			if !prev.Before(o) {
				t.Fatalf("%s: offsets not increasing: %v then %v", c.name, prev, o)
			}
			prev = o
			seqs[i] = append(seqs[i], fmt.Sprint(e.args[0]))
		}
	}
	if !slices.Equal(seqs[0], seqs[1]) {
		t.Fatal("the two processes delivered in different orders")
	}
}

// A client that drops and comes back on another process while broadcasts
// keep coming gets each exactly once, in order, across the gap.
func TestRecoveryUnderTraffic(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	n3 := startRecoveryNode(t, r, "n3", RecoveryOptions{})
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	sent := make([]int, 3)
	for i, n := range []*recoveryNode{n1, n2, n3} {
		wg.Go(func() {
			for ctx.Err() == nil {
				_ = n.nsp("/chat").To("user:alice").Emit("m", fmt.Sprintf("%d-%d", i, sent[i]))
				sent[i]++
				time.Sleep(time.Millisecond)
			}
		})
	}
	before := waitN(t, a, 50)
	before = before[:len(before)-5] // what it handled; the rest was in flight
	dropClient(t, n1.node, a)
	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", a.pid, lastOffset(t, before[len(before)-1]).String()))
	if a2.pid != a.pid {
		t.Fatalf("not recovered: %v", n2.lastOutcome())
	}
	waitN(t, a2, 50)
	cancel()
	wg.Wait()
	// Everything sent is stored once the writers flushed: a marker from
	// each node after its last.
	for _, n := range []*recoveryNode{n1, n2, n3} {
		_ = n.nsp("/chat").To("user:alice").Emit("m", "end-"+n.name)
	}
	total := sent[0] + sent[1] + sent[2]
	after := waitN(t, a2, total+3-len(before))
	all := append(slices.Clone(before), after...)
	next := make([]int, 3)
	ends := 0
	var prev socketio.Offset
	for _, e := range all {
		o := lastOffset(t, e)
		if !prev.Before(o) {
			t.Fatalf("offsets not increasing: %v then %v", prev, o)
		}
		prev = o
		label := fmt.Sprint(e.args[0])
		if strings.HasPrefix(label, "end-") {
			ends++
			continue
		}
		var from, seq int
		fmt.Sscanf(label, "%d-%d", &from, &seq)
		if seq != next[from] {
			t.Fatalf("from node %d: got %d, want %d (missing or duplicated)", from+1, seq, next[from])
		}
		next[from]++
	}
	if !slices.Equal(next, sent) || ends != 3 {
		t.Fatalf("got %v of %v sent (%d end markers)", next, sent, ends)
	}
}

func TestRecoveryRefusedToAnotherOwnerAcrossProcesses(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "1")
	o1 := lastOffset(t, waitN(t, a, 1)[0])
	dropClient(t, n1.node, a)
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "secret")

	m := dial(t, n2.node, "mallory", "/chat", userAuth("mallory", a.pid, o1.String()))
	if m.pid == a.pid || m.sid == a.sid {
		t.Fatal("alice's session was restored for mallory")
	}
	if o := n2.lastOutcome(); o != socketio.RecoveryRefused {
		t.Fatalf("outcome %v", o)
	}
	_ = n2.nsp("/chat").To(m.sid).Emit("m", "marker")
	if got := labels(waitN(t, m, 1)); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("mallory got %v", got)
	}
	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", a.pid, o1.String()))
	if a2.pid != a.pid {
		t.Fatalf("alice could not recover after the refusal: %v", n2.lastOutcome())
	}
	if got := labels(waitN(t, a2, 1)); got[0] != "secret" {
		t.Fatalf("alice got %v", got)
	}
}

// otherPID is a well-formed pid that is not p: its last character changed
// (to "Z", or to "Y" when it is a "Z" already, 1 pid in 32).
func otherPID(p string) string {
	if strings.HasSuffix(p, "Z") {
		return p[:len(p)-1] + "Y"
	}
	return p[:len(p)-1] + "Z"
}

func TestRecoveryForgedAcrossProcesses(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	for _, tc := range []struct {
		name   string
		pid    func(string) string
		offset func(string) string
		want   socketio.RecoveryOutcome
	}{
		{"pid of no process of ours", func(string) string { return "AAAAAAAAAAAAAAAAAAAA" }, func(o string) string { return o }, socketio.RecoveryInvalid},
		{"well-formed unknown pid", otherPID, func(o string) string { return o }, socketio.RecoveryExpired},
		{"pid with a key's separator", func(p string) string { return p + "#x" }, func(o string) string { return o }, socketio.RecoveryInvalid},
		{"offset not an offset", func(p string) string { return p }, func(string) string { return "0-0-0" }, socketio.RecoveryInvalid},
		{"offset from the future", func(p string) string { return p }, func(string) string { return "99999999999999-0" }, socketio.RecoveryInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
			_ = n1.nsp("/chat").To("user:alice").Emit("m", "1")
			o1 := lastOffset(t, waitN(t, a, 1)[0])
			dropClient(t, n1.node, a)
			a2 := dial(t, n1.node, "alice", "/chat", userAuth("alice", tc.pid(a.pid), tc.offset(o1.String())))
			if a2.pid == a.pid {
				t.Fatal("recovered")
			}
			if o := n1.lastOutcome(); o != tc.want {
				t.Fatalf("outcome %v, want %v", o, tc.want)
			}
		})
	}
}

func TestRecoveryTrimmedByCountAcrossProcesses(t *testing.T) {
	r := startRedis(t)
	ro := RecoveryOptions{MaxPackets: 3}
	n1 := startRecoveryNode(t, r, "n1", ro)
	n2 := startRecoveryNode(t, r, "n2", ro)
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "0")
	o := lastOffset(t, waitN(t, a, 1)[0])
	dropClient(t, n1.node, a)
	probe := dial(t, n2.node, "probe", "/chat", userAuth("alice", "", ""))
	for i := 1; i <= 4; i++ {
		_ = n1.nsp("/chat").To("user:alice").Emit("m", fmt.Sprint(i))
	}
	waitN(t, probe, 4)
	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", a.pid, o.String()))
	if a2.pid == a.pid {
		t.Fatal("recovered although a missed packet was trimmed")
	}
	if got := n2.lastOutcome(); got != socketio.RecoveryExpired {
		t.Fatalf("outcome %v", got)
	}

	// Three missed fit, the one at the offset trimmed or not.
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "5")
	o = lastOffset(t, waitN(t, a2, 1)[0])
	dropClient(t, n2.node, a2)
	for i := 6; i <= 8; i++ {
		_ = n1.nsp("/chat").To("user:alice").Emit("m", fmt.Sprint(i))
	}
	waitN(t, probe, 8)
	a3 := dial(t, n1.node, "alice", "/chat", userAuth("alice", a2.pid, o.String()))
	if a3.pid != a2.pid {
		t.Fatalf("not recovered: %v", n1.lastOutcome())
	}
	if got := labels(waitN(t, a3, 3)); !slices.Equal(got, []string{"6", "7", "8"}) {
		t.Fatalf("got %v", got)
	}
}

// A process that dies without a word (its writes stop reaching Redis, its
// subscription is gone) leaves its connected sessions in its live hash:
// another process restores them. While the process is alive, its live
// sessions are not restorable (a replayed pid gets a fresh session).
func TestRecoveryFromAProcessThatDied(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	_ = n2.nsp("/chat").To("user:alice").Emit("m", "1")
	o1 := lastOffset(t, waitN(t, a, 1)[0])

	// Alive and connected: a second client with the same pid is not given
	// the session.
	twin := dial(t, n2.node, "twin", "/chat", userAuth("alice", a.pid, o1.String()))
	if twin.pid == a.pid {
		t.Fatal("a live session was restored while its socket is connected")
	}
	twin.close()

	// n1 dies: its subscription goes, its writes fail.
	_ = n1.sub.Close()
	_ = n1.pub.Close()
	waitFor(t, "n1's subscription to go", func() bool {
		res, err := r.client(t).PubSubNumSub(context.Background(), "socket.io-response#/chat#"+n1.classic.UID()+"#").Result()
		return err == nil && res["socket.io-response#/chat#"+n1.classic.UID()+"#"] == 0
	})
	a.close()
	_ = n2.nsp("/chat").To("user:alice").Emit("m", "2")
	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", a.pid, o1.String()))
	if a2.pid != a.pid || a2.sid != a.sid {
		t.Fatalf("not recovered from the dead process's live sessions: %v", n2.lastOutcome())
	}
	if got := labels(waitN(t, a2, 1)); got[0] != "2" {
		t.Fatalf("got %v", got)
	}
}

// A shutdown keeps the sessions before it closes the connections: when the
// client sees its transport close, its session is in Redis.
func TestRecoveryShutdownKeepsSessionsFirst(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	n2 := startRecoveryNode(t, r, "n2", RecoveryOptions{})
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "1")
	o1 := lastOffset(t, waitN(t, a, 1)[0])
	rc := r.client(t)
	key := newRecoveryKeys("switchboard-recovery", "/chat").session(a.pid)
	closed := make(chan int64, 1)
	go func() {
		<-a.done
		closed <- rc.Exists(context.Background(), key).Val()
	}()
	n1.close()
	if exists := <-closed; exists != 1 {
		t.Fatal("the session was not kept when the client saw its connection close")
	}
	_ = n2.nsp("/chat").To("user:alice").Emit("m", "2")
	a2 := dial(t, n2.node, "alice", "/chat", userAuth("alice", a.pid, o1.String()))
	if a2.pid != a.pid {
		t.Fatalf("not recovered: %v", n2.lastOutcome())
	}
	if got := labels(waitN(t, a2, 1)); got[0] != "2" {
		t.Fatalf("got %v", got)
	}
	if st := n1.io.RecoveryStats(); st.Persisted != 1 {
		t.Fatalf("n1 stats %+v", st)
	}
}

// What a recovering process publishes is Node's adapter's message for the
// packet with its offset as one more argument, byte for byte.
func TestRecoveryWireFormat(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	ps := r.client(t).PSubscribe(context.Background(), "socket.io#/chat#*")
	defer ps.Close()
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	args := []any{map[string]any{"a": 1.0, "b": []any{"x", true, nil}}, []byte{1, 2, 3}, "tail"}
	_ = n1.nsp("/chat").To("user:alice").Except("sid-1").Emit("ev", args...)
	m, err := ps.ReceiveMessage(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != "socket.io#/chat#user:alice#" {
		t.Fatalf("channel %q", m.Channel)
	}
	last, volatile, ok := peekStamp(m.Payload)
	off, valid := socketio.ParseOffset(last)
	if !ok || volatile || !valid {
		t.Fatalf("peekStamp: %q %v %v", last, volatile, ok)
	}
	p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/chat", ID: socketio.NoID, Data: append([]any{"ev"}, args...)}
	want, err := encodeBroadcast(n1.classic.UID(), "/chat", socketio.WithOffset(p, off), []string{"user:alice"}, []string{"sid-1"}, socketio.BroadcastFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(m.Payload), want) {
		t.Fatalf("published\n%x\nwant\n%x", m.Payload, want)
	}
	// And it is what the room's list holds.
	xs := r.client(t).LRange(context.Background(), newRecoveryKeys("switchboard-recovery", "/chat").list("user:alice"), 0, -1).Val()
	if len(xs) != 1 || xs[0] != off.String()+" "+m.Payload {
		t.Fatalf("list %q", xs)
	}
}

// Without recovery nothing is stored and nothing is stamped.
func TestRecoveryOffStoresNothing(t *testing.T) {
	r := startRedis(t)
	n1 := startNode(t, r, "n1", Options{}, "/chat")
	if stamps(n1.classic.UID()) {
		t.Fatalf("uid %q", n1.classic.UID())
	}
	a := dial(t, n1, "alice", "/chat", userAuth("alice", "", ""))
	if a.pid != "" {
		t.Fatalf("pid %q", a.pid)
	}
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "1")
	if ev := waitN(t, a, 1); len(ev[0].args) != 1 {
		t.Fatalf("args %v", ev[0].args)
	}
	if keys := r.client(t).Keys(context.Background(), "switchboard-recovery*").Val(); len(keys) != 0 {
		t.Fatalf("keys %v", keys)
	}
}

// A broadcast from a process that does not store (Node, the emitter, or a
// process without recovery) reaches a recovering process's sockets as it
// was sent, and is not replayed.
func TestRecoveryWithAProcessThatDoesNotStore(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	plain := startNode(t, r, "plain", Options{}, "/chat")
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "stored")
	o1 := lastOffset(t, waitN(t, a, 1)[0])
	_ = plain.nsp("/chat").To("user:alice").Emit("m", "9-9") // a last argument that looks like an offset
	ev := waitN(t, a, 2)
	if len(ev[1].args) != 1 || ev[1].args[0] != "9-9" {
		t.Fatalf("got %v", ev[1].args)
	}
	dropClient(t, n1.node, a)
	_ = plain.nsp("/chat").To("user:alice").Emit("m", "plain-away")
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "stored-away")
	probe := dial(t, n1.node, "probe", "/chat", userAuth("alice", "", ""))
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "probe")
	waitN(t, probe, 1)
	a2 := dial(t, n1.node, "alice", "/chat", userAuth("alice", a.pid, o1.String()))
	if got := labels(waitN(t, a2, 2)); !slices.Equal(got, []string{"stored-away", "probe"}) {
		t.Fatalf("recovered %v", got)
	}
}

func TestPeekStamp(t *testing.T) {
	p := &socketio.Packet{Type: socketio.PacketEvent, Data: []any{"ev", map[string]any{"x": []any{1.0, "y"}}, "1-2"}}
	for _, tc := range []struct {
		flags    socketio.BroadcastFlags
		volatile bool
	}{{socketio.BroadcastFlags{}, false}, {socketio.BroadcastFlags{Volatile: true}, true}, {socketio.BroadcastFlags{Timeout: time.Second}, false}} {
		b, err := encodeBroadcast("u", "/", p, []string{"r"}, nil, tc.flags)
		if err != nil {
			t.Fatal(err)
		}
		last, volatile, ok := peekStamp(string(b))
		if !ok || last != "1-2" || volatile != tc.volatile {
			t.Errorf("%+v: %q %v %v", tc.flags, last, volatile, ok)
		}
		for i := range b {
			peekStamp(string(b[:i])) // no panic on a truncated message
		}
	}
	noString := &socketio.Packet{Type: socketio.PacketEvent, Data: []any{"ev", 1.0}}
	b, _ := encodeBroadcast("u", "/", noString, nil, nil, socketio.BroadcastFlags{})
	if _, _, ok := peekStamp(string(b)); ok {
		t.Error("a last argument that is not a string")
	}
}

// Redis gone before anything says so (Options.Publishing still yes): a
// stored broadcast that surely never reached Redis still reaches this
// process's sockets, unstored.
func TestRecoveryDeliversLocallyWhatRedisNeverGot(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	a := dial(t, n1.node, "alice", "/chat", userAuth("alice", "", ""))
	r.kill()
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "while Redis is gone")
	ev := waitN(t, a, 1)
	if got := labels(ev); got[0] != "while Redis is gone" || len(ev[0].args) != 1 {
		t.Fatalf("got %v", ev[0].args)
	}
}

// A room's list keeps what is younger than the window, and the list expires
// a window after its last entry.
func TestRecoveryKeepsNoLongerThanTheWindow(t *testing.T) {
	r := startRedis(t)
	const window = 500 * time.Millisecond
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{Window: window})
	probe := dial(t, n1.node, "probe", "/chat", userAuth("alice", "", ""))
	key := newRecoveryKeys("switchboard-recovery", "/chat").list("user:alice")
	rc := r.client(t)
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "1")
	waitN(t, probe, 1)
	if ttl := rc.PTTL(context.Background(), key).Val(); ttl <= 0 || ttl > window {
		t.Fatalf("the list expires in %v, want within %v", ttl, window)
	}
	// The window is a duration: the clock is what is tested.
	time.Sleep(window + 100*time.Millisecond)
	_ = n1.nsp("/chat").To("user:alice").Emit("m", "2")
	second := lastOffset(t, waitN(t, probe, 2)[1])
	if xs := rc.LRange(context.Background(), key, 0, -1).Val(); len(xs) != 1 || !strings.HasPrefix(xs[0], second.String()+" ") {
		t.Fatalf("list %q: the entry older than the window is still there", xs)
	}
}

// On a Redis Cluster: every recovery key on the node of one hash tag, the
// processes' messages through that node in one order, and a process that
// died recognised by its subscriptions on every master.
func TestRecoveryOnRedisCluster(t *testing.T) {
	rc := startRedisCluster(t, 3, 0)
	var nodes []*recoveryNode
	for i := range 3 {
		pub := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{rc.seed()}, DialTimeout: time.Second,
			ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
		sub := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{rc.seed()}, Protocol: 2, DialTimeout: time.Second})
		nodes = append(nodes, startRecoveryNodeWith(t, pub, sub, fmt.Sprintf("n%d", i+1), RecoveryOptions{}))
	}
	chat := func(i int) *socketio.Namespace { return nodes[i].nsp("/chat") }
	a := dial(t, nodes[0].node, "alice", "/chat", userAuth("alice", "", ""))
	_ = chat(1).To("user:alice").Emit("m", "1")
	o1 := lastOffset(t, waitN(t, a, 1)[0])
	dropClient(t, nodes[0].node, a)
	probe := dial(t, nodes[2].node, "probe", "/chat", userAuth("alice", "", ""))
	for i := range 3 {
		_ = chat(i).To("user:alice").Emit("m", fmt.Sprintf("away-%d", i))
	}
	waitN(t, probe, 3)
	a2 := dial(t, nodes[2].node, "alice", "/chat", userAuth("alice", a.pid, o1.String()))
	if a2.pid != a.pid || a2.sid != a.sid {
		t.Fatalf("not recovered: %v", nodes[2].lastOutcome())
	}
	got := labels(waitN(t, a2, 3))
	slices.Sort(got)
	if !slices.Equal(got, []string{"away-0", "away-1", "away-2"}) {
		t.Fatalf("recovered %v", got)
	}

	// The process that holds a2 dies without a word: its live session is
	// restored elsewhere once its subscriptions are gone from every master.
	_ = chat(0).To("user:alice").Emit("m", "live")
	o2 := lastOffset(t, waitN(t, a2, 4)[3])
	_ = nodes[2].sub.Close()
	_ = nodes[2].pub.Close()
	channel := "socket.io-response#/chat#" + nodes[2].classic.UID() + "#"
	waitFor(t, "n3's subscriptions to go", func() bool {
		n, err := countSubscribers(context.Background(), rc.client(t), false, channel)
		return err == nil && n == 0
	})
	a2.close()
	_ = chat(0).To("user:alice").Emit("m", "after")
	a3 := dial(t, nodes[1].node, "alice", "/chat", userAuth("alice", a.pid, o2.String()))
	if a3.pid != a.pid {
		t.Fatalf("not recovered from the dead process: %v", nodes[1].lastOutcome())
	}
	if got := labels(waitN(t, a3, 1)); got[0] != "after" {
		t.Fatalf("got %v", got)
	}
}

// The keeper drops the where entries of sessions no longer live (their
// holder died and nobody came back), and only those.
func TestRecoveryPrunesWhere(t *testing.T) {
	r := startRedis(t)
	n1 := startRecoveryNode(t, r, "n1", RecoveryOptions{})
	k := newRecoveryKeys("switchboard-recovery", "/chat")
	rc := r.client(t)
	ctx := context.Background()
	rc.HSet(ctx, k.where(), "sbr.dead.AAAAAAAAAAAAAAAAAAAA", "sbr.gone", "sbr.x.BBBBBBBBBBBBBBBBBBBB", "sbr.alive")
	rc.HSet(ctx, k.live("sbr.alive"), "sbr.x.BBBBBBBBBBBBBBBBBBBB", "{}")
	n1.classic.prune(k)
	if got := rc.HKeys(ctx, k.where()).Val(); !slices.Equal(got, []string{"sbr.x.BBBBBBBBBBBBBBBBBBBB"}) {
		t.Fatalf("where hash %v", got)
	}
}
