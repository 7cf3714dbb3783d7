package namespaces

import (
	"context"

	"github.com/switchboard-rt/switchboard/handlers"
	sio "github.com/zishang520/socket.io/servers/socket/v3"
)

// bind attaches the message router to a connected socket. The library calls
// the listener from the socket's packet task queue, one event at a time, so
// the bucket needs no lock; nothing here outlives the socket.
func (a *App) bind(s *sio.Socket) {
	sess, ok := s.Data().(*session)
	if !ok {
		s.Disconnect(true)
		return
	}
	if sess.hold != nil {
		sess.hold.release() // registered: the connection's packets may flow
	}
	bucket := handlers.NewBucket(a.rate, a.burst, a.now())
	s.OnAny(func(args ...any) {
		if len(args) == 0 {
			return
		}
		event, _ := args[0].(string)
		rest := args[1:]
		var ack sio.Ack
		if n := len(rest); n > 0 {
			if fn, ok := rest[n-1].(sio.Ack); ok {
				ack, rest = fn, rest[:n-1]
			}
		}
		allowed := bucket.Allow(a.now())
		out := a.router.Route(context.Background(), sess.user, string(s.Id()), event, rest, allowed)
		a.observe(out)
		switch {
		case ack != nil:
			ack([]any{out.Reply}, nil)
		case out.Err != nil:
			_ = s.Emit(handlers.EventMessage, handlers.ErrorEnvelope(sess.user, out))
		}
		if !allowed && bucket.Flooding() {
			a.logger.Warn("disconnecting a flooding socket", "user", sess.user, "socket", string(s.Id()))
			s.Disconnect(true)
		}
	})
}

func (a *App) observe(out handlers.Outcome) {
	name := out.Name
	if !a.router.Registered(name) {
		name = "unknown" // client strings must not become metric labels
	}
	result := "ok"
	if out.Err != nil {
		result = string(out.Err.Code)
	}
	a.observer.EventHandled(name, result)
}
