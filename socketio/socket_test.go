package socketio

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// connectedPair starts a server whose "/" sockets are handed to the test,
// and connects one client of protocol eio.
func connectedPair(t *testing.T, eio int, eopts engineio.Options, opts Options) (*testServer, *tclient, *Socket) {
	t.Helper()
	sockets := make(chan *Socket, 1)
	s := startServer(t, eopts, opts, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
	})
	c := s.dial(t, eio)
	if eio == 4 {
		c.connect("/", "")
	} else {
		c.expect("0")
	}
	return s, c, recv(t, sockets, "the socket")
}

func TestAcks(t *testing.T) {
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			_, c, sock := connectedPair(t, eio, engineio.Options{}, Options{})
			got := newEvents()
			done := make(chan struct{})
			sock.Session().Serialize(func() { // On belongs to the strand
				sock.On("echo", func(s *Socket, event string, args []any, ack AckFunc) {
					ack(args...)
					ack("twice") // ignored
				})
				sock.On("noack", func(s *Socket, event string, args []any, ack AckFunc) {
					got.add("noack %v %v", args, ack == nil)
				})
				sock.On("empty", func(s *Socket, event string, args []any, ack AckFunc) { ack() })
				close(done)
			})
			<-done
			// Client to server.
			c.send(`27["echo","x",{"y":[1]}]`)
			c.expect(`37["x",{"y":[1]}]`)
			c.send(`2["noack",1]`)
			got.expect(t, "noack [1] true")
			c.send(`28["empty"]`)
			c.expect(`38[]`)

			// Server to client, answered.
			answers := make(chan string, 3)
			cb := func(args []any, err error) { answers <- fmt.Sprint(args, err) }
			if err := sock.EmitWithAck(0, cb, "q", 1); err != nil {
				t.Fatal(err)
			}
			pk := c.expectPrefix("2")
			var id int
			if _, err := fmt.Sscanf(pk, "2%d[", &id); err != nil || !strings.HasSuffix(pk, `["q",1]`) {
				t.Fatalf("got %s", pk)
			}
			c.send(fmt.Sprintf(`3%d["r",2]`, id))
			if a := recv(t, answers, "the ack"); a != "[r 2] <nil>" {
				t.Fatalf("ack %s", a)
			}
			// An ack nobody asked for is ignored.
			c.send(`399["stray"]`)

			// Timeout.
			_ = sock.EmitWithAck(time.Millisecond, cb, "late")
			c.expectPrefix("2")
			if a := recv(t, answers, "the timeout"); a != "[] "+ErrTimeout.Error() {
				t.Fatalf("ack %s", a)
			}
			// Disconnected before the answer.
			_ = sock.EmitWithAck(0, cb, "never")
			c.expectPrefix("2")
			c.c.Close()
			if a := recv(t, answers, "the disconnect"); a != "[] "+ErrDisconnected.Error() {
				t.Fatalf("ack %s", a)
			}
			if err := sock.EmitWithAck(0, cb, "closed"); !errors.Is(err, ErrDisconnected) {
				t.Fatalf("EmitWithAck on a closed socket: %v", err)
			}
			// Reserved names are refused.
			if err := sock.Emit("disconnect"); err == nil {
				t.Fatal("emitted a reserved event")
			}
		})
	}
}

func TestBinary(t *testing.T) {
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			_, c, sock := connectedPair(t, eio, engineio.Options{}, Options{})
			got := make(chan []any, 1)
			done := make(chan struct{})
			sock.Session().Serialize(func() {
				sock.On("up", func(s *Socket, event string, args []any, ack AckFunc) {
					got <- args
					ack([]byte{0xca, 0xfe}, "text")
				})
				close(done)
			})
			<-done
			c.send(`51-3["up",{"_placeholder":true,"num":0},"s"]`)
			c.sendBinary([]byte{0, 1, 0xff})
			if args := recv(t, got, "the event"); !reflect.DeepEqual(args, []any{[]byte{0, 1, 0xff}, "s"}) {
				t.Fatalf("args %v", args)
			}
			c.expect(`61-3[{"_placeholder":true,"num":0},"text"]`)
			c.expect("bin:cafe")

			_ = sock.Emit("down", map[string]any{"a": []byte{1}}, []byte{2, 3})
			c.expect(`52-["down",{"a":{"_placeholder":true,"num":0}},{"_placeholder":true,"num":1}]`)
			c.expect("bin:01")
			c.expect("bin:0203")
		})
	}
}

