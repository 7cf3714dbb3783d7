// Package server owns the process: configuration, construction and
// lifecycle, the gin engine and every HTTP route, the Redis client's life,
// tokens, health and metrics.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/switchboard-rt/switchboard/namespaces"
	"github.com/switchboard-rt/switchboard/relay"
	"github.com/switchboard-rt/switchboard/socketio"
)

// Server is one Switchboard process.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	nodeID  string
	tokens  *Tokens
	metrics *metrics
	redis   *redisLink   // nil without REDIS_URL
	relay   *relay.Relay // nil without REDIS_URL
	app     *namespaces.App
	http    *http.Server
	debug   *http.Server // nil unless DebugAddr

	ln           net.Listener
	serveErr     chan error
	shuttingDown atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds a server from cfg, validated again here because embedders and
// tests build configurations by hand. static is the demo page's files.
// Nothing listens until Open.
func New(cfg Config, logger *slog.Logger, static fs.FS) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = defaultAddr
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.weakSecret() {
		// Never the secret itself, nor its length.
		logger.Warn("JWT_SECRET is shorter than 32 bytes: tokens signed with it can be forged by guessing it; use at least 32 random bytes, such as the output of openssl rand -base64 32",
			"variable", "JWT_SECRET", "min_bytes", minJWTSecretBytes)
	}
	cfg.transportDefaults()
	gin.SetMode(gin.ReleaseMode) // the debug mode prints plain text to stderr
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		nodeID:   cfg.nodeID(),
		tokens:   NewTokens(cfg.JWTSecret, time.Now),
		serveErr: make(chan error, 2),
	}
	s.metrics = newMetrics(func() float64 { return float64(s.app.Sockets()) })
	s.metrics.recovery = func() socketio.RecoveryStats { return s.app.RecoveryStats() }

	nsCfg := namespaces.Config{
		Verifier:        s.tokens,
		Logger:          logger,
		Observer:        s.metrics,
		NodeID:          s.nodeID,
		PingInterval:    cfg.PingInterval,
		PingTimeout:     cfg.PingTimeout,
		MaxPayloadBytes: cfg.MaxPayloadBytes,
		// A slow consumer is closed past this, whatever its transport.
		MaxQueuedBytes: int(cfg.MaxQueuedBytes),
		// A connection must join /socket with a valid token within this
		// (socket.io's own default is 45 s): nothing unauthenticated holds
		// memory for long.
		ConnectTimeout: cfg.ConnectTimeout,
		RateLimit:      cfg.RateLimit,
		RateBurst:      cfg.RateBurst,
		// Recovery: the in-memory adapter's; the Redis adapter gets the
		// same below.
		RecoveryWindow:     cfg.RecoveryWindow,
		RecoveryMaxPackets: cfg.RecoveryMaxPackets,
	}
	if len(cfg.CORSOrigins) > 0 {
		nsCfg.AllowOrigin = s.allowOrigin
	}
	if cfg.RedisURL != "" {
		link, err := newRedisLink(&cfg, logger, func() { s.metrics.adapterErrors.Add(1) })
		if err != nil {
			return nil, err
		}
		s.redis = link
		s.metrics.extra = append(s.metrics.extra, func(e *expo) { writeAdapterMetrics(e, link.adapter) })
		nsCfg.Adapter = link.builder()
		nsCfg.Remote = link.remote
		if err := s.newRelay(&nsCfg); err != nil {
			return nil, errors.Join(err, s.closeRedis(context.Background()))
		}
	}
	app, err := namespaces.New(nsCfg)
	if err != nil {
		return nil, errors.Join(err, s.closeRedis(context.Background()))
	}
	s.app = app

	handler, err := s.routes(static)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("routes: %w", err), s.closeRedis(context.Background()))
	}
	errLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	timeouts := &httpTimeouts{
		body: cfg.HTTPBodyTimeout, write: cfg.HTTPWriteTimeout,
		longPoll: cfg.PingInterval + cfg.PingTimeout, enginePath: enginePath,
		idle: cfg.HTTPIdleTimeout, header: readHeaderTimeout, now: time.Now,
	}
	s.metrics.extra = append(s.metrics.extra, limitMetrics(app.Engine().Stats(), app.Stats(), timeouts))
	s.http = &http.Server{
		Handler:           timeouts.wrap(handler),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ConnState:         timeouts.connState,
		ErrorLog:          errLog,
	}
	if cfg.DebugAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	}
	return s, nil
}

