// Package socketio is a Socket.IO server over package engineio: protocol v5
// (socket.io-client v3 and v4) and v4 (socket.io-client v2, over Engine.IO
// v3), namespaces with middleware, acknowledgements in both directions,
// rooms and broadcasts, and an Adapter interface with an in-memory
// implementation (adapters across processes live in socketio/redis).
//
// # Who owns what
//
// Each Engine.IO session has one client. Its packets are handled on the
// session's strand: engineio hands messages over one at a time, in order,
// holding the session's read lock (see package engineio), and everything
// the strand touches needs no lock of its own: the decoder, the backlog
// kept while a namespace connect waits for an asynchronous middleware, and
// every socket's event handlers, which the application registers from
// OnConnection and event handlers (both run on the strand). When a
// middleware calls next later, from another goroutine, the connect resumes
// on the strand through Session.Serialize, and the packets that arrived
// meanwhile are handled after it, in order: nothing overtakes a namespace
// CONNECT.
//
// Everything else may be reached from any goroutine (broadcasts from other
// connections and from the adapter's subscriber, disconnects, timers) and
// is guarded:
//
//   - client.mu: the client's connected sockets, its closed flag and the
//     connect timer.
//   - Socket.mu: the socket's state (pending, connected, closed), packets
//     sent before its CONNECT reply, its acknowledgement callbacks, its
//     data and disconnect handlers, and recovery's offsets (the session's
//     start, the replay's floor). The CONNECT reply, and the packets a
//     recovered session missed, are written under it, so no packet can be
//     written before them.
//   - the adapter's lock: rooms and every socket's room list.
//   - Namespace.mu: the namespace's sockets, middlewares and handlers.
//   - Server.stats: atomic counters, added to from the strand (packets and
//     connect backlogs too large) and the connect timer, read by anyone.
//
// Recovery (recovery.go) adds: a socket's id is an atomic (a restore
// replaces it while the socket is pending); what the client asked to
// recover, the session's pid and the replay are the strand's until the
// socket connects and fixed after; the in-memory adapter's recovery lock
// comes before the adapter's own (it is held across stamping and delivering
// a stored packet, and across a restore's join and read).
//
// Event handlers and middlewares run on the strand, and a websocket's
// strand is an event-loop goroutine that reads many connections: a handler
// must not block (one that waits for its own client's acknowledgement
// would wait for a packet its own wait keeps from being read); long work
// belongs on a goroutine of its own.
//
// Locks are taken in this order only: adapter, namespace, socket, client.
// No goroutine is started per connection or per socket; timers
// (connect timeout, acknowledgement timeouts) are time.AfterFunc.
package socketio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// Options configure a Server. Zero values are the documented defaults.
type Options struct {
	// ConnectTimeout closes a connection that has joined no namespace in
	// time: 45 s.
	ConnectTimeout time.Duration
	// RootIsNotAConnect: the namespace "/", which socket.io-client v2
	// (Engine.IO v3) joins implicitly, does not count as joining a
	// namespace for ConnectTimeout, so such a client must join another
	// namespace in time. Off (Node's behaviour) by default.
	RootIsNotAConnect bool
	// MaxAttachments bounds the binary attachments of one packet: 10.
	MaxAttachments int
	// Adapter builds each namespace's adapter; nil is NewMemoryAdapter.
	Adapter AdapterFactory
	// Logger receives protocol errors (at debug level) and handler panics;
	// nil discards.
	Logger *slog.Logger
	// Recovery configures connection state recovery (recovery.go); off
	// unless Recovery.Window is set or the adapter recovers by itself.
	Recovery RecoveryOptions
}

// Server is a Socket.IO server.
type Server struct {
	opts       Options
	engine     *engineio.Server
	maxPayload int

	mu   sync.RWMutex
	nsps map[string]*Namespace

	recovery recoveryCounters
	stats    Stats
}

