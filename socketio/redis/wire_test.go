package redis

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// The golden vectors of testdata/notepack are what Node's adapter 8.3
// publishes. These tests hold this adapter to the same bytes, and drive it
// with Node's bytes through a real Redis.

// TestBroadcastBytesMatchNode: for the same broadcast, the same bytes and
// the same channel as Node's adapter.
func TestBroadcastBytesMatchNode(t *testing.T) {
	vs := loadVectors(t)
	for _, name := range []string{"broadcast_all", "broadcast_one_room", "broadcast_rooms_except", "broadcast_except_only", "broadcast_volatile"} {
		t.Run(name, func(t *testing.T) {
			v := vs[name]
			msg := expected(t, v.Value).([]any)
			pkt, opts := msg[1].(map[string]any), msg[2].(map[string]any)
			p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", ID: socketio.NoID, Data: pkt["data"]}
			bo := optsFrom(opts)
			got, err := encodeBroadcast(msg[0].(string), "/", p, bo.Rooms, bo.Except, bo.Flags)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.bytes) {
				t.Fatalf("ours\n%x\nNode's\n%x", got, v.bytes)
			}
			a := &adapter{bcPrefix: "socket.io#/#"}
			if ch := a.broadcastChannel(bo.Rooms); ch != v.Channel {
				t.Fatalf("channel %q, Node's %q", ch, v.Channel)
			}
		})
	}
	t.Run("broadcast_ack_request", func(t *testing.T) {
		v := vs["broadcast_ack_request"]
		req := expected(t, v.Value).(map[string]any)
		pkt := req["packet"].(map[string]any)
		p := &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/", ID: socketio.NoID, Data: pkt["data"]}
		bo := optsFrom(req["opts"])
		got, err := encodeBroadcastWithAck(req["uid"].(string), req["requestId"].(string), "/", p, bo.Rooms, bo.Except, bo.Flags)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, v.bytes) {
			t.Fatalf("ours\n%x\nNode's\n%x", got, v.bytes)
		}
	})
}

// TestRequestBytesMatchNode: requests and answers, JSON and msgpack, as
// Node writes them.
func TestRequestBytesMatchNode(t *testing.T) {
	vs := loadVectors(t)
	rid := func(name string) string {
		return expected(t, vs[name].Value).(map[string]any)["requestId"].(string)
	}
	opts := &socketio.BroadcastOptions{Rooms: []string{"room1"}, Except: []string{"room2"}}
	joinOpts := &socketio.BroadcastOptions{Rooms: []string{"room1"}}
	answerAt := time.UnixMilli(1700000000123)
	cases := map[string]func() ([]byte, error){
		"request_fetch_sockets": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", RequestID: rid("request_fetch_sockets"), Type: reqRemoteFetch, Opts: jsonOptsOf(opts)})
		},
		"request_all_rooms": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", RequestID: rid("request_all_rooms"), Type: reqAllRooms})
		},
		"request_sockets_join": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", Type: reqRemoteJoin, Opts: jsonOptsOf(joinOpts), Rooms: []string{"room2", "room3"}})
		},
		"request_sockets_leave": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", Type: reqRemoteLeave, Opts: jsonOptsOf(joinOpts), Rooms: []string{"room2"}})
		},
		"request_disconnect": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", Type: reqRemoteDisconnect, Opts: jsonOptsOf(joinOpts), Close: true})
		},
		"request_server_side_emit": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", Type: reqServerSideEmit, Data: []any{"hello", "world", 1}})
		},
		"request_server_side_emit_ack": func() ([]byte, error) {
			return marshalJSON(jsonRequest{UID: "Abc123", RequestID: rid("request_server_side_emit_ack"), Type: reqServerSideEmit, Data: []any{"ping", map[string]any{"n": 1}}})
		},
		"response_all_rooms": func() ([]byte, error) {
			return marshalJSON(jsonResponse{RequestID: "req001", Rooms: []string{}})
		},
		"response_fetch_sockets": func() ([]byte, error) {
			return marshalJSON(jsonResponse{RequestID: "req002", Sockets: []socketio.SocketInfo{}})
		},
		"response_server_side_emit": func() ([]byte, error) {
			return marshalJSON(jsonResponse{Type: reqServerSideEmit, RequestID: "req003", Data: map[string]any{"pong": 7}})
		},
		"response_broadcast_client_count": func() ([]byte, error) {
			return marshalJSON(jsonResponse{Type: respBroadcastClientCount, RequestID: "req004", ClientCount: 0})
		},
		"response_broadcast_ack": func() ([]byte, error) {
			return encodeBroadcastAck("req004", []any{map[string]any{"answer": 42, "at": answerAt}})
		},
		"response_broadcast_ack_undefined": func() ([]byte, error) {
			return encodeBroadcastAck("req004", nil)
		},
	}
	for name, encode := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := vs[name].bytes; !bytes.Equal(got, want) {
				t.Fatalf("ours\n%s\nNode's\n%s", got, want)
			}
		})
	}
}

