// Package relay lets every process of a cluster serve any Engine.IO request:
// a polling request, or a websocket upgrade, that names a session held by
// another process is relayed to that process and its answer relayed back,
// so that a load balancer need not be sticky.
//
// The session id tells the owner without exposing its address: each process
// draws a random tag of 12 lowercase hex digits, starts every session id it
// makes with it (NewID), and keeps the key switchboard:node:<tag> → its
// advertised host:port in Redis, with a 15 s expiry refreshed every 5 s.
// A request whose tag is found there is relayed to that address, marked
// with the header X-Switchboard-Forwarded so that it is never relayed
// twice; one whose tag is not found (an owner gone, or an id made up) is
// left to the engine, which answers 400 "Session ID unknown". This is the
// scheme of the Node peer (shared/peer, "Polling without sticky
// sessions"), so that Node and Switchboard processes behind one balancer
// relay to each other.
//
// Polling requests are relayed over a pool of keep-alive HTTP connections
// to each owner, a POST's body streamed and capped at the engine's largest
// payload (plus one byte, so that the owner sees that it is too large and
// answers as it would directly). A websocket upgrade becomes a TCP tunnel
// to the owner: the owner holds the websocket, this process copies bytes.
//
// # Who owns what
//
// Serve runs on the request's goroutine. The registry's cache (registry.mu)
// is shared by every request; a lookup in flight is shared by the requests
// that wait for it. The registration loop is one goroutine, started by
// Start and ended by Close. A tunnel is two goroutines started by the
// upgrade request, which then returns: one copies each way, and both end
// when either side closes, or when Close closes every tunnel (and waits for
// them).
package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ForwardedHeader marks a relayed request; a request that carries it is
// never relayed again (shared with the Node peer).
const ForwardedHeader = "X-Switchboard-Forwarded"

// OwnerHeader carries, on a relayed answer, the owner's value of
// Options.NodeHeader; the receiving process's own value stays in
// NodeHeader.
const OwnerHeader = "X-Switchboard-Owner"

// TagLen is the length of the owner's tag at the start of a session id.
const TagLen = 12

// Options configure a Relay.
type Options struct {
	// Redis holds the registry of the cluster's processes. Required.
	Redis goredis.Cmdable
	// Path is the Engine.IO path; only requests for exactly this path are
	// relayed. "" is "/socket.io/".
	Path string
	// MaxPayload is the largest POST body the engine accepts; a relayed
	// body is cut one byte past it. Required.
	MaxPayload int64
	// AnswerTimeout bounds how long an owner may take to answer a relayed
	// polling request, a parked GET included (which the owner holds up to
	// its ping interval). Required.
	AnswerTimeout time.Duration
	// NodeHeader is the response header in which each process names
	// itself; a relayed answer keeps the receiving process's value there
	// and carries the owner's in OwnerHeader. "" leaves headers alone.
	NodeHeader string
	// Logger receives registration trouble; nil discards.
	Logger *slog.Logger
}

// Stats are counters for monitoring.
type Stats struct {
	Relayed     atomic.Int64 // polling requests relayed to their owner
	Tunneled    atomic.Int64 // websocket upgrades tunneled to their owner
	Tunnels     atomic.Int64 // tunnels open now
	UnknownNode atomic.Int64 // requests whose tag names no registered process
	Unreachable atomic.Int64 // requests whose owner did not answer
}

