package namespaces

import (
	sio "github.com/zishang520/socket.io/servers/socket/v3"
)

// UserRoom is the room that holds every socket of a user, on every process.
func UserRoom(user string) sio.Room { return sio.Room("user:" + user) }

// joinUserRoom runs after authenticate and before the CONNECT reply, so a
// user's sockets are reachable through their room by the time the client
// sees `connect`. The Redis adapter routes by channel per room, so a local
// join is all the other processes need.
func (a *App) joinUserRoom(s *sio.Socket, next func(*sio.ExtendedError)) {
	sess, ok := s.Data().(*session)
	if !ok {
		next(sio.NewExtendedError("unauthorized", map[string]any{"reason": ReasonMissingToken}))
		return
	}
	s.Join(UserRoom(sess.user))
	next(nil)
}
