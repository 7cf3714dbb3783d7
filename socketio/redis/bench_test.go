package redis

import (
	"testing"

	"github.com/switchboard-rt/switchboard/socketio"
)

// The per-message costs of the classic format: what a publisher pays to
// encode a delivery, and what every other process pays to read it.

func benchPacket() *socketio.Packet {
	return &socketio.Packet{Type: socketio.PacketEvent, Nsp: "/socket", ID: socketio.NoID, Data: []any{
		"message", map[string]any{"event": "message_sent", "id": "user-42", "args": map[string]any{
			"id": "01J9Z3K6Q2", "from": "user-7", "to": "user-42", "text": "hello there, how are you?",
			"sentAt": "2026-11-29T20:00:00.000Z",
		}},
	}}
}

func BenchmarkEncodeBroadcast(b *testing.B) {
	p := benchPacket()
	rooms := []string{"user:user-42"}
	except := []string{"Xy3Zq9AbCdEfGhIjKlMn"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeBroadcast("Abc123defg", "/socket", p, rooms, except, socketio.BroadcastFlags{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBroadcast(b *testing.B) {
	msg, err := encodeBroadcast("Abc123defg", "/socket", benchPacket(), []string{"user:user-42"}, nil, socketio.BroadcastFlags{})
	if err != nil {
		b.Fatal(err)
	}
	s := string(msg)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMsgpack(s); err != nil {
			b.Fatal(err)
		}
	}
}
