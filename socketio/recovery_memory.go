package socketio

import (
	"context"
	"slices"
	"sync"
	"time"
)

// memoryRecovery is the in-memory adapter with connection state recovery:
// one process, as Node's SessionAwareAdapter. Every stored packet is kept
// in the log of each room it was addressed to (the namespace's log when
// it was addressed to no room), for the window and at most maxPackets per
// log; a session is kept from its socket's end for the window.
//
// Its mu is held across stamping a packet with its offset, logging it and
// delivering it, and across a restore's join and reading: a socket's
// stored packets reach it in offset order, and nothing is delivered
// between a restore's join and its read. It comes before the adapter's own
// lock.
type memoryRecovery struct {
	*MemoryAdapter
	window     time.Duration
	maxPackets int
	now        func() time.Time

	mu       sync.Mutex
	last     Offset
	logs     map[string]*packetLog // by room; "" is the namespace's
	sessions map[string]*keptSession
	janitor  *time.Timer // nil until something is kept; stopped by Close
	closed   bool
}

type storedEntry struct {
	StoredPacket
	at     time.Time
	except []string
}

// packetLog is a room's stored packets, oldest first.
type packetLog struct {
	entries []*storedEntry
	// trimmed is the last entry dropped for the count bound (entries
	// dropped for their age are older than any session still kept).
	trimmed Offset
}

type keptSession struct {
	Session
	until time.Time
}

var _ SessionAdapter = (*memoryRecovery)(nil)

func newMemoryRecovery(nsp *Namespace, window time.Duration, maxPackets int, now func() time.Time) *memoryRecovery {
	return &memoryRecovery{
		MemoryAdapter: NewMemoryAdapter(nsp),
		window:        window,
		maxPackets:    maxPackets,
		now:           now,
		logs:          make(map[string]*packetLog),
		sessions:      make(map[string]*keptSession),
	}
}

// Recovering implements SessionAdapter.
func (m *memoryRecovery) Recovering() bool { return true }

// NewSessionID implements SessionAdapter.
func (m *memoryRecovery) NewSessionID() string { return newID() }

// Broadcast implements Adapter: a storable packet is stamped with the next
// offset, logged and delivered.
func (m *memoryRecovery) Broadcast(p *Packet, opts *BroadcastOptions) error {
	if !Storable(p, opts) {
		return m.MemoryAdapter.Broadcast(p, opts)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	off := m.nextLocked(now)
	msgs, err := encodeMessages(WithOffset(p, off))
	if err != nil {
		return err
	}
	e := &storedEntry{StoredPacket: StoredPacket{Offset: off, Msgs: msgs}, at: now, except: slices.Clone(opts.Except)}
	rooms := opts.Rooms
	if len(rooms) == 0 {
		rooms = []string{""}
	}
	for i, room := range rooms {
		if slices.Contains(rooms[:i], room) {
			continue
		}
		l := m.logs[room]
		if l == nil {
			l = &packetLog{}
			m.logs[room] = l
		}
		l.entries = append(l.entries, e)
		if over := len(l.entries) - m.maxPackets; over > 0 {
			l.trimmed = l.entries[over-1].Offset
			clear(l.entries[:over])
			l.entries = l.entries[over:]
		}
	}
	m.armLocked()
	m.MemoryAdapter.DeliverStored(msgs, opts, off)
	m.last = off
	return nil
}

// nextLocked returns the next offset: the clock's milliseconds, never
// going back, and a sequence within one millisecond.
func (m *memoryRecovery) nextLocked(now time.Time) Offset {
	ms := uint64(max(now.UnixMilli(), 0))
	if ms <= m.last.Millis {
		return Offset{m.last.Millis, m.last.Seq + 1}
	}
	return Offset{ms, 0}
}

// SaveSession implements SessionAdapter: a connected session needs
// nothing here.
func (m *memoryRecovery) SaveSession(Session) {}

// EndSession implements SessionAdapter.
func (m *memoryRecovery) EndSession(sess Session, keep bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !keep || m.closed {
		delete(m.sessions, sess.PID)
		return
	}
	m.sessions[sess.PID] = &keptSession{Session: sess, until: m.now().Add(m.window)}
	m.armLocked()
}

// SaveSessions implements SessionAdapter: the sessions would die with the
// process, so there is nothing to keep.
func (m *memoryRecovery) SaveSessions(context.Context, []Session) error { return nil }

// RestoreSession implements SessionAdapter, at once.
func (m *memoryRecovery) RestoreSession(r *Restore) {
	res := m.restore(r)
	r.Done(res)
}

func (m *memoryRecovery) restore(r *Restore) RestoreResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	k := m.sessions[r.PID]
	if k == nil || now.After(k.until) {
		delete(m.sessions, r.PID)
		return RestoreResult{Outcome: RecoveryExpired}
	}
	if k.Owner != r.Owner {
		return RestoreResult{Outcome: RecoveryRefused} // kept for its owner
	}
	delete(m.sessions, r.PID)
	rooms := append(r.Join(k.Rooms), k.SID, "")
	// From the client's offset; from the session's start when it has
	// none, or one from before the session (a client keeps its last
	// offset across sessions).
	from, check := k.Start, false
	if r.Offset != "" {
		off, ok := ParseOffset(r.Offset)
		if !ok {
			return RestoreResult{Outcome: RecoveryInvalid}
		}
		if from.Before(off) {
			from, check = off, true
		}
	}
	for _, room := range rooms {
		if l := m.logs[room]; l != nil && from.Before(l.trimmed) {
			return RestoreResult{Outcome: RecoveryExpired} // some of what it missed is gone
		}
	}
	if check && !m.loggedLocked(rooms, from) {
		if int64(from.Millis) < now.Add(-m.window).UnixMilli() {
			return RestoreResult{Outcome: RecoveryExpired}
		}
		return RestoreResult{Outcome: RecoveryInvalid} // not an offset the session was sent
	}
	var missed []StoredPacket
	var seen map[*storedEntry]bool
	for _, room := range rooms {
		l := m.logs[room]
		if l == nil {
			continue
		}
		i, _ := slices.BinarySearchFunc(l.entries, from, func(e *storedEntry, o Offset) int {
			switch {
			case e.Offset.Before(o):
				return -1
			case o.Before(e.Offset):
				return 1
			}
			return 0
		})
		for _, e := range l.entries[i:] {
			if !from.Before(e.Offset) || excluded(e.except, rooms) {
				continue
			}
			if seen == nil {
				seen = make(map[*storedEntry]bool)
			}
			if !seen[e] {
				seen[e] = true
				missed = append(missed, e.StoredPacket)
			}
		}
	}
	slices.SortFunc(missed, func(a, b StoredPacket) int {
		if a.Offset.Before(b.Offset) {
			return -1
		}
		return 1
	})
	return RestoreResult{Outcome: Recovered, Session: k.Session, Missed: missed, Floor: m.last}
}

