package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/web"
)

// TestShortJWTSecretWarnsOnce: a JWT_SECRET under 32 bytes is accepted
// with exactly one WARN line naming the variable, never the secret.
func TestShortJWTSecretWarnsOnce(t *testing.T) {
	tests := []struct {
		name, secret string
		warn         bool
	}{
		{"s3cret", "s3cret", true},
		{"31 bytes", "k7Qx2-" + strings.Repeat("z", 25), true},
		{"32 bytes", "k7Qx2-" + strings.Repeat("z", 26), false},
		{"development mode's random secret", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := server.ConfigFromEnv(env(map[string]string{"JWT_SECRET": tt.secret, "ADDR": "127.0.0.1:0"}))
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			srv, err := server.New(cfg, slog.New(slog.NewJSONHandler(&logs, nil)), web.Static())
			if err != nil {
				t.Fatalf("New refused the secret: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			warnings := 0
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var v map[string]any
				if line == "" || json.Unmarshal([]byte(line), &v) != nil {
					continue
				}
				if v["level"] == "WARN" && strings.Contains(line, "JWT_SECRET") {
					warnings++
				}
			}
			want := 0
			if tt.warn {
				want = 1
			}
			if warnings != want {
				t.Fatalf("%d warnings about JWT_SECRET, want %d; logs:\n%s", warnings, want, logs.String())
			}
			if tt.secret != "" && strings.Contains(logs.String(), tt.secret) {
				t.Fatalf("the secret is in the logs:\n%s", logs.String())
			}
		})
	}
}
