package namespaces

import (
	"context"
	"fmt"

	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/socketio"
)

// Rooms delivers over the user rooms of the /socket namespace. Every
// delivery is an emit to one user room (optionally except the sending
// socket): the payload differs per recipient anyway (its "id" is the
// receiving user).
type Rooms struct {
	nsp      *socketio.Namespace
	remote   func() bool
	observer Observer
}

var _ handlers.Dispatcher = (*Rooms)(nil)

// Deliver implements handlers.Dispatcher.
func (r *Rooms) Deliver(_ context.Context, user, event string, payload any, exceptSocket string) error {
	op := r.nsp.To(UserRoom(user))
	if exceptSocket != "" {
		op = op.Except(exceptSocket)
	}
	if r.remote != nil && !r.remote() {
		// Redis is down: deliver to this process's sockets now rather than
		// block on a publish that cannot succeed.
		op = op.Local()
	}
	if err := op.Emit(handlers.EventMessage, handlers.Envelope(event, user, payload)); err != nil {
		return fmt.Errorf("emit %s to %s: %w", event, UserRoom(user), err)
	}
	r.observer.Delivered(event)
	return nil
}
