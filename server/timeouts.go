package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// readHeaderTimeout bounds the reading of a request's head.
const readHeaderTimeout = 10 * time.Second

// enginePath is where the Engine.IO server is mounted (routes).
const enginePath = "/socket.io/"

// httpTimeouts bounds what one HTTP connection may hold, beside
// http.Server's ReadHeaderTimeout and IdleTimeout:
//
//   - a request body must be read within body (a polling POST trickling
//     one byte a second is cut, counted, and its session closed);
//   - an answer must be written within write of the request's start,
//     and a long-poll GET, which the engine may park for up to
//     PingInterval+PingTimeout, gets that much more;
//   - a websocket is not bounded here: the engine clears the deadlines
//     once it has taken the connection over, and its writes are bounded
//     by MAX_QUEUED_BYTES instead.
//
// Deadlines are set per request through http.ResponseController rather
// than with http.Server's ReadTimeout and WriteTimeout, which would cut a
// long-poll parked longer than they are (net/http's background read hits
// the read deadline and cancels the request).
type httpTimeouts struct {
	body, write time.Duration
	longPoll    time.Duration // added to write for GETs of the engine path
	enginePath  string
	idle        time.Duration // http.Server.IdleTimeout
	header      time.Duration // http.Server.ReadHeaderTimeout
	now         func() time.Time

	// Connections not serving a request, and since when: for counting the
	// ones net/http closes on a timeout (ConnState sees the states only).
	conns sync.Map // net.Conn → connWait

	bodyTimeouts, idleTimeouts, headerTimeouts atomic.Uint64
}

type connWait struct {
	since time.Time
	idle  bool // between requests (else new: no request yet)
}

// wrap sets the per-request deadlines before next runs.
func (t *httpTimeouts) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		write := t.write
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, t.enginePath) {
			write += t.longPoll
		}
		// Also on websocket upgrades: their error answers are written
		// through net/http; once hijacked, the engine (and the relay's
		// tunnel) set and clear their own deadlines.
		_ = rc.SetWriteDeadline(now.Add(write))
		if r.Body != nil && r.Body != http.NoBody {
			_ = rc.SetReadDeadline(now.Add(t.body))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, t: t}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the read deadline once the body is read, so that
// net/http's background read (which notices a client going away) does not
// hit it, and counts a body cut by it.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	t       *httpTimeouts
	counted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded) && !b.counted:
		b.counted = true
		b.t.bodyTimeouts.Add(1)
	}
	return n, err
}

// connState is http.Server.ConnState: it counts the connections closed
// after waiting at least the idle timeout between requests, and those that
// sent nothing within the header timeout. (A connection that sent part of
// a request head before the header timeout is not told apart from one that
// failed otherwise.)
func (t *httpTimeouts) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		t.conns.Store(c, connWait{since: t.now()})
	case http.StateIdle:
		t.conns.Store(c, connWait{since: t.now(), idle: true})
	case http.StateActive, http.StateHijacked:
		t.conns.Delete(c)
	case http.StateClosed:
		v, ok := t.conns.LoadAndDelete(c)
		if !ok {
			return
		}
		w := v.(connWait)
		waited := t.now().Sub(w.since)
		switch {
		case w.idle && t.idle > 0 && waited >= t.idle:
			t.idleTimeouts.Add(1)
		case !w.idle && t.header > 0 && waited >= t.header:
			t.headerTimeouts.Add(1)
		}
	}
}
