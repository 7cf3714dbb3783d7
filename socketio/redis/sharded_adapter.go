package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/switchboard-rt/switchboard/socketio"
)

// Message types of Node's ClusterAdapter (socket.io-adapter 2.5), the
// format of the sharded adapter.
const (
	ctBroadcast              = 3 // with data.requestId: acknowledgements wanted
	ctSocketsJoin            = 4
	ctSocketsLeave           = 5
	ctDisconnectSockets      = 6
	ctFetchSockets           = 7
	ctFetchSocketsResponse   = 8
	ctServerSideEmit         = 9 // with data.requestId: answers wanted
	ctServerSideEmitResponse = 10
	ctBroadcastClientCount   = 11
	ctBroadcastAck           = 12
)

// kindOfType counts a message type as a broadcast, a request or an answer.
func kindOfType(typ int) msgKind {
	switch typ {
	case ctBroadcast:
		return kindBroadcast
	case ctFetchSocketsResponse, ctServerSideEmitResponse, ctBroadcastClientCount, ctBroadcastAck:
		return kindResponse
	}
	return kindRequest
}

// shardedAdapter is the sharded adapter of one namespace: a
// socketio.MemoryAdapter for this process's sockets, Redis for the others.
type shardedAdapter struct {
	s    *Sharded
	nsp  *socketio.Namespace
	mem  *socketio.MemoryAdapter
	name string
	// detached: the Sharded could not take the namespace (closed, or the
	// name already served); the adapter then serves this process only.
	detached bool

	nspCh  string // socket.io#<nsp>#, also the prefix of the others
	respCh string // socket.io#<nsp>#<uid>#
	// own*Prefix start every message this process writes (uid first), so
	// that one read back from a room's channel is dropped undecoded.
	ownJSONPrefix, ownMsgpackPrefix string

	mu       sync.Mutex
	requests map[string]*clusterRequest
	acks     map[string]*ackRequest
	closed   bool
	closing  chan struct{}
}

var _ socketio.Adapter = (*shardedAdapter)(nil)

func (s *Sharded) newAdapter(nsp *socketio.Namespace) *shardedAdapter {
	name := nsp.Name()
	a := &shardedAdapter{
		s:        s,
		nsp:      nsp,
		mem:      socketio.NewMemoryAdapter(nsp),
		name:     name,
		nspCh:    s.opts.Key + "#" + name + "#",
		requests: make(map[string]*clusterRequest),
		acks:     make(map[string]*ackRequest),
		closing:  make(chan struct{}),
	}
	a.respCh = a.nspCh + s.uid + "#"
	head := mpMap{{"uid", s.uid}, {"nsp", name}, {"type", 0}}
	j, _ := appendJSON(nil, head)
	a.ownJSONPrefix = string(j[:len(j)-len(`0}`)]) // {"uid":"…","nsp":"…","type":
	m, _ := appendMsgpack(nil, append(head, mpField{"data", nil}))
	a.ownMsgpackPrefix = string(m[:len(m)-len("\x00\xa4data\xc0")]) // 84 a3 uid … a4 type
	a.mem.OnRoomCreated = func(room string) { s.want(a.roomChannel(room), shardRoute{a: a, kind: chanRoom, room: room}) }
	a.mem.OnRoomDeleted = func(room string) { s.recheck(a.roomChannel(room)) }
	if err := s.register(a); err != nil {
		a.detached = true
		s.log.Error("redis adapter: namespace served by this process only", "nsp", name, "err", err)
		s.reportError(err)
	}
	return a
}

// register adds a namespace and wants its two channels.
func (s *Sharded) register(a *shardedAdapter) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.byName[a.name] != nil {
		s.mu.Unlock()
		return fmt.Errorf("redis adapter: namespace %s is already served by this Sharded (use one Sharded per socketio.Server)", a.name)
	}
	s.byName[a.name] = a
	s.notifyLocked()
	s.mu.Unlock()
	s.want(a.nspCh, shardRoute{a: a, kind: chanNamespace})
	s.want(a.respCh, shardRoute{a: a, kind: chanResponse})
	return nil
}

