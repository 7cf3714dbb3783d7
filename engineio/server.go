// Package engineio is an Engine.IO server: protocol v4 (socket.io-client v3
// and v4) and v3 (socket.io-client v2), over HTTP long-polling and
// websocket, with the upgrade from one to the other. It knows nothing of
// Socket.IO: it carries messages, text or binary, between a client and a
// Handler.
//
// # Who owns what
//
// Websocket connections are taken over from net/http (hijacked) and
// registered with an epoll event loop (github.com/lesismal/nbio): an idle
// websocket has no goroutine and no buffer of its own. The loop's
// goroutines read, reassemble frames (wsReader, owned by the reading
// goroutine) and hand messages to the session. Long-polling requests run
// on net/http's goroutines; a parked GET keeps its goroutine while it waits.
//
// A Session's fields fall into three groups:
//
//   - Immutable after creation: id, protocol, Request, the Receiver.
//   - Session.mu guards the transport state: which transport is active, the
//     upgrade in progress, the polling queue and the parked GET, the
//     heartbeat phase, and whether the session is closed. It is held for
//     short sections only and never while writing to or closing a
//     connection (a connection's close callback takes it).
//   - Session.readMu is held while a message is handed to the Receiver.
//     Whoever holds it owns the Receiver: messages arrive one at a time, in
//     order, whichever transport carried them, and OnClose is called once,
//     never during OnMessage and never before it returns. Code that must
//     run in that order from another goroutine uses Session.Serialize.
//     Send never calls OnClose: a session a send overflows is notified from
//     a goroutine of its own, since senders may hold locks OnClose takes.
//
// Server.mu guards the session maps: the open sessions, and the polling
// sessions closed while their client had yet to poll their last packets,
// kept until it has (PingTimeout at most).
//
// Writes go straight to the connection from the goroutine that sends (the
// event loop buffers what the kernel does not take, up to
// Options.MaxQueuedBytes per connection); a broadcast encodes its frame once
// (Message). The heartbeat of each session is one time.AfterFunc timer,
// re-armed, never a goroutine of its own.
//
// A request that names a session this server does not hold goes to
// Options.ForeignSession, if set, on the request's goroutine and before
// the server has written anything: that is the seam through which a
// cluster relays it to the process that holds the session. The server
// keeps no state for such a request.
package engineio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
)

// Handler receives new sessions.
type Handler interface {
	// Open is called once for each new session, before any of its messages
	// and before the client has its session id. It returns the session's
	// Receiver. Open may send on the session.
	Open(s *Session) Receiver
}

// Receiver receives one session's messages; see the package notes for the
// order guarantees.
type Receiver interface {
	// OnMessage receives one message. data is valid only during the call.
	OnMessage(data []byte, binary bool)
	// OnClose is called once, when the session ends, with the reason
	// ("transport close", "transport error", "ping timeout", "parse error",
	// "forced close", "server shutting down", "slow client").
	OnClose(reason string)
}

