package socketio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/switchboard-rt/switchboard/engineio"
)

func TestConnectV5(t *testing.T) {
	sockets := make(chan *Socket, 10)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
		srv.Of("/admin").OnConnection(func(s *Socket) { sockets <- s })
	})
	c := s.dial(t, 4)
	id := c.connect("/", "")
	root := recv(t, sockets, "the / socket")
	if root.ID() != id || root.Namespace().Name() != "/" || !root.Connected() || root.Protocol() != 4 {
		t.Fatalf("socket %s in %s", root.ID(), root.Namespace().Name())
	}
	if root.Session().ID() != c.sid || len(root.Auth()) != 0 {
		t.Fatalf("session %s, auth %v", root.Session().ID(), root.Auth())
	}
	adminID := c.connect("/admin", `{"token":"t","n":1}`)
	admin := recv(t, sockets, "the /admin socket")
	if admin.ID() != adminID || adminID == id || !reflect.DeepEqual(admin.Auth(), map[string]any{"token": "t", "n": 1.0}) {
		t.Fatalf("socket %s, auth %v", admin.ID(), admin.Auth())
	}
	if s.srv.Of("/admin").Socket(adminID) != admin || s.srv.Of("/admin").Len() != 1 {
		t.Fatal("the namespace does not know its socket")
	}
	// A second CONNECT for a joined namespace is a protocol error.
	c.send("0/admin,")
	c.closed()
}

func TestConnectV4(t *testing.T) {
	sockets := make(chan *Socket, 10)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(func(s *Socket) { sockets <- s })
		srv.Of("/admin").OnConnection(func(s *Socket) { sockets <- s })
	})
	c := s.dial(t, 3)
	// "/" is joined implicitly: the server says so at once.
	c.expect("0")
	root := recv(t, sockets, "the / socket")
	if root.Protocol() != 3 || len(root.Auth()) != 0 {
		t.Fatalf("protocol %d, auth %v", root.Protocol(), root.Auth())
	}
	// The auth of another namespace is its query.
	c.send("0/admin?token=a%20b&x=1&x=2,")
	c.expect("0/admin,")
	admin := recv(t, sockets, "the /admin socket")
	if !reflect.DeepEqual(admin.Auth(), map[string]any{"token": "a b", "x": "2"}) {
		t.Fatalf("auth %v", admin.Auth())
	}
	// Events of both namespaces.
	got := newEvents()
	root.On("e", func(s *Socket, event string, args []any, ack AckFunc) { got.add("/ %v", args) })
	admin.On("e", func(s *Socket, event string, args []any, ack AckFunc) { got.add("/admin %v", args) })
	c.send(`2["e",1]`)
	c.send(`2/admin,["e",2]`)
	got.expect(t, "/ [1]", "/admin [2]")
}

func TestRefusedNamespace(t *testing.T) {
	refuse := func(err error) Middleware { return func(s *Socket, next func(error)) { next(err) } }
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/data").Use(refuse(&ConnectError{Message: "no", Data: map[string]any{"code": 7}}))
		srv.Of("/nodata").Use(refuse(&ConnectError{Message: "no"}))
		srv.Of("/plain").Use(refuse(errors.New("plain error")))
	})
	for _, tt := range []struct {
		eio     int
		nsp     string
		want    string
		comment string
	}{
		{4, "/nope", `4/nope,{"message":"Invalid namespace"}`, "no data key when there is no data"},
		{4, "/data", `4/data,{"data":{"code":7},"message":"no"}`, ""},
		{4, "/nodata", `4/nodata,{"message":"no"}`, ""},
		{4, "/plain", `4/plain,{"message":"plain error"}`, ""},
		// Node, for v2 clients: the invalid namespace as an object, a
		// middleware's error as its data, or else its message.
		{3, "/nope", `4/nope,{"message":"Invalid namespace"}`, ""},
		{3, "/data", `4/data,{"code":7}`, ""},
		{3, "/nodata", `4/nodata,"no"`, ""},
		{3, "/plain", `4/plain,"plain error"`, ""},
	} {
		t.Run(fmt.Sprintf("EIO%d%s", tt.eio, tt.nsp), func(t *testing.T) {
			c := s.dial(t, tt.eio)
			if tt.eio == 3 {
				c.expect("0")
			}
			c.send("0" + tt.nsp + ",")
			got := c.read()
			if !sameJSONPacket(got, tt.want) {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			// The connection lives on: another namespace can be joined.
			if tt.eio == 4 {
				c.connect("/", "")
			} else {
				c.send(`2["still"]`)
			}
			if n := s.srv.namespace(tt.nsp); n != nil && n.Len() != 0 {
				t.Fatal("a refused socket is in its namespace")
			}
		})
	}
}

