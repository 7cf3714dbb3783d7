package server

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTPTimeoutsCounted: ConnState's transitions, at explicit instants,
// count the connections net/http closed on the idle and header timeouts,
// and nothing else.
func TestHTTPTimeoutsCounted(t *testing.T) {
	type step struct {
		state http.ConnState
		after time.Duration // since the previous step
	}
	const idle, header = 60 * time.Second, 10 * time.Second
	tests := []struct {
		name         string
		steps        []step
		idleN, headN uint64
	}{
		{"idle past the timeout", []step{{http.StateNew, 0}, {http.StateActive, time.Millisecond}, {http.StateIdle, time.Millisecond}, {http.StateClosed, idle}}, 1, 0},
		{"closed by the client while idle", []step{{http.StateNew, 0}, {http.StateActive, 0}, {http.StateIdle, 0}, {http.StateClosed, idle - time.Second}}, 0, 0},
		{"no request within the header timeout", []step{{http.StateNew, 0}, {http.StateClosed, header}}, 0, 1},
		{"closed by the client before its request", []step{{http.StateNew, 0}, {http.StateClosed, time.Second}}, 0, 0},
		{"closed after a long request", []step{{http.StateNew, 0}, {http.StateActive, 0}, {http.StateClosed, 2 * idle}}, 0, 0},
		{"hijacked (websocket)", []step{{http.StateNew, 0}, {http.StateActive, 0}, {http.StateHijacked, 0}, {http.StateClosed, 2 * idle}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := time.Unix(1_700_000_000, 0)
			to := &httpTimeouts{idle: idle, header: header, now: func() time.Time { return clock }}
			c, peer := net.Pipe()
			defer c.Close()
			defer peer.Close()
			for _, s := range tt.steps {
				clock = clock.Add(s.after)
				to.connState(c, s.state)
			}
			if got := to.idleTimeouts.Load(); got != tt.idleN {
				t.Errorf("idle timeouts = %d, want %d", got, tt.idleN)
			}
			if got := to.headerTimeouts.Load(); got != tt.headN {
				t.Errorf("header timeouts = %d, want %d", got, tt.headN)
			}
			if _, ok := to.conns.Load(c); ok {
				t.Error("the closed connection is still tracked")
			}
		})
	}
}
