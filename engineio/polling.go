package engineio

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

// bodyPool holds the buffers polling requests read into and answer from.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBody() *bytes.Buffer { return bodyPool.Get().(*bytes.Buffer) }

func putBody(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	bodyPool.Put(b)
}

// handshakePolling opens a polling session and answers with its open
// packet; packets the handler sends while opening wait for the next GET,
// as in Node.
func (s *Server) handshakePolling(w http.ResponseWriter, r *http.Request, protocol int, binaryPoll bool) {
	sess := s.newSession(r, protocol)
	sess.binaryPoll = binaryPoll
	s.register(sess)
	sess.open()
	open := outPacket{typ: PacketOpen, data: s.openPacket(sess, true)}
	writePayload(w, []outPacket{open}, protocol, false)
}

// servePoll answers a GET: the queued packets at once, or when the first
// arrives. A client that aborts a parked GET closes its session, as in
// Node; so does a second GET while one is parked.
func (s *Session) servePoll(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.ws != nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	if s.pollWaiting {
		s.mu.Unlock()
		s.close(ReasonTransportError, 0)
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	if len(s.queue) == 0 && !s.noop && !s.closed {
		if s.pollCh == nil {
			s.pollCh = make(chan struct{}, 1)
		}
		select { // a stale wake-up from an earlier poll
		case <-s.pollCh:
		default:
		}
		s.pollWaiting = true
		ch := s.pollCh
		s.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
			s.mu.Lock()
			s.pollWaiting = false
			s.mu.Unlock()
			s.close(ReasonTransportError, 0)
			return
		}
		s.mu.Lock()
		s.pollWaiting = false
	}
	var items []outPacket
	switch {
	case s.ws != nil:
		// Upgraded while parked: the queue went to the websocket.
		items = []outPacket{{typ: PacketNoop}}
	case len(s.queue) > 0:
		items = s.queue
		s.queue, s.queued = nil, 0
	case s.noop:
		items = []outPacket{{typ: PacketNoop}}
	}
	s.noop = false
	final := s.closed
	switch {
	case !s.closed:
	case len(items) > 0 && s.reason != ReasonShutdown:
		// What was queued before the close goes first, and the close
		// packet in the next answer, as in Node: socket.io-client handles
		// the packets of an answer a tick after the close packet, so a
		// DISCONNECT in the same answer would come too late to keep it
		// from reconnecting.
		final = false
	case s.reason == ReasonTransportClose:
		// The client closed the session (a close packet in its POST):
		// as in Node, its pending GET ends with a noop, not a close.
		if len(items) == 0 {
			items = []outPacket{{typ: PacketNoop}}
		}
	default:
		items = append(items, outPacket{typ: PacketClose})
	}
	s.mu.Unlock()
	if final {
		s.srv.forgetLastPoll(s) // this was the last GET of a closed session
	}
	writePayload(w, items, s.protocol, s.binaryPoll)
}

func writePayload(w http.ResponseWriter, items []outPacket, protocol int, binaryPoll bool) {
	buf := getBuf()
	body, binary := encodePayload(*buf, items, protocol, binaryPoll)
	*buf = body
	defer putBuf(buf)
	h := w.Header()
	if binary {
		h.Set("Content-Type", "application/octet-stream")
	} else {
		h.Set("Content-Type", "text/plain; charset=UTF-8")
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

var errTooLarge = errors.New("body too large")

// servePost reads a POST's packets and hands them over in order. An
// undecodable body is fatal to the session (as in Node) and answered 400;
// one over MaxPayload is answered 413 and closes the session too.
func (s *Session) servePost(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.ws != nil || s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	if s.posting {
		s.mu.Unlock()
		s.close(ReasonTransportError, 0)
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	s.posting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.mu.Unlock()
	}()

	buf := getBody()
	defer putBody(buf)
	if err := readBody(buf, r, s.srv.opts.MaxPayload); err != nil {
		s.close(ReasonTransportError, 0)
		if errors.Is(err, errTooLarge) {
			s.srv.stats.TooLarge.Add(1)
			w.Header().Set("Connection", "close")
			writeErrorStatus(w, http.StatusRequestEntityTooLarge, CodeBadRequest, "Payload too large")
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	binary := strings.HasPrefix(r.Header.Get("Content-Type"), "application/octet-stream")
	packets, err := decodePayload(buf.Bytes(), s.protocol, binary)
	if err != nil {
		s.close(ReasonParseError, 0)
		writeError(w, http.StatusBadRequest, CodeBadRequest)
		return
	}
	for _, p := range packets {
		s.onPacket(p)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok")
}

// readBody reads r's body into buf, refusing more than limit bytes.
func readBody(buf *bytes.Buffer, r *http.Request, limit int) error {
	if r.ContentLength > int64(limit) {
		return errTooLarge
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return err
	}
	if n > int64(limit) {
		return errTooLarge
	}
	return nil
}
