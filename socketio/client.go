package socketio

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// client is the Socket.IO side of one Engine.IO session.
type client struct {
	srv  *Server
	sess *engineio.Session

	// Owned by the strand.
	dec     decoder
	paused  bool // a namespace connect waits for an asynchronous middleware
	backlog []backlogged
	pending int // bytes in backlog

	mu      sync.Mutex
	sockets []*Socket // connected, at most one per namespace
	closed  bool
	timer   *time.Timer // connect timeout; nil once a namespace is joined
}

type backlogged struct {
	data   []byte
	binary bool
}

var _ engineio.Receiver = (*client)(nil)

func newClient(s *Server, sess *engineio.Session) *client {
	c := &client{srv: s, sess: sess}
	c.dec.maxAttachments = s.opts.MaxAttachments
	c.dec.maxBytes = s.maxPayload
	// Under mu, which connectTimeout takes: the timer may fire before
	// AfterFunc returns.
	c.mu.Lock()
	c.timer = time.AfterFunc(s.opts.ConnectTimeout, c.connectTimeout)
	c.mu.Unlock()
	return c
}

func (c *client) connectTimeout() {
	c.mu.Lock()
	expired := c.timer != nil && !c.closed
	c.mu.Unlock()
	if expired {
		c.srv.stats.ConnectTimeouts.Add(1)
		c.sess.Close()
	}
}

// OnMessage is the strand's entry: one Engine.IO message.
func (c *client) OnMessage(data []byte, binary bool) {
	defer c.recoverPanic()
	if c.paused {
		c.pending += len(data)
		if c.pending > c.srv.maxPayload {
			c.srv.stats.BacklogTooLarge.Add(1)
			c.fail(errors.New("socketio: too much sent during a namespace connect"))
			return
		}
		c.backlog = append(c.backlog, backlogged{bytes.Clone(data), binary})
		return
	}
	c.handle(data, binary)
}

