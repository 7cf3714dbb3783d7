package socketio

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// EventHandler handles an event a client sent. ack is nil when the client
// wants no acknowledgement; calling it more than once sends one.
type EventHandler func(s *Socket, event string, args []any, ack AckFunc)

// AckFunc answers a client's acknowledgement callback.
type AckFunc func(args ...any)

// ErrDisconnected is given to acknowledgement callbacks of a socket that
// disconnected before they were answered.
var ErrDisconnected = errors.New("socketio: socket disconnected")

type socketState uint8

const (
	socketPending socketState = iota // middlewares running
	socketConnected
	socketClosed
)

// Socket is a client's connection to one namespace.
type Socket struct {
	// id is the socket's id; a recovery replaces it while the socket is
	// pending, when other goroutines may meet the socket in a room.
	id     atomic.Pointer[string]
	nsp    *Namespace
	client *client
	auth   map[string]any // guarded by mu
	issued time.Time

	// Recovery, owned by the strand until the socket connects and fixed
	// afterwards: what the client asked to recover (from its CONNECT auth),
	// the session's private id, whether it was recovered, and what it
	// missed (sent after the CONNECT reply).
	askPID, askOffset string
	pid               string
	recovered         bool
	replay            []StoredPacket

	// Owned by the strand: set from OnConnection or event handlers.
	onAny    EventHandler
	handlers map[string]EventHandler

	// rooms are the rooms joined (not the socket's own id), guarded by the
	// namespace adapter's lock.
	rooms []string

	mu           sync.Mutex
	state        socketState
	early        []earlyPacket // sent before the CONNECT reply
	acks         map[int64]*pendingAck
	data         any
	onDisconnect []func(reason string)
	// Recovery: the offset after which the socket is sent stored packets
	// (its session's start), the floor at or before which a stored packet
	// was in the recovered replay (dropped if it comes live), and whether
	// the session was kept at shutdown.
	start, floor       Offset
	hasStart, hasFloor bool
	persisted          bool
}

// earlyPacket is a packet sent before the CONNECT reply, with its offset
// when it is a stored one.
type earlyPacket struct {
	msgs   []*engineio.Message
	off    Offset
	stored bool
}

type pendingAck struct {
	fn    func(args []any, err error)
	timer *time.Timer
}

func newSocket(n *Namespace, c *client, auth map[string]any) *Socket {
	s := &Socket{nsp: n, client: c, auth: auth, issued: time.Now()}
	s.setID(newID())
	if pid, ok := auth["pid"].(string); ok {
		// socket.io-client sends offset only once it has one.
		s.askPID = pid
		s.askOffset, _ = auth["offset"].(string)
	}
	return s
}

// ID is the socket's id (and the name of its own room).
func (s *Socket) ID() string { return *s.id.Load() }

func (s *Socket) setID(id string) { s.id.Store(&id) }

// Recovered reports whether the socket took over a recovered session (its
// id, rooms and the packets it missed). Fixed once the socket is
// connected.
func (s *Socket) Recovered() bool { return s.recovered }

// Namespace is the socket's namespace.
func (s *Socket) Namespace() *Namespace { return s.nsp }

// Session is the Engine.IO session carrying the socket.
func (s *Socket) Session() *engineio.Session { return s.client.sess }

// Protocol is the Engine.IO protocol revision of the connection: 3
// (socket.io-client v2) or 4.
func (s *Socket) Protocol() int { return s.client.sess.Protocol() }

// Auth is the auth payload of the CONNECT packet (for protocol v4, the
// namespace's query).
func (s *Socket) Auth() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

// ForgetAuth drops the auth payload, so that a credential it carried is
// neither kept in memory nor shown by FetchSockets.
func (s *Socket) ForgetAuth() {
	s.mu.Lock()
	s.auth = nil
	s.mu.Unlock()
}

// Data is the application's data attached to the socket.
func (s *Socket) Data() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data
}

