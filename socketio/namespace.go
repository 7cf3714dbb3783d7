package socketio

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Middleware runs when a client connects to a namespace, before the
// socket is connected. It calls next once, at once or later from any
// goroutine: with nil to go on, with an error to refuse the connection
// (a *ConnectError chooses the client's message and data).
type Middleware func(s *Socket, next func(error))

// Namespace is a Socket.IO namespace.
type Namespace struct {
	name    string
	srv     *Server
	adapter Adapter
	ackIDs  atomic.Int64

	mu          sync.RWMutex
	middlewares []Middleware
	onConnect   []func(*Socket)
	onServer    []func(args []any, ack func(any))
	sockets     map[string]*Socket
}

// Name is the namespace's name ("/socket").
func (n *Namespace) Name() string { return n.name }

// Adapter is the namespace's adapter.
func (n *Namespace) Adapter() Adapter { return n.adapter }

// Use adds a middleware; they run in the order added.
func (n *Namespace) Use(mw Middleware) {
	n.mu.Lock()
	n.middlewares = append(slices.Clip(n.middlewares), mw)
	n.mu.Unlock()
}

// OnConnection adds a function called, on the connection's strand, for
// each socket once it is connected (its CONNECT reply written): the place
// to set its event handlers.
func (n *Namespace) OnConnection(fn func(*Socket)) {
	n.mu.Lock()
	n.onConnect = append(slices.Clip(n.onConnect), fn)
	n.mu.Unlock()
}

// OnServerSideEmit adds a handler for events other processes send with
// ServerSideEmit; ack is nil unless the sender waits for answers.
func (n *Namespace) OnServerSideEmit(fn func(args []any, ack func(any))) {
	n.mu.Lock()
	n.onServer = append(slices.Clip(n.onServer), fn)
	n.mu.Unlock()
}

// HandleServerSideEmit delivers an event from another process to the
// OnServerSideEmit handlers (called by adapters).
func (n *Namespace) HandleServerSideEmit(args []any, ack func(any)) {
	n.mu.RLock()
	hs := n.onServer
	n.mu.RUnlock()
	for _, h := range hs {
		h(args, ack)
	}
}

// Socket returns the connected socket id of this process, or nil.
func (n *Namespace) Socket(id string) *Socket {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.sockets[id]
}

// Len is the number of connected sockets in this process.
func (n *Namespace) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.sockets)
}

// eachSocket calls fn for every connected socket, under the namespace's
// read lock.
func (n *Namespace) eachSocket(fn func(*Socket)) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, s := range n.sockets {
		fn(s)
	}
}

func (n *Namespace) add(s *Socket) {
	n.mu.Lock()
	n.sockets[s.ID()] = s
	n.mu.Unlock()
}

func (n *Namespace) remove(s *Socket) {
	id := s.ID()
	n.mu.Lock()
	if n.sockets[id] == s {
		delete(n.sockets, id)
	}
	n.mu.Unlock()
}

func (n *Namespace) nextAckID() int64 { return n.ackIDs.Add(1) - 1 }

// run runs the middlewares for s, then the recovery of its session (see
// restore), and then calls done once.
func (n *Namespace) run(s *Socket, done func(error)) {
	n.mu.RLock()
	mws := n.middlewares
	n.mu.RUnlock()
	var step func(i int)
	step = func(i int) {
		if i == len(mws) {
			n.restore(s, done)
			return
		}
		var called atomic.Bool
		mws[i](s, func(err error) {
			if called.Swap(true) {
				return // next called twice
			}
			if err != nil {
				done(err)
				return
			}
			step(i + 1)
		})
	}
	step(0)
}

func (n *Namespace) connected(s *Socket) {
	n.mu.RLock()
	fns := n.onConnect
	n.mu.RUnlock()
	for _, fn := range fns {
		fn(s)
	}
}

// To selects the sockets in rooms for a broadcast.
func (n *Namespace) To(rooms ...string) BroadcastOperator {
	return BroadcastOperator{nsp: n}.To(rooms...)
}

// Except leaves the sockets in rooms out of a broadcast.
func (n *Namespace) Except(rooms ...string) BroadcastOperator {
	return BroadcastOperator{nsp: n}.Except(rooms...)
}

// Local restricts a broadcast to this process.
func (n *Namespace) Local() BroadcastOperator { return BroadcastOperator{nsp: n}.Local() }

// Volatile marks a broadcast as one that may be lost.
func (n *Namespace) Volatile() BroadcastOperator { return BroadcastOperator{nsp: n}.Volatile() }

// Timeout sets how long a broadcast's EmitWithAck waits.
func (n *Namespace) Timeout(d time.Duration) BroadcastOperator {
	return BroadcastOperator{nsp: n}.Timeout(d)
}

// Emit sends an event to every socket of the namespace, on every process.
func (n *Namespace) Emit(event string, args ...any) error {
	return BroadcastOperator{nsp: n}.Emit(event, args...)
}

// FetchSockets describes every socket of the namespace, on every process.
func (n *Namespace) FetchSockets(ctx context.Context) ([]SocketInfo, error) {
	return BroadcastOperator{nsp: n}.FetchSockets(ctx)
}

// ServerSideEmit sends an event to the namespace on the other processes.
func (n *Namespace) ServerSideEmit(ctx context.Context, args ...any) error {
	_, err := n.adapter.ServerSideEmit(ctx, args, false)
	return err
}

// ServerSideEmitWithAck sends an event to the namespace on the other
// processes and returns one answer from each.
func (n *Namespace) ServerSideEmitWithAck(ctx context.Context, args ...any) ([]any, error) {
	return n.adapter.ServerSideEmit(ctx, args, true)
}
