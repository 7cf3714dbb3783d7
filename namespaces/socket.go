// Package namespaces is the application's Socket.IO surface: the /socket
// namespace, the refusal of every other namespace, the auth and connection
// middleware, the binding of the message router to sockets, and the
// Dispatcher over user rooms.
package namespaces

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/socketio"
)

// Name is the application namespace.
const Name = "/socket"

// Config is what App needs. Zero values are documented per field.
type Config struct {
	// Verifier checks access tokens. Required.
	Verifier TokenVerifier
	// Logger receives internal errors and notable events. Required.
	Logger *slog.Logger
	// Adapter builds the room adapter for each namespace; nil is the
	// in-memory adapter (one process).
	Adapter socketio.AdapterFactory
	// Remote reports whether deliveries should be published to the other
	// processes (the adapter's transport is healthy); nil means always.
	Remote func() bool
	// Observer counts events; nil counts nothing.
	Observer Observer
	// NodeID names this process in answers to other processes
	// (switchboard:ping); "" is "switchboard".
	NodeID string

	PingInterval time.Duration // Engine.IO heartbeat; required
	PingTimeout  time.Duration // required
	// MaxPayloadBytes is the largest Engine.IO message; required.
	MaxPayloadBytes int64
	// MaxQueuedBytes bounds the bytes waiting to be written to one
	// connection; a connection over it is closed ("slow client", counted
	// in the engine's Stats.SlowClients). Zero is the engine's default
	// (4 MiB, at least twice MaxPayloadBytes).
	MaxQueuedBytes int
	// ConnectTimeout closes a connection that has not joined /socket in
	// time (v2 clients' implicit "/" does not count); zero is 45 s.
	ConnectTimeout time.Duration
	// AllowOrigin is the CORS policy for the Engine.IO routes and the
	// websocket upgrade; nil allows only same-origin pages.
	AllowOrigin func(origin string) bool

	// RateLimit is events per second per socket (0 disables the limiter) and
	// RateBurst the bucket size.
	RateLimit float64
	RateBurst int

	// RecoveryWindow turns on connection state recovery: a client back
	// within it gets its session and what it missed. Zero disables. With
	// Adapter nil it configures the in-memory adapter; an adapter across
	// processes is built with the same window by its owner (package
	// server).
	RecoveryWindow time.Duration
	// RecoveryMaxPackets bounds the packets kept per room for recovery;
	// zero is socketio's default (1000).
	RecoveryMaxPackets int

	// Now and NewID default to the wall clock and random ids.
	Now   func() time.Time
	NewID func() string

	// SessionID makes the Engine.IO session ids; nil is the engine's
	// default (random). ForeignSession is offered the Engine.IO requests
	// whose session this process does not hold
	// (engineio.Options.ForeignSession); nil answers them "Session ID
	// unknown".
	SessionID      func() string
	ForeignSession func(w http.ResponseWriter, r *http.Request, sid string) bool
}

// App is the mounted Socket.IO server.
type App struct {
	io       *socketio.Server
	nsp      *socketio.Namespace
	rooms    *Rooms
	router   *handlers.Router
	verifier TokenVerifier
	logger   *slog.Logger
	observer Observer
	remote   func() bool
	now      func() time.Time
	rate     float64
	burst    int
}

// keptHeaders are the request headers a connection keeps: the token's
// third source, and what fetchSockets reports of a client's origin.
var keptHeaders = []string{"Authorization", "Origin", "X-Forwarded-For"}

