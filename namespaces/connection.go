package namespaces

import (
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

// joinUserRoom runs after authenticate and before the CONNECT reply, so a
// user's sockets are reachable through their room by the time the client
// sees `connect`. Packets sent to the socket before that reply wait for it
// (package socketio writes the reply first). The Redis adapter routes by
// channel per room, so a local join is all the other processes need.
func (a *App) joinUserRoom(s *socketio.Socket, next func(error)) {
	user := userOf(s)
	if user == "" {
		next(&socketio.ConnectError{Message: "unauthorized", Data: map[string]any{"reason": ReasonMissingToken}})
		return
	}
	s.Join(UserRoom(user))
	next(nil)
}