// rawSub subscribes to Redis directly, as a Node process would.
type rawSub struct {
	ps  *goredis.PubSub
	mu  sync.Mutex
	got []*goredis.Message
}

func subscribeRaw(t *testing.T, r *redisProc, patterns ...string) *rawSub {
	t.Helper()
	c := r.client(t)
	ps := c.PSubscribe(context.Background(), patterns...)
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range patterns[1:] {
		if _, err := ps.Receive(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s := &rawSub{ps: ps}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel() {
			s.mu.Lock()
			s.got = append(s.got, m)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = ps.Close(); <-done })
	return s
}

// wait returns the first message on channel that match accepts.
func (s *rawSub) wait(t *testing.T, channel string, match func(payload string) bool) string {
	t.Helper()
	var out string
	waitFor(t, "a message on "+channel, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.got {
			if m.Channel == channel && (match == nil || match(m.Payload)) {
				out = m.Payload
				return true
			}
		}
		return false
	})
	return out
}

func (s *rawSub) on(channel string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.got {
		if m.Channel == channel {
			out = append(out, m.Payload)
		}
	}
	return out
}

// TestPublishedBroadcastHasNodesShape reads what the adapter publishes
// from Redis and compares it with what Node publishes for the same emit.
func TestPublishedBroadcastHasNodesShape(t *testing.T) {
	r := startRedis(t)
	raw := subscribeRaw(t, r, "socket.io#*")
	n := startNode(t, r, "node0", Options{})
	if err := n.nsp("/").To("user:bob").Emit("message", "hello", 42); err != nil {
		t.Fatal(err)
	}
	payload := raw.wait(t, "socket.io#/#user:bob#", nil)
	got, err := decodeMsgpack(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := expected(t, loadVectors(t)["broadcast_one_room"].Value).([]any)
	want[0] = n.classic.UID()
	if !same(got, want) {
		t.Fatalf("published\n%#v\nNode publishes\n%#v", got, want)
	}
}

// TestAnswersNodesRequests publishes Node's own bytes (requests, the
// emitter's broadcast, another process's broadcast) and checks what this
// adapter does and answers.
func TestAnswersNodesRequests(t *testing.T) {
	r := startRedis(t)
	vs := loadVectors(t)
	raw := subscribeRaw(t, r, "socket.io-response#*")
	n := startNode(t, r, "node0", Options{})
	pub := r.client(t)
	ctx := ctxTimeout(t, 10*time.Second)
	publish := func(channel string, payload []byte) {
		t.Helper()
		if err := pub.Publish(ctx, channel, payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	in1 := dial(t, n, "in1", "/", map[string]any{"rooms": []string{"room1"}, "data": "one"})
	in12 := dial(t, n, "in12", "/", map[string]any{"rooms": []string{"room1", "room2"}})
	bob := dial(t, n, "bob", "/", map[string]any{"rooms": []string{"user:bob"}})
	// fence returns what each client received before a broadcast
	// published after the messages under test (Redis keeps the order).
	fence := func() map[string][]event {
		t.Helper()
		// Node's bytes carry uid Abc123: not ours, so they are delivered.
		publish("socket.io#/#", mustEncodeBroadcast(t, "Abc123", "fence"))
		return map[string][]event{"in1": in1.waitEvent("fence"), "in12": in12.waitEvent("fence"), "bob": bob.waitEvent("fence")}
	}
	expectEvent := func(got map[string][]event, name string, args []any, to ...string) {
		t.Helper()
		for c, evs := range got {
			want := 0
			if slices.Contains(to, c) {
				want = 1
			}
			n := 0
			for _, e := range evs {
				if e.name == name {
					n++
					if !same(e.args, args) {
						t.Errorf("%s: %s%v, want %v", c, name, e.args, args)
					}
				}
			}
			if n != want {
				t.Errorf("%s: %s received %d times, want %d", c, name, n, want)
			}
		}
	}
	answer := func(rid string) map[string]any {
		t.Helper()
		p := raw.wait(t, "socket.io-response#/#", func(p string) bool { return strings.Contains(p, rid) })
		m, err := decodeMessage(p)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("the emitter's broadcast", func(t *testing.T) {
		v := vs["emitter_broadcast"]
		publish(v.Channel, v.bytes)
		expectEvent(fence(), "news", []any{map[string]any{"title": "t"}}, "in1", "in12")
	})

	t.Run("another process's broadcast to one room", func(t *testing.T) {
		v := vs["broadcast_one_room"]
		publish(v.Channel, v.bytes)
		expectEvent(fence(), "message", []any{"hello", 42.0}, "bob")
	})

	t.Run("every kind of value Node sends", func(t *testing.T) {
		// Dates arrive as their ISO strings, Buffers as binary
		// attachments, undefined and NaN as null: what a client of Node's
		// would get.
		v := vs["broadcast_values"]
		publish(v.Channel, v.bytes)
		data := expected(t, v.Value).([]any)[1].(map[string]any)["data"].([]any)
		expectEvent(fence(), "values", data[1:], "in1", "in12", "bob")
	})

	t.Run("this process's own broadcast is dropped", func(t *testing.T) {
		publish("socket.io#/#", mustEncodeBroadcast(t, n.classic.UID(), "own"))
		expectEvent(fence(), "own", nil)
	})

	t.Run("fetchSockets", func(t *testing.T) {
		v := vs["request_fetch_sockets"]
		publish(v.Channel, v.bytes)
		resp := answer(expected(t, v.Value).(map[string]any)["requestId"].(string))
		sockets := resp["sockets"].([]any)
		if len(sockets) != 1 || sockets[0].(map[string]any)["id"] != in1.sid {
			t.Fatalf("answer %v", resp)
		}
		s := sockets[0].(map[string]any)
		if s["data"] != "one" || !slices.Equal(roomList(s["rooms"]), []string{in1.sid, "room1"}) {
			t.Fatalf("socket %v", s)
		}
		hs := s["handshake"].(map[string]any)
		for _, k := range []string{"headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth"} {
			if _, ok := hs[k]; !ok {
				t.Errorf("handshake lacks %q: %v", k, hs)
			}
		}
	})

	t.Run("allRooms", func(t *testing.T) {
		v := vs["request_all_rooms"]
		publish(v.Channel, v.bytes)
		resp := answer(expected(t, v.Value).(map[string]any)["requestId"].(string))
		rooms := roomList(resp["rooms"])
		for _, want := range []string{"room1", "room2", "user:bob", in1.sid, bob.sid} {
			if !slices.Contains(rooms, want) {
				t.Errorf("rooms %v lack %q", rooms, want)
			}
		}
	})

	t.Run("sockets (adapters before 7.0)", func(t *testing.T) {
		publish("socket.io-request#/#", []byte(`{"uid":"old","requestId":"old001","type":0,"rooms":["room2"]}`))
		resp := answer("old001")
		if !slices.Equal(roomList(resp["sockets"]), []string{in12.sid}) {
			t.Fatalf("answer %v", resp)
		}
	})

	t.Run("socketsJoin and socketsLeave", func(t *testing.T) {
		publish(vs["request_sockets_join"].Channel, vs["request_sockets_join"].bytes)
		fence()
		got, _ := n.nsp("/").To("room3").Local().FetchSockets(ctx)
		if len(got) != 2 {
			t.Fatalf("%d sockets joined room3, want 2", len(got))
		}
		publish(vs["request_sockets_leave"].Channel, vs["request_sockets_leave"].bytes)
		fence()
		got, _ = n.nsp("/").To("room2").Local().FetchSockets(ctx)
		if len(got) != 0 {
			t.Fatalf("%d sockets left in room2", len(got))
		}
		// The emitter's joins carry no uid.
		publish("socket.io-request#/#", []byte(`{"type":2,"opts":{"rooms":["user:bob"],"except":[]},"rooms":["from-emitter"]}`))
		fence()
		if got, _ := n.nsp("/").To("from-emitter").Local().FetchSockets(ctx); len(got) != 1 {
			t.Fatalf("emitter join: %d sockets", len(got))
		}
		// Adapters before 7.0 name one socket and wait for an answer.
		publish("socket.io-request#/#", []byte(`{"uid":"old","requestId":"old002","type":2,"sid":"`+bob.sid+`","room":"legacy"}`))
		answer("old002")
		if got, _ := n.nsp("/").To("legacy").Local().FetchSockets(ctx); len(got) != 1 {
			t.Fatalf("legacy join: %d sockets", len(got))
		}
	})

	t.Run("serverSideEmit", func(t *testing.T) {
		var mu sync.Mutex
		var got [][]any
		n.nsp("/").OnServerSideEmit(func(args []any, ack func(any)) {
			mu.Lock()
			got = append(got, args)
			mu.Unlock()
			if ack != nil {
				ack(map[string]any{"pong": args[1]})
			}
		})
		publish(vs["request_server_side_emit"].Channel, vs["request_server_side_emit"].bytes)
		v := vs["request_server_side_emit_ack"]
		publish(v.Channel, v.bytes)
		rid := expected(t, v.Value).(map[string]any)["requestId"].(string)
		resp := answer(rid)
		if resp["type"] != 6.0 || resp["data"].(map[string]any)["pong"].(map[string]any)["n"] != 1.0 {
			t.Fatalf("answer %v", resp)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 || !slices.Equal(got[0], []any{"hello", "world", 1.0}) {
			t.Fatalf("handlers got %v", got)
		}
	})

	t.Run("broadcast with acks", func(t *testing.T) {
		in1.onAck = func(e event) []any { return []any{map[string]any{"answer": e.args[0]}} }
		in12.onAck = func(e event) []any { return []any{} } // acknowledged without an argument
		v := vs["broadcast_ack_request"]
		publish(v.Channel, v.bytes)
		rid := expected(t, v.Value).(map[string]any)["requestId"].(string)
		count := answer(rid)
		if count["type"] != 8.0 || count["clientCount"] != 2.0 {
			t.Fatalf("client count %v", count)
		}
		waitFor(t, "two acknowledgements", func() bool {
			n := 0
			for _, p := range raw.on("socket.io-response#/#") {
				if p[0] != '{' && strings.Contains(p, rid) {
					n++
				}
			}
			return n == 2
		})
		var acks []map[string]any
		for _, p := range raw.on("socket.io-response#/#") {
			if p[0] != '{' && strings.Contains(p, rid) {
				m, err := decodeMessage(p)
				if err != nil {
					t.Fatal(err)
				}
				acks = append(acks, m)
			}
		}
		withPacket := 0
		for _, m := range acks {
			if m["type"] != 9.0 || m["requestId"] != rid {
				t.Fatalf("ack %v", m)
			}
			if p, ok := m["packet"]; ok {
				withPacket++
				if p.(map[string]any)["answer"] != "q?" {
					t.Fatalf("ack %v", m)
				}
			}
		}
		if withPacket != 1 {
			t.Fatalf("acks %v: want one with a packet, one without", acks)
		}
	})

	t.Run("disconnectSockets", func(t *testing.T) {
		publish(vs["request_disconnect"].Channel, vs["request_disconnect"].bytes)
		in1.waitDisconnected()
		in12.waitDisconnected()
	})

	if n.errors.Load() != 0 {
		t.Errorf("errors: %s", n.errorTexts())
	}
	if st := n.classic.Stats(); st.Malformed != 0 {
		t.Errorf("malformed: %d", st.Malformed)
	}
}

func mustEncodeBroadcast(t *testing.T, uid, event string) []byte {
	t.Helper()
	b, err := encodeBroadcast(uid, "/", &socketio.Packet{Type: socketio.PacketEvent, Data: []any{event}}, nil, nil, socketio.BroadcastFlags{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
