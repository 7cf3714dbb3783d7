package namespaces

import (
	"time"

	"github.com/switchboard-rt/switchboard/socketio"
)

// UserRoom is the room that holds every socket of a user, on every process.
func UserRoom(user string) string { return "user:" + user }

// userOf is the user a connected socket authenticated as ("" if none).
func userOf(s *socketio.Socket) string {
	if d, ok := s.Data().(*socketData); ok {
		return d.User
	}
	return ""
}

// roomSubscriptions is implemented by an adapter that subscribes to each
// room's channel while it holds the room (the sharded Redis adapter):
// WhenSubscribed calls fn once the other processes can reach this
// process's sockets in room (at once if they already can), or with an
// error after timeout.
type roomSubscriptions interface {
	WhenSubscribed(room string, timeout time.Duration, fn func(error))
}

// joinSubscribeTimeout bounds how long a connect waits for its user room's
// subscription. Past it the client connects anyway: it works on this
// process, and the adapter keeps retrying the subscription.
const joinSubscribeTimeout = 2 * time.Second

// joinUserRoom runs after authenticate and before the CONNECT reply, so a
// user's sockets are reachable through their room by the time the client
// sees `connect`. Packets sent to the socket before that reply wait for it
// (package socketio writes the reply first). The classic Redis adapter
// receives every room's broadcasts, so a local join is all the other
// processes need; the sharded one subscribes to the room's channel, and
// the connect waits for Redis to confirm it (bounded by
// joinSubscribeTimeout, and not while Redis is unreachable: deliveries
// stay local then anyway). The socket's packets wait meanwhile, in order.
func (a *App) joinUserRoom(s *socketio.Socket, next func(error)) {
	user := userOf(s)
	if user == "" {
		next(&socketio.ConnectError{Message: "unauthorized", Data: map[string]any{"reason": ReasonMissingToken}})
		return
	}
	room := UserRoom(user)
	s.Join(room)
	rs, ok := s.Namespace().Adapter().(roomSubscriptions)
	if !ok || (a.remote != nil && !a.remote()) {
		next(nil)
		return
	}
	rs.WhenSubscribed(room, joinSubscribeTimeout, func(err error) {
		if err != nil {
			a.logger.Debug("connecting before the user room is reachable from other processes", "err", err)
		}
		next(nil)
	})
}
