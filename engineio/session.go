package engineio

import (
	"sync"
	"sync/atomic"
	"time"
)

// Session is one Engine.IO connection, whichever transport carries it.
type Session struct {
	id       string
	protocol int
	srv      *Server
	req      Request
	recv     Receiver // set by Open under readMu, before any message

	// readMu is held while a message is handed to recv (see the package
	// notes); closeWanted/closeNotified hand OnClose to whoever gets it.
	readMu        sync.Mutex
	closeWanted   atomic.Bool
	closeNotified atomic.Bool

	mu           sync.Mutex
	closed       bool
	reason       string
	ws           *wsConn // the websocket transport; nil while polling
	flushing     bool    // queued packets are moving to ws: sends queue meanwhile
	upgrade      *wsConn // a websocket the session is upgrading to
	upgradeTimer *time.Timer
	queue        []outPacket // polling: packets for the next GET
	queued       int         // bytes in queue
	pollCh       chan struct{}
	pollWaiting  bool // a GET is parked on pollCh
	posting      bool // a POST is being read
	noop         bool // answer the next (or parked) GET with a noop
	binaryPoll   bool // v3: the client reads binary payloads

	// Heartbeat: one timer, re-armed. due is when it should fire; a fire
	// before due is stale (the timer was re-armed meanwhile).
	timer        *time.Timer
	due          time.Time
	awaitingPong bool // v4: a ping is out
	refreshed    bool // v4: a message refreshed the pong deadline once
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// Protocol is the Engine.IO protocol revision: 3 or 4.
func (s *Session) Protocol() int { return s.protocol }

// Request is what the session kept of the request that opened it.
func (s *Session) Request() *Request { return &s.req }

// Transport names the current transport: "polling" or "websocket".
func (s *Session) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != nil {
		return "websocket"
	}
	return "polling"
}

// Send sends m. It does not block: a websocket write that the kernel does
// not take is buffered by the event loop, a polling message waits for the
// next GET; past Options.MaxQueuedBytes the session is closed. Send never
// calls OnClose itself, so it may be called with locks that OnClose takes.
func (s *Session) Send(m *Message) error { return s.send(outPacket{msg: m}) }

// SendAll sends msgs back to back: no other message comes between them (a
// Socket.IO packet and its binary attachments).
func (s *Session) SendAll(msgs []*Message) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if ws := s.ws; ws != nil && !s.flushing {
		s.mu.Unlock()
		var b []byte
		for _, m := range msgs {
			b = append(b, m.wsFrame(s.protocol)...)
		}
		return ws.write(b)
	}
	for _, m := range msgs {
		if err := s.enqueueLocked(outPacket{msg: m}); err != nil {
			s.mu.Unlock()
			s.closeFromSend()
			return err
		}
	}
	s.wakeLocked()
	s.mu.Unlock()
	return nil
}

// Close closes the session: the client sees the transport close.
func (s *Session) Close() { s.close(ReasonForced, closeNormal) }

// Serialize runs fn as if it were a message handler: after the message
// being handled (if any) and before the next, and not after OnClose. It
// reports whether fn ran (not if the session is closing).
func (s *Session) Serialize(fn func()) bool {
	ran := !s.closeWanted.Load()
	s.withReadLock(func() {
		if ran = !s.closeWanted.Load(); ran {
			fn()
		}
	})
	s.notifyClose()
	return ran
}

// withReadLock runs fn holding readMu, which is released even if fn
// panics (the panic goes on): a Receiver's panic must not leave the
// session's strand locked for ever.
func (s *Session) withReadLock(fn func()) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	fn()
}

// open asks the handler for the session's receiver and starts the
// heartbeat. Messages cannot arrive before it returns: its caller has not
// yet answered the handshake (polling) or attached the connection to the
// event loop (websocket).
func (s *Session) open() {
	s.readMu.Lock()
	s.recv = s.srv.handler.Open(s)
	s.readMu.Unlock()
	s.mu.Lock()
	if s.protocol == 3 {
		s.armLocked(s.srv.opts.PingInterval + s.srv.opts.PingTimeout)
	} else {
		s.armLocked(s.srv.opts.PingInterval)
	}
	s.mu.Unlock()
	s.notifyClose() // if Open closed the session
}

// deliver hands one message to the receiver.
func (s *Session) deliver(data []byte, binary bool) {
	s.withReadLock(func() {
		if !s.closeWanted.Load() {
			s.recv.OnMessage(data, binary)
		}
	})
	s.notifyClose()
}

// notifyClose calls OnClose once the session is closed, from whichever
// goroutine can take readMu: the closer, or the goroutine handling a
// message when the close came, as soon as it is done.
func (s *Session) notifyClose() {
	for s.closeWanted.Load() && !s.closeNotified.Load() {
		if !s.readMu.TryLock() {
			return // its holder calls notifyClose when it unlocks
		}
		if s.recv == nil {
			s.readMu.Unlock()
			return // open calls notifyClose once the receiver is set
		}
		if s.closeNotified.CompareAndSwap(false, true) {
			s.recv.OnClose(s.reason)
		}
		s.readMu.Unlock()
	}
}

// close ends the session for reason. wsCode is the close code sent to a
// websocket client (0: none, the connection is already gone). Packets
// still queued for polling go out on the client's next GET, then the close
// packet (see servePoll).
func (s *Session) close(reason string, wsCode int) {
	if s.shut(reason, wsCode) {
		s.notifyClose()
	}
}

