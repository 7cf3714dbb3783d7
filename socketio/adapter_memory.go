package socketio

import (
	"context"
	"slices"
	"sync"

	"github.com/switchboard-rt/switchboard/engineio"
)

// MemoryAdapter is the in-memory adapter: rooms and broadcasts within one
// process. Adapters across processes build on it for their local part.
//
// A socket's own room (its id) is implicit: it is never stored, and a room
// name that is the id of a connected socket selects that socket.
type MemoryAdapter struct {
	nsp *Namespace

	mu    sync.RWMutex
	rooms map[string]*roomSet
	// last is the offset of the last stored packet delivered (or passed
	// over) here, for recovery: written under the read lock by the one
	// goroutine at a time that delivers stored packets (its callers
	// serialize them), read under the write lock.
	last Offset

	// OnRoomCreated and OnRoomDeleted, when set, are called (outside the
	// lock) when a room gets its first local socket and loses its last.
	// Set them before the first socket joins.
	OnRoomCreated func(room string)
	OnRoomDeleted func(room string)
}

var _ Adapter = (*MemoryAdapter)(nil)

// NewMemoryAdapter returns the in-memory adapter of nsp.
func NewMemoryAdapter(nsp *Namespace) *MemoryAdapter {
	return &MemoryAdapter{nsp: nsp, rooms: make(map[string]*roomSet)}
}

// roomSet is the members of one room: a slice while small (most rooms hold
// a user's one to three devices), a map once large.
type roomSet struct {
	small []*Socket
	big   map[*Socket]struct{}
}

const roomSetSmall = 32

func (r *roomSet) add(s *Socket) bool {
	if r.big != nil {
		if _, ok := r.big[s]; ok {
			return false
		}
		r.big[s] = struct{}{}
		return true
	}
	if slices.Contains(r.small, s) {
		return false
	}
	if len(r.small) < roomSetSmall {
		r.small = append(r.small, s)
		return true
	}
	r.big = make(map[*Socket]struct{}, 2*roomSetSmall)
	for _, m := range r.small {
		r.big[m] = struct{}{}
	}
	r.small = nil
	r.big[s] = struct{}{}
	return true
}

func (r *roomSet) del(s *Socket) {
	if r.big != nil {
		delete(r.big, s)
		return
	}
	if i := slices.Index(r.small, s); i >= 0 {
		last := len(r.small) - 1
		r.small[i] = r.small[last]
		r.small[last] = nil
		r.small = r.small[:last]
	}
}

func (r *roomSet) len() int {
	if r.big != nil {
		return len(r.big)
	}
	return len(r.small)
}

func (r *roomSet) each(fn func(*Socket)) {
	if r.big != nil {
		for s := range r.big {
			fn(s)
		}
		return
	}
	for _, s := range r.small {
		fn(s)
	}
}

func (r *roomSet) has(s *Socket) bool {
	if r.big != nil {
		_, ok := r.big[s]
		return ok
	}
	return slices.Contains(r.small, s)
}

// AddAll implements Adapter.
func (a *MemoryAdapter) AddAll(s *Socket, rooms []string) {
	var created []string
	a.mu.Lock()
	if s.closed() {
		// It left every room when it closed (after marking itself closed,
		// then under this lock): it would stay in these for good.
		a.mu.Unlock()
		return
	}
	// A socket is sent the stored packets after the last one delivered
	// before its first join: no stored delivery can fall in between.
	s.captureStart(a.last)
	for _, room := range rooms {
		if room == s.ID() {
			continue
		}
		set := a.rooms[room]
		if set == nil {
			set = &roomSet{}
			a.rooms[room] = set
			created = append(created, room)
		}
		if set.add(s) {
			s.rooms = append(s.rooms, room)
		}
	}
	a.mu.Unlock()
	if a.OnRoomCreated != nil {
		for _, room := range created {
			a.OnRoomCreated(room)
		}
	}
}

