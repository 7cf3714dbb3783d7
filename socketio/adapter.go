package socketio

import (
	"context"
	"errors"
	"time"
)

// Adapter holds a namespace's rooms and carries its broadcasts: the
// in-memory adapter (MemoryAdapter) within one process, an adapter over a
// broker (package socketio/redis) across processes. One Adapter serves one
// namespace. Methods may be called from any goroutine.
type Adapter interface {
	// AddAll adds a local socket to rooms; a closed socket joins none (it
	// already left them all).
	AddAll(s *Socket, rooms []string)
	// Del removes a local socket from a room.
	Del(s *Socket, room string)
	// DelAll removes a local socket from every room.
	DelAll(s *Socket)
	// SocketRooms lists the rooms a local socket joined (not its own id).
	SocketRooms(s *Socket) []string

	// Broadcast sends p to the sockets opts selects, on every process
	// unless opts.Flags.Local.
	Broadcast(p *Packet, opts *BroadcastOptions) error
	// BroadcastWithAck is Broadcast with an acknowledgement from every
	// client: clientCount is called once per process that delivered (with
	// how many sockets it reached), ack once per acknowledgement.
	BroadcastWithAck(p *Packet, opts *BroadcastOptions, clientCount func(int), ack func(args []any)) error

	// FetchSockets describes the sockets opts selects, on every process
	// unless opts.Flags.Local.
	FetchSockets(ctx context.Context, opts *BroadcastOptions) ([]SocketInfo, error)
	// AddSockets makes the sockets opts selects join rooms.
	AddSockets(ctx context.Context, opts *BroadcastOptions, rooms []string) error
	// DelSockets makes the sockets opts selects leave rooms.
	DelSockets(ctx context.Context, opts *BroadcastOptions, rooms []string) error
	// DisconnectSockets disconnects the sockets opts selects (closing their
	// connections when close is true).
	DisconnectSockets(ctx context.Context, opts *BroadcastOptions, close bool) error
	// AllRooms lists the rooms of every process.
	AllRooms(ctx context.Context) ([]string, error)
	// ServerSideEmit sends an event to the other processes' namespaces
	// (Namespace.OnServerSideEmit); with ack, it waits for each of them to
	// answer and returns their answers.
	ServerSideEmit(ctx context.Context, args []any, ack bool) ([]any, error)
	// ServerCount is the number of processes serving the namespace.
	ServerCount(ctx context.Context) (int, error)

	// Close releases the adapter's resources.
	Close() error
}

// AdapterFactory builds the adapter of a namespace.
type AdapterFactory func(nsp *Namespace) Adapter

// BroadcastOptions select the recipients of a broadcast and carry its
// flags.
type BroadcastOptions struct {
	// Rooms selects the sockets in any of these rooms; none selects every
	// socket of the namespace.
	Rooms []string
	// Except leaves out the sockets in any of these rooms (a socket id is
	// the room of that socket).
	Except []string
	Flags  BroadcastFlags
}

// BroadcastFlags are a broadcast's modifiers.
type BroadcastFlags struct {
	Local    bool          // this process only
	Volatile bool          // may be dropped (not stored for recovery)
	Timeout  time.Duration // acknowledgements: how long to wait
}

// SocketInfo describes a socket, local or on another process, as Node's
// fetchSockets does.
type SocketInfo struct {
	ID        string    `json:"id"`
	Handshake Handshake `json:"handshake"`
	Rooms     []string  `json:"rooms"`
	Data      any       `json:"data"`
}

// Handshake describes how a socket connected, in the shape of Node's
// socket.handshake.
type Handshake struct {
	Headers map[string]string `json:"headers"`
	Time    string            `json:"time"`
	Address string            `json:"address"`
	XDomain bool              `json:"xdomain"`
	Secure  bool              `json:"secure"`
	Issued  int64             `json:"issued"`
	URL     string            `json:"url"`
	Query   map[string]string `json:"query"`
	Auth    map[string]any    `json:"auth"`
}

// ErrTimeout is returned when acknowledgements or cluster answers do not
// all arrive in time.
var ErrTimeout = errors.New("socketio: operation has timed out")
