package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// config is everything one run needs, as parsed from the command line.
type config struct {
	Targets      []string      `json:"targets"`   // host:port of each server process
	Secret       string        `json:"-"`         // HS256 secret shared with the servers
	Namespace    string        `json:"namespace"` // Socket.IO namespace, "/socket"
	Users        int           `json:"users"`     // number of users
	Devices      int           `json:"devices"`   // sockets per user
	Rates        []float64     `json:"rates"`     // sendMessage per second, one step each
	Duration     time.Duration `json:"duration"`  // send time per step
	Messages     int           `json:"messages"`  // cap on messages per step (0: none)
	Drain        time.Duration `json:"drain"`     // how long to wait for late deliveries per step
	Hold         time.Duration `json:"hold"`      // idle time after connecting, before sending
	ConnConc     int           `json:"connect_concurrency"`
	ConnRate     float64       `json:"connect_rate"` // connects started per second (0: as fast as possible)
	ConnTimeout  time.Duration `json:"connect_timeout"`
	MaxTime      time.Duration `json:"max_time"` // hard bound on the whole run
	SourceIPs    []netip.Addr  `json:"source_ips"`
	Pids         []int         `json:"pids"`     // server processes, in target order
	AuxPids      []int         `json:"aux_pids"` // reported but not summed (redis)
	P99Limit     time.Duration `json:"p99_limit"`
	StopOnFail   bool          `json:"stop_on_fail"`
	Progress     time.Duration `json:"progress"`
	Sample       time.Duration `json:"sample"`
	Format       string        `json:"-"`
	Output       string        `json:"-"`
	Label        string        `json:"label"`
	SenderWorker int           `json:"sender_workers"`
	Browser      bool          `json:"browser_headers"` // send a browser's upgrade headers

	BroadcastRedis string        `json:"broadcast_redis,omitempty"` // Redis of the cluster, for -broadcasts
	Broadcasts     int           `json:"broadcasts"`                // namespace-wide broadcasts after connecting
	BroadcastWait  time.Duration `json:"broadcast_wait"`            // how long each may take to reach every device
	BroadcastGap   time.Duration `json:"broadcast_gap"`             // pause between broadcasts
}

// parseConfig reads the flags in args (without the program name).
func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("sbload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "127.0.0.1:7999", "comma-separated host:port of the server processes (loopback only); each user's devices are spread over them")
	fs.StringVar(&c.Secret, "secret", "", "JWT_SECRET of the servers (HS256); required")
	fs.StringVar(&c.Namespace, "namespace", "/socket", "Socket.IO namespace")
	fs.IntVar(&c.Users, "users", 100, "number of users")
	fs.IntVar(&c.Devices, "devices", 2, "devices (sockets) per user")
	rates := fs.String("rate", "0", "sendMessage per second; a comma-separated list runs one step per rate (0: connect only)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "send time per rate step")
	fs.IntVar(&c.Messages, "messages", 0, "at most this many messages per step (0: no cap)")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "after each step, wait at most this long for outstanding deliveries")
	fs.DurationVar(&c.Hold, "hold", 0, "keep the connections idle this long after connecting (memory per idle connection)")
	fs.IntVar(&c.ConnConc, "connect-concurrency", 200, "connects in flight at once")
	fs.Float64Var(&c.ConnRate, "connect-rate", 0, "connects started per second (0: as fast as concurrency allows)")
	fs.DurationVar(&c.ConnTimeout, "connect-timeout", 10*time.Second, "a connect without a namespace CONNECT reply by then counts as stalled")
	fs.DurationVar(&c.MaxTime, "max-time", 10*time.Minute, "hard bound on the whole run")
	sources := fs.String("source-ips", "", "comma-separated loopback source addresses, or a range 127.0.0.1-127.0.0.8 (default: any)")
	pids := fs.String("pids", "", "comma-separated server pids in target order: CPU and RSS are read from /proc")
	aux := fs.String("aux-pids", "", "comma-separated further pids (e.g. redis) reported separately")
	fs.DurationVar(&c.P99Limit, "p99-limit", 50*time.Millisecond, "a rate step passes when its end-to-end p99 is under this")
	fs.BoolVar(&c.StopOnFail, "stop-on-fail", false, "stop stepping rates after the first step that fails")
	fs.DurationVar(&c.Progress, "progress", time.Second, "progress line interval on stderr (0: off)")
	fs.DurationVar(&c.Sample, "sample", 200*time.Millisecond, "/proc sampling interval")
	fs.StringVar(&c.Format, "format", "text", "report format on stdout: text or json")
	fs.StringVar(&c.Output, "o", "", "also write the JSON report to this file")
	fs.StringVar(&c.Label, "label", "", "name for this run in the report")
	fs.IntVar(&c.SenderWorker, "sender-workers", 4, "goroutines writing sendMessage packets")
	fs.StringVar(&c.BroadcastRedis, "broadcast-redis", "", "redis:// URL of the servers' Redis, to publish -broadcasts in the emitter's wire format")
	fs.IntVar(&c.Broadcasts, "broadcasts", 0, "after connecting (and -hold), publish this many namespace-wide broadcasts, one at a time, and time their arrival on every device")
	fs.DurationVar(&c.BroadcastWait, "broadcast-wait", 30*time.Second, "how long a broadcast may take to reach every device")
	fs.DurationVar(&c.BroadcastGap, "broadcast-gap", time.Second, "pause between broadcasts")
	fs.BoolVar(&c.Browser, "browser-headers", false, "send the headers a desktop browser sends with a websocket upgrade (User-Agent, Cookie, ...) instead of the bare minimum")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.Targets, err = parseTargets(*targets); err != nil {
		return c, err
	}
	if c.Rates, err = parseRates(*rates); err != nil {
		return c, err
	}
	if c.SourceIPs, err = parseSources(*sources); err != nil {
		return c, err
	}
	if c.Pids, err = parseInts("pids", *pids); err != nil {
		return c, err
	}
	if c.AuxPids, err = parseInts("aux-pids", *aux); err != nil {
		return c, err
	}
	switch {
	case c.Secret == "":
		return c, errors.New("-secret is required (the servers' JWT_SECRET)")
	case c.Users < 1 || c.Devices < 1:
		return c, errors.New("-users and -devices must be at least 1")
	case c.Users*c.Devices > 200000:
		return c, errors.New("at most 200000 connections")
	case c.ConnConc < 1 || c.SenderWorker < 1:
		return c, errors.New("-connect-concurrency and -sender-workers must be at least 1")
	case c.ConnTimeout <= 0 || c.MaxTime <= 0 || c.Duration <= 0 || c.Sample <= 0:
		return c, errors.New("-connect-timeout, -max-time, -duration and -sample must be positive")
	case c.Format != "text" && c.Format != "json":
		return c, fmt.Errorf("-format %q: want text or json", c.Format)
	case len(c.Pids) > 0 && len(c.Pids) != len(c.Targets):
		return c, fmt.Errorf("-pids lists %d pids for %d targets", len(c.Pids), len(c.Targets))
	case !strings.HasPrefix(c.Namespace, "/"):
		return c, errors.New("-namespace must start with /")
	case c.Broadcasts > 0 && c.BroadcastRedis == "":
		return c, errors.New("-broadcasts needs -broadcast-redis")
	case c.Broadcasts > 0 && (c.BroadcastWait <= 0 || c.BroadcastGap < 0):
		return c, errors.New("-broadcast-wait must be positive and -broadcast-gap not negative")
	}
	if c.Users < 2 && anyPositive(c.Rates) {
		return c, errors.New("sending needs at least 2 users")
	}
	return c, nil
}

