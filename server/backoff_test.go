package server

import (
	"context"
	"net"
	"testing"
	"time"
)

// Dials in quick succession wait longer and longer, up to max, whether the
// previous dial failed or made a connection that died at once; a dial after
// a quiet spell does not wait. The clock and the sleep are the test's.
func TestBackoffDialerSpacesOutQuickRedials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and drop at once, as a Redis refusing the client does
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()

	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var waits []time.Duration
	b := &backoffDialer{
		max:   2 * time.Second,
		now:   func() time.Time { return clock },
		sleep: func(_ context.Context, d time.Duration) { waits = append(waits, d) },
	}
	dial := func() {
		t.Helper()
		c, err := b.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		_ = c.Close()
	}

	// Not armed (the server is starting): never waits.
	dial()
	dial()
	if len(waits) != 0 {
		t.Fatalf("waited %v before the dialer was armed", waits)
	}

	b.armed.Store(true)
	clock = clock.Add(time.Minute) // a quiet spell
	for range 8 {                  // a receive loop redialling at once, every time
		dial()
		clock = clock.Add(time.Millisecond)
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
		400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}

	// A connection that lived: the next dial is immediate.
	waits = nil
	clock = clock.Add(10 * time.Second)
	dial()
	if len(waits) != 0 {
		t.Fatalf("waited %v after a quiet spell", waits)
	}

	// A wait cut short by the caller's context fails the dial.
	b.sleep = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		t.Fatal("a cancelled dial succeeded")
	}
}
