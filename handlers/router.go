package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// EventMessage is the Socket.IO event that carries {"event", "args"}
// envelopes in both directions.
const EventMessage = "message"

// Outcome is the result of routing one event.
type Outcome struct {
	// Name is the router event the outcome is about: the envelope's event,
	// the direct event name, or "message" for an envelope that is not one.
	Name string
	// Reply is the acknowledgement payload: the handler's on success,
	// {"ok": false, "error": {...}} on failure.
	Reply any
	// Err is nil on success.
	Err *Error
}

// Router decodes incoming events and dispatches them to the registry's
// handlers. It owns the error shapes of the contract.
type Router struct {
	registry *Registry
	logger   *slog.Logger
}

// NewRouter returns a router over reg. Internal errors are logged to logger.
func NewRouter(reg *Registry, logger *slog.Logger) *Router {
	return &Router{registry: reg, logger: logger}
}

// Registered reports whether name is a router event (for metric labels,
// which must not take arbitrary client strings).
func (r *Router) Registered(name string) bool {
	_, ok := r.registry.Lookup(name)
	return ok
}

// Route handles one event received on a socket: event is the Socket.IO event
// name and args its arguments without the acknowledgement callback. allowed
// is the rate limiter's verdict, taken before routing because every event
// counts, whichever route it takes and whatever it holds.
func (r *Router) Route(ctx context.Context, user, socketID, event string, args []any, allowed bool) Outcome {
	name, payload, envErr := unwrap(event, args)
	if !allowed {
		return failure(name, &Error{Code: CodeRateLimited, Message: "too many events, slow down"})
	}
	if envErr != nil {
		return failure(name, envErr)
	}
	h, ok := r.registry.Lookup(name)
	if !ok {
		return failure(name, &Error{Code: CodeUnknownEvent, Message: fmt.Sprintf("unknown event %q", name)})
	}
	reply, err := r.call(ctx, h, Request{User: user, Socket: socketID, Args: payload})
	if err != nil {
		var userErr *Error
		if errors.As(err, &userErr) {
			return failure(name, userErr)
		}
		r.logger.ErrorContext(ctx, "handler failed", "event", name, "user", user, "err", err)
		return failure(name, &Error{Code: CodeInternal, Message: "internal error"})
	}
	return Outcome{Name: name, Reply: reply}
}

// call runs h, turning a panic into an error: input must never take the
// process down.
func (r *Router) call(ctx context.Context, h Handler, req Request) (reply any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h(ctx, req)
}

// unwrap finds the router event and its ARGS in either route: the envelope
// event `message` with {"event", "args"}, or the event NAME with ARGS.
//
// A name longer than MaxEventNameChars is refused with invalid_args (no
// router event is that long) and comes back cut to that length: the error
// names the event, and must not echo what it refuses.
func unwrap(event string, args []any) (name string, payload any, err *Error) {
	name, payload, err = unwrapEnvelope(event, args)
	if longerThan(name, MaxEventNameChars) {
		return truncateChars(name, MaxEventNameChars), nil,
			limitExceeded(ArgEventName, ReasonTooLong, "event names are at most %d characters", MaxEventNameChars)
	}
	return name, payload, err
}

func unwrapEnvelope(event string, args []any) (name string, payload any, err *Error) {
	if event != EventMessage {
		if len(args) > 0 {
			payload = args[0]
		}
		return event, payload, nil
	}
	if len(args) > 0 {
		if env, ok := args[0].(map[string]any); ok {
			if name, ok := env["event"].(string); ok {
				return name, env["args"], nil
			}
		}
	}
	return EventMessage, nil, &Error{Code: CodeInvalidArgs, Message: `want {"event": name, "args": ...}`}
}

func failure(name string, e *Error) Outcome {
	return Outcome{Name: name, Err: e, Reply: map[string]any{
		"ok":    false,
		"error": map[string]any{"code": string(e.Code), "message": e.Message},
	}}
}

// ErrorEnvelope is what a socket receives for a failed event sent without an
// acknowledgement callback.
func ErrorEnvelope(user string, o Outcome) map[string]any {
	return Envelope("error", user, map[string]any{
		"code":    string(o.Err.Code),
		"message": o.Err.Message,
		"event":   o.Name,
	})
}
