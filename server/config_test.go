package server_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/server"
)

// env is a getenv over a map: nothing of the real environment leaks in.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := server.ConfigFromEnv(env(nil))
	if err != nil {
		t.Fatalf("ConfigFromEnv(empty) = %v", err)
	}
	secret := c.JWTSecret
	c.JWTSecret = nil
	want := server.Config{
		Addr:            ":7999",
		DevMode:         true,
		DevTokens:       true,
		CORSOrigins:     []string{"*"},
		MaxPayloadBytes: 1_000_000,
		PingInterval:    25 * time.Second,
		PingTimeout:     20 * time.Second,
		RateLimit:       20,
		RateBurst:       40,
		ShutdownTimeout: 10 * time.Second,
		LogLevel:        slog.LevelInfo,
		// Recovery is on by default (the contract's RECOVERY_WINDOW=2m).
		RecoveryWindow:     2 * time.Minute,
		RecoveryMaxPackets: 1000,
		// The transport's bounds.
		MaxQueuedBytes:   4 << 20,
		ConnectTimeout:   10 * time.Second,
		HTTPIdleTimeout:  60 * time.Second,
		HTTPBodyTimeout:  30 * time.Second,
		HTTPWriteTimeout: 30 * time.Second,
		// The outbox keeps cross-process deliveries through a Redis outage.
		OutboxMaxMessages: 10000,
		OutboxMaxAge:      30 * time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults = %+v\nwant       %+v", c, want)
	}
	// Development mode signs with a random per-process secret.
	if len(secret) < 16 {
		t.Fatalf("dev secret %q is too short to be random", secret)
	}
	again, _ := server.ConfigFromEnv(env(nil))
	if string(again.JWTSecret) == string(secret) {
		t.Fatal("two configurations share a development secret")
	}
}

func TestConfigModes(t *testing.T) {
	tests := []struct {
		name      string
		vars      map[string]string
		devMode   bool
		devTokens bool
		cors      []string
	}{
		{"secret set: no dev tokens, no CORS", map[string]string{"JWT_SECRET": "s3cret"}, false, false, nil},
		{"secret and DEV_TOKENS=1", map[string]string{"JWT_SECRET": "s3cret", "DEV_TOKENS": "1"}, false, true, nil},
		{"secret and DEV_TOKENS=true", map[string]string{"JWT_SECRET": "s3cret", "DEV_TOKENS": "true"}, false, true, nil},
		{"dev mode and DEV_TOKENS=0", map[string]string{"DEV_TOKENS": "0"}, true, false, []string{"*"}},
		{"dev mode and DEV_TOKENS=false", map[string]string{"DEV_TOKENS": "false"}, true, false, []string{"*"}},
		{"secret and origins", map[string]string{"JWT_SECRET": "s3cret", "CORS_ORIGINS": "https://a.example, https://b.example,"},
			false, false, []string{"https://a.example", "https://b.example"}},
		{"dev mode with origins replaces *", map[string]string{"CORS_ORIGINS": "https://a.example"}, true, true, []string{"https://a.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := server.ConfigFromEnv(env(tt.vars))
			if err != nil {
				t.Fatalf("ConfigFromEnv = %v", err)
			}
			if c.DevMode != tt.devMode || c.DevTokens != tt.devTokens || !reflect.DeepEqual(c.CORSOrigins, tt.cors) {
				t.Fatalf("DevMode %v, DevTokens %v, CORS %q; want %v, %v, %q", c.DevMode, c.DevTokens, c.CORSOrigins, tt.devMode, tt.devTokens, tt.cors)
			}
			if s := tt.vars["JWT_SECRET"]; s != "" && string(c.JWTSecret) != s {
				t.Fatalf("JWTSecret = %q, want %q", c.JWTSecret, s)
			}
		})
	}
}

