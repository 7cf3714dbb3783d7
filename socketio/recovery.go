package socketio

// Connection state recovery, as socket.io-client v4.6+ speaks it.
//
//   - An adapter that keeps sessions (SessionAdapter) stamps every packet it
//     stores with an Offset, appended as the event's last argument: an event
//     broadcast without an acknowledgement and not volatile, and, while
//     recovery is on, an event a socket emits to its own client (which goes
//     through the adapter, addressed to the socket's own room, as in Node).
//     The client keeps the last offset it has handled.
//   - The CONNECT reply carries {"sid", "pid"}: pid is the session's private
//     id.
//   - When a connected socket ends for a reason its client comes back from
//     (transport close or error, ping timeout, forced close, server shutdown,
//     slow client), the adapter keeps its session (id, rooms, owner) for the
//     window. A socket that leaves on purpose (either side's namespace
//     disconnect) or breaks the protocol is forgotten.
//   - A client that connects with {pid, offset} in its auth runs the
//     middlewares like any other. Then, if the session is kept and belongs
//     to the same owner (RecoveryOptions.Owner), the socket takes the
//     session's id and rooms, its CONNECT reply carries the same pid (so the
//     client sets socket.recovered), and it is sent every stored packet for
//     its rooms after offset, in order, before anything else. Otherwise it
//     is a fresh session with a new pid: a recovery never refuses a
//     connection. A session is restored once: asking again with the same
//     pid gets a fresh one, until the recovered socket ends and its session
//     is kept again.
//
// The strand owns the restore: it runs after the middlewares as one more
// asynchronous step (the connection's packets wait for it, as for a
// middleware). A socket's id changes during it, while the socket is
// pending; the id is read through an atomic so that the goroutines that may
// meet a pending socket in a room (broadcasts, fetches) read it whole.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// RecoveryOptions configure connection state recovery.
type RecoveryOptions struct {
	// Window is how long after a disconnection a session can be recovered;
	// zero disables recovery. It configures the in-memory adapter that
	// Options.Adapter nil builds; an adapter of its own (socketio/redis)
	// is configured on its side, and recovery is on for a namespace when
	// its adapter is a SessionAdapter that says it is Recovering.
	Window time.Duration
	// MaxPackets bounds the packets the in-memory adapter keeps per room
	// (and for namespace-wide broadcasts): 1000. A session that missed
	// more than that in one room gets a fresh session.
	MaxPackets int
	// Owner names whom a socket's session belongs to (the user its
	// middlewares authenticated); a session is restored only to a socket
	// with the same owner. It runs after the middlewares. Nil: anyone
	// holding the pid, as in Node.
	Owner func(s *Socket) string
	// OnRestore, when set, is told the outcome of every attempt to
	// recover a session (after the middlewares, before the CONNECT reply),
	// with the socket that asked.
	OnRestore func(s *Socket, outcome RecoveryOutcome)
}

// RecoveryOutcome is how an attempt to recover a session ended.
type RecoveryOutcome uint8

const (
	// Recovered: the socket took the session and gets what it missed.
	Recovered RecoveryOutcome = iota
	// RecoveryExpired: the session is gone (past the window, already
	// recovered, never kept), or packets it missed are (trimmed by count).
	RecoveryExpired
	// RecoveryRefused: the session belongs to another owner. It is kept
	// for its owner.
	RecoveryRefused
	// RecoveryInvalid: a pid or an offset that cannot be ours, or an offset
	// the session was never sent.
	RecoveryInvalid
	// RecoveryFailed: the adapter's storage failed (Redis unreachable).
	RecoveryFailed
)

func (o RecoveryOutcome) String() string {
	switch o {
	case Recovered:
		return "recovered"
	case RecoveryExpired:
		return "expired"
	case RecoveryRefused:
		return "refused"
	case RecoveryInvalid:
		return "invalid"
	case RecoveryFailed:
		return "failed"
	}
	return "unknown"
}

// RecoveryStats count what recovery did since the server started.
type RecoveryStats struct {
	// Persisted: sessions kept when their socket ended (or at shutdown).
	Persisted uint64
	// Outcomes of the attempts to recover, by RecoveryOutcome.
	Recovered, Expired, Refused, Invalid, Failed uint64
}

type recoveryCounters struct {
	persisted atomic.Uint64
	outcomes  [RecoveryFailed + 1]atomic.Uint64
}

// RecoveryStats returns the recovery counters.
func (s *Server) RecoveryStats() RecoveryStats {
	c := &s.recovery
	return RecoveryStats{
		Persisted: c.persisted.Load(),
		Recovered: c.outcomes[Recovered].Load(),
		Expired:   c.outcomes[RecoveryExpired].Load(),
		Refused:   c.outcomes[RecoveryRefused].Load(),
		Invalid:   c.outcomes[RecoveryInvalid].Load(),
		Failed:    c.outcomes[RecoveryFailed].Load(),
	}
}