func (s *Sharded) unregister(a *shardedAdapter) {
	s.mu.Lock()
	if s.byName[a.name] != a {
		s.mu.Unlock()
		return
	}
	delete(s.byName, a.name)
	var chs []string
	for ch, c := range s.channels {
		if c.route.a == a {
			chs = append(chs, ch)
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, ch := range chs {
		s.recheck(ch)
	}
}

// wants reports whether a channel of this namespace is still wanted: its
// two own while it is open, a room's while a local socket is in the room
// (and the room is not a local socket's id, as Node's dynamic mode).
func (a *shardedAdapter) wants(r shardRoute) bool {
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return false
	}
	if r.kind != chanRoom {
		return true
	}
	return a.mem.HasRoom(r.room) && a.nsp.Socket(r.room) == nil
}

func (a *shardedAdapter) roomChannel(room string) string { return a.nspCh + room + "#" }

// looksLikeSocketID is Node's test: a room name 20 characters long, as
// JavaScript counts them (UTF-16 code units).
func looksLikeSocketID(room string) bool {
	if len(room) < 20 || len(room) > 80 {
		return false
	}
	n := 0
	for _, r := range room {
		n += utf16.RuneLen(r)
		if n > 20 {
			return false
		}
	}
	return n == 20
}

// broadcastChannel is where a broadcast without acknowledgements goes: the
// room's channel for exactly one room, as Node's dynamic mode publishes.
func (a *shardedAdapter) broadcastChannel(rooms []string) string {
	if len(rooms) == 1 && !looksLikeSocketID(rooms[0]) {
		return a.roomChannel(rooms[0])
	}
	return a.nspCh
}

// WhenSubscribed calls fn once the other processes can reach this
// process's sockets in room: at once when Redis has confirmed the room's
// subscription (or the room needs none, or the other processes are out of
// reach anyway, or the adapter is closed), else when it does, or with
// ErrNotConfirmed after timeout. fn may run on another goroutine.
func (a *shardedAdapter) WhenSubscribed(room string, timeout time.Duration, fn func(error)) {
	if a.detached || !a.s.publishing() || looksLikeSocketID(room) {
		fn(nil)
		return
	}
	a.s.whenSubscribed(a.roomChannel(room), timeout, fn)
}

func (a *shardedAdapter) local(opts *socketio.BroadcastOptions) bool {
	return a.detached || opts.Flags.Local
}

// AddAll implements socketio.Adapter.
func (a *shardedAdapter) AddAll(s *socketio.Socket, rooms []string) { a.mem.AddAll(s, rooms) }

// Del implements socketio.Adapter.
func (a *shardedAdapter) Del(s *socketio.Socket, room string) { a.mem.Del(s, room) }

// DelAll implements socketio.Adapter.
func (a *shardedAdapter) DelAll(s *socketio.Socket) { a.mem.DelAll(s) }

// SocketRooms implements socketio.Adapter.
func (a *shardedAdapter) SocketRooms(s *socketio.Socket) []string { return a.mem.SocketRooms(s) }

// ------------------------------------------------------------ encoding ---

// encode writes {uid, nsp, type, data} as Node's sharded adapter reads it:
// JSON, or msgpack when data holds binary. uid comes first (Node's order
// is type, data, uid, nsp; either reads both) so that a process can tell
// its own messages from the first bytes.
func (a *shardedAdapter) encode(typ int, data mpMap) ([]byte, error) {
	msg := mpMap{{"uid", a.s.uid}, {"nsp", a.name}, {"type", typ}, {"data", data}}
	if hasBinary(data) {
		return appendMsgpack(nil, msg)
	}
	return appendJSON(nil, msg)
}

// hasBinary reports whether v holds a []byte (Node's hasBinary).
func hasBinary(v any) bool {
	switch v := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range v {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if hasBinary(e) {
				return true
			}
		}
	case mpMap:
		for _, f := range v {
			if hasBinary(f.val) {
				return true
			}
		}
	case []socketio.SocketInfo:
		for _, si := range v {
			if hasBinary(si.Data) {
				return true
			}
		}
	}
	return false
}