func TestConfigGoodValues(t *testing.T) {
	tests := []struct {
		vars  map[string]string
		check func(server.Config) bool
	}{
		{map[string]string{"ADDR": "127.0.0.1:0"}, func(c server.Config) bool { return c.Addr == "127.0.0.1:0" }},
		{map[string]string{"ADDR": "[::1]:8080"}, func(c server.Config) bool { return c.Addr == "[::1]:8080" }},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}, func(c server.Config) bool { return c.RedisURL == "redis://127.0.0.1:6379/0" }},
		{map[string]string{"REDIS_URL": "redis://:pw@redis:6380/2"}, func(c server.Config) bool { return c.RedisURL == "redis://:pw@redis:6380/2" }},
		{map[string]string{"REDIS_URL": "redis://redis"}, func(c server.Config) bool { return c.RedisURL == "redis://redis" }},
		{map[string]string{}, func(c server.Config) bool { return c.RedisAdapter == "" && !c.RedisCluster }},
		{map[string]string{"REDIS_ADAPTER": "Sharded"}, func(c server.Config) bool { return c.RedisAdapter == "sharded" }},
		{map[string]string{"REDIS_ADAPTER": "classic"}, func(c server.Config) bool { return c.RedisAdapter == "classic" }},
		{map[string]string{"REDIS_CLUSTER": "1", "REDIS_URL": "redis://seed:7000"}, func(c server.Config) bool { return c.RedisCluster }},
		{map[string]string{"REDIS_CLUSTER": "yes", "REDIS_URL": "redis://seed:7000/0"}, func(c server.Config) bool { return c.RedisCluster }},
		{map[string]string{"REDIS_CLUSTER": "off"}, func(c server.Config) bool { return !c.RedisCluster }},
		{map[string]string{"API_KEY": "k"}, func(c server.Config) bool { return c.APIKey == "k" }},
		{map[string]string{"MAX_PAYLOAD_BYTES": "1"}, func(c server.Config) bool { return c.MaxPayloadBytes == 1 }},
		{map[string]string{"MAX_QUEUED_BYTES": "65536", "MAX_PAYLOAD_BYTES": "32768"}, func(c server.Config) bool { return c.MaxQueuedBytes == 65536 }},
		// Unset, it follows a MAX_PAYLOAD_BYTES over 2 MiB: twice that.
		{map[string]string{"MAX_PAYLOAD_BYTES": "5000000"}, func(c server.Config) bool { return c.MaxQueuedBytes == 10_000_000 }},
		{map[string]string{"CONNECT_TIMEOUT": "1s"}, func(c server.Config) bool { return c.ConnectTimeout == time.Second }},
		{map[string]string{"HTTP_IDLE_TIMEOUT": "2s", "HTTP_BODY_TIMEOUT": "3s", "HTTP_WRITE_TIMEOUT": "4s"}, func(c server.Config) bool {
			return c.HTTPIdleTimeout == 2*time.Second && c.HTTPBodyTimeout == 3*time.Second && c.HTTPWriteTimeout == 4*time.Second
		}},
		{map[string]string{"PING_INTERVAL": "1500ms", "PING_TIMEOUT": "2m"}, func(c server.Config) bool {
			return c.PingInterval == 1500*time.Millisecond && c.PingTimeout == 2*time.Minute
		}},
		{map[string]string{"SHUTDOWN_TIMEOUT": "1s"}, func(c server.Config) bool { return c.ShutdownTimeout == time.Second }},
		{map[string]string{"RATE_LIMIT": "0"}, func(c server.Config) bool { return c.RateLimit == 0 }},
		{map[string]string{"RATE_LIMIT": "2.5", "RATE_BURST": "1"}, func(c server.Config) bool { return c.RateLimit == 2.5 && c.RateBurst == 1 }},
		{map[string]string{"LOG_LEVEL": "debug"}, func(c server.Config) bool { return c.LogLevel == slog.LevelDebug }},
		{map[string]string{"LOG_LEVEL": "WARN"}, func(c server.Config) bool { return c.LogLevel == slog.LevelWarn }},
		{map[string]string{"LOG_LEVEL": "error"}, func(c server.Config) bool { return c.LogLevel == slog.LevelError }},
		{map[string]string{"ADVERTISE_ADDR": "10.0.0.5:7999"}, func(c server.Config) bool { return c.AdvertiseAddr == "10.0.0.5:7999" }},
		{map[string]string{"ADVERTISE_ADDR": "sb1:7999"}, func(c server.Config) bool { return c.AdvertiseAddr == "sb1:7999" }},
		{map[string]string{"ADVERTISE_ADDR": "[fd00::1]:7999"}, func(c server.Config) bool { return c.AdvertiseAddr == "[fd00::1]:7999" }},
		{map[string]string{"RECOVERY_WINDOW": "0"}, func(c server.Config) bool { return c.RecoveryWindow == 0 }},
		{map[string]string{"RECOVERY_WINDOW": "0s"}, func(c server.Config) bool { return c.RecoveryWindow == 0 }},
		{map[string]string{"RECOVERY_WINDOW": "1s"}, func(c server.Config) bool { return c.RecoveryWindow == time.Second }},
		{map[string]string{"RECOVERY_WINDOW": "24h"}, func(c server.Config) bool { return c.RecoveryWindow == 24*time.Hour }},
		{map[string]string{"RECOVERY_MAX_PACKETS": "1"}, func(c server.Config) bool { return c.RecoveryMaxPackets == 1 }},
		{map[string]string{"RECOVERY_MAX_PACKETS": "1000000"}, func(c server.Config) bool { return c.RecoveryMaxPackets == 1_000_000 }},
		{map[string]string{"REDIS_URL": "redis://h:1/0", "REDIS_ADAPTER": "sharded"}, func(c server.Config) bool { return c.RecoveryWindow == 0 }},
		{map[string]string{"REDIS_URL": "redis://h:1/0", "REDIS_ADAPTER": "sharded", "RECOVERY_WINDOW": "0"}, func(c server.Config) bool { return c.RecoveryWindow == 0 }},
		{map[string]string{"REDIS_ADAPTER": "sharded"}, func(c server.Config) bool { return c.RecoveryWindow == 2*time.Minute }}, // in memory: recovers
	}
	for _, tt := range tests {
		c, err := server.ConfigFromEnv(env(tt.vars))
		if err != nil || !tt.check(c) {
			t.Errorf("%v: ConfigFromEnv = %+v, %v", tt.vars, c, err)
		}
	}
}

