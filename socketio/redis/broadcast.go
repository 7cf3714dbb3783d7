package redis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/socketio"
)

// adapter is the classic adapter of one namespace: a socketio.MemoryAdapter
// for this process's sockets, and Redis for the others.
type adapter struct {
	c    *Classic
	nsp  *socketio.Namespace
	mem  *socketio.MemoryAdapter
	name string
	// detached: the Classic could not take the namespace (closed, or the
	// name already served); the adapter then serves this process only.
	detached bool

	bcPrefix   string // socket.io#<nsp>#
	pattern    string // bcPrefix, glob-escaped, then *
	reqCh      string // socket.io-request#<nsp>#
	respCh     string // socket.io-response#<nsp>#
	specificCh string // socket.io-response#<nsp>#<uid>#
	keys       recoveryKeys

	mu       sync.Mutex
	requests map[string]*pendingRequest // this process's requests awaiting answers
	acks     map[string]*ackRequest     // this process's broadcasts awaiting acknowledgements
	closed   bool
	closing  chan struct{}
}

var _ socketio.SessionAdapter = (*adapter)(nil)

func (c *Classic) newAdapter(nsp *socketio.Namespace) *adapter {
	name := nsp.Name()
	key := c.opts.Key
	a := &adapter{
		c:        c,
		nsp:      nsp,
		mem:      socketio.NewMemoryAdapter(nsp),
		name:     name,
		bcPrefix: key + "#" + name + "#",
		reqCh:    key + "-request#" + name + "#",
		respCh:   key + "-response#" + name + "#",
		requests: make(map[string]*pendingRequest),
		acks:     make(map[string]*ackRequest),
		closing:  make(chan struct{}),
	}
	a.pattern = globEscape(a.bcPrefix) + "*"
	a.keys = newRecoveryKeys(c.opts.Recovery.Key, name)
	a.specificCh = a.respCh + c.uid + "#"
	if err := c.register(a); err != nil {
		a.detached = true
		c.log.Error("redis adapter: namespace served by this process only", "nsp", name, "err", err)
		c.reportError(err)
	}
	return a
}

// subscriptions are the channels and the pattern the namespace listens on.
func (a *adapter) subscriptions() []string {
	return []string{a.pattern, a.reqCh, a.respCh, a.specificCh}
}

// local reports whether an operation stays on this process.
func (a *adapter) local(opts *socketio.BroadcastOptions) bool {
	return a.detached || opts.Flags.Local
}

// AddAll implements socketio.Adapter.
func (a *adapter) AddAll(s *socketio.Socket, rooms []string) { a.mem.AddAll(s, rooms) }

// Del implements socketio.Adapter.
func (a *adapter) Del(s *socketio.Socket, room string) { a.mem.Del(s, room) }

// DelAll implements socketio.Adapter.
func (a *adapter) DelAll(s *socketio.Socket) { a.mem.DelAll(s) }

// SocketRooms implements socketio.Adapter.
func (a *adapter) SocketRooms(s *socketio.Socket) []string { return a.mem.SocketRooms(s) }

// Broadcast implements socketio.Adapter: the packet is queued for Redis
// (unless opts.Flags.Local) and delivered to this process's sockets. An
// error to publish is returned after the local delivery is done.
func (a *adapter) Broadcast(p *socketio.Packet, opts *socketio.BroadcastOptions) error {
	if a.Recovering() && !a.local(opts) && socketio.Storable(p, opts) {
		return a.broadcastStored(p, opts)
	}
	var perr error
	if !a.local(opts) {
		rooms, except := unique(opts.Rooms), unique(opts.Except)
		payload, err := encodeBroadcast(a.c.uid, a.name, p, rooms, except, opts.Flags)
		if err != nil {
			return fmt.Errorf("redis adapter: encode broadcast: %w", err)
		}
		_, perr = a.c.publish(kindBroadcast, a.broadcastChannel(rooms), payload)
	}
	if err := a.mem.Broadcast(p, opts); err != nil {
		return err
	}
	return perr
}

// broadcastChannel is the channel of a broadcast: the room's own when it
// targets exactly one, so that the processes without that room drop it
// unread.
func (a *adapter) broadcastChannel(rooms []string) string {
	if len(rooms) == 1 {
		return a.bcPrefix + rooms[0] + "#"
	}
	return a.bcPrefix
}