// recoverPanic, deferred by whatever runs handlers on the strand, closes
// the connection of a handler that panicked, rather than the process.
func (c *client) recoverPanic() {
	if p := recover(); p != nil {
		c.srv.opts.Logger.Error("socketio: panic while handling a packet",
			"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		c.sess.Close()
	}
}

func (c *client) handle(data []byte, binary bool) {
	var p *Packet
	var err error
	if binary {
		p, err = c.dec.addBinary(data)
	} else {
		p, err = c.dec.addText(data)
	}
	if err != nil {
		if errors.Is(err, errAttachTooBig) {
			c.srv.stats.PacketsTooLarge.Add(1)
		}
		c.fail(err)
		return
	}
	if p != nil {
		c.dispatch(p)
	}
}

// fail ends the connection on a protocol error, as Node does.
func (c *client) fail(err error) {
	c.srv.opts.Logger.Debug("socketio: closing a connection on a protocol error", "err", err, "session", c.sess.ID())
	c.sess.Close()
}

func (c *client) dispatch(p *Packet) {
	nsp := p.Nsp
	var auth map[string]any
	if p.Type == PacketConnect {
		if c.sess.Protocol() == 3 {
			// v4 of the protocol: the auth is the namespace's query.
			nsp, auth = splitQuery(nsp)
		} else if m, ok := p.Data.(map[string]any); ok {
			auth = m
		}
	}
	s := c.socket(nsp)
	switch {
	case s == nil && p.Type == PacketConnect:
		c.connect(nsp, auth)
	case s != nil && p.Type != PacketConnect && p.Type != PacketConnectError:
		s.onPacket(p)
	default:
		// A packet for a namespace not joined, or a second CONNECT.
		c.fail(fmt.Errorf("socketio: unexpected packet type %d for %q", p.Type, nsp))
	}
}

func splitQuery(nsp string) (string, map[string]any) {
	path, raw, _ := strings.Cut(nsp, "?")
	q, _ := url.ParseQuery(raw)
	auth := make(map[string]any, len(q))
	for k, v := range q {
		auth[k] = v[len(v)-1]
	}
	return path, auth
}

func (c *client) socket(nsp string) *Socket {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sockets {
		if s.nsp.name == nsp {
			return s
		}
	}
	return nil
}

// connect joins namespace name: the middlewares run, then the socket is
// connected or refused. If a middleware answers later, from another
// goroutine, the strand pauses: packets received meanwhile wait in the
// backlog and are handled after the connect, in order.
func (c *client) connect(name string, auth map[string]any) {
	n := c.srv.namespace(name)
	if n == nil {
		// The same shape for every protocol, as Node sends it.
		_ = c.writePacket(&Packet{Type: PacketConnectError, Nsp: name, ID: NoID,
			Data: map[string]any{"message": "Invalid namespace"}})
		return
	}
	s := newSocket(n, c, auth)
	var state atomic.Int32 // 0 running, 1 answered synchronously, 2 waiting
	var syncErr error
	n.run(s, func(err error) {
		// Stored before the swap that publishes it: next may come from
		// another goroutine before run returns, and connect reads syncErr
		// as soon as it sees state 1.
		syncErr = err
		if state.CompareAndSwap(0, 1) {
			return
		}
		ran := c.sess.Serialize(func() {
			defer c.recoverPanic() // on the middleware's goroutine
			c.connected(s, err)
			c.resume()
		})
		if !ran {
			s.abandon()
		}
	})
	if !state.CompareAndSwap(0, 2) {
		c.connected(s, syncErr)
		return
	}
	c.paused = true
}

// resume handles the backlog once a connect is done (on the strand).
func (c *client) resume() {
	c.paused = false
	for len(c.backlog) > 0 && !c.paused {
		m := c.backlog[0]
		c.backlog = c.backlog[1:]
		c.pending -= len(m.data)
		c.handle(m.data, m.binary)
	}
	if !c.paused {
		c.backlog, c.pending = nil, 0
	}
}

// connected completes a connect: err refuses it.
func (c *client) connected(s *Socket, err error) {
	if err != nil {
		s.abandon()
		c.refuse(s.nsp.name, err)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.abandon()
		return
	}
	c.sockets = append(c.sockets, s)
	if c.timer != nil && !(c.srv.opts.RootIsNotAConnect && c.sess.Protocol() == 3 && s.nsp.name == "/") {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	s.nsp.add(s)
	if sa := s.nsp.sessions(); sa != nil && s.pid != "" {
		s.captureStart(sa.LastOffset())
		sa.SaveSession(s.session(sa))
	}
	s.onConnect()
	s.nsp.connected(s)
}

// refuse sends CONNECT_ERROR for namespace name, refused by a middleware.
func (c *client) refuse(name string, err error) {
	var ce *ConnectError
	if !errors.As(err, &ce) {
		ce = &ConnectError{Message: err.Error()}
	}
	var data any
	if c.sess.Protocol() == 3 {
		// Protocol v4 carries one value: the data if any, else the
		// message (as Node does).
		data = ce.Data
		if data == nil {
			data = ce.Message
		}
	} else {
		m := map[string]any{"message": ce.Message}
		if ce.Data != nil {
			m["data"] = ce.Data
		}
		data = m
	}
	_ = c.writePacket(&Packet{Type: PacketConnectError, Nsp: name, ID: NoID, Data: data})
}

// OnClose ends every socket of the connection.
func (c *client) OnClose(reason string) {
	c.mu.Lock()
	c.closed = true
	socks := c.sockets
	c.sockets = nil
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	c.dec.reset()
	c.backlog, c.pending = nil, 0
	for _, s := range socks {
		s.onClose(reason)
	}
}

// remove forgets a socket that left its namespace.
func (c *client) remove(s *Socket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.sockets, s); i >= 0 {
		c.sockets = slices.Delete(c.sockets, i, i+1)
	}
}

// disconnectAll disconnects every socket (each gets a DISCONNECT packet)
// and closes the connection.
func (c *client) disconnectAll() {
	c.mu.Lock()
	socks := slices.Clone(c.sockets)
	c.mu.Unlock()
	for _, s := range socks {
		s.Disconnect(false)
	}
	c.sess.Close()
}

// writePacket encodes and sends one packet.
func (c *client) writePacket(p *Packet) error {
	msgs, err := encodeMessages(p)
	if err != nil {
		return err
	}
	return c.write(msgs)
}

// write sends the messages of one packet, together.
func (c *client) write(msgs []*engineio.Message) error {
	if len(msgs) == 1 {
		return c.sess.Send(msgs[0])
	}
	return c.sess.SendAll(msgs)
}

// encodeMessages encodes p as its Engine.IO messages: the text, then one
// binary message per attachment.
func encodeMessages(p *Packet) ([]*engineio.Message, error) {
	text, atts, err := p.encode()
	if err != nil {
		return nil, err
	}
	msgs := make([]*engineio.Message, 0, 1+len(atts))
	msgs = append(msgs, engineio.NewTextMessage(text))
	for _, a := range atts {
		msgs = append(msgs, engineio.NewBinaryMessage(a))
	}
	return msgs, nil
}

// ConnectError refuses a namespace connect; the client's connect_error
// gets Message and, with protocol v5, Data. A v4 client (socket.io-client
// v2) gets Data, or Message when Data is nil, as Node sends them.
type ConnectError struct {
	Message string
	Data    any
}

func (e *ConnectError) Error() string { return e.Message }