// wantConfigError asserts that err is a *server.ConfigError naming variable,
// and that its one-line message names it too.
func wantConfigError(t *testing.T, err error, variable string) {
	t.Helper()
	var ce *server.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *server.ConfigError for %s", err, err, variable)
	}
	if ce.Variable != variable {
		t.Fatalf("ConfigError.Variable = %q, want %q (%v)", ce.Variable, variable, err)
	}
	if msg := err.Error(); !strings.Contains(msg, variable) || strings.Contains(msg, "\n") {
		t.Fatalf("message %q is not one line naming %s", msg, variable)
	}
}

func TestConfigBadValues(t *testing.T) {
	tests := []struct{ variable, value string }{
		{"ADDR", "nope"},
		{"ADDR", "127.0.0.1"},
		{"ADDR", ":99999"},
		{"ADDR", ":-1"},
		{"REDIS_URL", "http://x"},
		{"REDIS_URL", "redis://:99999999"},
		{"REDIS_URL", "redis://h:0"},
		{"REDIS_URL", "redis://h/abc"},
		{"REDIS_URL", "redis://"},
		{"REDIS_URL", "::"},
		{"REDIS_URL", "localhost:6379"},
		{"REDIS_ADAPTER", "streams"},
		{"REDIS_ADAPTER", "sharded-private"},
		{"REDIS_CLUSTER", "2"},
		{"REDIS_CLUSTER", "cluster"},
		{"PING_INTERVAL", "soon"},
		{"PING_INTERVAL", "-1s"},
		{"PING_INTERVAL", "0"},
		{"PING_INTERVAL", "25"},
		{"PING_TIMEOUT", "soon"},
		{"PING_TIMEOUT", "-1s"},
		{"PING_TIMEOUT", "0"},
		{"SHUTDOWN_TIMEOUT", "soon"},
		{"SHUTDOWN_TIMEOUT", "-1s"},
		{"SHUTDOWN_TIMEOUT", "0s"},
		{"RATE_LIMIT", "-1"},
		{"RATE_LIMIT", "x"},
		{"RATE_LIMIT", "NaN"},
		{"RATE_LIMIT", "Inf"},
		{"RATE_BURST", "0"},
		{"RATE_BURST", "1.5"},
		{"RATE_BURST", "-3"},
		{"MAX_PAYLOAD_BYTES", "0"},
		{"MAX_PAYLOAD_BYTES", "abc"},
		{"MAX_PAYLOAD_BYTES", "1e6"},
		{"MAX_QUEUED_BYTES", "0"},
		{"MAX_QUEUED_BYTES", "-1"},
		{"MAX_QUEUED_BYTES", "4MiB"},
		{"MAX_QUEUED_BYTES", "1999999"}, // under twice the default MAX_PAYLOAD_BYTES
		{"CONNECT_TIMEOUT", "0"},
		{"CONNECT_TIMEOUT", "10"},
		{"CONNECT_TIMEOUT", "-1s"},
		{"HTTP_IDLE_TIMEOUT", "0s"},
		{"HTTP_IDLE_TIMEOUT", "soon"},
		{"HTTP_BODY_TIMEOUT", "30"},
		{"HTTP_BODY_TIMEOUT", "-5s"},
		{"HTTP_WRITE_TIMEOUT", "0"},
		{"HTTP_WRITE_TIMEOUT", "x"},
		{"LOG_LEVEL", "loud"},
		{"DEV_TOKENS", "maybe"},
		{"ADVERTISE_ADDR", "sb1"},
		{"ADVERTISE_ADDR", ":7999"},
		{"ADVERTISE_ADDR", "0.0.0.0:7999"},
		{"ADVERTISE_ADDR", "[::]:7999"},
		{"ADVERTISE_ADDR", "sb1:0"},
		{"ADVERTISE_ADDR", "sb1:99999"},
		{"ADVERTISE_ADDR", "http://sb1:7999"},
		{"RECOVERY_WINDOW", "soon"},
		{"RECOVERY_WINDOW", "120"},
		{"RECOVERY_WINDOW", "-2m"},
		{"RECOVERY_WINDOW", "500ms"},
		{"RECOVERY_WINDOW", "25h"},
		{"RECOVERY_MAX_PACKETS", "0"},
		{"RECOVERY_MAX_PACKETS", "-1"},
		{"RECOVERY_MAX_PACKETS", "1000001"},
		{"RECOVERY_MAX_PACKETS", "99999999999999999999"},
		{"RECOVERY_MAX_PACKETS", "many"},
	}
	for _, tt := range tests {
		for _, secret := range []string{"", "s3cret"} {
			_, err := server.ConfigFromEnv(env(map[string]string{tt.variable: tt.value, "JWT_SECRET": secret}))
			t.Run(tt.variable+"="+tt.value, func(t *testing.T) { wantConfigError(t, err, tt.variable) })
		}
	}
}