// Del implements Adapter.
func (a *MemoryAdapter) Del(s *Socket, room string) {
	a.mu.Lock()
	deleted := a.delLocked(s, room)
	if i := slices.Index(s.rooms, room); i >= 0 {
		s.rooms = slices.Delete(s.rooms, i, i+1)
	}
	a.mu.Unlock()
	if deleted && a.OnRoomDeleted != nil {
		a.OnRoomDeleted(room)
	}
}

// delLocked removes s from room and reports whether the room is gone.
func (a *MemoryAdapter) delLocked(s *Socket, room string) bool {
	set := a.rooms[room]
	if set == nil {
		return false
	}
	set.del(s)
	if set.len() == 0 {
		delete(a.rooms, room)
		return true
	}
	return false
}

// DelAll implements Adapter.
func (a *MemoryAdapter) DelAll(s *Socket) {
	var deleted []string
	a.mu.Lock()
	for _, room := range s.rooms {
		if a.delLocked(s, room) {
			deleted = append(deleted, room)
		}
	}
	s.rooms = nil
	a.mu.Unlock()
	if a.OnRoomDeleted != nil {
		for _, room := range deleted {
			a.OnRoomDeleted(room)
		}
	}
}

// SocketRooms implements Adapter.
func (a *MemoryAdapter) SocketRooms(s *Socket) []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return slices.Clone(s.rooms)
}

// HasRoom reports whether a local socket is in room.
func (a *MemoryAdapter) HasRoom(room string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.hasRoomLocked(room)
}

func (a *MemoryAdapter) hasRoomLocked(room string) bool {
	_, ok := a.rooms[room]
	return ok || a.nsp.Socket(room) != nil
}

// Rooms lists the local rooms, sockets' own rooms included (as Node's
// adapter.rooms does).
func (a *MemoryAdapter) Rooms() []string {
	a.mu.RLock()
	out := make([]string, 0, len(a.rooms))
	for room := range a.rooms {
		out = append(out, room)
	}
	a.mu.RUnlock()
	a.nsp.eachSocket(func(s *Socket) { out = append(out, s.ID()) })
	return out
}

// Apply calls fn for every local socket opts selects (ignoring
// opts.Flags), under the adapter's read lock: fn must not join or leave
// rooms.
func (a *MemoryAdapter) Apply(opts *BroadcastOptions, fn func(*Socket)) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	a.applyLocked(opts, fn)
}

func (a *MemoryAdapter) applyLocked(opts *BroadcastOptions, fn func(*Socket)) {
	except := a.exceptLocked(opts.Except)
	skip := func(s *Socket) bool { return len(except) > 0 && slices.Contains(except, s) }
	switch len(opts.Rooms) {
	case 0:
		a.nsp.eachSocket(func(s *Socket) {
			if !skip(s) {
				fn(s)
			}
		})
	case 1:
		a.eachInRoomLocked(opts.Rooms[0], func(s *Socket) {
			if !skip(s) {
				fn(s)
			}
		})
	default:
		seen := make(map[*Socket]struct{})
		for _, room := range opts.Rooms {
			a.eachInRoomLocked(room, func(s *Socket) {
				if _, dup := seen[s]; dup || skip(s) {
					return
				}
				seen[s] = struct{}{}
				fn(s)
			})
		}
	}
}

func (a *MemoryAdapter) eachInRoomLocked(room string, fn func(*Socket)) {
	if set := a.rooms[room]; set != nil {
		set.each(fn)
		return
	}
	if s := a.nsp.Socket(room); s != nil {
		fn(s)
	}
}

// exceptLocked resolves rooms to the sockets they hold.
func (a *MemoryAdapter) exceptLocked(rooms []string) []*Socket {
	var out []*Socket
	for _, room := range rooms {
		a.eachInRoomLocked(room, func(s *Socket) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		})
	}
	return out
}

// Broadcast implements Adapter: the packet is encoded once for every
// recipient.
func (a *MemoryAdapter) Broadcast(p *Packet, opts *BroadcastOptions) error {
	msgs, err := encodeMessages(p)
	if err != nil {
		return err
	}
	a.Deliver(msgs, opts)
	return nil
}

// Deliver sends an encoded packet to the local sockets opts selects.
func (a *MemoryAdapter) Deliver(msgs []*engineio.Message, opts *BroadcastOptions) {
	a.Apply(opts, func(s *Socket) { _ = s.send(msgs) })
}