// appendJSON writes v as JSON.stringify would, keeping the order of an
// mpMap's fields.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case mpMap:
		b = append(b, '{')
		for i, f := range v {
			if i > 0 {
				b = append(b, ',')
			}
			k, _ := marshalJSON(f.key)
			b = append(b, k...)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, f.val); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	j, err := marshalJSON(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// clusterOpts writes {rooms, except, flags} as Node's encodeOptions.
func clusterOpts(opts *socketio.BroadcastOptions) mpMap {
	return optsFields(nonNil(unique(opts.Rooms)), nonNil(unique(opts.Except)), opts.Flags)
}

// send publishes one message of this namespace.
func (a *shardedAdapter) send(kind msgKind, channel string, typ int, data mpMap) (skipped bool, err error) {
	payload, err := a.encode(typ, data)
	if err != nil {
		return false, fmt.Errorf("redis adapter: encode message of type %d: %w", typ, err)
	}
	return a.s.publish(kind, channel, payload)
}

// respond sends an answer to the process uid, on its response channel.
func (a *shardedAdapter) respond(uid string, typ int, data mpMap) {
	if _, err := a.send(kindResponse, a.nspCh+uid+"#", typ, data); err != nil {
		a.s.reportError(err)
	}
}

// ----------------------------------------------------- this process acts ---

// Broadcast implements socketio.Adapter: queued for Redis (unless
// opts.Flags.Local) and delivered to this process's sockets.
func (a *shardedAdapter) Broadcast(p *socketio.Packet, opts *socketio.BroadcastOptions) error {
	var perr error
	if !a.local(opts) {
		rooms := unique(opts.Rooms)
		_, perr = a.send(kindBroadcast, a.broadcastChannel(rooms), ctBroadcast, mpMap{
			{"packet", packetFields(p, a.name)},
			{"opts", clusterOpts(opts)},
		})
	}
	if err := a.mem.Broadcast(p, opts); err != nil {
		return err
	}
	return perr
}

// BroadcastWithAck implements socketio.Adapter: always on the namespace
// channel (the number of servers that answer is the namespace's).
func (a *shardedAdapter) BroadcastWithAck(p *socketio.Packet, opts *socketio.BroadcastOptions, clientCount func(int), ack func([]any)) error {
	var perr error
	if !a.local(opts) {
		perr = a.requestBroadcastWithAck(p, opts, clientCount, ack)
	}
	if err := a.mem.BroadcastWithAck(p, opts, clientCount, ack); err != nil {
		return err
	}
	return perr
}

func (a *shardedAdapter) requestBroadcastWithAck(p *socketio.Packet, opts *socketio.BroadcastOptions, clientCount func(int), ack func([]any)) error {
	rid := randomHex(8)
	timeout := opts.Flags.Timeout
	if timeout <= 0 {
		timeout = a.s.opts.RequestsTimeout
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	ar := &ackRequest{clientCount: clientCount, ack: ack}
	a.acks[rid] = ar
	ar.timer = time.AfterFunc(timeout, func() { a.forgetAck(rid) })
	a.mu.Unlock()
	skipped, err := a.send(kindBroadcast, a.nspCh, ctBroadcast, mpMap{
		{"packet", packetFields(p, a.name)},
		{"requestId", rid},
		{"opts", clusterOpts(opts)},
	})
	if skipped || err != nil {
		a.forgetAck(rid)
	}
	return err
}

func (a *shardedAdapter) forgetAck(rid string) {
	a.mu.Lock()
	if ar := a.acks[rid]; ar != nil {
		ar.timer.Stop()
		delete(a.acks, rid)
	}
	a.mu.Unlock()
}

// AddSockets implements socketio.Adapter: this process's sockets join at
// once, the others are told (SOCKETS_JOIN).
func (a *shardedAdapter) AddSockets(ctx context.Context, opts *socketio.BroadcastOptions, rooms []string) error {
	if err := a.mem.AddSockets(ctx, opts, rooms); err != nil || a.local(opts) {
		return err
	}
	_, err := a.send(kindRequest, a.nspCh, ctSocketsJoin, mpMap{{"opts", clusterOpts(opts)}, {"rooms", nonNil(rooms)}})
	return err
}

// DelSockets implements socketio.Adapter, as AddSockets (SOCKETS_LEAVE).
func (a *shardedAdapter) DelSockets(ctx context.Context, opts *socketio.BroadcastOptions, rooms []string) error {
	if err := a.mem.DelSockets(ctx, opts, rooms); err != nil || a.local(opts) {
		return err
	}
	_, err := a.send(kindRequest, a.nspCh, ctSocketsLeave, mpMap{{"opts", clusterOpts(opts)}, {"rooms", nonNil(rooms)}})
	return err
}

// DisconnectSockets implements socketio.Adapter, as AddSockets.
func (a *shardedAdapter) DisconnectSockets(ctx context.Context, opts *socketio.BroadcastOptions, close bool) error {
	if err := a.mem.DisconnectSockets(ctx, opts, close); err != nil || a.local(opts) {
		return err
	}
	_, err := a.send(kindRequest, a.nspCh, ctDisconnectSockets, mpMap{{"opts", clusterOpts(opts)}, {"close", close}})
	return err
}

// ErrNotSupported: the operation has no message in the sharded format.
var ErrNotSupported = errors.New("redis adapter: not supported by the sharded adapter")

// AllRooms implements socketio.Adapter. Node's sharded adapter has no
// request for it: the rooms of this process only when it is alone, else
// ErrNotSupported.
func (a *shardedAdapter) AllRooms(ctx context.Context) ([]string, error) {
	n, err := a.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		return a.mem.Rooms(), nil
	}
	return nil, fmt.Errorf("all rooms of %d processes: %w", n, ErrNotSupported)
}

// clusterRequest collects the answers to one of this process's requests;
// guarded by the adapter's mu.
type clusterRequest struct {
	typ       int
	expected  int // answers expected (the other processes)
	got       int
	sockets   []socketio.SocketInfo
	responses []any
	done      chan struct{} // closed when complete
}

// FetchSockets implements socketio.Adapter.
func (a *shardedAdapter) FetchSockets(ctx context.Context, opts *socketio.BroadcastOptions) ([]socketio.SocketInfo, error) {
	local, err := a.mem.FetchSockets(ctx, opts)
	if err != nil || a.local(opts) {
		return local, err
	}
	n, err := a.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		return local, nil
	}
	rid := randomHex(8)
	cr := &clusterRequest{typ: ctFetchSockets, expected: n - 1, sockets: local}
	timeout := opts.Flags.Timeout
	if timeout <= 0 {
		timeout = a.s.opts.RequestsTimeout
	}
	err = a.ask(ctx, "fetchSockets", rid, cr, timeout, mpMap{{"opts", clusterOpts(opts)}, {"requestId", rid}})
	if err != nil {
		return nil, err
	}
	return cr.sockets, nil
}

