package redis

import "sync/atomic"

// inbox hands messages from a receiver goroutine to the deliverer, in
// order, and tells the receiver when nothing handed over is still waiting:
// then it may handle a message itself (nothing can be ahead of it), which
// spares a goroutine wake-up per message. Both adapters use it.
type inbox[T any] struct {
	ch     chan T
	queued atomic.Int64 // handed over, not handled yet
}

// empty reports whether everything handed over has been handled.
func (b *inbox[T]) empty() bool { return b.queued.Load() == 0 }

// put hands d to the deliverer, unless stop is closed first.
func (b *inbox[T]) put(d T, stop <-chan struct{}) {
	b.queued.Add(1)
	select {
	case b.ch <- d:
	case <-stop:
		b.queued.Add(-1)
	}
}

// run is the deliverer: it handles what is handed over, in order, until
// stop is closed.
func (b *inbox[T]) run(stop <-chan struct{}, handle func(T)) {
	for {
		select {
		case <-stop:
			return
		case d := <-b.ch:
			handle(d)
			b.queued.Add(-1)
		}
	}
}
