package engineio

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
)

// handshakeWriteTimeout bounds the write of the 101 answer on a hijacked
// connection (the only blocking write of a websocket's life).
const handshakeWriteTimeout = 10 * time.Second

// wsConn is one websocket connection: the active transport of a session,
// or the transport a polling session is upgrading to.
type wsConn struct {
	sess *Session
	// nb is registered with the event loop; nil in fallback mode. It is
	// stored by the request's goroutine and read by the loop's: the epoll
	// registration orders the two, but only for the kernel, not for the
	// race detector, hence the atomic.
	nb  atomic.Pointer[nbio.Conn]
	raw net.Conn   // fallback mode (not a TCP connection): read by a goroutine
	wmu sync.Mutex // fallback mode: serialises writes

	// Owned by the goroutine reading the connection.
	rd        wsReader
	upgrading bool // not yet the session's transport (waiting for "5")

	closed atomic.Bool
}

// newEventLoop starts the epoll loop that reads every websocket.
func newEventLoop(s *Server) (*nbio.Engine, error) {
	// nbio logs through a process-wide logger in plain text; stderr must
	// carry JSON only, so its lines go through slog's default logger.
	logging.SetLogger(nbioLogger{})
	g := nbio.NewEngine(nbio.Config{
		Name:               "engineio",
		NPoller:            pollers(s.opts.Pollers),
		MaxWriteBufferSize: s.opts.MaxQueuedBytes,
	})
	g.OnData(func(c *nbio.Conn, data []byte) {
		if ws, ok := c.Session().(*wsConn); ok {
			ws.onData(data)
		}
	})
	g.OnClose(func(c *nbio.Conn, err error) {
		if ws, ok := c.Session().(*wsConn); ok {
			ws.onClosed(err)
		}
	})
	if err := g.Start(); err != nil {
		return nil, err
	}
	return g, nil
}

// serveUpgrade accepts a websocket: a new session over websocket (sess
// nil) or the upgrade of a polling session.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request, sess *Session, protocol int) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Method != http.MethodGet || r.Header.Get("Sec-WebSocket-Version") != "13" || !validKey(key) {
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	if !s.websocketOriginAllowed(r) {
		writeError(w, http.StatusForbidden, CodeForbidden)
		return
	}
	// ws.upgrading belongs to the connection's reader, the event loop,
	// once attached: this goroutine reads its own copy.
	upgrading := sess != nil
	ws := &wsConn{sess: sess, upgrading: upgrading}
	ws.rd.maxMessage = s.opts.MaxPayload
	if sess != nil && !sess.reserveUpgrade(ws) {
		closeAfterHandshake(w, key)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		if sess != nil {
			sess.abortUpgrade(ws)
		}
		writeError(w, http.StatusInternalServerError, CodeBadRequest)
		return
	}
	if brw.Reader.Buffered() > 0 {
		// RFC 6455 §4.1: a client sends nothing before the 101 answer.
		_ = conn.Close()
		if sess != nil {
			sess.abortUpgrade(ws)
		}
		return
	}
	resp := handshakeResponse(w.Header(), key)
	if sess == nil {
		sess = s.newSession(r, protocol)
		ws.sess = sess
		// Sends queue until the connection is attached to the loop; the
		// open packet goes first, in a write of its own after the 101 (a
		// client may attach its message listener only once it is open).
		sess.ws, sess.flushing = ws, true
		sess.queue = []outPacket{{typ: PacketOpen, data: s.openPacket(sess, false)}}
	}
	_ = conn.SetDeadline(time.Now().Add(handshakeWriteTimeout))
	_, err = conn.Write(resp)
	_ = conn.SetDeadline(time.Time{})
	if err != nil {
		_ = conn.Close()
		if upgrading {
			sess.abortUpgrade(ws)
		}
		return
	}
	if !upgrading {
		s.register(sess)
		sess.open()
	}
	if err := s.attach(ws, conn); err != nil {
		if !errors.Is(err, errClosing) {
			s.opts.Logger.Warn("engineio: websocket not attached", "err", err)
		}
		if upgrading {
			sess.abortUpgrade(ws)
		} else {
			sess.close(ReasonTransportError, 0)
		}
		return
	}
	if !upgrading {
		sess.flushTo(ws)
	}
}

// errClosing: the server is closing; the connection was closed, not
// attached.
var errClosing = errors.New("engineio: server closing")

// attach hands the connection to the event loop, or to a goroutine of its
// own when it is not a plain TCP connection (the loop needs a file
// descriptor).
func (s *Server) attach(ws *wsConn, conn net.Conn) error {
	s.attachMu.RLock()
	defer s.attachMu.RUnlock()
	if s.closing.Load() {
		_ = conn.Close()
		return errClosing
	}
	nb, err := nbio.NBConn(conn)
	if err != nil {
		ws.wmu.Lock()
		ws.raw = conn
		ws.wmu.Unlock()
		if ws.closed.Load() { // closed (an upgrade timed out) while attaching
			_ = conn.Close()
			return nil
		}
		go ws.readLoop()
		return nil
	}
	loop := s.eventLoop(true)
	if loop == nil {
		_ = nb.Close()
		return fmt.Errorf("engineio: no event loop: %w", s.loopError())
	}
	nb.SetSession(ws)
	ws.nb.Store(nb)
	if _, err := loop.AddConn(nb); err != nil {
		return err
	}
	// close stores closed before it loads nb; this stored nb before
	// loading closed: one of the two sees the other.
	if ws.closed.Load() {
		_ = nb.Close()
	}
	return nil
}