// Options configure a Server. Zero values are the documented defaults.
type Options struct {
	// PingInterval and PingTimeout are the heartbeat: 25 s and 20 s.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// UpgradeTimeout bounds a websocket upgrade of a polling session:
	// 10 s.
	UpgradeTimeout time.Duration
	// MaxPayload is the largest message a client may send, and the largest
	// polling POST body: 1,000,000 bytes.
	MaxPayload int
	// MaxQueuedBytes bounds what may wait to be written to one session
	// (the polling queue, or what the kernel did not take on a websocket);
	// a session over it is closed ("slow client"): 4 MiB, and at least
	// twice MaxPayload.
	MaxQueuedBytes int
	// AllowEIO3 accepts protocol v3 (socket.io-client v2).
	AllowEIO3 bool
	// AllowOrigin is the CORS policy of the polling requests; it also
	// admits cross-origin websockets. nil sends no CORS headers.
	AllowOrigin func(origin string) bool
	// AllowRequest may refuse a handshake (403 Forbidden); nil allows all.
	AllowRequest func(r *http.Request) error
	// KeepHeaders are the request headers a session keeps (Request.Header);
	// nil keeps all of them. Keeping few saves memory per connection.
	KeepHeaders []string
	// NewID returns a new session id; nil is 20 random URL-safe base64
	// characters (15 random bytes). Ids must be unique and unguessable.
	NewID func() string
	// ForeignSession is offered every request that names a session
	// (sid) this server does not hold, except CORS preflights: polling
	// GETs and POSTs and websocket upgrades alike. It runs on the
	// request's goroutine before anything is written; it returns true when
	// it has answered the request (it may hijack the connection of an
	// upgrade), false to leave the answer to the server, which is
	// 400 "Session ID unknown". nil: every such request gets that answer.
	ForeignSession func(w http.ResponseWriter, r *http.Request, sid string) bool
	// Pollers is the number of event-loop goroutines for websockets: 0 is
	// the number of CPUs.
	Pollers int
	// Logger receives errors worth an operator's attention; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 20 * time.Second
	}
	if o.UpgradeTimeout <= 0 {
		o.UpgradeTimeout = 10 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1_000_000
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 4 << 20
	}
	o.MaxQueuedBytes = max(o.MaxQueuedBytes, 2*o.MaxPayload)
	if o.NewID == nil {
		o.NewID = newID
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Error codes of the Engine.IO error answers (400, or 403 for Forbidden).
const (
	CodeUnknownTransport    = 0
	CodeUnknownSID          = 1
	CodeBadHandshakeMethod  = 2
	CodeBadRequest          = 3
	CodeForbidden           = 4
	CodeUnsupportedProtocol = 5
)

var errorMessages = map[int]string{
	CodeUnknownTransport:    "Transport unknown",
	CodeUnknownSID:          "Session ID unknown",
	CodeBadHandshakeMethod:  "Bad handshake method",
	CodeBadRequest:          "Bad request",
	CodeForbidden:           "Forbidden",
	CodeUnsupportedProtocol: "Unsupported protocol version",
}

// The reasons a session closes, as Receiver.OnClose gets them.
const (
	ReasonShutdown       = "server shutting down"
	ReasonForced         = "forced close"
	ReasonTransportClose = "transport close"
	ReasonTransportError = "transport error"
	ReasonPingTimeout    = "ping timeout"
	ReasonParseError     = "parse error"
	ReasonSlowClient     = "slow client"
)

// ErrClosed is returned by sends on a closed session.
var ErrClosed = errors.New("engineio: session closed")

// Server is an Engine.IO server. Mount it (ServeHTTP) at the Engine.IO path.
type Server struct {
	opts    Options
	handler Handler
	// The event loop starts with the first websocket: nbio 1.6.8 loses a
	// Stop that comes before its pollers run, so a server closed right
	// after it was built (tests) would hang in Close.
	loopOnce sync.Once
	loop     *nbio.Engine
	loopErr  error
	// attachMu keeps a connection from joining the loop while Close stops
	// it (nbio 1.6.8 races AddConn against Stop): attach holds it shared,
	// Close exclusively, and an attach after Close sees closing.
	attachMu sync.RWMutex
	keep     []string // canonical KeepHeaders

	mu       sync.RWMutex
	sessions map[string]*Session
	lastPoll map[string]*Session // closed while polling: waiting for a last GET

	closing atomic.Bool
	stats   Stats
}

// Stats are counters for monitoring; read them with Server.Stats.
type Stats struct {
	Opened      atomic.Int64 // sessions opened
	Closed      atomic.Int64 // sessions closed
	SlowClients atomic.Int64 // sessions closed for exceeding MaxQueuedBytes
	Upgrades    atomic.Int64 // polling sessions upgraded to websocket
	// TooLarge: sessions closed for a message (websocket) or a POST body
	// (polling) over MaxPayload.
	TooLarge atomic.Int64
}

// NewServer returns a server; Close stops it.
func NewServer(opts Options, h Handler) (*Server, error) {
	opts.setDefaults()
	s := &Server{opts: opts, handler: h, sessions: make(map[string]*Session), lastPoll: make(map[string]*Session)}
	for _, k := range opts.KeepHeaders {
		s.keep = append(s.keep, http.CanonicalHeaderKey(k))
	}
	return s, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Count is the number of open sessions.
func (s *Server) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.sessions)
}

// Session returns the open session with id, or nil.
func (s *Server) Session(id string) *Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[id]
}

