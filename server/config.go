package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/relay"
)

// Config is the server's configuration. ConfigFromEnv reads it from the
// environment; New validates it again because embedders build it by hand.
type Config struct {
	Addr string // listen address; "" is ":7999"

	// RedisURL is redis://[:password@]host:port/db; "" runs one process
	// with the in-memory adapter.
	RedisURL string
	// RedisAdapter is the adapter's wire format: "classic" (also "") or
	// "sharded" (Redis 7 sharded pub/sub, one subscription per room held).
	RedisAdapter string
	// RedisCluster: RedisURL names one seed node of a Redis Cluster
	// (database 0); false is one Redis.
	RedisCluster bool

	// JWTSecret is the HS256 secret. Empty means development mode: a random
	// per-process secret, dev tokens on and permissive CORS by default.
	JWTSecret []byte
	DevMode   bool
	// DevTokens enables POST /api/dev/token.
	DevTokens bool
	// APIKey is the bearer key of POST /api/events; "" answers 404 there.
	APIKey string
	// CORSOrigins are the allowed origins; "*" allows any. Empty allows none.
	CORSOrigins []string

	MaxPayloadBytes int64         // largest Engine.IO message and HTTP body
	PingInterval    time.Duration // Engine.IO heartbeat
	PingTimeout     time.Duration
	RateLimit       float64 // events per second per socket; 0 disables
	RateBurst       int     // bucket size
	ShutdownTimeout time.Duration
	LogLevel        slog.Level

	// NodeID names this process in the X-Switchboard-Node header and
	// /api/whoami; "" is the host name with a random suffix.
	NodeID string
	// DebugAddr serves net/http/pprof when set; "" (the default) is off.
	DebugAddr string
	// AdvertiseAddr is the host:port at which the other processes reach
	// this one, to relay the requests of the sessions it holds (with
	// RedisURL only). "" derives it from Addr: see advertiseAddr.
	AdvertiseAddr string

	// RecoveryWindow is how long a disconnected client can recover its
	// session (and what it missed) on any process; 0 disables.
	RecoveryWindow time.Duration
	// RecoveryMaxPackets bounds the packets kept per room for recovery;
	// 0 is 1000.
	RecoveryMaxPackets int

	// MaxQueuedBytes bounds the bytes waiting to be written to one
	// connection (a polling session's queue, or what the kernel did not
	// take on a websocket); a connection over it is closed and counted as
	// a slow consumer. At least twice MaxPayloadBytes; 0 is 4 MiB or twice
	// MaxPayloadBytes, whichever is larger.
	MaxQueuedBytes int64
	// ConnectTimeout closes a connection that has not joined /socket with
	// a valid token in time, on every protocol version; 0 is 10 s.
	ConnectTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection idle between requests
	// for that long; 0 is 60 s.
	HTTPIdleTimeout time.Duration
	// HTTPBodyTimeout bounds the reading of one request body (a polling
	// POST, /api/events); a body still unread then is cut. 0 is 30 s.
	HTTPBodyTimeout time.Duration
	// HTTPWriteTimeout bounds the writing of one answer, counted from the
	// request's start; a long-poll GET gets PingInterval+PingTimeout more
	// (it may be parked that long), and websockets none (their writes are
	// bounded by MaxQueuedBytes). 0 is 30 s.
	HTTPWriteTimeout time.Duration
	// OutboxMaxMessages bounds the cross-process deliveries kept while
	// Redis is away, published when it answers again; 0 turns the outbox
	// off (ConfigFromEnv's default is 10000). OutboxMaxAge bounds how long
	// one is kept (0 is 30s).
	OutboxMaxMessages int
	OutboxMaxAge      time.Duration
}

const defaultAddr = ":7999"

// The transport's defaults (MAX_QUEUED_BYTES, CONNECT_TIMEOUT and the
// HTTP_*_TIMEOUT variables).
const (
	defaultMaxQueuedBytes   = 4 << 20
	defaultConnectTimeout   = 10 * time.Second
	defaultHTTPIdleTimeout  = 60 * time.Second
	defaultHTTPBodyTimeout  = 30 * time.Second
	defaultHTTPWriteTimeout = 30 * time.Second
)

