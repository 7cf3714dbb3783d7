package namespaces

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
)

// gateHandshake fixes a race in the Engine.IO server (v3.0.5): its
// websocket transport starts reading as soon as it is created, before the
// listeners that consume what it reads are attached.
//
//   - A new connection: the server writes the OPEN packet before it emits
//     "connection", which is when Socket.IO attaches its "data" listener. A
//     client that answers OPEN with its namespace CONNECT at once can have
//     that packet read and dropped in between (1 to 150 stalled connects in
//     10,000), and then waits for its connect timeout.
//   - An upgrade from polling: MaybeUpgrade attaches its "packet" listener
//     after the transport is created, so the client's immediate "2probe" can
//     be dropped and the upgrade never completes (about 2 in 1,000 under
//     load); anything the server writes meanwhile stays buffered.
//
// Both happen synchronously inside the engine's ServeHTTP, so reads from
// every hijacked websocket connection are held until ServeHTTP returns, by
// which time every listener is attached. Writes are not held, so the OPEN
// packet still leaves at once.
func gateHandshake(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		g := &gate{open: make(chan struct{})}
		defer g.release()
		next.ServeHTTP(&gatedWriter{ResponseWriter: w, gate: g}, r)
	})
}

type gate struct {
	open chan struct{}
	once sync.Once
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

type gatedWriter struct {
	http.ResponseWriter
	gate *gate
}

// Hijack hands the websocket library a connection whose reads wait for the
// gate. The library reads through its own buffer over the returned
// connection (its read buffer size is set), and refuses a request whose
// hijacked reader already holds data, so nothing can be read around the gate.
func (w *gatedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	conn, rw, err := h.Hijack()
	if err != nil || rw.Reader.Buffered() > 0 {
		return conn, rw, err
	}
	gc := &gatedConn{Conn: conn, gate: w.gate}
	// The websocket library reads through a buffer of its own; this reader
	// only has to exist, so it gets bufio's smallest size.
	return gc, bufio.NewReadWriter(bufio.NewReaderSize(gc, 16), rw.Writer), nil
}

type gatedConn struct {
	net.Conn
	gate *gate
}

func (c *gatedConn) Read(p []byte) (int, error) {
	<-c.gate.open
	return c.Conn.Read(p)
}

func (c *gatedConn) Close() error {
	c.gate.release() // a reader blocked on the gate must not outlive the conn
	return c.Conn.Close()
}
