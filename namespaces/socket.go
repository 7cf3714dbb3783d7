// Package namespaces is everything Socket.IO: the /socket namespace, the
// refusal of every other namespace, the auth and connection middleware, the
// binding of the message router to sockets, and the Dispatcher over rooms.
package namespaces

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/handlers"
	sio "github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
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
	Adapter sio.AdapterConstructor
	// Remote reports whether deliveries should be published to the other
	// processes (the adapter's transport is healthy); nil means always.
	Remote func() bool
	// Observer counts events; nil counts nothing.
	Observer Observer

	PingInterval time.Duration // Engine.IO heartbeat; required
	PingTimeout  time.Duration // required
	// MaxPayloadBytes is the largest Engine.IO message; required.
	MaxPayloadBytes int64
	// ConnectTimeout closes a connection that joins no namespace in time;
	// zero is the library default (45 s).
	ConnectTimeout time.Duration
	// AllowOrigin is the CORS policy for the Engine.IO routes and the
	// websocket upgrade; nil allows only same-origin pages.
	AllowOrigin func(origin string) bool

	// RateLimit is events per second per socket (0 disables the limiter) and
	// RateBurst the bucket size.
	RateLimit float64
	RateBurst int

	// Now and NewID default to the wall clock and random ids.
	Now   func() time.Time
	NewID func() string
}

// App is the mounted Socket.IO server.
type App struct {
	io       *sio.Server
	nsp      sio.Namespace
	rooms    *Rooms
	router   *handlers.Router
	verifier TokenVerifier
	logger   *slog.Logger
	observer Observer
	now      func() time.Time
	rate     float64
	burst    int
	handler  http.Handler
	holds    sync.Map // engine connection id → *hold (see hold.go)
}

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

	opts := sio.DefaultServerOptions()
	opts.SetServeClient(false)
	opts.SetPingInterval(cfg.PingInterval)
	opts.SetPingTimeout(cfg.PingTimeout)
	opts.SetMaxHttpBufferSize(cfg.MaxPayloadBytes)
	opts.SetAllowEIO3(true) // socket.io-client v2
	if cfg.ConnectTimeout > 0 {
		opts.SetConnectTimeout(cfg.ConnectTimeout)
	}
	if cfg.AllowOrigin != nil {
		// Credentials make the library answer with the request's origin
		// rather than "*", which browsers require for credentialed requests.
		opts.SetCors(&types.Cors{Origin: cfg.AllowOrigin, Credentials: true})
	}
	if cfg.Adapter != nil {
		opts.SetAdapter(cfg.Adapter)
	}
	io := sio.NewServer(nil, opts)

	a := &App{
		io:       io,
		verifier: cfg.Verifier,
		logger:   cfg.Logger,
		observer: cfg.Observer,
		now:      cfg.Now,
		rate:     cfg.RateLimit,
		burst:    cfg.RateBurst,
	}
	// The main namespace exists in every Socket.IO server. Socket.IO v2
	// clients join it implicitly, so they are let in (it has no handlers);
	// everyone else gets the same error as for a namespace that does not
	// exist.
	io.Use(func(s *sio.Socket, next func(*sio.ExtendedError)) {
		if s.Conn().Protocol() == 3 {
			next(nil)
			return
		}
		next(sio.NewExtendedError("Invalid namespace", nil))
	})

	a.nsp = io.Of(Name, nil)
	a.rooms = &Rooms{nsp: a.nsp, remote: cfg.Remote, observer: cfg.Observer}
	reg := handlers.NewRegistry()
	handlers.Register(reg, handlers.Deps{Dispatcher: a.rooms, Now: cfg.Now, NewID: cfg.NewID})
	a.router = handlers.NewRouter(reg, cfg.Logger)

	a.nsp.Use(a.authenticate)
	a.nsp.Use(a.joinUserRoom)
	_ = a.nsp.On("connection", func(args ...any) {
		if s, ok := args[0].(*sio.Socket); ok {
			a.bind(s)
		}
	})
	a.handler = slimSessionRequests(gateHandshake(io.ServeHandler(nil)))
	// Registered after socket.io's own listener (ServeHandler binds it), so
	// the Client's listeners exist when holdData wraps them.
	_ = io.Engine().On("connection", a.holdData)
	return a, nil
}

// Handler serves the Engine.IO path; mount it at /socket.io/.
func (a *App) Handler() http.Handler { return a.handler }

// Dispatcher delivers to user rooms across processes.
func (a *App) Dispatcher() handlers.Dispatcher { return a.rooms }

// Sockets is the number of sockets connected to /socket in this process.
func (a *App) Sockets() int { return int(a.nsp.Sockets().Len()) }

// Close closes every Engine.IO connection (clients see a transport close and
// reconnect, possibly to another process) and the adapters. It returns when
// done or when ctx ends, whichever is first: a client that never completes
// its close must not hold the process.
func (a *App) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Transports first, so clients start reconnecting elsewhere at
		// once; then the sockets' state and the adapters.
		a.io.Engine().Close()
		a.io.Close(nil)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close socket.io: %w", ctx.Err())
	}
}
