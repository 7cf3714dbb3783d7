package socketio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/engineio"
)

// roomsFixture connects n clients to "/" (protocols alternate) and returns
// them with their sockets, in the same order.
func roomsFixture(t *testing.T, n int) (*testServer, []*tclient, []*Socket) {
	t.Helper()
	sockets := make(chan *Socket, n)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
		srv.Of("/other").OnConnection(func(s *Socket) { sockets <- s })
	})
	var cs []*tclient
	var ss []*Socket
	for i := range n {
		eio := 4
		if i%2 == 1 {
			eio = 3
		}
		c := s.dial(t, eio)
		if eio == 4 {
			c.connect("/", "")
		} else {
			c.expect("0")
		}
		cs = append(cs, c)
		ss = append(ss, recv(t, sockets, "a socket"))
	}
	return s, cs, ss
}

// received emits a marker to every client and returns, for each, what it
// got before the marker: what a broadcast reached, exactly once or not.
func received(t *testing.T, s *testServer, cs []*tclient) []string {
	t.Helper()
	if err := s.srv.Of("/").Emit("marker"); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		var got []string
		for {
			m := c.read()
			if m == `2["marker"]` {
				break
			}
			got = append(got, m)
		}
		out[i] = strings.Join(got, " ")
	}
	return out
}