// Open binds the listener (a taken port fails here, at once) and starts
// serving in the background. Serve errors are reported by Run.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	if s.debug != nil {
		dln, err := net.Listen("tcp", s.cfg.DebugAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen debug %s: %w", s.cfg.DebugAddr, err)
		}
		go s.serve(s.debug, dln)
	}
	if s.redis != nil {
		s.redis.start()
	}
	advertise, err := s.startRelay()
	if err != nil {
		_ = ln.Close()
		return err
	}
	go s.serve(s.http, ln)
	s.logger.Info("listening", "addr", ln.Addr().String(), "node", s.nodeID, "redis", s.redis != nil,
		"dev_mode", s.cfg.DevMode, "dev_tokens", s.cfg.DevTokens, "events_api", s.cfg.APIKey != "",
		"advertise", advertise, "recovery_window", s.cfg.RecoveryWindow.String())
	return nil
}

func (s *Server) serve(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.serveErr <- err
	}
}

// Addr is the bound address (useful with port 0); nil before Open.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// NodeID names this process.
func (s *Server) NodeID() string { return s.nodeID }

// Run opens the server and serves until ctx ends, then drains within
// ShutdownTimeout. A drain that does not finish in time is logged, not
// failed: a client that never completes its close must not hold the process.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Open(); err != nil {
		return errors.Join(err, s.closeRedis(context.Background()))
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-s.serveErr:
		serveErr = fmt.Errorf("serve: %w", serveErr)
	}
	s.logger.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	// Keep a margin so that the process is gone within ShutdownTimeout.
	drain := s.cfg.ShutdownTimeout - min(s.cfg.ShutdownTimeout/10, 500*time.Millisecond)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		s.logger.Warn("drain incomplete", "err", err)
	} else {
		s.logger.Info("stopped")
	}
	return serveErr
}

// Shutdown drains the server: readiness goes 503, the listener closes, the
// Engine.IO connections close (clients reconnect elsewhere) in parallel with
// the HTTP drain, then the adapter and Redis close. It is idempotent and
// bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.shuttingDown.Store(true)
		if s.redis != nil {
			// Nothing is worth waiting on Redis for now; an unreachable
			// Redis must not hold the drain.
			s.redis.cancel()
		}
		var httpErr, appErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			// http.Server.Shutdown does not end websockets or long polls:
			// closing the engine does, concurrently.
			if httpErr = s.http.Shutdown(ctx); httpErr != nil {
				httpErr = errors.Join(fmt.Errorf("http shutdown: %w", httpErr), s.http.Close())
			}
		})
		wg.Go(func() {
			appErr = s.app.Close(ctx)
		})
		var relayErr error
		wg.Go(func() {
			// Relayed requests and tunnels end (their clients reconnect),
			// and the other processes stop relaying here.
			relayErr = s.closeRelay(ctx)
		})
		wg.Wait()
		var debugErr error
		if s.debug != nil {
			debugErr = s.debug.Close()
		}
		s.shutdownErr = errors.Join(httpErr, appErr, relayErr, debugErr, s.closeRedis(ctx))
	})
	return s.shutdownErr
}

// closeRedis closes the Redis link; publishes still queued get until ctx
// ends (and at most publishCloseGrace) to be written.
func (s *Server) closeRedis(ctx context.Context) error {
	if s.redis == nil {
		return nil
	}
	if err := s.redis.close(ctx); err != nil {
		return fmt.Errorf("redis close: %w", err)
	}
	return nil
}