// minJWTSecretBytes is the shortest JWT_SECRET taken without a warning:
// HS256's key is as strong as the secret, and a short one can be guessed
// offline from any one token. Shorter secrets are accepted (the contract
// takes any non-blank one), with one warning at start.
const minJWTSecretBytes = 32

// weakSecret reports a JWT_SECRET shorter than minJWTSecretBytes
// (development mode's random secret never is).
func (c *Config) weakSecret() bool { return len(c.JWTSecret) < minJWTSecretBytes }

// ConfigError names the variable whose value is bad.
type ConfigError struct {
	Variable string
	Value    string
	Reason   string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid configuration: %s=%q: %s", e.Variable, e.Value, e.Reason)
}

// ConfigFromEnv reads the contract's environment variables.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	bad := func(k, why string) error { return &ConfigError{Variable: k, Value: get(k), Reason: why} }
	c := Config{
		Addr:         get("ADDR"),
		RedisURL:     get("REDIS_URL"),
		RedisAdapter: strings.ToLower(get("REDIS_ADAPTER")),
		APIKey:       get("API_KEY"),
		NodeID:       get("NODE_ID"),
		DebugAddr:    get("DEBUG_ADDR"),

		AdvertiseAddr: get("ADVERTISE_ADDR"),
	}
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	// A secret may come from a file (Docker's secrets convention; the
	// compose file generates them): used when the variable itself is unset
	// or empty.
	fromFile := func(k string) (string, error) {
		f := get(k + "_FILE")
		if f == "" || getenv(k) != "" {
			return "", nil
		}
		v, err := readSecretFile(f)
		if err != nil {
			return "", bad(k+"_FILE", err.Error())
		}
		return v, nil
	}
	jwtFile, err := fromFile("JWT_SECRET")
	if err != nil {
		return c, err
	}
	if c.APIKey == "" {
		if c.APIKey, err = fromFile("API_KEY"); err != nil {
			return c, err
		}
	}
	if secret := get("JWT_SECRET"); secret != "" {
		c.JWTSecret = []byte(secret)
	} else if jwtFile != "" {
		c.JWTSecret = []byte(jwtFile)
	} else if getenv("JWT_SECRET") != "" {
		// Blank but set: almost certainly a templating mistake, and silently
		// falling back to development mode would turn dev tokens on.
		return c, bad("JWT_SECRET", "must not be blank; unset it for development mode")
	} else {
		c.DevMode = true
		c.JWTSecret = []byte(rand.Text() + rand.Text())
	}

	switch strings.ToLower(get("DEV_TOKENS")) {
	case "":
		c.DevTokens = c.DevMode
	case "1", "true", "on", "yes":
		c.DevTokens = true
	case "0", "false", "off", "no":
		c.DevTokens = false
	default:
		return c, bad("DEV_TOKENS", "want 1 or 0")
	}

	if v := get("CORS_ORIGINS"); v != "" {
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
		}
	} else if c.DevMode {
		c.CORSOrigins = []string{"*"}
	}

	switch strings.ToLower(get("REDIS_CLUSTER")) {
	case "", "0", "false", "off", "no":
	case "1", "true", "on", "yes":
		c.RedisCluster = true
	default:
		return c, bad("REDIS_CLUSTER", "want 1 or 0")
	}

	if c.MaxPayloadBytes, err = positiveInt(get("MAX_PAYLOAD_BYTES"), 1_000_000); err != nil {
		return c, bad("MAX_PAYLOAD_BYTES", err.Error())
	}
	if c.PingInterval, err = duration(get("PING_INTERVAL"), 25*time.Second); err != nil {
		return c, bad("PING_INTERVAL", err.Error())
	}
	if c.PingTimeout, err = duration(get("PING_TIMEOUT"), 20*time.Second); err != nil {
		return c, bad("PING_TIMEOUT", err.Error())
	}
	if c.ShutdownTimeout, err = duration(get("SHUTDOWN_TIMEOUT"), 10*time.Second); err != nil {
		return c, bad("SHUTDOWN_TIMEOUT", err.Error())
	}
	if c.RateLimit, err = rate(get("RATE_LIMIT"), 20); err != nil {
		return c, bad("RATE_LIMIT", err.Error())
	}
	burst, err := positiveInt(get("RATE_BURST"), 40)
	if err != nil {
		return c, bad("RATE_BURST", err.Error())
	}
	c.RateBurst = int(burst)
	if c.LogLevel, err = level(get("LOG_LEVEL")); err != nil {
		return c, bad("LOG_LEVEL", err.Error())
	}
	if c.RecoveryWindow, err = recoveryWindow(get("RECOVERY_WINDOW")); err != nil {
		return c, bad("RECOVERY_WINDOW", err.Error())
	}
	if c.RedisURL != "" && c.RedisAdapter == AdapterSharded {
		// Recovery orders every stored broadcast through one Redis node,
		// which the sharded adapter's pub/sub cannot (its channels are
		// spread over a cluster's nodes): off by default with it, and
		// refused when asked for.
		if get("RECOVERY_WINDOW") != "" && c.RecoveryWindow != 0 {
			return c, bad("RECOVERY_WINDOW", "not available with REDIS_ADAPTER=sharded: set 0, or use the classic adapter")
		}
		c.RecoveryWindow = 0
	}
	maxPackets, err := positiveInt(get("RECOVERY_MAX_PACKETS"), defaultRecoveryMaxPackets)
	if err != nil {
		return c, bad("RECOVERY_MAX_PACKETS", err.Error())
	}
	c.RecoveryMaxPackets = int(min(maxPackets, maxRecoveryMaxPackets+1)) // over the bound: Validate names it
	if err := c.transportFromEnv(get, bad); err != nil {
		return c, err
	}
	if c.OutboxMaxMessages, err = outboxMessages(get("OUTBOX_MAX_MESSAGES")); err != nil {
		return c, bad("OUTBOX_MAX_MESSAGES", err.Error())
	}
	if c.OutboxMaxAge, err = duration(get("OUTBOX_MAX_AGE"), defaultOutboxMaxAge); err != nil || c.OutboxMaxAge > maxOutboxMaxAge {
		return c, bad("OUTBOX_MAX_AGE", "want a duration from 1ms to 10m, such as 30s")
	}
	return c, c.Validate()
}

