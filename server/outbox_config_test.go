package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/server"
)

// OUTBOX_MAX_MESSAGES and OUTBOX_MAX_AGE: read, bounded, and a bad value
// names its variable (main exits 2 with it).
func TestOutboxConfig(t *testing.T) {
	tests := []struct {
		vars     map[string]string
		bad      string // the variable named, or "" for valid
		messages int
		age      time.Duration
	}{
		{vars: map[string]string{}, messages: 10000, age: 30 * time.Second},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "0"}, messages: 0, age: 30 * time.Second},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "500", "OUTBOX_MAX_AGE": "5s"}, messages: 500, age: 5 * time.Second},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "10000000", "OUTBOX_MAX_AGE": "10m"}, messages: 10_000_000, age: 10 * time.Minute},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "-1"}, bad: "OUTBOX_MAX_MESSAGES"},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "many"}, bad: "OUTBOX_MAX_MESSAGES"},
		{vars: map[string]string{"OUTBOX_MAX_MESSAGES": "10000001"}, bad: "OUTBOX_MAX_MESSAGES"},
		{vars: map[string]string{"OUTBOX_MAX_AGE": "0"}, bad: "OUTBOX_MAX_AGE"},
		{vars: map[string]string{"OUTBOX_MAX_AGE": "30"}, bad: "OUTBOX_MAX_AGE"},
		{vars: map[string]string{"OUTBOX_MAX_AGE": "11m"}, bad: "OUTBOX_MAX_AGE"},
	}
	for _, tt := range tests {
		c, err := server.ConfigFromEnv(env(tt.vars))
		var ce *server.ConfigError
		switch {
		case tt.bad != "" && (!errors.As(err, &ce) || ce.Variable != tt.bad):
			t.Errorf("%v: error %v, want one naming %s", tt.vars, err, tt.bad)
		case tt.bad == "" && err != nil:
			t.Errorf("%v: %v", tt.vars, err)
		case tt.bad == "" && (c.OutboxMaxMessages != tt.messages || c.OutboxMaxAge != tt.age):
			t.Errorf("%v: %d, %v; want %d, %v", tt.vars, c.OutboxMaxMessages, c.OutboxMaxAge, tt.messages, tt.age)
		}
	}
	// Configurations built by hand are checked too.
	c := server.Config{JWTSecret: []byte("x"), MaxPayloadBytes: 1, PingInterval: 1, PingTimeout: 1, ShutdownTimeout: 1, RateBurst: 1, OutboxMaxMessages: -1}
	var ce *server.ConfigError
	if err := c.Validate(); !errors.As(err, &ce) || ce.Variable != "OUTBOX_MAX_MESSAGES" {
		t.Errorf("Validate: %v", err)
	}
}