// ServerSideEmit implements socketio.Adapter. With ack it waits for one
// answer from every other process, until RequestsTimeout: on a timeout it
// returns the answers that came and an error wrapping socketio.ErrTimeout.
func (a *shardedAdapter) ServerSideEmit(ctx context.Context, args []any, ack bool) ([]any, error) {
	if a.detached {
		return []any{}, nil
	}
	if args == nil {
		args = []any{}
	}
	if !ack {
		_, err := a.send(kindRequest, a.nspCh, ctServerSideEmit, mpMap{{"packet", args}})
		return nil, err
	}
	n, err := a.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		return []any{}, nil
	}
	rid := randomHex(8)
	cr := &clusterRequest{typ: ctServerSideEmit, expected: n - 1, responses: []any{}}
	err = a.ask(ctx, "serverSideEmit", rid, cr, a.s.opts.RequestsTimeout, mpMap{{"requestId", rid}, {"packet", args}})
	return cr.responses, err
}

// ask publishes a request and waits until cr is complete, timeout passes,
// ctx ends or the adapter closes. On a timeout cr keeps what came.
func (a *shardedAdapter) ask(ctx context.Context, what, rid string, cr *clusterRequest, timeout time.Duration, data mpMap) error {
	cr.done = make(chan struct{})
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.requests[rid] = cr
	a.mu.Unlock()
	forget := func() {
		a.mu.Lock()
		delete(a.requests, rid)
		a.mu.Unlock()
	}
	skipped, err := a.send(kindRequest, a.nspCh, cr.typ, data)
	if err != nil || skipped {
		forget()
		if skipped {
			return fmt.Errorf("redis adapter: %s: %w", what, ErrUnavailable)
		}
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-cr.done:
		forget()
		return nil
	case <-t.C:
		err = socketio.ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	case <-a.closing:
		err = ErrClosed
	case <-a.s.stop:
		err = ErrClosed
	}
	forget()
	a.mu.Lock()
	got := cr.got
	a.mu.Unlock()
	return fmt.Errorf("redis adapter: %s: %d of %d answers: %w", what, got, cr.expected, err)
}

// ServerCount implements socketio.Adapter: the subscribers of the
// namespace channel (PUBSUB SHARDNUMSUB, summed over a cluster's masters),
// 1 while Options.Publishing says not to publish.
func (a *shardedAdapter) ServerCount(ctx context.Context) (int, error) {
	if a.detached || !a.s.publishing() {
		return 1, nil
	}
	n, err := countSubscribers(ctx, a.s.pub, true, a.nspCh)
	if err != nil {
		return 0, fmt.Errorf("redis adapter: server count: %w", err)
	}
	return n, nil
}