// transportFromEnv reads the per-connection bounds and the HTTP timeouts.
func (c *Config) transportFromEnv(get func(string) string, bad func(k, why string) error) error {
	var err error
	if c.MaxQueuedBytes, err = positiveInt(get("MAX_QUEUED_BYTES"), max(defaultMaxQueuedBytes, 2*c.MaxPayloadBytes)); err != nil {
		return bad("MAX_QUEUED_BYTES", err.Error())
	}
	for _, d := range []struct {
		name string
		dst  *time.Duration
		def  time.Duration
	}{
		{"CONNECT_TIMEOUT", &c.ConnectTimeout, defaultConnectTimeout},
		{"HTTP_IDLE_TIMEOUT", &c.HTTPIdleTimeout, defaultHTTPIdleTimeout},
		{"HTTP_BODY_TIMEOUT", &c.HTTPBodyTimeout, defaultHTTPBodyTimeout},
		{"HTTP_WRITE_TIMEOUT", &c.HTTPWriteTimeout, defaultHTTPWriteTimeout},
	} {
		if *d.dst, err = duration(get(d.name), d.def); err != nil {
			return bad(d.name, err.Error())
		}
	}
	return nil
}

// transportDefaults fills the zero values of the transport's fields, for
// configurations built by hand.
func (c *Config) transportDefaults() {
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = max(defaultMaxQueuedBytes, 2*c.MaxPayloadBytes)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = defaultHTTPIdleTimeout
	}
	if c.HTTPBodyTimeout == 0 {
		c.HTTPBodyTimeout = defaultHTTPBodyTimeout
	}
	if c.HTTPWriteTimeout == 0 {
		c.HTTPWriteTimeout = defaultHTTPWriteTimeout
	}
}

