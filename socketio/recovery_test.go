package socketio

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recoveryServer serves /chat with recovery on: a socket's auth names its
// user ("user", its owner), which joins "user:<user>"; "join" names one
// more room; "deny" refuses the connection.
type recoveryServer struct {
	*recHTTP
	nsp *Namespace

	mu       sync.Mutex
	outcomes []RecoveryOutcome
	clock    *testClock
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func startRecovery(t *testing.T, window time.Duration, maxPackets int) *recoveryServer {
	t.Helper()
	rs := &recoveryServer{clock: &testClock{now: time.Now()}}
	opts := Options{Recovery: RecoveryOptions{
		Window:     window,
		MaxPackets: maxPackets,
		Owner: func(s *Socket) string {
			u, _ := s.Data().(string)
			return u
		},
		OnRestore: func(_ *Socket, o RecoveryOutcome) {
			rs.mu.Lock()
			rs.outcomes = append(rs.outcomes, o)
			rs.mu.Unlock()
		},
	}}
	if maxPackets == 0 {
		maxPackets = 1000
	}
	if window > 0 {
		opts.Adapter = func(n *Namespace) Adapter { return newMemoryRecovery(n, window, maxPackets, rs.clock.Now) }
	}
	rs.recHTTP = startRecHTTP(t, opts)
	rs.nsp = rs.io.Of("/chat")
	rs.nsp.Use(func(s *Socket, next func(error)) {
		auth := s.Auth()
		if auth["deny"] == true {
			next(&ConnectError{Message: "denied"})
			return
		}
		user, _ := auth["user"].(string)
		s.SetData(user)
		s.Join("user:" + user)
		next(nil)
	})
	rs.nsp.Use(func(s *Socket, next func(error)) {
		if room, ok := s.Auth()["join"].(string); ok {
			s.Join(room)
		}
		next(nil)
	})
	return rs
}

// socket is the server's socket of a connected client.
func (rs *recoveryServer) socket(c *testClient) *Socket {
	s := rs.nsp.Socket(c.sid)
	if s == nil {
		rs.t.Fatalf("no socket %s", c.sid)
	}
	return s
}

func (rs *recoveryServer) lastOutcome() RecoveryOutcome {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.outcomes) == 0 {
		rs.t.Fatal("no recovery attempt")
	}
	return rs.outcomes[len(rs.outcomes)-1]
}

// dial connects a user, recovering pid after offset when pid is set.
func (rs *recoveryServer) dial(user, pid, offset string, extra map[string]any) *testClient {
	rs.t.Helper()
	auth := map[string]any{"user": user}
	if pid != "" {
		auth["pid"] = pid
	}
	if offset != "" {
		auth["offset"] = offset
	}
	for k, v := range extra {
		auth[k] = v
	}
	return dialTest(rs.t, rs.recHTTP, "/chat", auth)
}

// drop closes a client's connection and waits until the server has ended
// its socket (and so kept its session).
func (rs *recoveryServer) drop(c *testClient) {
	rs.t.Helper()
	sid := c.sid
	c.close()
	waitFor(rs.t, "the server to end socket "+sid, func() bool { return rs.nsp.Socket(sid) == nil })
}

// offsetOf returns the offset an event carries as its last argument.
func offsetOf(t *testing.T, e testEvent) string {
	t.Helper()
	if len(e.args) == 0 {
		t.Fatalf("event %s has no arguments", e.name)
	}
	s, ok := e.args[len(e.args)-1].(string)
	if _, valid := ParseOffset(s); !ok || !valid {
		t.Fatalf("event %s %v: last argument is not an offset", e.name, e.args)
	}
	return s
}

// names lists the events' names with their first argument (an offset
// left out).
func names(events []testEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.name
		if len(e.args) > 0 {
			if s, ok := e.args[0].(string); ok && len(e.args) == 1 {
				if _, off := ParseOffset(s); off {
					continue
				}
			}
			out[i] += fmt.Sprintf(":%v", e.args[0])
		}
	}
	return out
}