func TestBinaryPolling(t *testing.T) {
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			sockets := make(chan *Socket, 1)
			s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
				srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
			})
			p := s.poll(t, eio)
			if eio == 4 {
				p.send("0")
			}
			sock := recv(t, sockets, "the socket")
			if m := p.get(); len(m) != 1 || !strings.HasPrefix(m[0], "40") {
				t.Fatalf("GET %q", m)
			}
			_ = sock.Emit("bin", []byte{1, 2, 3})
			want := []string{`451-["bin",{"_placeholder":true,"num":0}]`, "bAQID"}
			if eio == 3 {
				want[1] = "b4AQID"
			}
			if m := p.get(); !reflect.DeepEqual(m, want) {
				t.Fatalf("GET %q, want %q", m, want)
			}
		})
	}
}

func TestDisconnect(t *testing.T) {
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			sockets := make(chan *Socket, 2)
			reasons := make(chan string, 2)
			s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
				for _, n := range []string{"/", "/admin"} {
					srv.Of(n).OnConnection(func(s *Socket) {
						s.OnDisconnect(func(reason string) { reasons <- s.Namespace().Name() + " " + reason })
						sockets <- s
					})
				}
			})
			c := s.dial(t, eio)
			if eio == 4 {
				c.connect("/", "")
			} else {
				c.expect("0")
			}
			root := recv(t, sockets, "/")
			c.connect("/admin", "")
			admin := recv(t, sockets, "/admin")

			// Without close: the namespace only.
			admin.Disconnect(false)
			c.expect("1/admin,")
			if r := recv(t, reasons, "the disconnect"); r != "/admin server namespace disconnect" {
				t.Fatalf("reason %s", r)
			}
			if admin.Connected() || s.srv.Of("/admin").Len() != 0 {
				t.Fatal("still connected")
			}
			_ = root.Emit("alive")
			c.expect(`2["alive"]`)

			// The client leaves a namespace.
			c.connect("/admin", "")
			recv(t, sockets, "/admin again")
			c.send("1/admin,")
			if r := recv(t, reasons, "the disconnect"); r != "/admin client namespace disconnect" {
				t.Fatalf("reason %s", r)
			}

			// With close: DISCONNECT first, then the close.
			c.connect("/admin", "")
			recv(t, sockets, "/admin again")
			root.Disconnect(true)
			got := []string{c.read(), c.read()}
			if !reflect.DeepEqual(got, []string{"1", "1/admin,"}) && !reflect.DeepEqual(got, []string{"1/admin,", "1"}) {
				t.Fatalf("got %q", got)
			}
			c.closed()
			for range 2 {
				if r := recv(t, reasons, "a disconnect"); !strings.HasSuffix(r, " server namespace disconnect") {
					t.Fatalf("reason %s", r)
				}
			}
		})
	}
}

// TestDisconnectPolling: over polling, Disconnect(true) must reach the
// client: the DISCONNECT packet, then the close packet, whether a GET was
// parked when it came or the client was between two polls.
func TestDisconnectPolling(t *testing.T) {
	for _, parkedGET := range []bool{true, false} {
		t.Run(fmt.Sprintf("parked %v", parkedGET), func(t *testing.T) {
			sockets := make(chan *Socket, 1)
			s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
				srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
			})
			p := s.poll(t, 4)
			p.send("0")
			sock := recv(t, sockets, "the socket")
			p.get() // the CONNECT answer
			var got []string
			if parkedGET {
				ch := p.getAsync()
				waitFor(t, "a parked GET", pollParked)
				sock.Disconnect(true)
				got = recv(t, ch, "the GET")
			} else {
				sock.Disconnect(true)
			}
			// Poll until the close packet, as the client does.
			for !slices.Contains(got, "1") {
				status, body := p.do("GET", p.query(), "")
				if status != 200 {
					t.Fatalf("got %q, then GET: %d %s", got, status, body)
				}
				got = append(got, p.split(body)...)
			}
			got = slices.DeleteFunc(got, func(s string) bool { return s == "6" })
			if !reflect.DeepEqual(got, []string{"41", "1"}) {
				t.Fatalf("got %q, want the DISCONNECT and the close packet", got)
			}
		})
	}
}