func anyPositive(xs []float64) bool {
	for _, x := range xs {
		if x > 0 {
			return true
		}
	}
	return false
}

// splitList parses each non-empty comma-separated item of s with parse.
func splitList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// parseTargets splits host:port items and refuses anything that is not a
// loopback address.
func parseTargets(s string) ([]string, error) {
	out, err := splitList(s, func(t string) (string, error) { return t, checkLoopback(t) })
	if err == nil && len(out) == 0 {
		err = errors.New("-targets is empty")
	}
	return out, err
}

func checkLoopback(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("target %q: %w", hostport, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("target %q: bad port", hostport)
	}
	if host == "localhost" {
		return nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("target %q: host must be an IP address or localhost", hostport)
	}
	if !a.Unmap().IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address: sbload only loads this machine", hostport)
	}
	return nil
}

func parseRates(s string) ([]float64, error) {
	out, err := splitList(s, func(f string) (float64, error) {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r < 0 || r > 1e6 {
			return 0, fmt.Errorf("-rate %q: want numbers from 0 to 1e6", f)
		}
		return r, nil
	})
	if err == nil && len(out) == 0 {
		out = []float64{0}
	}
	return out, err
}

// parseSources accepts "a,b,c" or "first-last" (same /24, last octet range).
func parseSources(s string) ([]netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []netip.Addr
	if first, last, ok := strings.Cut(s, "-"); ok && !strings.Contains(s, ",") {
		a, err1 := netip.ParseAddr(strings.TrimSpace(first))
		b, err2 := netip.ParseAddr(strings.TrimSpace(last))
		if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("-source-ips %q: want first-last IPv4 addresses", s)
		}
		for x := a; x.Compare(b) <= 0 && len(out) < 256; x = x.Next() {
			out = append(out, x)
		}
	} else {
		var err error
		if out, err = splitList(s, netip.ParseAddr); err != nil {
			return nil, fmt.Errorf("-source-ips: %w", err)
		}
	}
	for _, a := range out {
		if !a.IsLoopback() {
			return nil, fmt.Errorf("-source-ips: %s is not a loopback address", a)
		}
	}
	return out, nil
}

func parseInts(name, s string) ([]int, error) {
	return splitList(s, func(f string) (int, error) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("-%s %q: want positive integers", name, f)
		}
		return n, nil
	})
}
