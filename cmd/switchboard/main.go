// Command switchboard is the Socket.IO gateway. It is configured through the
// environment (see the README); a bad value exits 2 with one JSON line that
// names the variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/switchboard-rt/switchboard/server"
	"github.com/switchboard-rt/switchboard/web"
)

func main() {
	stderr, flush := guardStderr()
	code := exitCode(run(context.Background(), os.Args[1:], os.Getenv, stderr))
	flush()
	os.Exit(code)
}

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// run is the whole program; main only maps its error to an exit code. It
// writes JSON lines to stderr and nothing else.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	// From the first instruction: a SIGTERM during start-up (say, while Redis
	// is unreachable) still ends in an orderly drain and exit 0.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	flags := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	healthcheck := flags.Bool("healthcheck", false, "GET /healthz on ADDR and exit 0 if it answers 200 (for container health checks)")
	if err := flags.Parse(args); err != nil {
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("bad arguments", "err", err.Error())
		return &exitError{code: 2, err: err}
	}

	cfg, err := server.ConfigFromEnv(getenv)
	if err != nil {
		var ce *server.ConfigError
		attrs := []any{}
		if errors.As(err, &ce) {
			attrs = append(attrs, "variable", ce.Variable)
		}
		slog.New(slog.NewJSONHandler(stderr, nil)).Error(err.Error(), attrs...)
		return &exitError{code: 2, err: err}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if *healthcheck {
		return checkHealth(ctx, cfg.Addr, logger)
	}
	// Libraries that log through the standard logger or go-redis' own
	// logger write JSON lines through ours instead of plain text.
	slog.SetDefault(logger)
	goredis.SetLogger(redisLogger{logger})

	srv, err := server.New(cfg, logger, web.Static())
	if err != nil {
		logger.Error("start", "err", err.Error())
		return err
	}
	if err := srv.Run(ctx); err != nil {
		logger.Error("stopped with an error", "err", err.Error())
		return err
	}
	return nil
}

func checkHealth(ctx context.Context, addr string, logger *slog.Logger) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		logger.Error("healthcheck", "err", err.Error())
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := fmt.Errorf("healthz answered %d", resp.StatusCode)
		logger.Error("healthcheck", "err", err.Error())
		return err
	}
	return nil
}

// redisLogger puts go-redis' internal log lines into slog at debug level:
// during an outage its pool repeats itself twice a second, and the server's
// probe already reports Redis going away and coming back.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}