// SessionAdapter is an Adapter that keeps what recovery needs: it stamps
// the packets it stores with offsets, keeps sessions, and finds what a
// session missed. Every method may be called from any goroutine.
type SessionAdapter interface {
	Adapter
	// Recovering reports whether the adapter stores packets and sessions
	// (recovery is on for the namespace).
	Recovering() bool
	// LastOffset is the offset of the last stored packet this process
	// has delivered or passed over: a socket connected now is sent what
	// comes after it.
	LastOffset() Offset
	// NewSessionID returns a new private session id.
	NewSessionID() string
	// SaveSession records a connected session: when it connects, and when
	// its rooms change. An adapter that keeps sessions in its process
	// alone has nothing to do.
	SaveSession(sess Session)
	// EndSession records that a session's socket ended: kept for the window
	// when keep is set, else forgotten.
	EndSession(sess Session, keep bool)
	// SaveSessions keeps connected sessions for the window and waits until
	// they are kept: a shutdown does it before it closes the connections,
	// so that their clients find them on another process.
	SaveSessions(ctx context.Context, sessions []Session) error
	// RestoreSession looks for a kept session and what it missed; see
	// Restore for the calls it makes.
	RestoreSession(r *Restore)
}

// Session is what is kept of a socket for recovery.
type Session struct {
	PID   string   `json:"-"`
	SID   string   `json:"sid"`
	Owner string   `json:"owner,omitempty"`
	Rooms []string `json:"rooms"` // the socket's own id not included
	// Start: the socket was sent the stored packets after this offset.
	Start Offset `json:"start"`
}

// Restore is a request to recover a session. RestoreSession calls Join at
// most once, once the session is found and its owner checked and before
// it reads what the session missed, then Done once, from any goroutine.
type Restore struct {
	PID    string
	Offset string // as the client sent it; "" when it sent none
	Owner  string // what RecoveryOptions.Owner says of the socket
	// Join makes the socket join the session's rooms; it returns every
	// room the socket is in then (not its id).
	Join func(rooms []string) []string
	Done func(RestoreResult)
}

// RestoreResult is the outcome of a Restore.
type RestoreResult struct {
	Outcome RecoveryOutcome
	Session Session
	// Missed are the stored packets for the session's rooms after its
	// offset, in order.
	Missed []StoredPacket
	// Floor: a stored packet at or before this offset is in Missed or was
	// not for the session; the socket drops one that still comes live.
	Floor Offset
	// Err is the storage's error (RecoveryFailed), for the log.
	Err error
}

// StoredPacket is an encoded event packet whose last argument is its
// offset.
type StoredPacket struct {
	Offset Offset
	Msgs   []*engineio.Message
}

// Offset is the position of a stored packet, written as the client sees
// it: "<milliseconds>-<sequence>", as a Redis stream id. Offsets grow with
// every stored packet of a namespace, on every process.
type Offset struct{ Millis, Seq uint64 }

// ParseOffset reads "<ms>-<seq>" (decimal, at most 20 digits each).
func ParseOffset(s string) (Offset, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok || len(a) == 0 || len(b) == 0 || len(a) > 20 || len(b) > 20 {
		return Offset{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || a[0] == '+' || b[0] == '+' {
		return Offset{}, false
	}
	return Offset{ms, seq}, true
}

func (o Offset) String() string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, o.Millis, 10)
	b = append(b, '-')
	return string(strconv.AppendUint(b, o.Seq, 10))
}

// Before reports whether o comes before p.
func (o Offset) Before(p Offset) bool {
	return o.Millis < p.Millis || o.Millis == p.Millis && o.Seq < p.Seq
}

// MarshalText writes the offset as the client sees it.
func (o Offset) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (o *Offset) UnmarshalText(b []byte) error {
	v, ok := ParseOffset(string(b))
	if !ok {
		return fmt.Errorf("socketio: bad offset %q", b)
	}
	*o = v
	return nil
}

// EncodePacket encodes p as the Engine.IO messages a socket is sent: the
// text, then one binary message per attachment (for adapters that replay
// what they stored).
func EncodePacket(p *Packet) ([]*engineio.Message, error) { return encodeMessages(p) }

// Storable reports whether a broadcast is stored for recovery: an event
// without an acknowledgement, not volatile.
func Storable(p *Packet, opts *BroadcastOptions) bool {
	return (p.Type == PacketEvent || p.Type == PacketBinaryEvent) && p.ID == NoID && !opts.Flags.Volatile
}

// WithOffset returns a copy of an event packet with off appended to its
// arguments.
func WithOffset(p *Packet, off Offset) *Packet {
	args, _ := p.Data.([]any)
	data := make([]any, len(args), len(args)+1)
	copy(data, args)
	q := *p
	q.Data = append(data, off.String())
	return &q
}

// recoverableReasons are the disconnections a client comes back from (as
// Node's list, with the engine's "slow client").
var recoverableReasons = map[string]bool{
	engineio.ReasonTransportClose: true,
	engineio.ReasonTransportError: true,
	engineio.ReasonPingTimeout:    true,
	engineio.ReasonForced:         true,
	engineio.ReasonShutdown:       true,
	engineio.ReasonSlowClient:     true,
}