// DeliverStored sends a stored packet (its last argument is off) to the
// local sockets opts selects. Stored packets must be delivered one at a
// time, in offset order.
func (a *MemoryAdapter) DeliverStored(msgs []*engineio.Message, opts *BroadcastOptions, off Offset) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	a.applyLocked(opts, func(s *Socket) { _ = s.sendStored(msgs, off, true) })
	a.last = off
}

// PassStored records a stored packet that no local socket is to get
// unless one is in room (an empty room: the namespace). It reports
// whether the packet is to be delivered after all (a socket is in room;
// the caller then decodes it and calls DeliverStored); otherwise it counts
// as passed over, as if delivered to no one.
func (a *MemoryAdapter) PassStored(room string, off Offset) (deliver bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if room == "" || a.hasRoomLocked(room) {
		return true
	}
	a.last = off
	return false
}

// LastOffset is the offset of the last stored packet delivered or passed
// over.
func (a *MemoryAdapter) LastOffset() Offset {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// BroadcastWithAck implements Adapter.
func (a *MemoryAdapter) BroadcastWithAck(p *Packet, opts *BroadcastOptions, clientCount func(int), ack func([]any)) error {
	if p.ID == NoID {
		p.ID = a.nsp.nextAckID()
	}
	msgs, err := encodeMessages(p)
	if err != nil {
		return err
	}
	// The count is reported before the packet goes out: an answer to the
	// count's request must come before any acknowledgement's (Node's
	// adapter reads them in that order).
	var targets []*Socket
	a.Apply(opts, func(s *Socket) {
		if s.registerAck(p.ID, opts.Flags.Timeout, func(args []any, err error) {
			if err == nil {
				ack(args)
			}
		}) {
			targets = append(targets, s)
		}
	})
	clientCount(len(targets))
	for _, s := range targets {
		_ = s.send(msgs)
	}
	return nil
}

// FetchSockets implements Adapter (this process only).
func (a *MemoryAdapter) FetchSockets(_ context.Context, opts *BroadcastOptions) ([]SocketInfo, error) {
	var socks []*Socket
	a.Apply(opts, func(s *Socket) { socks = append(socks, s) })
	out := make([]SocketInfo, 0, len(socks))
	for _, s := range socks {
		out = append(out, s.Info())
	}
	return out, nil
}

// AddSockets implements Adapter (this process only).
func (a *MemoryAdapter) AddSockets(_ context.Context, opts *BroadcastOptions, rooms []string) error {
	for _, s := range a.selected(opts) {
		s.Join(rooms...)
	}
	return nil
}

// DelSockets implements Adapter (this process only).
func (a *MemoryAdapter) DelSockets(_ context.Context, opts *BroadcastOptions, rooms []string) error {
	for _, s := range a.selected(opts) {
		for _, room := range rooms {
			s.Leave(room)
		}
	}
	return nil
}

// DisconnectSockets implements Adapter (this process only).
func (a *MemoryAdapter) DisconnectSockets(_ context.Context, opts *BroadcastOptions, close bool) error {
	for _, s := range a.selected(opts) {
		s.Disconnect(close)
	}
	return nil
}

// selected collects the sockets opts selects, so that the caller can act
// on them outside the lock.
func (a *MemoryAdapter) selected(opts *BroadcastOptions) []*Socket {
	var socks []*Socket
	a.Apply(opts, func(s *Socket) { socks = append(socks, s) })
	return socks
}

// AllRooms implements Adapter (this process only).
func (a *MemoryAdapter) AllRooms(context.Context) ([]string, error) { return a.Rooms(), nil }

// ServerSideEmit implements Adapter: there is no other process.
func (a *MemoryAdapter) ServerSideEmit(context.Context, []any, bool) ([]any, error) {
	return []any{}, nil
}

// ServerCount implements Adapter.
func (a *MemoryAdapter) ServerCount(context.Context) (int, error) { return 1, nil }

// Close implements Adapter.
func (a *MemoryAdapter) Close() error { return nil }
