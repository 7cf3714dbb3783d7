package server

import (
	"errors"
	"strings"
	"testing"
)

// TestTokenSubLimits: a well-signed token whose sub could not be an honest
// user id is refused like a forged one, and counted by limit.
func TestTokenSubLimits(t *testing.T) {
	srv := startServer(t, nil)
	tests := []struct {
		name, sub, reason string
	}{
		{"257 characters", strings.Repeat("s", 257), "too_long"},
		{"NUL", "ali\x00ce", "bad_characters"},
		{"RLO", "\u202eecila", "bad_characters"},
		{"replacement character", "ali\ufffdce", "bad_characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dialSocket(srv.Addr().String(), token(t, tt.sub))
			var ce *connectErr
			if !errors.As(err, &ce) || ce.Message != "unauthorized" || ce.Data["reason"] != "invalid_token" {
				t.Fatalf("connect = %v, want connect_error unauthorized invalid_token", err)
			}
		})
	}
	c := dial(t, srv, token(t, strings.Repeat("ü", 256)))
	c.close()
	key := func(arg, reason string) string { return arg + "\x00" + reason }
	want := map[string]uint64{key("token_sub", "too_long"): 1, key("token_sub", "bad_characters"): 3}
	for k, n := range want {
		if got := srv.metrics.limitRefusals.get(strings.Split(k, "\x00")).Load(); got != n {
			t.Errorf("limit refusals %q = %d, want %d", k, got, n)
		}
	}
}