// closeFromSend closes the session whose queue a send overflowed. OnClose
// runs on a goroutine of its own, as it does when the event loop finds a
// websocket's buffer full: the sender may hold locks that OnClose needs (a
// Socket.IO broadcast holds its adapter's, and OnClose leaves the rooms).
func (s *Session) closeFromSend() {
	if s.shut(ReasonSlowClient, closeNormal) {
		// What the client did not read is dropped at once: a polling
		// session lingers for its last GET, which gets the close packet
		// only, not the queue that closed it.
		s.mu.Lock()
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		s.srv.stats.SlowClients.Add(1)
		go s.notifyClose()
	}
}

// shut does close's work but for OnClose, and reports whether it did (the
// session was open).
func (s *Session) shut(reason string, wsCode int) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	s.reason = reason
	ws, up := s.ws, s.upgrade
	s.upgrade = nil
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.upgradeTimer != nil {
		s.upgradeTimer.Stop()
	}
	// A polling session stays reachable until its client has polled what
	// was queued and then the close packet, in separate answers (see
	// servePoll), for at most PingTimeout: the last packets are typically a
	// DISCONNECT that must reach the client so that it does not reconnect.
	linger := ws == nil && reason != ReasonShutdown
	s.wakeLocked()
	s.mu.Unlock()

	s.srv.unregister(s, linger)
	if linger {
		time.AfterFunc(s.srv.opts.PingTimeout, func() { s.srv.forgetLastPoll(s) })
	}
	if ws != nil {
		ws.close(wsCode)
	}
	if up != nil {
		up.close(wsCode)
	}
	s.closeWanted.Store(true)
	return true
}

// send writes or queues one packet.
func (s *Session) send(it outPacket) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if ws := s.ws; ws != nil && !s.flushing {
		s.mu.Unlock()
		return ws.writePacket(it)
	}
	if err := s.enqueueLocked(it); err != nil {
		s.mu.Unlock()
		s.closeFromSend()
		return err
	}
	s.wakeLocked()
	s.mu.Unlock()
	return nil
}

// enqueueLocked queues it for polling, within MaxQueuedBytes.
func (s *Session) enqueueLocked(it outPacket) error {
	if s.queued+it.size() > s.srv.opts.MaxQueuedBytes {
		return ErrClosed
	}
	s.queue = append(s.queue, it)
	s.queued += it.size()
	return nil
}

func (it outPacket) size() int {
	if it.msg != nil {
		return it.msg.size()
	}
	return len(it.data) + 16
}

// wakeLocked wakes a parked GET.
func (s *Session) wakeLocked() {
	if s.pollWaiting {
		select {
		case s.pollCh <- struct{}{}:
		default:
		}
	}
}

// flushTo moves the queued packets to ws, which the session has just made
// its transport (s.flushing is set): packets sent meanwhile queue behind
// them, so the order holds.
func (s *Session) flushTo(ws *wsConn) {
	for {
		s.mu.Lock()
		items := s.queue
		s.queue, s.queued = nil, 0
		if len(items) == 0 || s.closed {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, it := range items {
			if err := ws.writePacket(it); err != nil {
				return // the connection is closing; its close ends the session
			}
		}
	}
}

// armLocked (re)arms the heartbeat timer to fire after d.
func (s *Session) armLocked(d time.Duration) {
	s.due = time.Now().Add(d)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.onTimer)
		return
	}
	s.timer.Reset(d)
}

// onTimer is the heartbeat: in v4 it sends a ping, then closes the session
// if no pong came within PingTimeout; in v3 it closes the session when the
// client has not pinged within PingInterval+PingTimeout.
func (s *Session) onTimer() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if now := time.Now(); now.Before(s.due) {
		s.timer.Reset(s.due.Sub(now))
		s.mu.Unlock()
		return
	}
	if s.protocol == 3 || s.awaitingPong {
		s.mu.Unlock()
		s.close(ReasonPingTimeout, closeNormal)
		return
	}
	s.awaitingPong, s.refreshed = true, false
	s.armLocked(s.srv.opts.PingTimeout)
	s.mu.Unlock()
	_ = s.send(outPacket{typ: PacketPing})
}

// onPacket handles a packet of the session's active transport.
func (s *Session) onPacket(p packet) {
	switch p.typ {
	case PacketMessage:
		if s.protocol != 3 {
			s.mu.Lock()
			// A client busy sending may see its pong delayed: any packet
			// refreshes the deadline once per ping, as in Node.
			if s.awaitingPong && !s.refreshed {
				s.refreshed = true
				s.armLocked(s.srv.opts.PingTimeout)
			}
			s.mu.Unlock()
		}
		s.deliver(p.data, p.binary)
	case PacketPing:
		if s.protocol != 3 {
			s.close(ReasonTransportError, closeProtocolError) // v4 clients do not ping
			return
		}
		s.mu.Lock()
		s.armLocked(s.srv.opts.PingInterval + s.srv.opts.PingTimeout)
		s.mu.Unlock()
		_ = s.send(outPacket{typ: PacketPong, data: string(p.data)})
	case PacketPong:
		if s.protocol == 3 {
			s.close(ReasonTransportError, closeProtocolError) // v3 servers ping no one
			return
		}
		s.mu.Lock()
		if s.awaitingPong {
			s.awaitingPong = false
			s.armLocked(s.srv.opts.PingInterval)
		}
		s.mu.Unlock()
	case PacketClose:
		s.close(ReasonTransportClose, closeNormal)
	}
	// open, upgrade and noop packets on the active transport are ignored.
}