// loggedLocked reports whether off is a packet in the logs of rooms (or
// the last one trimmed from one).
func (m *memoryRecovery) loggedLocked(rooms []string, off Offset) bool {
	for _, room := range rooms {
		if l := m.logs[room]; l != nil {
			if l.trimmed == off {
				return true
			}
			if _, ok := slices.BinarySearchFunc(l.entries, off, func(e *storedEntry, o Offset) int {
				switch {
				case e.Offset.Before(o):
					return -1
				case o.Before(e.Offset):
					return 1
				}
				return 0
			}); ok {
				return true
			}
		}
	}
	return false
}

// excluded reports whether a socket in rooms is left out by except.
func excluded(except, rooms []string) bool {
	for _, r := range except {
		if slices.Contains(rooms, r) {
			return true
		}
	}
	return false
}

// armLocked starts the janitor, which drops what is past the window.
func (m *memoryRecovery) armLocked() {
	if m.janitor == nil && !m.closed {
		m.janitor = time.AfterFunc(m.sweepEvery(), m.sweep)
	}
}

func (m *memoryRecovery) sweepEvery() time.Duration {
	return min(max(m.window/4, time.Second), time.Minute)
}

// sweep drops the sessions and packets past the window; it re-arms while
// anything is kept.
func (m *memoryRecovery) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	now := m.now()
	for pid, k := range m.sessions {
		if now.After(k.until) {
			delete(m.sessions, pid)
		}
	}
	cutoff := now.Add(-m.window)
	for room, l := range m.logs {
		i := 0
		for i < len(l.entries) && l.entries[i].at.Before(cutoff) {
			i++
		}
		clear(l.entries[:i])
		l.entries = l.entries[i:]
		if len(l.entries) == 0 {
			delete(m.logs, room)
		}
	}
	if len(m.sessions) > 0 || len(m.logs) > 0 {
		m.janitor.Reset(m.sweepEvery())
	} else {
		m.janitor = nil
	}
}

// Close implements Adapter.
func (m *memoryRecovery) Close() error {
	m.mu.Lock()
	m.closed = true
	if m.janitor != nil {
		m.janitor.Stop()
	}
	clear(m.logs)
	clear(m.sessions)
	m.mu.Unlock()
	return m.MemoryAdapter.Close()
}