// New builds the Socket.IO server with the /socket namespace.
func New(cfg Config) (*App, error) {
	if cfg.Verifier == nil || cfg.Logger == nil {
		return nil, fmt.Errorf("namespaces: verifier and logger are required")
	}
	if cfg.PingInterval <= 0 || cfg.PingTimeout <= 0 || cfg.MaxPayloadBytes <= 0 {
		return nil, fmt.Errorf("namespaces: ping interval, ping timeout and max payload must be positive")
	}
	if cfg.RateLimit < 0 || (cfg.RateLimit > 0 && cfg.RateBurst < 1) {
		return nil, fmt.Errorf("namespaces: rate limit must be >= 0 and burst >= 1")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = rand.Text
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "switchboard"
	}
	io, err := socketio.NewServer(engineio.Options{
		PingInterval:   cfg.PingInterval,
		PingTimeout:    cfg.PingTimeout,
		MaxPayload:     int(cfg.MaxPayloadBytes),
		MaxQueuedBytes: cfg.MaxQueuedBytes,
		AllowEIO3:      true, // socket.io-client v2
		AllowOrigin:    cfg.AllowOrigin,
		KeepHeaders:    keptHeaders,
		NewID:          cfg.SessionID,
		ForeignSession: cfg.ForeignSession,
		Logger:         cfg.Logger,
	}, socketio.Options{
		ConnectTimeout:    cfg.ConnectTimeout,
		RootIsNotAConnect: true, // a v2 client must authenticate on /socket in time
		Adapter:           cfg.Adapter,
		Logger:            cfg.Logger,
		Recovery: socketio.RecoveryOptions{
			Window:     cfg.RecoveryWindow,
			MaxPackets: cfg.RecoveryMaxPackets,
			// A session is restored only to its user: the auth middleware
			// has run again by then.
			Owner: userOf,
			OnRestore: func(s *socketio.Socket, o socketio.RecoveryOutcome) {
				if o == socketio.RecoveryRefused {
					cfg.Logger.Warn("recovery refused: the session belongs to another user", "user", userOf(s))
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("namespaces: %w", err)
	}
	a := &App{
		io:       io,
		verifier: cfg.Verifier,
		logger:   cfg.Logger,
		observer: cfg.Observer,
		remote:   cfg.Remote,
		now:      cfg.Now,
		rate:     cfg.RateLimit,
		burst:    cfg.RateBurst,
	}
	// The main namespace exists in every Socket.IO server. Socket.IO v2
	// clients join it implicitly, so they are let in (it has no handlers);
	// everyone else gets the same error as for a namespace that does not
	// exist.
	io.Of("/").Use(func(s *socketio.Socket, next func(error)) {
		if s.Protocol() == 3 {
			next(nil)
			return
		}
		next(&socketio.ConnectError{Message: "Invalid namespace"})
	})

	a.nsp = io.Of(Name)
	a.rooms = &Rooms{nsp: a.nsp, remote: cfg.Remote, observer: cfg.Observer}
	reg := handlers.NewRegistry()
	handlers.Register(reg, handlers.Deps{Dispatcher: a.rooms, Now: cfg.Now, NewID: cfg.NewID})
	a.router = handlers.NewRouter(reg, cfg.Logger)

	a.nsp.Use(a.authenticate)
	a.nsp.Use(a.joinUserRoom)
	a.nsp.OnConnection(a.bind)
	nodeID := cfg.NodeID
	a.nsp.OnServerSideEmit(func(args []any, ack func(any)) {
		// Other processes of the cluster (Node's included) may ask who is
		// there; anything else is not ours to answer.
		if len(args) > 0 && args[0] == EventPing && ack != nil {
			ack(map[string]any{"node": nodeID})
		}
	})
	return a, nil
}

// EventPing is the server-side event (serverSideEmit) this process answers
// with {"node": NODE_ID}.
const EventPing = "switchboard:ping"

// Handler serves the Engine.IO path; mount it at /socket.io/.
func (a *App) Handler() http.Handler { return a.io }

// Dispatcher delivers to user rooms across processes.
func (a *App) Dispatcher() handlers.Dispatcher { return a.rooms }

// Sockets is the number of sockets connected to /socket in this process.
func (a *App) Sockets() int { return a.nsp.Len() }

// RecoveryStats counts what connection state recovery did.
func (a *App) RecoveryStats() socketio.RecoveryStats { return a.io.RecoveryStats() }

// Stats are the Socket.IO server's counters (connect timeouts, packets
// too large).
func (a *App) Stats() *socketio.Stats { return a.io.Stats() }

// Engine is the Engine.IO server (for its counters).
func (a *App) Engine() *engineio.Server { return a.io.Engine() }

// Close closes every Engine.IO connection (clients see a transport close and
// reconnect, possibly to another process) and the adapters. It returns when
// done or when ctx ends, whichever is first: a client that never completes
// its close must not hold the process.
func (a *App) Close(ctx context.Context) error {
	if err := a.io.Close(ctx); err != nil {
		return fmt.Errorf("close socket.io: %w", err)
	}
	return nil
}