// Close implements socketio.Adapter: the namespace's channels are
// unsubscribed and its pending requests fail with ErrClosed.
func (a *shardedAdapter) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.closing)
	for rid, ar := range a.acks {
		ar.timer.Stop()
		delete(a.acks, rid)
	}
	a.mu.Unlock()
	if !a.detached {
		a.s.unregister(a)
	}
	return nil
}

// -------------------------------------------------- other processes act ---

// own reports whether payload was written by this process, from its first
// bytes, and its type.
func (a *shardedAdapter) own(payload string) (typ int, ok bool) {
	var rest string
	switch {
	case strings.HasPrefix(payload, a.ownJSONPrefix):
		rest = payload[len(a.ownJSONPrefix):]
		for i := 0; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			typ = typ*10 + int(rest[i]-'0')
		}
		return typ, true
	case strings.HasPrefix(payload, a.ownMsgpackPrefix):
		rest = payload[len(a.ownMsgpackPrefix):]
		if len(rest) > 0 && rest[0] < 0x80 {
			typ = int(rest[0])
		}
		return typ, true
	}
	return 0, false
}

// onMessage handles what another process published on the namespace
// channel or a room's (deliverer, or receiver for a room's broadcast).
func (a *shardedAdapter) onMessage(r shardRoute, payload string) {
	if typ, mine := a.own(payload); mine {
		a.s.cnt.received[kindOfType(typ)].Add(1)
		a.s.cnt.ignored.Add(1) // back from Redis: delivered here already
		return
	}
	if r.kind == chanRoom && !a.mem.HasRoom(r.room) {
		a.s.cnt.received[kindBroadcast].Add(1)
		a.s.cnt.ignored.Add(1) // the room's last socket left meanwhile
		return
	}
	msg, err := decodeMessage(payload)
	if err != nil {
		a.s.cnt.received[kindRequest].Add(1)
		a.malformed("message", err)
		return
	}
	typF, _ := msg["type"].(float64)
	typ := int(typF)
	a.s.cnt.received[kindOfType(typ)].Add(1)
	uid, _ := msg["uid"].(string)
	nsp, _ := msg["nsp"].(string)
	if uid == a.s.uid || nsp != a.name {
		a.s.cnt.ignored.Add(1)
		return
	}
	data, _ := msg["data"].(map[string]any)
	if data == nil {
		a.malformed("message", fmt.Errorf("type %v without data", msg["type"]))
		return
	}
	switch typ {
	case ctBroadcast:
		a.onBroadcast(uid, data)
	case ctSocketsJoin, ctSocketsLeave, ctDisconnectSockets:
		opts := optsFrom(data["opts"])
		opts.Flags = socketio.BroadcastFlags{}
		ctx := context.Background()
		switch typ {
		case ctSocketsJoin:
			_ = a.mem.AddSockets(ctx, &opts, roomList(data["rooms"]))
		case ctSocketsLeave:
			_ = a.mem.DelSockets(ctx, &opts, roomList(data["rooms"]))
		default:
			closeConn, _ := data["close"].(bool)
			_ = a.mem.DisconnectSockets(ctx, &opts, closeConn)
		}
	case ctFetchSockets:
		opts := optsFrom(data["opts"])
		opts.Flags = socketio.BroadcastFlags{}
		infos, _ := a.mem.FetchSockets(context.Background(), &opts)
		if infos == nil {
			infos = []socketio.SocketInfo{}
		}
		a.respond(uid, ctFetchSocketsResponse, mpMap{{"requestId", data["requestId"]}, {"sockets", infos}})
	case ctServerSideEmit:
		a.onServerSideEmit(uid, data)
	case ctFetchSocketsResponse, ctServerSideEmitResponse, ctBroadcastClientCount, ctBroadcastAck:
		// Node hands answers read here to onResponse too.
		a.onResponseMessage(typ, data)
	default:
		a.s.cnt.ignored.Add(1) // heartbeats and types of adapters to come
	}
}