// SetData attaches application data to the socket (shown by FetchSockets
// as its data, so it should encode as JSON).
func (s *Socket) SetData(v any) {
	s.mu.Lock()
	s.data = v
	s.mu.Unlock()
}

// Connected reports whether the socket is connected.
func (s *Socket) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == socketConnected
}

// closed reports whether the socket is closed (disconnected or refused).
func (s *Socket) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == socketClosed
}

// OnEvent sets the handler of every event (called before a handler set
// with On for the same event). Call it from OnConnection or an event
// handler.
func (s *Socket) OnEvent(h EventHandler) { s.onAny = h }

// On sets the handler of one event. Call it from OnConnection or an event
// handler.
func (s *Socket) On(event string, h EventHandler) {
	if s.handlers == nil {
		s.handlers = make(map[string]EventHandler)
	}
	s.handlers[event] = h
}

// OnDisconnect adds a function called once when the socket disconnects,
// with the reason, from whichever goroutine ends it.
func (s *Socket) OnDisconnect(fn func(reason string)) {
	s.mu.Lock()
	s.onDisconnect = append(s.onDisconnect, fn)
	s.mu.Unlock()
}

// Join adds the socket to rooms; a closed socket joins none.
func (s *Socket) Join(rooms ...string) {
	s.nsp.adapter.AddAll(s, rooms)
	s.roomsChanged()
}

// Leave removes the socket from a room.
func (s *Socket) Leave(room string) {
	s.nsp.adapter.Del(s, room)
	s.roomsChanged()
}

// roomsChanged saves a connected socket's session again (its rooms are
// part of it).
func (s *Socket) roomsChanged() {
	if !s.Connected() || s.pid == "" {
		return
	}
	if sa := s.nsp.sessions(); sa != nil {
		sa.SaveSession(s.session(sa))
	}
}

// Rooms lists the socket's rooms, its own id first.
func (s *Socket) Rooms() []string { return append([]string{s.ID()}, s.nsp.adapter.SocketRooms(s)...) }

// To broadcasts to rooms, leaving this socket out.
func (s *Socket) To(rooms ...string) BroadcastOperator {
	return s.nsp.To(rooms...).Except(s.ID())
}

// Emit sends an event to this socket's client. With recovery on, a
// connected socket's event goes through the adapter to the socket's own
// room, as in Node, so that it is stored (and carries its offset) like a
// broadcast: the client gets it back if the connection drops first.
func (s *Socket) Emit(event string, args ...any) error {
	if reservedEvents[event] {
		return fmt.Errorf("socketio: %q is a reserved event name", event)
	}
	p := &Packet{Type: PacketEvent, Nsp: s.nsp.name, ID: NoID, Data: eventData(event, args)}
	if s.Connected() && s.pid != "" {
		return s.nsp.adapter.Broadcast(p, &BroadcastOptions{Rooms: []string{s.ID()}})
	}
	return s.sendPacket(p)
}

// EmitWithAck sends an event and calls fn with the client's
// acknowledgement, or with ErrTimeout after timeout (0: wait as long as
// the socket lives), or ErrDisconnected.
func (s *Socket) EmitWithAck(timeout time.Duration, fn func(args []any, err error), event string, args ...any) error {
	if reservedEvents[event] {
		return fmt.Errorf("socketio: %q is a reserved event name", event)
	}
	id := s.nsp.nextAckID()
	if !s.registerAck(id, timeout, fn) {
		return ErrDisconnected
	}
	return s.sendPacket(&Packet{Type: PacketEvent, Nsp: s.nsp.name, ID: id, Data: eventData(event, args)})
}

func eventData(event string, args []any) []any {
	data := make([]any, 0, 1+len(args))
	data = append(data, event)
	return append(data, args...)
}