func handshakeResponse(extra http.Header, key string) []byte {
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(acceptKey(key))
	b.WriteString("\r\n")
	for k, vs := range extra {
		if k == "Content-Type" || k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// closeLinger bounds how long closeAfterHandshake waits for the client's
// side of the close.
const closeLinger = time.Second

// closeAfterHandshake accepts a websocket only to close it at once: the
// answer to a second websocket for a session that is upgrading or has
// upgraded. The protocol says the server MUST close such a connection, and
// Node accepts it, then closes it: the client sees a close, not a failed
// handshake (which Node's ws client raises as an error event).
func closeAfterHandshake(w http.ResponseWriter, key string) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	defer conn.Close()
	resp := append(handshakeResponse(w.Header(), key), closeFrame(closeNormal)...)
	_ = conn.SetDeadline(time.Now().Add(handshakeWriteTimeout))
	if _, err := conn.Write(resp); err != nil {
		return
	}
	// Read until the client closes too, briefly: closing with its data
	// unread would reset the connection, and the reset may reach the
	// client before it has read the close frame.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(closeLinger))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<16))
}

func validKey(key string) bool {
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) == 16
}

// websocketOriginAllowed protects against cross-site websocket hijacking:
// a browser's websocket from another origin is refused unless AllowOrigin
// admits it. Clients that send no Origin (not browsers) are allowed.
func (s *Server) websocketOriginAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if s.opts.AllowOrigin != nil && s.opts.AllowOrigin(origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// reserveUpgrade makes ws the session's upgrade in progress; false if the
// session cannot upgrade (closed, upgraded or upgrading already).
func (s *Session) reserveUpgrade(ws *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ws != nil || s.upgrade != nil {
		return false
	}
	s.upgrade = ws
	s.upgradeTimer = time.AfterFunc(s.srv.opts.UpgradeTimeout, func() { s.abortUpgrade(ws) })
	return true
}

// abortUpgrade drops the upgrade to ws, if it is still in progress, and
// closes ws.
func (s *Session) abortUpgrade(ws *wsConn) {
	s.mu.Lock()
	current := s.upgrade == ws
	if current {
		s.upgrade = nil
		s.noop = false
		if s.upgradeTimer != nil {
			s.upgradeTimer.Stop()
		}
	}
	s.mu.Unlock()
	if current {
		ws.close(closeNormal)
	}
}

// onUpgradePacket handles a packet on a websocket that is not yet the
// session's transport: the probe ("2probe", answered "3probe", and the
// parked GET answered with a noop so the client can pause polling at
// once), then "5", which makes it the transport. Anything else aborts the
// upgrade.
func (s *Session) onUpgradePacket(ws *wsConn, p packet) {
	switch {
	case p.typ == PacketPing && string(p.data) == "probe":
		_ = ws.writePacket(outPacket{typ: PacketPong, data: "probe"})
		s.mu.Lock()
		if s.upgrade == ws {
			s.noop = true
			s.wakeLocked()
		}
		s.mu.Unlock()
	case p.typ == PacketUpgrade:
		s.mu.Lock()
		if s.upgrade != ws || s.closed {
			s.mu.Unlock()
			ws.close(closeNormal)
			return
		}
		if s.upgradeTimer != nil {
			s.upgradeTimer.Stop()
		}
		s.upgrade = nil
		s.ws, s.flushing = ws, true
		s.noop = true // a GET still parked gets a noop
		s.wakeLocked()
		s.mu.Unlock()
		ws.upgrading = false
		s.srv.stats.Upgrades.Add(1)
		s.flushTo(ws)
	default:
		s.abortUpgrade(ws)
	}
}

// onData is the event loop's read callback (or the fallback read loop's):
// it reassembles frames and hands over their packets.
func (ws *wsConn) onData(data []byte) {
	defer func() {
		if p := recover(); p != nil {
			// Input must never take the process down.
			slog.Default().Error("engineio: panic while reading a websocket", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ws.fail(closeProtocolError)
		}
	}()
	if err := ws.rd.feed(data, ws.onFrame); err != nil {
		code := closeProtocolError
		var we *wsError
		if errors.As(err, &we) {
			code = we.code
			if code == closeTooBig {
				ws.sess.srv.stats.TooLarge.Add(1)
			}
		}
		if errors.Is(err, errPeerClosed) {
			code = closeNormal
		}
		ws.fail(code)
	}
}

// fail ends the connection and, when it carried the session, the session.
func (ws *wsConn) fail(code int) {
	if ws.upgrading {
		ws.sess.abortUpgrade(ws)
		return
	}
	ws.sess.close(ReasonTransportError, code)
}

func (ws *wsConn) onFrame(op byte, payload []byte) error {
	var p packet
	var err error
	switch op {
	case opText:
		p, err = decodeText(payload, ws.sess.protocol)
	case opBinary:
		p, err = decodeBinaryFrame(payload, ws.sess.protocol)
	case opPing:
		frame := appendFrameHeader(make([]byte, 0, 2+len(payload)), opPong, len(payload))
		return ws.write(append(frame, payload...))
	case opPong:
		return nil
	case opClose:
		code := closeNormal
		if len(payload) >= 2 {
			code = int(payload[0])<<8 | int(payload[1])
		}
		if ws.upgrading {
			ws.sess.abortUpgrade(ws)
		} else {
			ws.sess.close(ReasonTransportClose, echoCloseCode(code))
		}
		return nil
	}
	if err != nil {
		return &wsError{closeInvalidData, err.Error()}
	}
	if ws.upgrading {
		ws.sess.onUpgradePacket(ws, p)
		return nil
	}
	ws.sess.onPacket(p)
	return nil
}

// echoCloseCode is the code the server answers a client's close with.
func echoCloseCode(code int) int {
	if code < 1000 || code == 1005 || code == 1006 || code == 1015 || code >= 5000 {
		return closeNormal
	}
	return code
}

// onClosed is the event loop's close callback.
func (ws *wsConn) onClosed(err error) {
	// The reader's buffers are left to the collector: the goroutine that
	// closed the connection may not be the one reading it.
	ws.closed.Store(true)
	s := ws.sess
	s.mu.Lock()
	if s.upgrade == ws {
		s.upgrade = nil
		s.noop = false
		if s.upgradeTimer != nil {
			s.upgradeTimer.Stop()
		}
		s.mu.Unlock()
		return
	}
	active := s.ws == ws && !s.closed
	s.mu.Unlock()
	if !active {
		return
	}
	reason := ReasonTransportClose
	if errors.Is(err, nbio.ErrOverflow) {
		reason = ReasonSlowClient
		s.srv.stats.SlowClients.Add(1)
	}
	s.close(reason, 0)
}

// writePacket writes one packet as a frame.
func (ws *wsConn) writePacket(it outPacket) error {
	if it.msg != nil {
		return ws.write(it.msg.wsFrame(ws.sess.protocol))
	}
	n := 1 + len(it.data)
	f := make([]byte, 0, frameHeaderLen(n)+n)
	f = appendFrameHeader(f, opText, n)
	f = appendText(f, it.typ, it.data)
	return ws.write(f)
}

// write writes b. The event loop buffers what the kernel does not take
// (up to MaxQueuedBytes; past it the connection is closed); b is not kept.
func (ws *wsConn) write(b []byte) error {
	if nb := ws.nb.Load(); nb != nil {
		_, err := nb.Write(b)
		return err
	}
	ws.wmu.Lock()
	defer ws.wmu.Unlock()
	if ws.raw == nil {
		return ErrClosed
	}
	_ = ws.raw.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout))
	_, err := ws.raw.Write(b)
	if err != nil {
		_ = ws.raw.Close()
	}
	return err
}

