package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// The subscriber's dialer turns on TCP keepalive with short timers, so that
// a subscriber connection to a Redis that vanished without a reset fails in
// seconds rather than minutes (the socket options are what the kernel acts
// on; this machine cannot drop packets to show the failure itself).
func TestSubscriberConnectionsProbeTheirPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()

	link, err := newRedisLink(&Config{RedisURL: "redis://" + ln.Addr().String() + "/0"}, slog.New(slog.NewJSONHandler(io.Discard, nil)), func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer link.close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := link.dialer.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string]struct {
		level, name, want int
	}{
		"SO_KEEPALIVE":  {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(subscriberKeepAliveIdle / time.Second)},
		"TCP_KEEPINTVL": {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(subscriberKeepAliveInterval / time.Second)},
		"TCP_KEEPCNT":   {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, subscriberKeepAliveCount},
	}
	for name, o := range opts {
		var got int
		var gerr error
		if err := raw.Control(func(fd uintptr) { got, gerr = syscall.GetsockoptInt(int(fd), o.level, o.name) }); err != nil || gerr != nil {
			t.Fatalf("%s: %v %v", name, err, gerr)
		}
		if got != o.want {
			t.Errorf("%s = %d, want %d", name, got, o.want)
		}
	}
}