// registerAck records fn for acknowledgement id; false if the socket is
// closed.
func (s *Socket) registerAck(id int64, timeout time.Duration, fn func(args []any, err error)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == socketClosed {
		return false
	}
	if s.acks == nil {
		s.acks = make(map[int64]*pendingAck)
	}
	pa := &pendingAck{fn: fn}
	if timeout > 0 {
		pa.timer = time.AfterFunc(timeout, func() {
			if s.takeAck(id) != nil {
				fn(nil, ErrTimeout)
			}
		})
	}
	s.acks[id] = pa
	return true
}

func (s *Socket) takeAck(id int64) *pendingAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	pa := s.acks[id]
	delete(s.acks, id)
	if pa != nil && pa.timer != nil {
		pa.timer.Stop()
	}
	return pa
}

// Disconnect disconnects the socket: the client gets a DISCONNECT packet
// ("io server disconnect", and does not reconnect). With close, every
// socket of the connection is disconnected and the connection closed. As
// in Node, it does nothing to a socket not connected (yet): one whose
// middlewares still run connects or not as they say.
func (s *Socket) Disconnect(close bool) {
	if !s.Connected() {
		// Closing a pending socket here would leave it to connect later,
		// closed, into its namespace for good.
		return
	}
	if close {
		s.client.disconnectAll()
		return
	}
	_ = s.sendPacket(&Packet{Type: PacketDisconnect, Nsp: s.nsp.name, ID: NoID})
	s.onClose("server namespace disconnect")
}

// sendPacket encodes and sends p to this socket.
func (s *Socket) sendPacket(p *Packet) error {
	msgs, err := encodeMessages(p)
	if err != nil {
		return err
	}
	return s.send(msgs)
}

// send sends an encoded packet, or keeps it for after the CONNECT reply.
func (s *Socket) send(msgs []*engineio.Message) error {
	return s.sendStored(msgs, Offset{}, false)
}

// sendStored sends an encoded packet; stored marks one whose last argument
// is off. A recovered socket drops a stored packet at or before its floor:
// its replay had it.
func (s *Socket) sendStored(msgs []*engineio.Message, off Offset, stored bool) error {
	s.mu.Lock()
	switch s.state {
	case socketPending:
		s.early = append(s.early, earlyPacket{msgs: msgs, off: off, stored: stored})
		s.mu.Unlock()
		return nil
	case socketClosed:
		s.mu.Unlock()
		return ErrDisconnected
	}
	if stored && s.hasFloor {
		if !s.floor.Before(off) {
			s.mu.Unlock()
			return nil
		}
		// Stored packets come in offset order: none at or before the
		// floor can follow this one.
		s.hasFloor = false
	}
	s.mu.Unlock()
	return s.client.write(msgs)
}

// onConnect sends the CONNECT reply, then what a recovered session missed,
// then what was sent before the reply, under s.mu: no other packet can be
// written in between.
func (s *Socket) onConnect() {
	var data any
	if s.client.sess.Protocol() != 3 {
		if s.pid != "" {
			data = map[string]any{"sid": s.ID(), "pid": s.pid}
		} else {
			data = map[string]any{"sid": s.ID()}
		}
	}
	connect, err := encodeMessages(&Packet{Type: PacketConnect, Nsp: s.nsp.name, ID: NoID, Data: data})
	if err != nil {
		return
	}
	replay := s.replay
	s.replay = nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != socketPending {
		return
	}
	s.state = socketConnected
	if s.client.write(connect) != nil {
		return
	}
	for _, p := range replay {
		if s.client.write(p.Msgs) != nil {
			return
		}
	}
	for _, e := range s.early {
		if e.stored && s.hasFloor {
			if !s.floor.Before(e.off) {
				continue
			}
			s.hasFloor = false
		}
		if s.client.write(e.msgs) != nil {
			break
		}
	}
	s.early = nil
}