// A Redis Cluster has database 0 only; the password of a bad REDIS_URL is
// not repeated in the error.
func TestConfigRedisClusterURL(t *testing.T) {
	_, err := server.ConfigFromEnv(env(map[string]string{"REDIS_URL": "redis://:hush@seed:7000/2", "REDIS_CLUSTER": "1"}))
	wantConfigError(t, err, "REDIS_URL")
	if strings.Contains(err.Error(), "hush") {
		t.Fatalf("the password is in %q", err)
	}
	if _, err := server.ConfigFromEnv(env(map[string]string{"REDIS_URL": "redis://seed:7000/2"})); err != nil {
		t.Fatalf("database 2 of one Redis: %v", err)
	}
}

// TestConfigMalformedRedisURLHidesPassword: however REDIS_URL is broken,
// its password is not in the error (which is the exit-2 line).
func TestConfigMalformedRedisURLHidesPassword(t *testing.T) {
	for _, raw := range []string{
		"redis://:hush-42@h:notaport/0",
		"redis://:hush-42 x@h:6379/0",
		"redis://:hush-42#x@h:6379/0",
		"redis://:hush-42/x@h:6379/0",
		"redis://user:hush-42@h:6379/0%zz",
		"redis://:hush-42@[::1:6379",
		"http://:hush-42@h:6379/0",
		"redis://:hush-42@h:6379/db",
		"redis://:hush-42@:6379/0",
	} {
		t.Run(raw, func(t *testing.T) {
			_, err := server.ConfigFromEnv(env(map[string]string{"REDIS_URL": raw}))
			wantConfigError(t, err, "REDIS_URL")
			if strings.Contains(err.Error(), "hush") {
				t.Fatalf("the password is in %q", err)
			}
		})
	}
}

