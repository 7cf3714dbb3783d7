// Command sbload is a load generator for Switchboard and any server of the
// same wire contract: it speaks Engine.IO v4 / Socket.IO v5 over websocket to
// the /socket namespace, mints HS256 tokens, spreads each user's devices over
// several server processes, sends sendMessage at a paced rate and checks that
// every receiving device gets every delivery exactly once. It reports connect
// rate and stalls, delivery counts, end-to-end and ack latency (same-process
// versus cross-process), and the servers' CPU and memory read from /proc.
//
//	sbload -secret S -targets 127.0.0.1:8001,127.0.0.1:8002 -pids 11,12 \
//	    -users 2000 -devices 2 -rate 200 -duration 20s
//	sbload table RESULTS_DIR   # compare the JSON reports of bench.sh
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(args) > 0 && args[0] == "table" {
		if err := tableCommand(args[1:], stdout); err != nil {
			log.Error("table failed", "err", err)
			return 1
		}
		return 0
	}
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		log.Error("bad arguments", "err", err)
		return 2
	}
	rep, err := newLoadRun(cfg).execute(ctx, stderr)
	if err != nil {
		log.Error("run failed", "err", err)
		return 1
	}
	if err := emit(rep, cfg, stdout); err != nil {
		log.Error("write report", "err", err)
		return 1
	}
	return 0
}

// emit writes the report to stdout in the chosen format and, with -o, as
// JSON to a file.
func emit(rep *report, cfg config, stdout io.Writer) error {
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	js = append(js, '\n')
	if cfg.Output != "" {
		if err := os.WriteFile(cfg.Output, js, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", cfg.Output, err)
		}
	}
	if cfg.Format == "json" {
		_, err = stdout.Write(js)
		return err
	}
	rep.writeText(stdout)
	return nil
}
