package namespaces

import (
	"context"

	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/socketio"
)

// bind attaches the message router to a connected socket. Events arrive on
// the connection's strand, one at a time, so the bucket needs no lock;
// nothing here outlives the socket.
func (a *App) bind(s *socketio.Socket) {
	user := userOf(s)
	bucket := handlers.NewBucket(a.rate, a.burst, a.now())
	// A flooding client is logged once, at its first refusal, not once per
	// event: every refusal is counted in /metrics (events_total with
	// result rate_limited) and answered all the same.
	refused := 0
	disconnected := false
	s.OnEvent(func(s *socketio.Socket, event string, args []any, ack socketio.AckFunc) {
		allowed := bucket.Allow(a.now())
		if !allowed {
			refused++
			if refused == 1 {
				a.logger.Warn("socket rate limited: its further refusals are counted in /metrics, not logged; it is disconnected if it keeps flooding",
					"user", user, "socket", s.ID(), "rate", a.rate, "burst", a.burst)
			}
		}
		out := a.router.Route(context.Background(), user, s.ID(), event, args, allowed)
		a.observe(out)
		switch {
		case ack != nil:
			ack(out.Reply)
		case out.Err != nil:
			_ = s.Emit(handlers.EventMessage, handlers.ErrorEnvelope(user, out))
		}
		if !allowed && bucket.Flooding() && !disconnected {
			// Logged at info: the socket had its warning at its first
			// refusal. Events already read may still arrive here.
			disconnected = true
			a.observer.FloodDisconnected()
			a.logger.Info("disconnecting a flooding socket", "user", user, "socket", s.ID(), "refused", refused)
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
	if out.Err != nil && out.Err.Limit.Arg != "" {
		a.observer.LimitExceeded(out.Err.Limit.Arg, out.Err.Limit.Reason)
	}
}