// sameJSONPacket compares two packets "<head><json>" whose JSON may order
// its keys differently.
func sameJSONPacket(got, want string) bool {
	i, j := indexJSON(got), indexJSON(want)
	if i < 0 || j < 0 || got[:i] != want[:j] {
		return got == want
	}
	var a, b any
	if json.Unmarshal([]byte(got[i:]), &a) != nil || json.Unmarshal([]byte(want[j:]), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}

func indexJSON(s string) int {
	for i, c := range s {
		if c == '{' || c == '[' || c == '"' {
			return i
		}
	}
	return -1
}

// TestMiddlewareOrder: events sent right after a CONNECT, while its
// asynchronous middleware is pending, are handled after the connect, in
// order; so are packets for other namespaces. Nothing overtakes a
// namespace CONNECT.
func TestMiddlewareOrder(t *testing.T) {
	got := newEvents()
	release := make(chan error)
	entered := make(chan struct{}, 10)
	handlers := func(s *Socket) {
		s.OnEvent(func(s *Socket, event string, args []any, ack AckFunc) {
			got.add("%s %s %v", s.Namespace().Name(), event, args)
			if ack != nil {
				ack(event)
			}
		})
	}
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/").OnConnection(handlers)
		srv.Of("/sync").Use(func(s *Socket, next func(error)) { got.add("sync mw"); next(nil) })
		srv.Of("/sync").Use(func(s *Socket, next func(error)) { got.add("sync mw 2"); next(nil) })
		srv.Of("/sync").OnConnection(func(s *Socket) { got.add("connected /sync"); handlers(s) })
		srv.Of("/async").Use(func(s *Socket, next func(error)) {
			got.add("async mw")
			entered <- struct{}{}
			go func() { next(<-release) }()
		})
		srv.Of("/async").OnConnection(func(s *Socket) { got.add("connected /async"); handlers(s) })
	})
	for _, eio := range []int{4, 3} {
		t.Run(fmt.Sprintf("EIO%d", eio), func(t *testing.T) {
			c := s.dial(t, eio)
			if eio == 4 {
				c.connect("/", "")
			} else {
				c.expect("0")
			}
			// Synchronous middlewares: the events right behind the CONNECT.
			c.send("0/sync,")
			c.send(`2/sync,1["a"]`)
			c.send(`2/sync,["b"]`)
			got.expect(t, "sync mw", "sync mw 2", "connected /sync", "/sync a []", "/sync b []")
			c.expectPrefix("0/sync,")
			c.expect(`3/sync,1["a"]`)

			// Asynchronous: everything waits for the connect.
			c.send("0/async,")
			recv(t, entered, "the middleware")
			c.send(`2/async,2["c"]`)
			c.send(`2["root"]`)
			c.send(`2/sync,["d"]`)
			c.send(`2/async,["e"]`)
			got.expect(t, "async mw")
			release <- nil
			got.expect(t, "connected /async", "/async c []", "/ root []", "/sync d []", "/async e []")
			c.expectPrefix("0/async,")
			c.expect(`3/async,2["c"]`)

			// A refused asynchronous connect: the events queued behind it
			// are handled (those of the refused namespace close the
			// connection, as any packet for a namespace not joined).
			c.send("1/async,")
			c.send("0/async,")
			recv(t, entered, "the middleware")
			c.send(`2["after refusal"]`)
			got.expect(t, "async mw")
			release <- &ConnectError{Message: "later"}
			got.expect(t, "/ after refusal []")
			want := `4/async,{"message":"later"}`
			if eio == 3 {
				want = `4/async,"later"`
			}
			if m := c.read(); !sameJSONPacket(m, want) {
				t.Fatalf("got %s, want %s", m, want)
			}
		})
	}
}