// packetOf reads the packet of another process's broadcast: Node's has no
// nsp (the message's is authoritative).
func (a *shardedAdapter) packetOf(v any) (*socketio.Packet, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		a.malformed("packet", fmt.Errorf("not a map: %T", v))
		return nil, false
	}
	if nsp, ok := m["nsp"].(string); ok && nsp != a.name {
		a.s.cnt.ignored.Add(1)
		return nil, false
	}
	typ, _ := m["type"].(float64)
	data, _ := m["data"].([]any)
	if (typ != float64(socketio.PacketEvent) && typ != float64(socketio.PacketBinaryEvent)) || len(data) == 0 {
		a.malformed("packet", fmt.Errorf("type %v with %d arguments", m["type"], len(data)))
		return nil, false
	}
	return &socketio.Packet{Type: socketio.PacketEvent, Nsp: a.name, ID: socketio.NoID, Data: data}, true
}

func (a *shardedAdapter) onBroadcast(uid string, data map[string]any) {
	p, ok := a.packetOf(data["packet"])
	if !ok {
		return
	}
	opts := optsFrom(data["opts"])
	rid, withAck := data["requestId"]
	if !withAck {
		opts.Flags.Local = false
		if err := a.mem.Broadcast(p, &opts); err != nil {
			a.malformed("broadcast", err)
		}
		return
	}
	if opts.Flags.Timeout <= 0 {
		opts.Flags.Timeout = a.s.opts.RequestsTimeout // as Classic: never wait for ever
	}
	_ = a.mem.BroadcastWithAck(p, &opts, func(n int) {
		a.respond(uid, ctBroadcastClientCount, mpMap{{"requestId", rid}, {"clientCount", n}})
	}, func(args []any) {
		resp := mpMap{{"requestId", rid}}
		if len(args) > 0 {
			resp = append(resp, mpField{"packet", args[0]})
		}
		a.respond(uid, ctBroadcastAck, resp)
	})
}

func (a *shardedAdapter) onServerSideEmit(uid string, data map[string]any) {
	args, ok := data["packet"].([]any)
	if !ok {
		a.malformed("serverSideEmit", fmt.Errorf("packet %T", data["packet"]))
		return
	}
	rid, withAck := data["requestId"]
	if !withAck {
		a.nsp.HandleServerSideEmit(args, nil)
		return
	}
	var answered atomic.Bool
	a.nsp.HandleServerSideEmit(args, func(arg any) {
		if answered.Swap(true) {
			return // only one answer is expected
		}
		a.respond(uid, ctServerSideEmitResponse, mpMap{{"requestId", rid}, {"packet", arg}})
	})
}

// onResponse takes a message on this process's response channel
// (receiver).
func (a *shardedAdapter) onResponse(payload string) {
	msg, err := decodeMessage(payload)
	if err != nil {
		a.s.cnt.received[kindResponse].Add(1)
		a.malformed("response", err)
		return
	}
	typ, _ := msg["type"].(float64)
	a.s.cnt.received[kindOfType(int(typ))].Add(1)
	data, _ := msg["data"].(map[string]any)
	if data == nil {
		a.malformed("response", fmt.Errorf("type %v without data", msg["type"]))
		return
	}
	a.onResponseMessage(int(typ), data)
}

func (a *shardedAdapter) onResponseMessage(typ int, data map[string]any) {
	rid, _ := data["requestId"].(string)
	a.mu.Lock()
	if ar := a.acks[rid]; ar != nil {
		a.mu.Unlock()
		switch typ {
		case ctBroadcastClientCount:
			n, _ := data["clientCount"].(float64)
			ar.clientCount(int(n))
		case ctBroadcastAck:
			args := []any{}
			if p, ok := data["packet"]; ok {
				args = append(args, p)
			}
			ar.ack(args)
		}
		return
	}
	cr := a.requests[rid]
	if cr == nil {
		a.mu.Unlock()
		a.s.cnt.ignored.Add(1) // too late, or not ours
		return
	}
	switch {
	case typ == ctFetchSocketsResponse && cr.typ == ctFetchSockets:
		list, _ := data["sockets"].([]any)
		for _, v := range list {
			if info, ok := socketInfoFrom(v); ok {
				cr.sockets = append(cr.sockets, info)
			}
		}
		cr.got++
	case typ == ctServerSideEmitResponse && cr.typ == ctServerSideEmit:
		cr.responses = append(cr.responses, data["packet"])
		cr.got++
	}
	if cr.got == cr.expected {
		select {
		case <-cr.done:
		default:
			close(cr.done)
		}
	}
	a.mu.Unlock()
}

func (a *shardedAdapter) malformed(what string, err error) {
	a.s.cnt.malformed.Add(1)
	a.s.log.Debug("redis adapter: ignoring a malformed message", "nsp", a.name, "what", what, "err", err)
}
