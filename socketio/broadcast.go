package socketio

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// BroadcastOperator builds a broadcast: which rooms, which exceptions,
// which flags. It is a value; each method returns a modified copy.
type BroadcastOperator struct {
	nsp  *Namespace
	opts BroadcastOptions
}

// To adds rooms to the selection.
func (b BroadcastOperator) To(rooms ...string) BroadcastOperator {
	b.opts.Rooms = append(slices.Clip(b.opts.Rooms), rooms...)
	return b
}

// Except leaves out the sockets in rooms.
func (b BroadcastOperator) Except(rooms ...string) BroadcastOperator {
	b.opts.Except = append(slices.Clip(b.opts.Except), rooms...)
	return b
}

// Local restricts the broadcast to this process.
func (b BroadcastOperator) Local() BroadcastOperator {
	b.opts.Flags.Local = true
	return b
}

// Volatile marks the broadcast as one that may be lost.
func (b BroadcastOperator) Volatile() BroadcastOperator {
	b.opts.Flags.Volatile = true
	return b
}

// Timeout sets how long EmitWithAck waits.
func (b BroadcastOperator) Timeout(d time.Duration) BroadcastOperator {
	b.opts.Flags.Timeout = d
	return b
}

// Options are the broadcast's options.
func (b BroadcastOperator) Options() BroadcastOptions { return b.opts }

// Emit sends an event to the selected sockets.
func (b BroadcastOperator) Emit(event string, args ...any) error {
	if reservedEvents[event] {
		return fmt.Errorf("socketio: %q is a reserved event name", event)
	}
	p := &Packet{Type: PacketEvent, Nsp: b.nsp.name, ID: NoID, Data: eventData(event, args)}
	return b.nsp.adapter.Broadcast(p, &b.opts)
}

// EmitWithAck sends an event to the selected sockets and waits for every
// client's acknowledgement (the first argument of each), on every process,
// until the Timeout (required) or ctx ends. On a timeout it returns the
// answers that came, with ErrTimeout.
func (b BroadcastOperator) EmitWithAck(ctx context.Context, event string, args ...any) ([]any, error) {
	if b.opts.Flags.Timeout <= 0 {
		return nil, fmt.Errorf("socketio: EmitWithAck needs a Timeout")
	}
	if reservedEvents[event] {
		return nil, fmt.Errorf("socketio: %q is a reserved event name", event)
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.Flags.Timeout)
	defer cancel()
	var (
		mu        sync.Mutex
		responses []any
		servers   int
		expected  int
		wantSrv   = -1
		done      = make(chan struct{})
		closed    bool
	)
	check := func() {
		if !closed && wantSrv >= 0 && servers == wantSrv && len(responses) == expected {
			closed = true
			close(done)
		}
	}
	p := &Packet{Type: PacketEvent, Nsp: b.nsp.name, ID: NoID, Data: eventData(event, args)}
	err := b.nsp.adapter.BroadcastWithAck(p, &b.opts, func(n int) {
		mu.Lock()
		defer mu.Unlock()
		servers++
		expected += n
		check()
	}, func(a []any) {
		mu.Lock()
		defer mu.Unlock()
		var first any
		if len(a) > 0 {
			first = a[0]
		}
		responses = append(responses, first)
		check()
	})
	if err != nil {
		return nil, err
	}
	n := 1
	if !b.opts.Flags.Local {
		if n, err = b.nsp.adapter.ServerCount(ctx); err != nil {
			return nil, err
		}
	}
	mu.Lock()
	wantSrv = n
	check()
	mu.Unlock()
	select {
	case <-done:
		mu.Lock()
		defer mu.Unlock()
		return responses, nil
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(responses), ErrTimeout
	}
}

// FetchSockets describes the selected sockets.
func (b BroadcastOperator) FetchSockets(ctx context.Context) ([]SocketInfo, error) {
	return b.nsp.adapter.FetchSockets(ctx, &b.opts)
}

// SocketsJoin makes the selected sockets join rooms.
func (b BroadcastOperator) SocketsJoin(ctx context.Context, rooms ...string) error {
	return b.nsp.adapter.AddSockets(ctx, &b.opts, rooms)
}

// SocketsLeave makes the selected sockets leave rooms.
func (b BroadcastOperator) SocketsLeave(ctx context.Context, rooms ...string) error {
	return b.nsp.adapter.DelSockets(ctx, &b.opts, rooms)
}

// DisconnectSockets disconnects the selected sockets (closing their
// connections with close).
func (b BroadcastOperator) DisconnectSockets(ctx context.Context, close bool) error {
	return b.nsp.adapter.DisconnectSockets(ctx, &b.opts, close)
}