func TestRecoveryStampsStoredPacketsOnly(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	if a.pid == "" {
		t.Fatal("the CONNECT reply has no pid")
	}
	s := rs.socket(a)
	if s.Recovered() {
		t.Fatal("a fresh socket says it was recovered")
	}
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	_ = rs.nsp.To("user:alice").Volatile().Emit("volatile", 2)
	_ = s.Emit("direct", 3)
	_ = s.EmitWithAck(0, func([]any, error) {}, "withack", 4)
	_ = rs.nsp.Emit("all", 5)
	ev := a.waitEvents(5)
	if got, want := names(ev), []string{"m:1", "volatile:2", "direct:3", "withack:4", "all:5"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	var offs []Offset
	for _, i := range []int{0, 2, 4} {
		o, _ := ParseOffset(offsetOf(t, ev[i]))
		offs = append(offs, o)
		if len(ev[i].args) != 2 {
			t.Errorf("%s: args %v, want its argument and an offset", ev[i].name, ev[i].args)
		}
	}
	for _, i := range []int{1, 3} {
		if len(ev[i].args) != 1 {
			t.Errorf("%s carries %v: a volatile event or one with an ack is not stored", ev[i].name, ev[i].args)
		}
	}
	if !offs[0].Before(offs[1]) || !offs[1].Before(offs[2]) {
		t.Errorf("offsets do not grow: %v", offs)
	}
}

func TestRecoveryOff(t *testing.T) {
	rs := startRecovery(t, 0, 0)
	a := rs.dial("alice", "", "", nil)
	if a.pid != "" {
		t.Fatalf("pid %q with recovery off", a.pid)
	}
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	if ev := a.waitEvents(1); len(ev[0].args) != 1 {
		t.Fatalf("args %v with recovery off", ev[0].args)
	}
}

func TestRecoveryRestoresWhatWasMissedInOrder(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", map[string]any{"join": "team"})
	b := rs.dial("bob", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	sid, pid := a.sid, a.pid
	rs.drop(a)

	_ = rs.nsp.To("user:alice").Emit("m", 2)
	_ = rs.nsp.To("team").Emit("m", 3)
	_ = rs.nsp.To("user:bob").Emit("not-alice", 0)
	_ = rs.nsp.Except(sid).Emit("not-this-socket", 0)
	_ = rs.nsp.Emit("m", 4)
	_ = rs.nsp.To("user:alice", "team").Emit("m", 5) // in two of its rooms: once
	b.waitEvents(3)

	a2 := rs.dial("alice", pid, o1, nil)
	if a2.sid != sid || a2.pid != pid {
		t.Fatalf("recovered as sid %q pid %q, want %q %q (%v)", a2.sid, a2.pid, sid, pid, rs.outcomes)
	}
	if o := rs.lastOutcome(); o != Recovered {
		t.Fatalf("outcome %v", o)
	}
	s := rs.socket(a2)
	if !s.Recovered() || s.ID() != sid {
		t.Fatalf("server socket: recovered %v id %q", s.Recovered(), s.ID())
	}
	if rooms := s.Rooms(); !slices.Contains(rooms, "team") || !slices.Contains(rooms, "user:alice") || rooms[0] != sid {
		t.Fatalf("rooms %v: the session's rooms are not restored", rooms)
	}
	_ = rs.nsp.To("team").Emit("m", 6) // live, after the replay
	ev := a2.waitEvents(5)
	if got, want := names(ev), []string{"m:2", "m:3", "m:4", "m:5", "m:6"}; !slices.Equal(got, want) {
		t.Fatalf("recovered events %v, want %v", got, want)
	}
	// Nothing more: a marker comes next.
	_ = s.Emit("marker")
	if got := names(a2.waitEvents(6)); got[5] != "marker" {
		t.Fatalf("events after the replay: %v", got)
	}
	// The socket id room reaches the recovered socket.
	_ = rs.nsp.To(sid).Emit("by-id")
	if got := names(a2.waitEvents(7)); got[6] != "by-id" {
		t.Fatalf("by id: %v", got)
	}
}

func TestRecoveryWithoutAnOffset(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	_ = rs.nsp.To("user:alice").Emit("before", 0) // before the session: never its
	a := rs.dial("alice", "", "", nil)
	pid := a.pid
	rs.drop(a)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	a2 := rs.dial("alice", pid, "", nil)
	if a2.pid != pid {
		t.Fatalf("not recovered: pid %q", a2.pid)
	}
	_ = rs.socket(a2).Emit("marker")
	if got, want := names(a2.waitEvents(2)), []string{"m:1", "marker"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestRecoveryOnlyOnce(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	pid, sid := a.pid, a.sid
	rs.drop(a)
	_ = rs.nsp.To("user:alice").Emit("m", 2)
	a2 := rs.dial("alice", pid, o1, nil)
	if a2.pid != pid {
		t.Fatal("not recovered")
	}
	a2.waitEvents(1)
	// The same pid and offset again, while the recovered socket lives.
	replay := rs.dial("alice", pid, o1, nil)
	if replay.pid == pid || replay.sid == sid {
		t.Fatalf("a replayed pid was recovered again (pid %q sid %q)", replay.pid, replay.sid)
	}
	if o := rs.lastOutcome(); o != RecoveryExpired {
		t.Fatalf("outcome %v, want expired", o)
	}
	// Once the recovered socket ends, its session is kept again.
	o2 := offsetOf(t, a2.waitEvents(1)[0])
	rs.drop(a2)
	_ = rs.nsp.To("user:alice").Emit("m", 3)
	a3 := rs.dial("alice", pid, o2, nil)
	if a3.pid != pid || a3.sid != sid {
		t.Fatal("the session was not kept again")
	}
	if got := names(a3.waitEvents(1)); got[0] != "m:3" {
		t.Fatalf("events %v", got)
	}
}

func TestRecoveryRefusedToAnotherOwner(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	pid, sid := a.pid, a.sid
	rs.drop(a)
	_ = rs.nsp.To("user:alice").Emit("secret", 2)

	mallory := rs.dial("mallory", pid, o1, nil)
	if mallory.pid == pid || mallory.sid == sid {
		t.Fatal("another user's session was restored")
	}
	if o := rs.lastOutcome(); o != RecoveryRefused {
		t.Fatalf("outcome %v, want refused", o)
	}
	if rooms := rs.socket(mallory).Rooms(); slices.Contains(rooms, "user:alice") {
		t.Fatalf("mallory's socket is in %v", rooms)
	}
	_ = rs.socket(mallory).Emit("marker")
	if got := names(mallory.waitEvents(1)); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("mallory got %v", got)
	}
	// Still there for its owner.
	a2 := rs.dial("alice", pid, o1, nil)
	if a2.pid != pid {
		t.Fatal("the owner could not recover after a refused attempt")
	}
	if got := names(a2.waitEvents(1)); got[0] != "secret:2" {
		t.Fatalf("events %v", got)
	}
}

func TestRecoveryForgedOrBad(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	b := rs.dial("bob", "", "", nil)

	for i, tc := range []struct {
		name   string
		pid    func(real string) string
		offset func(real, bob string) string
		want   RecoveryOutcome
	}{
		{"unknown pid", func(string) string { return "AAAAAAAAAAAAAAAAAAAA" }, func(o, _ string) string { return o }, RecoveryExpired},
		{"offset not an offset", func(p string) string { return p }, func(string, string) string { return "garbage" }, RecoveryInvalid},
		{"offset from the future", func(p string) string { return p }, func(string, string) string { return "99999999999999-0" }, RecoveryInvalid},
		{"offset of another user's packet", func(p string) string { return p }, func(_, bob string) string { return bob }, RecoveryInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := rs.dial("alice", "", "", nil)
			_ = rs.nsp.To("user:alice").Emit("m", 1)
			o1 := offsetOf(t, a.waitEvents(1)[0])
			_ = rs.nsp.To("user:bob").Emit("bob", i)
			bobOffset := offsetOf(t, b.waitEvents(i + 1)[i])
			pid := a.pid
			rs.drop(a)
			_ = rs.nsp.To("user:alice").Emit("m", 2)
			a2 := rs.dial("alice", tc.pid(pid), tc.offset(o1, bobOffset), nil)
			if a2.pid == pid {
				t.Fatal("recovered")
			}
			if o := rs.lastOutcome(); o != tc.want {
				t.Fatalf("outcome %v, want %v", o, tc.want)
			}
			_ = rs.socket(a2).Emit("marker")
			if got := names(a2.waitEvents(1)); !slices.Equal(got, []string{"marker"}) {
				t.Fatalf("a fresh session got %v", got)
			}
		})
	}
}

func TestRecoveryPastTheWindow(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	pid := a.pid
	rs.drop(a)
	rs.clock.advance(time.Minute + time.Millisecond)
	_ = rs.nsp.To("user:alice").Emit("m", 2)
	a2 := rs.dial("alice", pid, o1, nil)
	if a2.pid == pid {
		t.Fatal("recovered past the window")
	}
	if o := rs.lastOutcome(); o != RecoveryExpired {
		t.Fatalf("outcome %v", o)
	}
	_ = rs.socket(a2).Emit("marker")
	if got := names(a2.waitEvents(1)); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("a fresh session got %v", got)
	}
}

func TestRecoveryTrimmedByCount(t *testing.T) {
	rs := startRecovery(t, time.Minute, 3)
	a := rs.dial("alice", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	pid := a.pid
	rs.drop(a)
	for i := 2; i <= 5; i++ { // four: one more than kept
		_ = rs.nsp.To("user:alice").Emit("m", i)
	}
	a2 := rs.dial("alice", pid, o1, nil)
	if a2.pid == pid {
		t.Fatal("recovered although a missed packet was trimmed")
	}
	if o := rs.lastOutcome(); o != RecoveryExpired {
		t.Fatalf("outcome %v", o)
	}

	// Three missed fit.
	_ = rs.nsp.To("user:alice").Emit("m", 6)
	o5 := offsetOf(t, a2.waitEvents(1)[0])
	pid2 := a2.pid
	rs.drop(a2)
	for i := 7; i <= 9; i++ {
		_ = rs.nsp.To("user:alice").Emit("m", i)
	}
	a3 := rs.dial("alice", pid2, o5, nil)
	if a3.pid != pid2 {
		t.Fatalf("not recovered (%v)", rs.lastOutcome())
	}
	if got, want := names(a3.waitEvents(3)), []string{"m:7", "m:8", "m:9"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestRecoveryNotKeptAfterANamespaceDisconnect(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	_ = rs.nsp.To("user:alice").Emit("m", 1)
	o1 := offsetOf(t, a.waitEvents(1)[0])
	sid, pid := a.sid, a.pid
	a.write("41/chat,")
	waitFor(t, "the socket to leave", func() bool { return rs.nsp.Socket(sid) == nil })
	a2 := rs.dial("alice", pid, o1, nil)
	if a2.pid == pid {
		t.Fatal("a session left on purpose was recovered")
	}
}

func TestRecoveryRunsTheMiddlewares(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	pid := a.pid
	rs.drop(a)
	denied := rs.dial("alice", pid, "", map[string]any{"deny": true})
	if denied.connectErr == nil || denied.connectErr["message"] != "denied" {
		t.Fatalf("connect error %v: the middlewares did not run on a recovering connect", denied.connectErr)
	}
	// The refused connect did not use the session up.
	a2 := rs.dial("alice", pid, "", nil)
	if a2.pid != pid {
		t.Fatal("not recovered after a refused connect")
	}
}

func TestRecoveryStats(t *testing.T) {
	rs := startRecovery(t, time.Minute, 0)
	a := rs.dial("alice", "", "", nil)
	pid := a.pid
	rs.drop(a)
	rs.dial("alice", pid, "", nil)
	rs.dial("bob", pid, "", nil)
	st := rs.io.RecoveryStats()
	if st.Persisted != 1 || st.Recovered != 1 || st.Expired != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParseOffset(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"0-0", true}, {"1732900000000-12", true}, {"18446744073709551615-18446744073709551615", true},
		{"", false}, {"-", false}, {"1-", false}, {"-1", false}, {"1", false}, {"a-1", false}, {"1-1-1", false},
		{"+1-1", false}, {"18446744073709551616-0", false}, {" 1-1", false},
	} {
		o, ok := ParseOffset(tc.in)
		if ok != tc.ok {
			t.Errorf("ParseOffset(%q) ok %v", tc.in, ok)
		}
		if ok && o.String() != tc.in {
			t.Errorf("ParseOffset(%q).String() = %q", tc.in, o.String())
		}
	}
}
