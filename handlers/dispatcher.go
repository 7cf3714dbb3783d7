package handlers

import "context"

// Dispatcher delivers an event to every socket of one user, on every process
// of the cluster. It is implemented over Socket.IO rooms in package
// namespaces; tests use a recorder.
type Dispatcher interface {
	// Deliver sends the `message` event Envelope(event, user, payload) to every
	// socket of user except the socket whose id is exceptSocket ("" for none).
	Deliver(ctx context.Context, user, event string, payload any, exceptSocket string) error
}

// Envelope is the exact shape of every delivery: the event `message` with
// {"event", "id", "args"}, where id is the user whose socket receives it.
// It is a map, not a struct, because the Redis adapter encodes it with
// msgpack, which does not read json tags.
func Envelope(event, user string, payload any) map[string]any {
	return map[string]any{"event": event, "id": user, "args": payload}
}