// encodeBroadcast writes a broadcast as Node's adapter does:
// [uid, {type, data, nsp}, {rooms, except, flags}].
func encodeBroadcast(uid, nsp string, p *socketio.Packet, rooms, except []string, flags socketio.BroadcastFlags) ([]byte, error) {
	return appendMsgpack(nil, []any{uid, packetFields(p, nsp), optsFields(rooms, except, flags)})
}

func packetFields(p *socketio.Packet, nsp string) mpMap {
	typ := p.Type
	if typ == socketio.PacketBinaryEvent {
		typ = socketio.PacketEvent // Node's packets are EVENT; the encoder marks binary ones
	}
	return mpMap{{"type", int(typ)}, {"data", p.Data}, {"nsp", nsp}}
}

func optsFields(rooms, except []string, flags socketio.BroadcastFlags) mpMap {
	f := mpMap{}
	if flags.Volatile {
		f = append(f, mpField{"volatile", true})
	}
	if flags.Timeout > 0 {
		f = append(f, mpField{"timeout", flags.Timeout.Milliseconds()})
	}
	return mpMap{{"rooms", nonNil(rooms)}, {"except", nonNil(except)}, {"flags", f}}
}

// onBroadcast delivers a broadcast from another process, or, with
// recovery on, from this one (deliverer).
func (a *adapter) onBroadcast(channel, payload string) {
	uid, _ := peekUID(payload)
	recovering := a.Recovering()
	if uid == a.c.uid && !recovering {
		a.c.cnt.ignored.Add(1) // our own, back from Redis: not decoded
		return
	}
	stamped := recovering && stamps(uid)
	if len(channel) > len(a.bcPrefix) {
		// A room's channel: drop it unread unless a local socket is in
		// the room (Node does the same; it spares the decoding). A stored
		// one still counts as passed over, for the offsets.
		room := channel[len(a.bcPrefix) : len(channel)-1]
		if stamped {
			if last, volatile, ok := peekStamp(payload); ok && !volatile {
				if off, ok := socketio.ParseOffset(last); ok {
					if !a.mem.PassStored(room, off) {
						a.c.cnt.ignored.Add(1)
						return
					}
					room = ""
				}
			}
		}
		if room != "" && !a.mem.HasRoom(room) {
			a.c.cnt.ignored.Add(1)
			return
		}
	}
	v, err := decodeMsgpack(payload)
	if err != nil {
		a.malformed("broadcast", err)
		return
	}
	msg, ok := v.([]any)
	if !ok || len(msg) < 3 {
		a.malformed("broadcast", fmt.Errorf("not an array of 3: %T", v))
		return
	}
	own := uid == a.c.uid
	if u, _ := msg[0].(string); u != uid {
		own, stamped = u == a.c.uid, recovering && stamps(u)
	}
	if own && !recovering {
		a.c.cnt.ignored.Add(1)
		return
	}
	p, ok := a.packetFrom(msg[1])
	if !ok {
		return
	}
	opts := optsFrom(msg[2])
	if stamped && a.onStoredBroadcast(p, &opts) {
		return
	}
	if own {
		// Not stored (volatile): delivered here when it was sent.
		a.c.cnt.ignored.Add(1)
		return
	}
	if err := a.mem.Broadcast(p, &opts); err != nil {
		a.malformed("broadcast", err)
	}
}