// TestMiddlewareAbandoned: the connection closes while a middleware is
// pending; when it calls next, nothing happens.
func TestMiddlewareAbandoned(t *testing.T) {
	nexts := make(chan func(error), 1)
	connected := make(chan *Socket, 1)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/slow").Use(func(s *Socket, next func(error)) { nexts <- next })
		srv.Of("/slow").OnConnection(func(s *Socket) { connected <- s })
	})
	c := s.dial(t, 4)
	c.send("0/slow,")
	next := recv(t, nexts, "the middleware")
	c.c.Close()
	waitFor(t, "the session's end", func() bool { return s.srv.Engine().Count() == 0 })
	next(nil)
	next(nil) // twice: ignored
	select {
	case s := <-connected:
		t.Fatalf("socket %s connected after its connection closed", s.ID())
	default:
	}
	if s.srv.Of("/slow").Len() != 0 {
		t.Fatal("a socket joined after its connection closed")
	}
}

// TestMiddlewareRefusesFromAnotherGoroutine: a middleware that calls next
// from another goroutine at once, racing the connect's own bookkeeping,
// must still refuse every connection.
func TestMiddlewareRefusesFromAnotherGoroutine(t *testing.T) {
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/fast").Use(func(s *Socket, next func(error)) {
			go next(&ConnectError{Message: "no"})
			for range 3 {
				runtime.Gosched() // let it run before the middleware returns
			}
		})
	})
	c := s.dial(t, 4)
	for range 200 {
		c.send("0/fast,")
		if got := c.read(); got != `4/fast,{"message":"no"}` {
			t.Fatalf("got %s", got)
		}
	}
}

// TestDisconnectWhileConnecting: a socket whose middleware is still
// running is in the rooms it joined there, so a broadcast's
// DisconnectSockets can reach it. As in Node, disconnecting a socket that
// is not connected yet does nothing: it connects when its middleware says
// so, and leaves the namespace when it goes.
func TestDisconnectWhileConnecting(t *testing.T) {
	nexts := make(chan func(error), 1)
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/mw").Use(func(s *Socket, next func(error)) {
			s.Join("lobby")
			nexts <- next
		})
	})
	nsp := s.srv.Of("/mw")
	c := s.dial(t, 4)
	c.send("0/mw,")
	next := recv(t, nexts, "the middleware")
	if err := nsp.To("lobby").DisconnectSockets(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	go next(nil)
	c.expectPrefix(`0/mw,{"sid":`)
	if nsp.Len() != 1 {
		t.Fatalf("%d sockets", nsp.Len())
	}
	c.c.Close()
	waitFor(t, "the socket to leave", func() bool { return nsp.Len() == 0 })
	if nsp.Adapter().(*MemoryAdapter).HasRoom("lobby") {
		t.Fatal("the room outlives its only socket")
	}
}

// TestPanicAfterAsyncMiddleware: a handler that panics closes its
// connection, whether its namespace's middleware answered at once (the
// connect runs inside the packet's handling) or later (it runs from the
// middleware's goroutine): never the process.
func TestPanicAfterAsyncMiddleware(t *testing.T) {
	s := startServer(t, engineio.Options{}, Options{}, func(srv *Server) {
		srv.Of("/later").Use(func(s *Socket, next func(error)) { go next(nil) })
		srv.Of("/later").OnConnection(func(s *Socket) { panic("bug in OnConnection") })
		srv.Of("/now").OnConnection(func(s *Socket) { panic("bug in OnConnection") })
	})
	for _, nsp := range []string{"/now", "/later"} {
		c := s.dial(t, 4)
		c.send("0" + nsp + ",")
		c.closed()
	}
	// The server still serves.
	c := s.dial(t, 4)
	c.connect("/", "")
}