// onPacket handles a packet for this socket (on the strand).
func (s *Socket) onPacket(p *Packet) {
	switch p.Type {
	case PacketEvent, PacketBinaryEvent:
		args := p.Data.([]any) // checked by the decoder
		var event string
		switch e := args[0].(type) {
		case string:
			event = e
		case float64:
			event = strconv.FormatFloat(e, 'f', -1, 64)
		}
		var ack AckFunc
		if p.ID != NoID {
			ack = s.ackFunc(p.ID)
		}
		s.dispatch(event, args[1:], ack)
	case PacketAck, PacketBinaryAck:
		if pa := s.takeAck(p.ID); pa != nil {
			pa.fn(p.Data.([]any), nil)
		}
	case PacketDisconnect:
		s.onClose("client namespace disconnect")
	}
}

func (s *Socket) dispatch(event string, args []any, ack AckFunc) {
	if s.onAny != nil {
		s.onAny(s, event, args, ack)
	}
	if h := s.handlers[event]; h != nil {
		h(s, event, args, ack)
	}
}

// ackFunc answers acknowledgement id, once.
func (s *Socket) ackFunc(id int64) AckFunc {
	var once sync.Once
	return func(args ...any) {
		once.Do(func() {
			if args == nil {
				args = []any{}
			}
			_ = s.sendPacket(&Packet{Type: PacketAck, Nsp: s.nsp.name, ID: id, Data: args})
		})
	}
}

// onClose ends the socket: it leaves its rooms and namespace, pending
// acknowledgements fail, and disconnect handlers run (once).
func (s *Socket) onClose(reason string) {
	s.mu.Lock()
	if s.state == socketClosed {
		s.mu.Unlock()
		return
	}
	wasConnected := s.state == socketConnected
	s.state = socketClosed
	acks := s.acks
	s.acks = nil
	handlers := s.onDisconnect
	s.onDisconnect = nil
	s.early = nil
	s.mu.Unlock()

	if wasConnected {
		s.endSession(reason) // before its rooms are left: they are kept
	}
	s.nsp.adapter.DelAll(s)
	s.nsp.remove(s)
	s.client.remove(s)
	for _, pa := range acks {
		if pa.timer != nil {
			pa.timer.Stop()
		}
		pa.fn(nil, ErrDisconnected)
	}
	if wasConnected {
		for _, fn := range handlers {
			fn(reason)
		}
	}
}

// abandon drops a socket whose connect failed or came too late.
func (s *Socket) abandon() {
	s.mu.Lock()
	s.state = socketClosed
	s.early = nil
	acks := s.acks
	s.acks = nil
	s.mu.Unlock()
	s.nsp.adapter.DelAll(s)
	for _, pa := range acks {
		if pa.timer != nil {
			pa.timer.Stop()
		}
		pa.fn(nil, ErrDisconnected)
	}
}

// Handshake describes how the socket connected, as Node's
// socket.handshake does.
func (s *Socket) Handshake() Handshake {
	req := s.client.sess.Request()
	h := Handshake{
		Headers: make(map[string]string, len(req.Header)),
		Time:    s.issued.UTC().Format(time.RFC1123),
		Address: remoteIP(req.RemoteAddr),
		Secure:  req.Secure,
		Issued:  s.issued.UnixMilli(),
		URL:     req.Path,
		Query:   map[string]string{},
		Auth:    maps.Clone(s.Auth()),
	}
	if req.RawQuery != "" {
		h.URL += "?" + req.RawQuery
	}
	for k, v := range req.Header {
		if len(v) > 0 {
			h.Headers[strings.ToLower(k)] = v[0]
		}
	}
	h.XDomain = h.Headers["origin"] != ""
	for k, v := range req.Query() {
		h.Query[k] = v[len(v)-1]
	}
	if h.Auth == nil {
		h.Auth = map[string]any{}
	}
	return h
}

// Info describes the socket as FetchSockets reports it.
func (s *Socket) Info() SocketInfo {
	return SocketInfo{ID: s.ID(), Handshake: s.Handshake(), Rooms: s.Rooms(), Data: s.Data()}
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