// packetFrom reads a packet {type, data, nsp} of another process; false
// when it is not an event of this namespace (counted).
func (a *adapter) packetFrom(v any) (*socketio.Packet, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		a.malformed("packet", fmt.Errorf("not a map: %T", v))
		return nil, false
	}
	nsp, ok := m["nsp"].(string)
	if !ok {
		nsp = "/" // as Node defaults it
	}
	if nsp != a.name {
		a.c.cnt.ignored.Add(1)
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

// optsFrom reads {rooms, except, flags}.
func optsFrom(v any) socketio.BroadcastOptions {
	m, _ := v.(map[string]any)
	opts := socketio.BroadcastOptions{Rooms: roomList(m["rooms"]), Except: roomList(m["except"])}
	if f, ok := m["flags"].(map[string]any); ok {
		opts.Flags.Volatile, _ = f["volatile"].(bool)
		if ms, ok := f["timeout"].(float64); ok && ms > 0 {
			opts.Flags.Timeout = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return opts
}

// roomList reads a list of rooms; a number is the room JavaScript would
// name with it.
func roomList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		switch e := e.(type) {
		case string:
			out = append(out, e)
		case float64:
			out = append(out, jsNumber(e))
		}
	}
	return out
}

func (a *adapter) malformed(what string, err error) {
	a.c.cnt.malformed.Add(1)
	a.c.log.Debug("redis adapter: ignoring a malformed message", "nsp", a.name, "what", what, "err", err)
}

// BroadcastWithAck implements socketio.Adapter. The other processes get a
// request (type 7) and answer with their client count (type 8), then one
// answer per acknowledgement (type 9); answers are taken for as long as
// opts.Flags.Timeout (Options.RequestsTimeout when unset).
func (a *adapter) BroadcastWithAck(p *socketio.Packet, opts *socketio.BroadcastOptions, clientCount func(int), ack func([]any)) error {
	var perr error
	if !a.local(opts) {
		perr = a.requestBroadcastWithAck(p, opts, clientCount, ack)
	}
	if err := a.mem.BroadcastWithAck(p, opts, clientCount, ack); err != nil {
		return err
	}
	return perr
}

// encodeBroadcastWithAck writes the request of a broadcast with
// acknowledgements as Node's adapter does:
// {uid, requestId, type: 7, packet, opts}.
func encodeBroadcastWithAck(uid, rid, nsp string, p *socketio.Packet, rooms, except []string, flags socketio.BroadcastFlags) ([]byte, error) {
	return appendMsgpack(nil, mpMap{
		{"uid", uid},
		{"requestId", rid},
		{"type", reqBroadcast},
		{"packet", packetFields(p, nsp)},
		{"opts", optsFields(rooms, except, flags)},
	})
}

type ackRequest struct {
	clientCount func(int)
	ack         func([]any)
	timer       *time.Timer
}

func (a *adapter) requestBroadcastWithAck(p *socketio.Packet, opts *socketio.BroadcastOptions, clientCount func(int), ack func([]any)) error {
	rid := randomID(12)
	payload, err := encodeBroadcastWithAck(a.c.uid, rid, a.name, p, unique(opts.Rooms), unique(opts.Except), opts.Flags)
	if err != nil {
		return fmt.Errorf("redis adapter: encode broadcast: %w", err)
	}
	timeout := opts.Flags.Timeout
	if timeout <= 0 {
		timeout = a.c.opts.RequestsTimeout
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	ar := &ackRequest{clientCount: clientCount, ack: ack}
	a.acks[rid] = ar
	// Nobody can tell whether every client answered: the request is
	// forgotten after the timeout, as Node does.
	ar.timer = time.AfterFunc(timeout, func() { a.forgetAck(rid) })
	a.mu.Unlock()
	if skipped, err := a.c.publish(kindRequest, a.reqCh, payload); skipped || err != nil {
		a.forgetAck(rid)
		return err
	}
	return nil
}

func (a *adapter) forgetAck(rid string) {
	a.mu.Lock()
	if ar := a.acks[rid]; ar != nil {
		ar.timer.Stop()
		delete(a.acks, rid)
	}
	a.mu.Unlock()
}

// FetchSockets implements socketio.Adapter: this process's sockets, and
// (unless opts.Flags.Local) those the other processes describe.
func (a *adapter) FetchSockets(ctx context.Context, opts *socketio.BroadcastOptions) ([]socketio.SocketInfo, error) {
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
	rid := randomID(12)
	pr := &pendingRequest{typ: reqRemoteFetch, numSub: n, msgCount: 1, sockets: local}
	err = a.ask(ctx, "fetchSockets", rid, pr, jsonRequest{
		UID: a.c.uid, RequestID: rid, Type: reqRemoteFetch, Opts: jsonOptsOf(opts),
	})
	if err != nil {
		return nil, err
	}
	return pr.sockets, nil
}

// AllRooms implements socketio.Adapter: the rooms of every process,
// sockets' own rooms included (as Node's adapter.rooms).
func (a *adapter) AllRooms(ctx context.Context) ([]string, error) {
	local := a.mem.Rooms()
	if a.detached {
		return local, nil
	}
	n, err := a.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n <= 1 {
		return local, nil
	}
	rid := randomID(12)
	pr := &pendingRequest{typ: reqAllRooms, numSub: n, msgCount: 1, rooms: local, seen: make(map[string]struct{}, len(local))}
	for _, r := range local {
		pr.seen[r] = struct{}{}
	}
	if err := a.ask(ctx, "allRooms", rid, pr, jsonRequest{UID: a.c.uid, RequestID: rid, Type: reqAllRooms}); err != nil {
		return nil, err
	}
	return pr.rooms, nil
}

// AddSockets implements socketio.Adapter. This process's sockets join at
// once; the other processes are told (Node's REMOTE_JOIN, no answer).
func (a *adapter) AddSockets(ctx context.Context, opts *socketio.BroadcastOptions, rooms []string) error {
	if err := a.mem.AddSockets(ctx, opts, rooms); err != nil || a.local(opts) {
		return err
	}
	return a.tell(jsonRequest{UID: a.c.uid, Type: reqRemoteJoin, Opts: jsonOptsOf(opts), Rooms: nonNil(rooms)})
}

// DelSockets implements socketio.Adapter, as AddSockets.
func (a *adapter) DelSockets(ctx context.Context, opts *socketio.BroadcastOptions, rooms []string) error {
	if err := a.mem.DelSockets(ctx, opts, rooms); err != nil || a.local(opts) {
		return err
	}
	return a.tell(jsonRequest{UID: a.c.uid, Type: reqRemoteLeave, Opts: jsonOptsOf(opts), Rooms: nonNil(rooms)})
}

// DisconnectSockets implements socketio.Adapter, as AddSockets.
func (a *adapter) DisconnectSockets(ctx context.Context, opts *socketio.BroadcastOptions, close bool) error {
	if err := a.mem.DisconnectSockets(ctx, opts, close); err != nil || a.local(opts) {
		return err
	}
	return a.tell(jsonRequest{UID: a.c.uid, Type: reqRemoteDisconnect, Opts: jsonOptsOf(opts), Close: close})
}

// ServerSideEmit implements socketio.Adapter. With ack it waits for one
// answer from every other process, until RequestsTimeout: on a timeout it
// returns the answers that came and an error wrapping socketio.ErrTimeout.
func (a *adapter) ServerSideEmit(ctx context.Context, args []any, ack bool) ([]any, error) {
	if a.detached {
		return []any{}, nil
	}
	if args == nil {
		args = []any{}
	}
	if !ack {
		return nil, a.tell(jsonRequest{UID: a.c.uid, Type: reqServerSideEmit, Data: args})
	}
	n, err := a.ServerCount(ctx)
	if err != nil {
		return nil, err
	}
	if n--; n <= 0 { // not counting this process
		return []any{}, nil
	}
	rid := randomID(12)
	pr := &pendingRequest{typ: reqServerSideEmit, numSub: n, responses: []any{}}
	err = a.ask(ctx, "serverSideEmit", rid, pr, jsonRequest{UID: a.c.uid, RequestID: rid, Type: reqServerSideEmit, Data: args})
	return pr.responses, err
}

// ServerCount implements socketio.Adapter: the subscribers of the
// namespace's request channel (PUBSUB NUMSUB), 1 while Options.Publishing
// says not to publish (this process is then on its own).
func (a *adapter) ServerCount(ctx context.Context) (int, error) {
	if a.detached || a.c.opts.Publishing != nil && !a.c.opts.Publishing() {
		return 1, nil
	}
	n, err := countSubscribers(ctx, a.c.pub, false, a.reqCh)
	if err != nil {
		return 0, fmt.Errorf("redis adapter: server count: %w", err)
	}
	return n, nil
}

// Close implements socketio.Adapter: the namespace's subscriptions end
// and its pending requests fail with ErrClosed.
func (a *adapter) Close() error {
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
		a.c.unregister(a)
	}
	return nil
}

// unique returns rooms without repetitions (Node keeps them in a Set, and
// "exactly one room" picks the room's channel).
func unique(rooms []string) []string {
	if len(rooms) < 2 {
		return rooms
	}
	out := make([]string, 0, len(rooms))
	for _, r := range rooms {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