// Stats are the connection limits' counters; read them with Server.Stats.
type Stats struct {
	// ConnectTimeouts: connections closed because they had joined no
	// namespace (see RootIsNotAConnect) within ConnectTimeout.
	ConnectTimeouts atomic.Int64
	// PacketsTooLarge: connections closed because a binary packet (its
	// header and the attachments received so far) exceeded the payload
	// limit.
	PacketsTooLarge atomic.Int64
	// BacklogTooLarge: connections closed because what they sent while
	// a middleware decided their namespace CONNECT exceeded the payload
	// limit.
	BacklogTooLarge atomic.Int64
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// NewServer returns a server over a new Engine.IO server configured by
// eopts. The namespace "/" exists from the start.
func NewServer(eopts engineio.Options, opts Options) (*Server, error) {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 45 * time.Second
	}
	if opts.MaxAttachments <= 0 {
		opts.MaxAttachments = 10
	}
	if opts.Recovery.MaxPackets <= 0 {
		opts.Recovery.MaxPackets = 1000
	}
	if opts.Adapter == nil {
		if ro := opts.Recovery; ro.Window > 0 {
			opts.Adapter = func(n *Namespace) Adapter { return newMemoryRecovery(n, ro.Window, ro.MaxPackets, time.Now) }
		} else {
			opts.Adapter = func(n *Namespace) Adapter { return NewMemoryAdapter(n) }
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if eopts.MaxPayload <= 0 {
		eopts.MaxPayload = 1_000_000
	}
	s := &Server{opts: opts, maxPayload: eopts.MaxPayload, nsps: make(map[string]*Namespace)}
	eng, err := engineio.NewServer(eopts, engineHandler{s})
	if err != nil {
		return nil, err
	}
	s.engine = eng
	s.Of("/")
	return s, nil
}

// ServeHTTP serves the Engine.IO path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

// Engine is the Engine.IO server underneath.
func (s *Server) Engine() *engineio.Server { return s.engine }

// Of returns the namespace name, creating it.
func (s *Server) Of(name string) *Namespace {
	if name == "" || name[0] != '/' {
		name = "/" + name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.nsps[name]; ok {
		return n
	}
	n := &Namespace{name: name, srv: s, sockets: make(map[string]*Socket)}
	n.adapter = s.opts.Adapter(n)
	s.nsps[name] = n
	return n
}

// namespace returns the namespace name if it exists.
func (s *Server) namespace(name string) *Namespace {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nsps[name]
}

// Close closes every connection (clients see a transport close and
// reconnect), then the adapters. It returns when done or when ctx ends.
// With recovery on, the sessions of the connected sockets are kept first
// (for at most half of what remains of ctx, and 5 s), so that their
// clients find them on whichever process they reconnect to.
func (s *Server) Close(ctx context.Context) error {
	serr := s.closeSessions(ctx)
	err := s.engine.Close(ctx)
	if err == nil {
		err = serr
	}
	s.mu.RLock()
	nsps := make([]*Namespace, 0, len(s.nsps))
	for _, n := range s.nsps {
		nsps = append(nsps, n)
	}
	s.mu.RUnlock()
	for _, n := range nsps {
		if cerr := n.adapter.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("socketio: close adapter of %s: %w", n.name, cerr)
		}
	}
	return err
}

// closeSessions keeps the connected sockets' sessions before a shutdown
// closes their connections.
func (s *Server) closeSessions(ctx context.Context) error {
	limit := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)/2)
	}
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return s.saveSessions(sctx)
}

// engineHandler receives the Engine.IO sessions.
type engineHandler struct{ s *Server }

func (h engineHandler) Open(sess *engineio.Session) engineio.Receiver {
	c := newClient(h.s, sess)
	if sess.Protocol() == 3 {
		// Socket.IO v4 joins "/" implicitly.
		c.connect("/", nil)
	}
	return c
}

// newID returns a socket id: 20 random URL-safe base64 characters.
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