// Relay relays requests for sessions held by other processes. Build it with
// New, Start it when the process serves, Close it when the process stops.
type Relay struct {
	opts   Options
	logger *slog.Logger
	reg    *registry
	http   *http.Transport
	dialer net.Dialer
	stats  Stats

	// ctx ends with Close: relayed requests in flight are cancelled.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	tunnels map[*tunnel]struct{}
	closed  bool
	open    sync.WaitGroup // tunnels not yet ended

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// dialTimeout bounds a connection to an owner: processes of one cluster
// are near each other, and an owner that does not accept at once is
// treated as gone.
const dialTimeout = time.Second

// New builds a relay with a fresh tag.
func New(opts Options) (*Relay, error) {
	if opts.Redis == nil {
		return nil, errors.New("relay: redis is required")
	}
	if opts.MaxPayload <= 0 || opts.AnswerTimeout <= 0 {
		return nil, errors.New("relay: max payload and answer timeout must be positive")
	}
	if opts.Path == "" {
		opts.Path = "/socket.io/"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var b [TagLen / 2]byte
	_, _ = rand.Read(b[:])
	r := &Relay{
		opts:    opts,
		logger:  logger,
		reg:     newRegistry(opts.Redis, hex.EncodeToString(b[:]), logger),
		dialer:  net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second},
		tunnels: make(map[*tunnel]struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.http = &http.Transport{
		Proxy:       nil, // never through an HTTP proxy from the environment
		DialContext: r.dialer.DialContext,
		// A parked GET holds its connection: allow as many idle ones as
		// polling sessions come through; they close when idle for long.
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     30 * time.Second,
		// The answer comes when the owner has something to send, at most
		// a ping interval later.
		ResponseHeaderTimeout:  opts.AnswerTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		// The client's Accept-Encoding goes through as it is; the owner's
		// answer is relayed as it comes.
		DisableCompression: true,
	}
	return r, nil
}

// Tag is this process's tag.
func (r *Relay) Tag() string { return r.reg.tag }

// Stats returns the relay's counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// NewID returns a new session id: the tag and 20 random URL-safe base64
// characters (15 random bytes), 32 characters in all as in the Node peer.
// It is the engine's Options.NewID.
func (r *Relay) NewID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return r.reg.tag + base64.RawURLEncoding.EncodeToString(b[:])
}

// Start registers this process at advertise, the host:port at which the
// other processes reach it, and keeps the registration fresh until Close.
// Redis need not answer yet: the registration is retried. Only the first
// call counts.
func (r *Relay) Start(advertise string) error {
	if err := CheckAdvertise(advertise); err != nil {
		return fmt.Errorf("relay: advertise address %q: %w", advertise, err)
	}
	r.startOnce.Do(func() {
		r.reg.addr = advertise
		go r.reg.run(r.stop, r.done)
	})
	return nil
}

// Close stops relaying: requests in flight are cancelled (their owners see
// the client go), tunnels close (their clients reconnect), and the
// registration is removed so that the other processes answer this
// process's sessions "Session ID unknown" at once. It is idempotent and
// bounded by ctx.
func (r *Relay) Close(ctx context.Context) error {
	var err error
	r.closeOnce.Do(func() {
		r.cancel()
		r.mu.Lock()
		r.closed = true
		open := make([]*tunnel, 0, len(r.tunnels))
		for t := range r.tunnels {
			open = append(open, t)
		}
		r.mu.Unlock()
		for _, t := range open {
			t.close()
		}
		if started := r.stopLoop(); started {
			err = r.reg.deregister(ctx)
		}
		r.http.CloseIdleConnections()
		ended := make(chan struct{})
		go func() {
			r.open.Wait()
			close(ended)
		}()
		select {
		case <-ended:
		case <-ctx.Done():
			err = errors.Join(err, fmt.Errorf("relay: tunnels still open: %w", ctx.Err()))
		}
	})
	return err
}

// stopLoop ends the registration loop and reports whether it ran.
func (r *Relay) stopLoop() bool {
	started := true
	r.startOnce.Do(func() { started = false })
	close(r.stop)
	if started {
		<-r.done
	}
	return started
}

// Serve relays req, which names session sid that this process does not
// hold, to the session's owner, and reports whether it answered. It is the
// engine's Options.ForeignSession: on false, the engine answers 400
// "Session ID unknown". Only requests for the Engine.IO path, not relayed
// before, whose id starts with another process's tag are relayed: polling
// GET, HEAD and POST, and websocket upgrades.
func (r *Relay) Serve(w http.ResponseWriter, req *http.Request, sid string) bool {
	if req.URL.Path != r.opts.Path || r.ctx.Err() != nil { // closed: nothing is relayed any more
		return false
	}
	if _, relayed := req.Header[ForwardedHeader]; relayed {
		return false
	}
	tag, ok := tagOf(sid)
	if !ok || tag == r.reg.tag {
		return false
	}
	upgrade := isUpgrade(req)
	switch {
	case upgrade && req.Method == http.MethodGet:
	case !upgrade && (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodPost):
	default:
		return false
	}
	target := r.reg.lookup(tag)
	if target == "" {
		r.stats.UnknownNode.Add(1)
		return false
	}
	var answered bool
	if upgrade {
		answered = r.tunnel(w, req, tag, target)
	} else {
		answered = r.relayHTTP(w, req, tag, target)
	}
	return answered
}

// unreachable records that target, registered for tag, did not answer.
// When it could not even be reached (a refused or timed-out connection: the
// owner is gone), its tag is unknown here for a moment, so that the
// requests of its sessions get their answer at once instead of each trying
// again; a failure later in the exchange fails that request only.
func (r *Relay) unreachable(tag, target string, err error) {
	r.stats.Unreachable.Add(1)
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		r.reg.markUnreachable(tag, target)
	}
	r.logger.Debug("relay: owner did not answer", "owner", target, "err", err)
}

// tagOf returns the owner's tag at the start of sid.
func tagOf(sid string) (string, bool) {
	if len(sid) <= TagLen {
		return "", false
	}
	for i := range TagLen {
		c := sid[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return sid[:TagLen], true
}

// CheckAdvertise reports whether addr is a host:port that other processes
// can dial: a host that is not empty nor a wildcard, a port from 1 to
// 65535.
func CheckAdvertise(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	if host == "" {
		return errors.New("the host must not be empty")
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return errors.New("the host must be an address the other processes can reach, not a wildcard")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("the port must be 1 to 65535")
	}
	return nil
}
