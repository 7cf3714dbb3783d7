package namespaces

import (
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
)

// holdTimeout bounds how long incoming packets wait for a namespace
// connection to complete; it only matters if the library never completes
// or fails it, which the close listener also covers.
const holdTimeout = 5 * time.Second

// A second race in Socket.IO v3.0.5, after the one gate.go fixes: a
// namespace connect writes its CONNECT reply (Socket._onconnect) before the
// Client registers the namespace (the doConnect callback). An event the
// client sends the moment it sees `connect` can be decoded in between; the
// Client then finds no socket for it, logs "invalid state" and closes the
// whole connection. The contract says clients may send right after
// `connect`, so the packets of a connection are held while one of its
// namespace connects is in flight: from the auth middleware, which runs on
// the goroutine that decoded the CONNECT, to the namespace's "connection"
// event (or a refusal, or the connection's close).

// hold counts a connection's namespace connects in flight.
type hold struct {
	mu      sync.Mutex
	pending int
	free    chan struct{} // closed while pending == 0
}

func newHold() *hold {
	h := &hold{free: make(chan struct{})}
	close(h.free)
	return h
}

func (h *hold) acquire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending == 0 {
		h.free = make(chan struct{})
	}
	h.pending++
}

func (h *hold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending == 0 {
		return
	}
	if h.pending--; h.pending == 0 {
		close(h.free)
	}
}

func (h *hold) releaseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending > 0 {
		h.pending = 0
		close(h.free)
	}
}

func (h *hold) wait() {
	h.mu.Lock()
	free := h.free
	h.mu.Unlock()
	select {
	case <-free:
	default:
		t := time.NewTimer(holdTimeout)
		defer t.Stop()
		select {
		case <-free:
		case <-t.C:
		}
	}
}

// holdData puts a hold in front of the listeners socket.io attached to a new
// Engine.IO connection's "data" event. It runs on the engine's "connection"
// event, after socket.io's own listener has created the Client.
func (a *App) holdData(args ...any) {
	conn, ok := args[0].(engine.Socket)
	if !ok {
		return
	}
	h := newHold()
	listeners := conn.Listeners("data")
	conn.RemoveAllListeners("data")
	_ = conn.On("data", func(data ...any) {
		h.wait()
		for _, l := range listeners {
			l(data...)
		}
	})
	a.holds.Store(conn.Id(), h)
	_ = conn.Once("close", func(...any) {
		h.releaseAll()
		a.holds.Delete(conn.Id())
	})
}

// holdFor returns the hold of a socket's connection (nil if none).
func (a *App) holdFor(connID string) *hold {
	if v, ok := a.holds.Load(connID); ok {
		return v.(*hold)
	}
	return nil
}