// close sends a close frame with code (none when 0) and closes the
// connection.
func (ws *wsConn) close(code int) {
	if ws.closed.Swap(true) {
		return
	}
	if code != 0 {
		_ = ws.write(closeFrame(code))
	}
	if nb := ws.nb.Load(); nb != nil {
		_ = nb.Close()
		return
	}
	ws.wmu.Lock()
	raw := ws.raw
	ws.wmu.Unlock()
	if raw != nil {
		_ = raw.Close()
	}
}

// readLoop reads a connection the event loop cannot take (fallback mode).
func (ws *wsConn) readLoop() {
	buf := make([]byte, 32<<10)
	for {
		n, err := ws.raw.Read(buf)
		if n > 0 {
			ws.onData(buf[:n])
		}
		if err != nil {
			ws.onClosed(err)
			return
		}
	}
}

// nbioLogger routes nbio's log lines to slog's default logger as JSON.
type nbioLogger struct{}

func (nbioLogger) SetLevel(int) {}
func (nbioLogger) Debug(format string, v ...any) {
	slog.Debug(fmt.Sprintf(format, v...), "source", "nbio")
}
func (nbioLogger) Info(format string, v ...any) {
	slog.Debug(fmt.Sprintf(format, v...), "source", "nbio")
}
func (nbioLogger) Warn(format string, v ...any) {
	slog.Warn(fmt.Sprintf(format, v...), "source", "nbio")
}
func (nbioLogger) Error(format string, v ...any) {
	slog.Error(fmt.Sprintf(format, v...), "source", "nbio")
}

// loopError says why there is no event loop.
func (s *Server) loopError() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.loopErr != nil {
		return s.loopErr
	}
	return ErrClosed
}

// pollers is the number of event-loop goroutines: n, or one per CPU the
// runtime uses (nbio's own default is a quarter of that, which on a small
// machine is one goroutine for every websocket: S2 measured 6,000 msg/s
// with one and 8,000 with two on 2 cores).
func pollers(n int) int {
	if n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}