// TestConfigValidate re-checks a configuration built by hand, as embedders
// build it, starting from a valid one.
func TestConfigValidate(t *testing.T) {
	base, err := server.ConfigFromEnv(env(map[string]string{"JWT_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("Validate(ConfigFromEnv) = %v", err)
	}
	tests := []struct {
		variable string
		mutate   func(*server.Config)
	}{
		{"ADDR", func(c *server.Config) { c.Addr = "nope" }},
		{"ADDR", func(c *server.Config) { c.Addr = ":99999" }},
		{"REDIS_URL", func(c *server.Config) { c.RedisURL = "http://x" }},
		{"REDIS_URL", func(c *server.Config) { c.RedisURL = "redis://:99999999" }},
		{"REDIS_URL", func(c *server.Config) { c.RedisURL = "redis://h/abc" }},
		{"REDIS_URL", func(c *server.Config) { c.RedisURL = "::" }},
		{"JWT_SECRET", func(c *server.Config) { c.JWTSecret = nil }},
		{"PING_INTERVAL", func(c *server.Config) { c.PingInterval = 0 }},
		{"PING_INTERVAL", func(c *server.Config) { c.PingInterval = -time.Second }},
		{"PING_TIMEOUT", func(c *server.Config) { c.PingTimeout = 0 }},
		{"SHUTDOWN_TIMEOUT", func(c *server.Config) { c.ShutdownTimeout = -1 }},
		{"RATE_LIMIT", func(c *server.Config) { c.RateLimit = -1 }},
		{"RATE_BURST", func(c *server.Config) { c.RateBurst = 0 }},
		{"MAX_PAYLOAD_BYTES", func(c *server.Config) { c.MaxPayloadBytes = 0 }},
		{"MAX_QUEUED_BYTES", func(c *server.Config) { c.MaxQueuedBytes = c.MaxPayloadBytes }},
		{"MAX_QUEUED_BYTES", func(c *server.Config) { c.MaxQueuedBytes = -1 }},
		{"CONNECT_TIMEOUT", func(c *server.Config) { c.ConnectTimeout = -time.Second }},
		{"HTTP_IDLE_TIMEOUT", func(c *server.Config) { c.HTTPIdleTimeout = -time.Second }},
		{"HTTP_BODY_TIMEOUT", func(c *server.Config) { c.HTTPBodyTimeout = -time.Second }},
		{"HTTP_WRITE_TIMEOUT", func(c *server.Config) { c.HTTPWriteTimeout = -time.Second }},
		{"DEBUG_ADDR", func(c *server.Config) { c.DebugAddr = "nope" }},
		{"ADVERTISE_ADDR", func(c *server.Config) { c.AdvertiseAddr = ":7999" }},
		{"RECOVERY_WINDOW", func(c *server.Config) { c.RecoveryWindow = -time.Second }},
		{"RECOVERY_WINDOW", func(c *server.Config) { c.RecoveryWindow = time.Millisecond }},
		{"RECOVERY_MAX_PACKETS", func(c *server.Config) { c.RecoveryMaxPackets = -1 }},
		{"RECOVERY_WINDOW", func(c *server.Config) { c.RedisURL, c.RedisAdapter = "redis://h:1/0", server.AdapterSharded }},
	}
	for _, tt := range tests {
		c := base
		tt.mutate(&c)
		t.Run(tt.variable, func(t *testing.T) { wantConfigError(t, c.Validate(), tt.variable) })
	}
}

// TestConfigZeroValuesDocumentedAsDefaults: Config documents `Addr ""` as
// ":7999" and RateLimit 0 as "disabled", so a hand-built configuration that
// leaves them zero must pass Validate (server.New runs it).
func TestConfigZeroValuesDocumentedAsDefaults(t *testing.T) {
	base, err := server.ConfigFromEnv(env(map[string]string{"JWT_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*server.Config){
		`Addr ""`:                     func(c *server.Config) { c.Addr = "" },
		"RateLimit 0":                 func(c *server.Config) { c.RateLimit = 0 },
		"no CORS":                     func(c *server.Config) { c.CORSOrigins = nil },
		`DebugAddr ""`:                func(c *server.Config) { c.DebugAddr = "" },
		`RedisURL ""`:                 func(c *server.Config) { c.RedisURL = "" },
		`NodeID ""`:                   func(c *server.Config) { c.NodeID = "" },
		"LogLevel zero":               func(c *server.Config) { c.LogLevel = 0 },
		`AdvertiseAddr ""`:            func(c *server.Config) { c.AdvertiseAddr = "" },
		"no recovery":                 func(c *server.Config) { c.RecoveryWindow = 0 },
		"RecoveryMaxPackets 0 (1000)": func(c *server.Config) { c.RecoveryMaxPackets = 0 },
		"transport bounds 0 (defaults)": func(c *server.Config) {
			c.MaxQueuedBytes, c.ConnectTimeout, c.HTTPIdleTimeout, c.HTTPBodyTimeout, c.HTTPWriteTimeout = 0, 0, 0, 0, 0
		},
	} {
		c := base
		mutate(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate = %v, want nil", name, err)
		}
	}
}

// Recovery is the classic adapter's: with REDIS_ADAPTER=sharded it is off
// by default, and asking for it is refused, naming RECOVERY_WINDOW.
func TestConfigRecoveryWithTheShardedAdapter(t *testing.T) {
	_, err := server.ConfigFromEnv(env(map[string]string{
		"REDIS_URL": "redis://h:1/0", "REDIS_ADAPTER": "sharded", "RECOVERY_WINDOW": "2m", "JWT_SECRET": "s",
	}))
	wantConfigError(t, err, "RECOVERY_WINDOW")
}

// TestConfigSecretFiles: JWT_SECRET_FILE and API_KEY_FILE are read when the
// variable itself is unset or empty (the variable wins), trimmed; a file
// that cannot be read, is empty or is too big exits naming the _FILE
// variable, never printing its content.
func TestConfigSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jwtFile := write("jwt", "file-secret-0123456789abcdef0123456789\n")
	keyFile := write("key", "  file-api-key\n")

	c, err := server.ConfigFromEnv(env(map[string]string{"JWT_SECRET_FILE": jwtFile, "API_KEY_FILE": keyFile}))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.JWTSecret) != "file-secret-0123456789abcdef0123456789" || c.APIKey != "file-api-key" || c.DevMode || c.DevTokens {
		t.Fatalf("from files: secret %q, key %q, dev mode %v, dev tokens %v", c.JWTSecret, c.APIKey, c.DevMode, c.DevTokens)
	}
	// An empty variable (as compose passes an unset one) defers to the file.
	c, err = server.ConfigFromEnv(env(map[string]string{"JWT_SECRET": "", "JWT_SECRET_FILE": jwtFile, "API_KEY": "", "API_KEY_FILE": keyFile}))
	if err != nil || string(c.JWTSecret) != "file-secret-0123456789abcdef0123456789" || c.APIKey != "file-api-key" {
		t.Fatalf("empty variables: %v, %q, %q", err, c.JWTSecret, c.APIKey)
	}
	// The variable wins over its file.
	c, err = server.ConfigFromEnv(env(map[string]string{"JWT_SECRET": "from-the-variable", "JWT_SECRET_FILE": jwtFile, "API_KEY": "k", "API_KEY_FILE": keyFile}))
	if err != nil || string(c.JWTSecret) != "from-the-variable" || c.APIKey != "k" {
		t.Fatalf("variables over files: %v, %q, %q", err, c.JWTSecret, c.APIKey)
	}

	empty := write("empty", " \n\t")
	big := write("big", strings.Repeat("x", 5000))
	for _, tt := range []struct{ variable, file string }{
		{"JWT_SECRET_FILE", filepath.Join(dir, "missing")},
		{"JWT_SECRET_FILE", empty},
		{"JWT_SECRET_FILE", big},
		{"JWT_SECRET_FILE", dir},
		{"API_KEY_FILE", filepath.Join(dir, "missing")},
		{"API_KEY_FILE", empty},
	} {
		_, err := server.ConfigFromEnv(env(map[string]string{tt.variable: tt.file}))
		var ce *server.ConfigError
		if !errors.As(err, &ce) || ce.Variable != tt.variable || ce.Value != tt.file {
			t.Fatalf("%s=%s: %v", tt.variable, tt.file, err)
		}
		if strings.Contains(err.Error(), "xxxxx") {
			t.Fatalf("%s: the error holds the file's content: %v", tt.variable, err)
		}
	}
}