// Close closes every session (websocket clients get a close frame, parked
// polls a close packet: clients see "transport close" and reconnect) and
// stops the event loop. New requests are refused from the start. It returns
// when done or when ctx ends.
func (s *Server) Close(ctx context.Context) error {
	if s.closing.Swap(true) {
		return nil
	}
	s.mu.RLock()
	all := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.RUnlock()
	for _, sess := range all {
		sess.close(ReasonShutdown, closeGoingAway)
	}
	s.mu.Lock()
	clear(s.lastPoll) // no last GET will be answered
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.attachMu.Lock()
		defer s.attachMu.Unlock()
		if loop := s.eventLoop(false); loop != nil {
			loop.Stop()
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("engineio: close: %w", ctx.Err())
	}
}

// eventLoop returns the event loop, starting it if start is set and it is
// not started yet (nil if it is not running).
func (s *Server) eventLoop(start bool) *nbio.Engine {
	if start && !s.closing.Load() {
		s.loopOnce.Do(func() {
			loop, err := newEventLoop(s)
			s.mu.Lock()
			s.loop, s.loopErr = loop, err
			s.mu.Unlock()
		})
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loop
}

func (s *Server) register(sess *Session) {
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	s.stats.Opened.Add(1)
	if s.closing.Load() {
		// A handshake that passed the closing check as Close listed the
		// sessions: Close did not see this one.
		sess.close(ReasonShutdown, closeGoingAway)
	}
}

// unregister forgets a closed session; with lastPoll, its id still reaches
// it until forgetLastPoll, so that its client's next polls get its last
// packets.
func (s *Server) unregister(sess *Session, lastPoll bool) {
	s.mu.Lock()
	found := s.sessions[sess.id] == sess
	if found {
		delete(s.sessions, sess.id)
		if lastPoll {
			s.lastPoll[sess.id] = sess
		}
	}
	s.mu.Unlock()
	if found {
		s.stats.Closed.Add(1)
	}
}

func (s *Server) forgetLastPoll(sess *Session) {
	s.mu.Lock()
	if s.lastPoll[sess.id] == sess {
		delete(s.lastPoll, sess.id)
	}
	s.mu.Unlock()
}

// pollTarget is the session a request with sid is for: an open one, or
// one closed while polling whose client has yet to poll its last packets.
func (s *Server) pollTarget(sid string) *Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sess := s.sessions[sid]; sess != nil {
		return sess
	}
	return s.lastPoll[sid]
}