// validateTransport checks the transport's fields; zero values are
// defaults.
func (c *Config) validateTransport() error {
	bad := func(k, v, why string) error { return &ConfigError{Variable: k, Value: v, Reason: why} }
	switch {
	case c.MaxQueuedBytes < 0 || c.MaxQueuedBytes != 0 && c.MaxQueuedBytes < 2*c.MaxPayloadBytes:
		return bad("MAX_QUEUED_BYTES", strconv.FormatInt(c.MaxQueuedBytes, 10), "must be at least twice MAX_PAYLOAD_BYTES")
	case c.ConnectTimeout < 0:
		return bad("CONNECT_TIMEOUT", c.ConnectTimeout.String(), "must be positive")
	case c.HTTPIdleTimeout < 0:
		return bad("HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout.String(), "must be positive")
	case c.HTTPBodyTimeout < 0:
		return bad("HTTP_BODY_TIMEOUT", c.HTTPBodyTimeout.String(), "must be positive")
	case c.HTTPWriteTimeout < 0:
		return bad("HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout.String(), "must be positive")
	}
	return nil
}

// Recovery's defaults and bounds.
const (
	defaultRecoveryWindow     = 2 * time.Minute
	maxRecoveryWindow         = 24 * time.Hour
	defaultRecoveryMaxPackets = 1000
	maxRecoveryMaxPackets     = 1_000_000
)

// The outbox's defaults and bounds.
const (
	defaultOutboxMaxMessages = 10_000
	maxOutboxMaxMessages     = 10_000_000
	defaultOutboxMaxAge      = 30 * time.Second
	maxOutboxMaxAge          = 10 * time.Minute
)

// outboxMessages reads OUTBOX_MAX_MESSAGES: 0 (off) to 10000000.
func outboxMessages(v string) (int, error) {
	if v == "" {
		return defaultOutboxMaxMessages, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxOutboxMaxMessages {
		return 0, fmt.Errorf("want 0 (off) or a count up to 10000000, such as 10000")
	}
	return n, nil
}

// recoveryWindow reads RECOVERY_WINDOW: 0 (off), or 1s to 24h.
func recoveryWindow(v string) (time.Duration, error) {
	if v == "" {
		return defaultRecoveryWindow, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d != 0 && (d < time.Second || d > maxRecoveryWindow) {
		return 0, fmt.Errorf("want 0 (off) or a duration from 1s to 24h, such as 2m")
	}
	return d, nil
}

// Validate checks what ConfigFromEnv checks, for configurations built by
// hand. An empty Addr is valid: New listens on ":7999" then.
func (c *Config) Validate() error {
	bad := func(k, v, why string) error { return &ConfigError{Variable: k, Value: v, Reason: why} }
	if c.Addr != "" {
		if err := checkAddr(c.Addr); err != nil {
			return bad("ADDR", c.Addr, err.Error())
		}
	}
	if c.RedisURL != "" {
		if err := checkRedisURL(c.RedisURL, c.RedisCluster); err != nil {
			return bad("REDIS_URL", redactURL(c.RedisURL), err.Error())
		}
	}
	switch c.RedisAdapter {
	case "", AdapterClassic, AdapterSharded:
	default:
		return bad("REDIS_ADAPTER", c.RedisAdapter, "want classic or sharded")
	}
	if c.DebugAddr != "" {
		if err := checkAddr(c.DebugAddr); err != nil {
			return bad("DEBUG_ADDR", c.DebugAddr, err.Error())
		}
	}
	if c.AdvertiseAddr != "" {
		if err := relay.CheckAdvertise(c.AdvertiseAddr); err != nil {
			return bad("ADVERTISE_ADDR", c.AdvertiseAddr, err.Error())
		}
	}
	if len(c.JWTSecret) == 0 {
		return bad("JWT_SECRET", "", "must not be empty")
	}
	switch {
	case c.MaxPayloadBytes < 1:
		return bad("MAX_PAYLOAD_BYTES", strconv.FormatInt(c.MaxPayloadBytes, 10), "must be positive")
	case c.PingInterval <= 0:
		return bad("PING_INTERVAL", c.PingInterval.String(), "must be positive")
	case c.PingTimeout <= 0:
		return bad("PING_TIMEOUT", c.PingTimeout.String(), "must be positive")
	case c.ShutdownTimeout <= 0:
		return bad("SHUTDOWN_TIMEOUT", c.ShutdownTimeout.String(), "must be positive")
	case c.RateLimit < 0:
		return bad("RATE_LIMIT", fmt.Sprint(c.RateLimit), "must not be negative")
	case c.RateBurst < 1:
		return bad("RATE_BURST", strconv.Itoa(c.RateBurst), "must be at least 1")
	case c.RecoveryWindow != 0 && (c.RecoveryWindow < time.Second || c.RecoveryWindow > maxRecoveryWindow):
		return bad("RECOVERY_WINDOW", c.RecoveryWindow.String(), "must be 0 (off) or from 1s to 24h")
	case c.RecoveryMaxPackets < 0 || c.RecoveryMaxPackets > maxRecoveryMaxPackets:
		return bad("RECOVERY_MAX_PACKETS", strconv.Itoa(c.RecoveryMaxPackets), "must be from 1 to 1000000")
	case c.OutboxMaxMessages < 0 || c.OutboxMaxMessages > maxOutboxMaxMessages:
		return bad("OUTBOX_MAX_MESSAGES", strconv.Itoa(c.OutboxMaxMessages), "must be from 0 (off) to 10000000")
	case c.OutboxMaxAge < 0 || c.OutboxMaxAge > maxOutboxMaxAge:
		return bad("OUTBOX_MAX_AGE", c.OutboxMaxAge.String(), "must be from 1ms to 10m (0 is 30s)")
	case c.RecoveryWindow != 0 && c.RedisURL != "" && c.RedisAdapter == AdapterSharded:
		return bad("RECOVERY_WINDOW", c.RecoveryWindow.String(), "not available with REDIS_ADAPTER=sharded: set 0, or use the classic adapter")
	}
	return c.validateTransport()
}

// nodeID is NODE_ID, or the host name with a random suffix.
func (c *Config) nodeID() string {
	if c.NodeID != "" {
		return c.NodeID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "switchboard"
	}
	return host + "-" + strings.ToLower(rand.Text()[:6])
}

func positiveInt(v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want a positive integer")
	}
	return n, nil
}

func duration(v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration such as 25s")
	}
	return d, nil
}

// rate accepts "20" and "20/s"; 0 disables the limiter.
func rate(v string, def float64) (float64, error) {
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "/s"), 64)
	if err != nil || f < 0 || f != f || f > 1e9 {
		return 0, fmt.Errorf("want events per second, such as 20")
	}
	return f, nil
}

