package redis

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-rt/switchboard/socketio"
)

// FuzzHandleMessage feeds anything a Redis channel could carry to the
// handlers of broadcasts, requests and answers: whatever another process
// publishes, this one must not panic. No Redis is needed: the adapter's
// clients point at a closed port, so its answers fail in the writer.
// Seeds: Node's vectors, as each kind of message.
func FuzzHandleMessage(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(uint8(0), "socket.io#/#room1#", v.bytes)
		f.Add(uint8(1), "", v.bytes)
		f.Add(uint8(2), "", v.bytes)
	}
	dead := &goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 10 * time.Millisecond, MaxRetries: -1}
	pub, sub := goredis.NewClient(dead), goredis.NewClient(dead)
	c := NewClassic(pub, sub, Options{PublishTimeout: 10 * time.Millisecond, RequestsTimeout: 10 * time.Millisecond, OnError: func(error) {}})
	srv, err := socketio.NewServer(engineioOptions(), socketio.Options{Adapter: c.Factory()})
	if err != nil {
		f.Fatal(err)
	}
	a := srv.Of("/").Adapter().(*adapter)
	srv.Of("/").OnServerSideEmit(func(args []any, ack func(any)) {
		if ack != nil {
			ack(args)
		}
	})
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		_ = c.Close()
		_ = pub.Close()
		_ = sub.Close()
	})
	f.Fuzz(func(t *testing.T, kind uint8, channel string, payload []byte) {
		switch kind % 3 {
		case 0:
			if len(channel) < len(a.bcPrefix) || channel[:len(a.bcPrefix)] != a.bcPrefix {
				channel = a.bcPrefix
			}
			a.onBroadcast(channel, string(payload))
		case 1:
			a.onRequest(string(payload))
		case 2:
			a.onResponse(string(payload))
		}
	})
}