// ServeHTTP serves the Engine.IO path: handshakes, polling requests and
// websocket upgrades.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin != "" && invalidHeaderValue(origin) {
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil && !preflight && s.opts.ForeignSession != nil {
		// Before the CORS headers: the answer comes from the session's
		// owner, with its own.
		if sid := q.Get("sid"); sid != "" && s.pollTarget(sid) == nil && s.opts.ForeignSession(w, r, sid) {
			return
		}
	}
	s.cors(w, r, origin)
	if preflight {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		writeError(w, http.StatusBadRequest, CodeUnknownTransport)
		return
	}
	protocol := 3 // as in Node, a missing EIO means v3
	if q.Get("EIO") == "4" {
		protocol = 4
	}
	upgrade := isWebsocketUpgrade(r)
	if r.Method == http.MethodHead {
		// HEAD answers what GET would, without its side effects: no
		// session is opened and no queued packet is taken.
		if sid := q.Get("sid"); sid != "" && s.Session(sid) == nil {
			writeError(w, http.StatusBadRequest, CodeUnknownSID)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		return
	}
	if sid := q.Get("sid"); sid != "" {
		sess := s.pollTarget(sid)
		if sess == nil {
			writeError(w, http.StatusBadRequest, CodeUnknownSID)
			return
		}
		if sess.protocol != protocol {
			writeError(w, http.StatusBadRequest, CodeBadRequest)
			return
		}
		if upgrade {
			if transport != "websocket" {
				writeError(w, http.StatusBadRequest, CodeBadRequest)
				return
			}
			s.serveUpgrade(w, r, sess, protocol)
			return
		}
		if transport != "polling" {
			writeError(w, http.StatusBadRequest, CodeBadRequest)
			return
		}
		switch r.Method {
		case http.MethodGet:
			sess.servePoll(w, r)
		case http.MethodPost:
			sess.servePost(w, r)
		default:
			writeError(w, http.StatusBadRequest, CodeBadRequest)
		}
		return
	}

	// A handshake.
	if r.Method != http.MethodGet {
		writeError(w, http.StatusBadRequest, CodeBadHandshakeMethod)
		return
	}
	if protocol == 3 && !s.opts.AllowEIO3 {
		writeError(w, http.StatusBadRequest, CodeUnsupportedProtocol)
		return
	}
	if transport == "websocket" && !upgrade || transport == "polling" && upgrade {
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	if s.closing.Load() {
		writeErrorStatus(w, http.StatusServiceUnavailable, CodeBadRequest, "Server shutting down")
		return
	}
	if s.opts.AllowRequest != nil {
		if err := s.opts.AllowRequest(r); err != nil {
			writeError(w, http.StatusForbidden, CodeForbidden)
			return
		}
	}
	if transport == "websocket" {
		s.serveUpgrade(w, r, nil, protocol)
		return
	}
	s.handshakePolling(w, r, protocol, q.Get("b64") == "")
}

// cors answers for the Engine.IO routes as Node's cors middleware does with
// a credentials policy: the request's origin, echoed, when allowed.
func (s *Server) cors(w http.ResponseWriter, r *http.Request, origin string) {
	if origin == "" || s.opts.AllowOrigin == nil {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.opts.AllowOrigin(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		// A client's extraHeaders are its own business, as with Node's
		// cors middleware, which reflects what the preflight asks for.
		if want := r.Header.Get("Access-Control-Request-Headers"); want != "" && !invalidHeaderValue(want) {
			h.Set("Access-Control-Allow-Headers", want)
		}
		h.Set("Access-Control-Max-Age", "600")
	}
}

// newSession builds a session of protocol for r; the caller registers it.
func (s *Server) newSession(r *http.Request, protocol int) *Session {
	sess := &Session{
		id:       s.opts.NewID(),
		protocol: protocol,
		srv:      s,
		req:      s.requestInfo(r),
	}
	return sess
}

func (s *Server) requestInfo(r *http.Request) Request {
	info := Request{
		RawQuery:   r.URL.RawQuery,
		Path:       r.URL.Path,
		RemoteAddr: r.RemoteAddr,
		Secure:     r.TLS != nil,
		Time:       time.Now(),
	}
	if s.keep == nil {
		info.Header = r.Header.Clone()
		if r.Host != "" {
			info.Header.Set("Host", r.Host) // net/http moves it out of Header
		}
		return info
	}
	for _, k := range s.keep {
		v := r.Header[k]
		if k == "Host" && r.Host != "" {
			v = []string{r.Host}
		}
		if len(v) > 0 {
			if info.Header == nil {
				info.Header = make(http.Header, len(s.keep))
			}
			info.Header[k] = []string{v[0]}
		}
	}
	return info
}

// openPacket is the handshake's open packet data.
func (s *Server) openPacket(sess *Session, upgrades bool) string {
	up := `[]`
	if upgrades {
		up = `["websocket"]`
	}
	return fmt.Sprintf(`{"sid":"%s","upgrades":%s,"pingInterval":%d,"pingTimeout":%d,"maxPayload":%d}`,
		sess.id, up, s.opts.PingInterval.Milliseconds(), s.opts.PingTimeout.Milliseconds(), s.opts.MaxPayload)
}

// Request is what a session keeps of the HTTP request that opened it.
type Request struct {
	Header     http.Header // the headers in Options.KeepHeaders
	RawQuery   string
	Path       string
	RemoteAddr string
	Secure     bool
	Time       time.Time
}

// Query parses the request's query.
func (r *Request) Query() url.Values {
	q, _ := url.ParseQuery(r.RawQuery)
	return q
}

func isWebsocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerContainsToken(r.Header, "Connection", "upgrade")
}

func headerContainsToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// invalidHeaderValue reports characters Node refuses in a header value.
func invalidHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, status, code int) {
	writeErrorStatus(w, status, code, errorMessages[code])
}

func writeErrorStatus(w http.ResponseWriter, status, code int, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"code":%d,"message":%q}`, code, message)
}