func level(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("want debug, info, warn or error")
}

func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be 0 to 65535")
	}
	return nil
}

// The values of REDIS_ADAPTER.
const (
	AdapterClassic = "classic"
	AdapterSharded = "sharded"
)

// maxSecretFileBytes bounds a secret file: a secret is a line, and a wrong
// path (a log, a disk image) must not be read whole.
const maxSecretFileBytes = 4096

// readSecretFile reads a secret from a file: its content without the
// surrounding white space, which must leave something.
func readSecretFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is the variable's value, named already
		}
		return "", fmt.Errorf("cannot read the file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the file: %w", err)
	}
	if len(b) > maxSecretFileBytes {
		return "", fmt.Errorf("the file is over %d bytes: not a secret", maxSecretFileBytes)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("the file is empty")
	}
	return v, nil
}

// redactURL hides a URL's password: a bad REDIS_URL is named in the log.
// A URL too malformed to parse (a password with a space, "#" or "/" in it)
// loses everything from its scheme to its last "@", where credentials
// would be.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.User == nil {
			return raw
		}
		return u.Redacted()
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return raw[:start] + "xxxxx" + raw[at:]
}

func checkRedisURL(raw string, cluster bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme must be redis:// or rediss://")
	}
	if u.Hostname() == "" {
		return fmt.Errorf("missing host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port must be 1 to 65535")
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil {
			return fmt.Errorf("database must be a number")
		}
		if cluster && n != 0 {
			return fmt.Errorf("a Redis Cluster has database 0 only (REDIS_CLUSTER=1)")
		}
	}
	return nil
}