// TestProtocolErrors: what Node closes the connection for, Go does too.
func TestProtocolErrors(t *testing.T) {
	s := startServer(t, engineio.Options{MaxPayload: 1000}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) {
			s.On("boom", func(*Socket, string, []any, AckFunc) { panic("handler bug") })
		})
		srv.Of("/slow").Use(func(s *Socket, next func(error)) {}) // never answers
	})
	for _, tt := range []struct {
		name string
		send func(c *tclient)
	}{
		{"packet for a namespace not joined", func(c *tclient) { c.send(`2/admin,["x"]`) }},
		{"second CONNECT", func(c *tclient) { c.send("0") }},
		{"CONNECT_ERROR from the client", func(c *tclient) { c.send(`4{"message":"x"}`) }},
		{"undecodable", func(c *tclient) { c.send(`2["x"`) }},
		{"reserved event", func(c *tclient) { c.send(`2["disconnect"]`) }},
		{"binary without a packet", func(c *tclient) { c.sendBinary([]byte{1}) }},
		{"attachments over MaxPayload", func(c *tclient) {
			c.send(`52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
			c.sendBinary(make([]byte, 600))
			c.sendBinary(make([]byte, 600))
		}},
		{"a panicking handler", func(c *tclient) { c.send(`2["boom"]`) }},
		{"too much while a connect waits", func(c *tclient) {
			c.send("0/slow,")
			for range 3 {
				c.send(`2["` + strings.Repeat("x", 400) + `"]`)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := s.dial(t, 4)
			c.connect("/", "")
			tt.send(c)
			c.closed()
		})
	}
}

// TestNothingBeforeConnect: packets sent to a socket before its CONNECT
// answer (from its middleware, or broadcast to a room it joined there)
// are written after the answer, in order.
func TestNothingBeforeConnect(t *testing.T) {
	type pendingConnect struct {
		s    *Socket
		next func(error)
	}
	pending := make(chan pendingConnect, 1)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		n := srv.Of("/room")
		n.Use(func(s *Socket, next func(error)) {
			s.Join("r")
			_ = s.Emit("from middleware", 1)
			pending <- pendingConnect{s, next}
		})
		n.OnConnection(func(s *Socket) { _ = s.Emit("from OnConnection") })
	})
	for _, eio := range []int{4, 3} {
		c := s.dial(t, eio)
		if eio == 3 {
			c.expect("0")
		}
		c.send("0/room,")
		p := recv(t, pending, "the middleware")
		if err := s.srv.Of("/room").To("r").Emit("broadcast", 2); err != nil {
			t.Fatal(err)
		}
		_ = p.s.Emit("direct", 3)
		go p.next(nil)
		if eio == 3 {
			c.expect("0/room,")
		} else {
			c.expectPrefix(`0/room,{"sid":"` + p.s.ID())
		}
		c.expect(`2/room,["from middleware",1]`)
		c.expect(`2/room,["broadcast",2]`)
		c.expect(`2/room,["direct",3]`)
		c.expect(`2/room,["from OnConnection"]`)
	}
}

// TestConnectBacklogBounded: what a client sends while a middleware decides
// its CONNECT waits, within the payload limit; past it the connection is
// closed and counted.
func TestConnectBacklogBounded(t *testing.T) {
	held := make(chan func(error), 1)
	s := startServer(t, engineio.Options{MaxPayload: 1000}, Options{}, func(srv *Server) {
		srv.Of("/room").Use(func(_ *Socket, next func(error)) { held <- next })
	})
	c := s.dial(t, 4)
	c.send("0/room,")
	next := recv(t, held, "the middleware")
	t.Cleanup(func() { next(nil) })
	event := `2/room,["e","` + strings.Repeat("a", 400) + `"]`
	c.send(event) // 400-odd bytes: waits
	c.send(event) // under 1000 in all: waits
	c.send(event) // over: closed
	c.closed()
	if n := s.srv.Stats().BacklogTooLarge.Load(); n != 1 {
		t.Fatalf("%d connect backlogs counted", n)
	}
}

func TestConnectTimeout(t *testing.T) {
	eopts := engineio.Options{}
	start := func(t *testing.T, opts Options) (*testServer, chan *Socket) {
		sockets := make(chan *Socket, 2)
		s := startServer(t, eopts, opts, func(srv *Server) {
			srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
			srv.Of("/admin")
			srv.Of("/guarded").Use(func(_ *Socket, next func(error)) { next(&ConnectError{Message: "no"}) })
		})
		return s, sockets
	}
	t.Run("v5 client joins nothing", func(t *testing.T) {
		s, _ := start(t, Options{ConnectTimeout: 20 * time.Millisecond})
		c := s.dial(t, 4)
		c.closed()
		if n := s.srv.Stats().ConnectTimeouts.Load(); n != 1 {
			t.Fatalf("%d connect timeouts counted", n)
		}
	})
	t.Run("refused connects do not stop the timer", func(t *testing.T) {
		// As the application runs it: a v3 client's implicit / does not
		// count either.
		s, _ := start(t, Options{ConnectTimeout: 50 * time.Millisecond, RootIsNotAConnect: true})
		for _, eio := range []int{4, 3} {
			c := s.dial(t, eio)
			if eio == 3 {
				c.expect("0")
			}
			c.send("0/guarded,")
			c.expectPrefix("4/guarded,")
			c.send("0/nowhere,")
			c.expectPrefix("4/nowhere,")
			c.closed()
		}
		if n := s.srv.Stats().ConnectTimeouts.Load(); n != 2 {
			t.Fatalf("%d connect timeouts counted, want 2", n)
		}
	})
	t.Run("v5 client joins in time", func(t *testing.T) {
		s, sockets := start(t, Options{ConnectTimeout: time.Hour})
		c := s.dial(t, 4)
		c.connect("/", "")
		if timerSet(recv(t, sockets, "the socket")) {
			t.Fatal("the connect timer still runs after a connect")
		}
	})
	t.Run("v3 client: / counts", func(t *testing.T) {
		s, sockets := start(t, Options{ConnectTimeout: time.Hour})
		c := s.dial(t, 3)
		c.expect("0")
		if timerSet(recv(t, sockets, "the socket")) {
			t.Fatal("the connect timer still runs after the implicit /")
		}
	})
	t.Run("v3 client: RootIsNotAConnect", func(t *testing.T) {
		s, _ := start(t, Options{ConnectTimeout: 20 * time.Millisecond, RootIsNotAConnect: true})
		c := s.dial(t, 3)
		c.expect("0")
		c.closed()
	})
	t.Run("v3 client: RootIsNotAConnect, joins in time", func(t *testing.T) {
		s, sockets := start(t, Options{ConnectTimeout: time.Hour, RootIsNotAConnect: true})
		c := s.dial(t, 3)
		c.expect("0")
		root := recv(t, sockets, "the socket")
		if !timerSet(root) {
			t.Fatal("the connect timer stopped at the implicit /")
		}
		c.send("0/admin,")
		c.expect("0/admin,")
		if timerSet(root) {
			t.Fatal("the connect timer still runs after /admin")
		}
	})
}

// timerSet reports whether the connect timer of the socket's connection
// runs.
func timerSet(s *Socket) bool {
	s.client.mu.Lock()
	defer s.client.mu.Unlock()
	return s.client.timer != nil
}