func TestRooms(t *testing.T) {
	s, cs, ss := roomsFixture(t, 4)
	nsp := s.srv.Of("/")
	ss[0].Join("a", "b")
	ss[1].Join("a")
	ss[2].Join("b", "b") // twice: once
	// ss[3] joins nothing.

	if got := ss[0].Rooms(); !slices.Equal(got, []string{ss[0].ID(), "a", "b"}) {
		t.Fatalf("rooms %v", got)
	}
	if got := ss[2].Rooms(); !slices.Equal(got, []string{ss[2].ID(), "b"}) {
		t.Fatalf("rooms %v", got)
	}
	ev := `2["e"]`
	tests := []struct {
		name string
		op   BroadcastOperator
		want []string
	}{
		{"one room", nsp.To("a"), []string{ev, ev, "", ""}},
		{"several rooms, no duplicates", nsp.To("a", "b"), []string{ev, ev, ev, ""}},
		{"chained To", nsp.To("a").To("b"), []string{ev, ev, ev, ""}},
		{"own room", nsp.To(ss[3].ID()), []string{"", "", "", ev}},
		{"rooms and an id", nsp.To("a", ss[3].ID(), ss[0].ID()), []string{ev, ev, "", ev}},
		{"except", nsp.To("a", "b").Except("b"), []string{"", ev, "", ""}},
		{"except an id", nsp.Except(ss[1].ID()), []string{ev, "", ev, ev}},
		{"namespace-wide", BroadcastOperator{nsp: nsp}, []string{ev, ev, ev, ev}},
		{"local", nsp.Local(), []string{ev, ev, ev, ev}},
		{"local to a room", nsp.Local().To("b"), []string{ev, "", ev, ""}},
		{"from a socket: not to itself", ss[0].To("a", "b"), []string{"", ev, ev, ""}},
		{"unknown room", nsp.To("nobody"), []string{"", "", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op.Emit("e"); err != nil {
				t.Fatal(err)
			}
			if got := received(t, s, cs); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("leave", func(t *testing.T) {
		ss[0].Leave("a")
		ss[0].Leave("never joined")
		if err := nsp.To("a").Emit("e"); err != nil {
			t.Fatal(err)
		}
		if got := received(t, s, cs); !slices.Equal(got, []string{"", ev, "", ""}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("other namespace", func(t *testing.T) {
		cs[0].connect("/other", "")
		if err := s.srv.Of("/other").Emit("o"); err != nil {
			t.Fatal(err)
		}
		cs[0].expect(`2/other,["o"]`)
	})
	t.Run("fetch, join and leave remotely", func(t *testing.T) {
		ctx := context.Background()
		infos, err := nsp.To("b").FetchSockets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, in := range infos {
			ids = append(ids, in.ID)
		}
		sort.Strings(ids)
		want := []string{ss[0].ID(), ss[2].ID()}
		sort.Strings(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("fetched %v, want %v", ids, want)
		}
		if err := nsp.To("b").SocketsJoin(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		if err := nsp.To(ss[2].ID()).SocketsLeave(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		_ = nsp.To("c").Emit("e")
		if got := received(t, s, cs); !slices.Equal(got, []string{ev, "", "", ""}) {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("disconnect leaves every room", func(t *testing.T) {
		ss[2].Disconnect(false)
		cs[2].expect("1")
		a := nsp.Adapter().(*MemoryAdapter)
		if a.HasRoom(ss[2].ID()) || slices.Contains(a.Rooms(), ss[2].ID()) {
			t.Fatal("the id room outlives its socket")
		}
		_ = nsp.To("b").Emit("e")
		cs = slices.Delete(cs, 2, 3)
		if got := received(t, s, cs); !slices.Equal(got, []string{ev, "", ""}) {
			t.Fatalf("got %q", got)
		}
	})
}

// TestJoinAfterDisconnect: a socket that disconnected cannot join a room
// (a handler that joins after an asynchronous lookup, too late): it would
// stay in the room forever.
func TestJoinAfterDisconnect(t *testing.T) {
	s, cs, ss := roomsFixture(t, 1)
	cs[0].c.Close()
	waitFor(t, "the disconnect", func() bool { return !ss[0].Connected() })
	ss[0].Join("late")
	a := s.srv.Of("/").Adapter().(*MemoryAdapter)
	if a.HasRoom("late") || len(ss[0].Rooms()) != 1 {
		t.Fatalf("rooms %v, adapter %v", ss[0].Rooms(), a.Rooms())
	}
}

func TestBroadcastEmitWithAck(t *testing.T) {
	s, cs, ss := roomsFixture(t, 3)
	nsp := s.srv.Of("/")
	answer := func(c *tclient, reply string) {
		m := c.expectPrefix("2")
		var id int
		fmt.Sscanf(m, "2%d[", &id)
		if reply != "" {
			c.send(fmt.Sprintf(`3%d[%s]`, id, reply))
		}
	}
	t.Run("all answer", func(t *testing.T) {
		done := make(chan []any, 1)
		go func() {
			res, err := BroadcastOperator{nsp: nsp}.Timeout(waitLimit).EmitWithAck(context.Background(), "q")
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		for i, c := range cs {
			answer(c, fmt.Sprintf(`"c%d",2`, i))
		}
		res := recv(t, done, "the answers")
		var got []string
		for _, r := range res {
			got = append(got, fmt.Sprint(r))
		}
		sort.Strings(got)
		if !slices.Equal(got, []string{"c0", "c1", "c2"}) {
			t.Fatalf("answers %v", got)
		}
	})
	t.Run("one silent", func(t *testing.T) {
		// The wait ends when ctx does, once the answers are in: no clock.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		var res []any
		go func() {
			var err error
			res, err = BroadcastOperator{nsp: nsp}.Timeout(waitLimit).EmitWithAck(ctx, "q")
			done <- err
		}()
		answer(cs[0], `"yes"`)
		answer(cs[1], "")
		answer(cs[2], `"yes"`)
		for _, i := range []int{0, 2} {
			waitFor(t, "the answer", func() bool {
				ss[i].mu.Lock()
				defer ss[i].mu.Unlock()
				return len(ss[i].acks) == 0
			})
			ss[i].Session().Serialize(func() {}) // its callback has run
		}
		cancel()
		if err := recv(t, done, "the end"); !errors.Is(err, ErrTimeout) || len(res) != 2 {
			t.Fatalf("%v %v", res, err)
		}
		// The silent client's pending ack is dropped when it leaves.
	})
	t.Run("no recipient", func(t *testing.T) {
		res, err := nsp.To("nobody").Timeout(waitLimit).EmitWithAck(context.Background(), "q")
		if err != nil || len(res) != 0 {
			t.Fatalf("%v %v", res, err)
		}
	})
	t.Run("needs a timeout", func(t *testing.T) {
		if _, err := (BroadcastOperator{nsp: nsp}).EmitWithAck(context.Background(), "q"); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("room and except", func(t *testing.T) {
		ss[1].Join("r")
		ss[2].Join("r")
		done := make(chan []any, 1)
		go func() {
			res, _ := nsp.To("r").Except(ss[2].ID()).Timeout(waitLimit).EmitWithAck(context.Background(), "q")
			done <- res
		}()
		answer(cs[1], `"only"`)
		if res := recv(t, done, "the answer"); len(res) != 1 || res[0] != "only" {
			t.Fatalf("answers %v", res)
		}
	})
}

// TestSlowClientBroadcast: a broadcast reaches a polling client that
// stopped polling; its queue overflows and the session is closed as a slow
// client. The broadcast must go on, and the others get it.
func TestSlowClientBroadcast(t *testing.T) {
	sockets := make(chan *Socket, 2)
	s := startServer(t, engineio.Options{MaxPayload: 4096, MaxQueuedBytes: 16 << 10}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
	})
	p := s.poll(t, 4) // never polls again
	p.send("0")
	slow := recv(t, sockets, "the slow socket")
	c := s.dial(t, 4)
	c.connect("/", "")
	recv(t, sockets, "the other socket")
	closed := make(chan string, 1)
	slow.OnDisconnect(func(reason string) { closed <- reason })

	big := strings.Repeat("x", 2000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			_ = s.srv.Of("/").Emit("big", big)
		}
	}()
	for range 20 {
		c.expectPrefix(`2["big"`)
	}
	recv(t, done, "the broadcasts")
	if reason := recv(t, closed, "the slow client's end"); reason != engineio.ReasonSlowClient {
		t.Fatalf("reason %q", reason)
	}
}

func TestFetchSocketsInfo(t *testing.T) {
	sockets := make(chan *Socket, 1)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
	})
	c := s.dial(t, 4)
	c.connect("/", `{"token":"secret"}`)
	sock := recv(t, sockets, "the socket")
	sock.Join("r")
	sock.SetData(map[string]any{"user": "u1"})
	infos, err := s.srv.Of("/").FetchSockets(context.Background())
	if err != nil || len(infos) != 1 {
		t.Fatalf("%v %v", infos, err)
	}
	in := infos[0]
	h := in.Handshake
	if in.ID != sock.ID() || !slices.Equal(in.Rooms, []string{sock.ID(), "r"}) || fmt.Sprint(in.Data) != "map[user:u1]" {
		t.Fatalf("info %+v", in)
	}
	if h.Address != "127.0.0.1" || h.Query["EIO"] != "4" || h.Query["transport"] != "websocket" ||
		!strings.HasPrefix(h.URL, "/socket.io/?EIO=4") || h.Auth["token"] != "secret" || h.Headers["host"] == "" || h.Secure || h.XDomain {
		t.Fatalf("handshake %+v", h)
	}
	sock.Session().Serialize(sock.ForgetAuth) // on the strand, where ForgetAuth belongs
	if infos, _ := s.srv.Of("/").FetchSockets(context.Background()); len(infos[0].Handshake.Auth) != 0 {
		t.Fatalf("auth kept: %v", infos[0].Handshake.Auth)
	}
	if res, err := s.srv.Of("/").ServerSideEmitWithAck(context.Background(), "x"); err != nil || len(res) != 0 {
		t.Fatalf("%v %v", res, err)
	}
}