// sessions returns the namespace's SessionAdapter when recovery is on.
func (n *Namespace) sessions() SessionAdapter {
	if sa, ok := n.adapter.(SessionAdapter); ok && sa.Recovering() {
		return sa
	}
	return nil
}

// restore is the last step before a socket connects: it recovers the
// session the client asked for, or gives the socket a new one. It calls
// done once, at once or later from another goroutine, and never with an
// error: a failed recovery is a fresh session.
func (n *Namespace) restore(s *Socket, done func(error)) {
	sa := n.sessions()
	if sa == nil || s.Protocol() == 3 {
		done(nil) // no session: socket.io-client v2 cannot recover
		return
	}
	if s.askPID == "" {
		s.pid = sa.NewSessionID()
		done(nil)
		return
	}
	opts := n.srv.opts.Recovery
	owner := ""
	if opts.Owner != nil {
		owner = opts.Owner(s)
	}
	before := sa.SocketRooms(s)
	var joined atomic.Bool
	sa.RestoreSession(&Restore{
		PID:    s.askPID,
		Offset: s.askOffset,
		Owner:  owner,
		Join: func(rooms []string) []string {
			joined.Store(true)
			s.Join(rooms...)
			return sa.SocketRooms(s)
		},
		Done: func(res RestoreResult) {
			n.srv.recovery.outcomes[res.Outcome].Add(1)
			if res.Outcome == Recovered {
				s.adopt(res)
			} else {
				if joined.Load() {
					for _, r := range sa.SocketRooms(s) {
						if !slices.Contains(before, r) {
							s.Leave(r)
						}
					}
				}
				s.pid = sa.NewSessionID()
				if res.Err != nil {
					n.srv.opts.Logger.Warn("socketio: session recovery failed; a fresh session instead",
						"nsp", n.name, "err", res.Err)
				}
			}
			if opts.OnRestore != nil {
				opts.OnRestore(s, res.Outcome)
			}
			done(nil)
		},
	})
}

// adopt makes s the socket of a recovered session (still pending). A
// socket of this process that still holds the session's id (its client
// came back before its transport was seen to fail) is disconnected first.
func (s *Socket) adopt(res RestoreResult) {
	if old := s.nsp.Socket(res.Session.SID); old != nil && old != s {
		old.Disconnect(false)
	}
	s.setID(res.Session.SID)
	s.pid = res.Session.PID
	s.recovered = true
	s.replay = res.Missed
	s.mu.Lock()
	s.floor, s.hasFloor = res.Floor, true
	if !s.hasStart || s.start.Before(res.Floor) {
		s.start, s.hasStart = res.Floor, true
	}
	s.mu.Unlock()
}

// session describes s for its adapter.
func (s *Socket) session(sa SessionAdapter) Session {
	s.mu.Lock()
	start := s.start
	s.mu.Unlock()
	owner := ""
	if fn := s.nsp.srv.opts.Recovery.Owner; fn != nil {
		owner = fn(s)
	}
	return Session{PID: s.pid, SID: s.ID(), Owner: owner, Rooms: sa.SocketRooms(s), Start: start}
}

// captureStart records, once, the offset after which the socket is sent
// stored packets: at its first join (under the adapter's lock, so that no
// stored delivery falls between) or when it connects.
func (s *Socket) captureStart(last Offset) {
	s.mu.Lock()
	if !s.hasStart {
		s.start, s.hasStart = last, true
	}
	s.mu.Unlock()
}

// saveSessions keeps the sessions of every connected socket, before the
// connections close (shutdown). A socket whose session is kept here is not
// kept again when it ends.
func (s *Server) saveSessions(ctx context.Context) error {
	s.mu.RLock()
	nsps := make([]*Namespace, 0, len(s.nsps))
	for _, n := range s.nsps {
		nsps = append(nsps, n)
	}
	s.mu.RUnlock()
	var errs []error
	for _, n := range nsps {
		sa := n.sessions()
		if sa == nil {
			continue
		}
		var list []Session
		n.eachSocket(func(sock *Socket) {
			if sock.pid == "" || !sock.markPersisted() {
				return
			}
			list = append(list, sock.session(sa))
		})
		if len(list) == 0 {
			continue
		}
		if err := sa.SaveSessions(ctx, list); err != nil {
			errs = append(errs, fmt.Errorf("socketio: keep the sessions of %s: %w", n.name, err))
			continue
		}
		s.recovery.persisted.Add(uint64(len(list)))
	}
	return errors.Join(errs...)
}

// markPersisted flags a connected socket's session as kept at shutdown;
// false if the socket is not connected or is flagged already.
func (s *Socket) markPersisted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != socketConnected || s.persisted {
		return false
	}
	s.persisted = true
	return true
}

// endSession tells the adapter that a connected socket ended.
func (s *Socket) endSession(reason string) {
	sa := s.nsp.sessions()
	if sa == nil || s.pid == "" {
		return
	}
	s.mu.Lock()
	persisted := s.persisted
	s.mu.Unlock()
	if persisted {
		return // kept at shutdown already
	}
	keep := recoverableReasons[reason]
	sa.EndSession(s.session(sa), keep)
	if keep {
		s.nsp.srv.recovery.persisted.Add(1)
	}
}
