package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "sbload-test-secret"

func fakeConfig(t *testing.T, targets ...string) config {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	pids := strings.TrimSuffix(strings.Repeat(self+",", len(targets)), ",")
	cfg, err := parseConfig([]string{
		"-secret", testSecret, "-targets", strings.Join(targets, ","), "-pids", pids,
		"-users", "4", "-devices", "2", "-rate", "200", "-messages", "10", "-drain", "5s",
		"-connect-timeout", "10s", "-progress", "0",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runLoad(t *testing.T, cfg config) *report {
	t.Helper()
	rep, err := newLoadRun(cfg).execute(context.Background(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 1 {
		t.Fatalf("want 1 step, got %d", len(rep.Steps))
	}
	return rep
}

// The load tool must notice a dropped and a duplicated delivery, and name the
// devices.
func TestDetectsDroppedAndDuplicatedDelivery(t *testing.T) {
	hub := &fakeHub{secret: []byte(testSecret), dropText: "sb-3", dupText: "sb-5", users: map[string][]*fakeConn{}}
	cfg := fakeConfig(t, hub.start(t), hub.start(t))
	rep := runLoad(t, cfg)
	s := rep.Steps[0]
	if rep.Connect.Connected != 8 || rep.Connect.Failed != 0 || rep.Connect.Stalled != 0 {
		t.Fatalf("connect: %+v", rep.Connect)
	}
	// 10 messages, each to the 2 devices of the recipient and the sender's
	// other device.
	if s.Sent != 10 || s.Expected != 30 {
		t.Fatalf("sent %d expected %d, want 10 and 30", s.Sent, s.Expected)
	}
	if s.Missing != 1 || s.Duplicated != 1 || s.Received != 29 || s.Unexpected != 0 {
		t.Fatalf("want 1 missing, 1 duplicated, 29 received; got %+v", s)
	}
	// The two faulty messages go to random recipients, so one device may
	// carry both faults: one or two fault lines, one device of each kind.
	if s.DevicesMissing != 1 || s.DevicesDuplicated != 1 || len(s.Faults) < 1 || len(s.Faults) > 2 {
		t.Fatalf("want one device with a missing and one with a duplicate: %+v", s.Faults)
	}
	if s.Pass {
		t.Fatal("a step with a lost delivery must not pass")
	}
	// Every user has a device on each of the two processes, so both kinds of
	// path carry deliveries.
	if s.Same.Count == 0 || s.Cross.Count == 0 || s.Same.Count+s.Cross.Count != s.Received {
		t.Fatalf("same %d + cross %d != received %d", s.Same.Count, s.Cross.Count, s.Received)
	}
	if s.AckOK != 10 || s.Ack.Count != 10 {
		t.Fatalf("acks: ok %d, count %d", s.AckOK, s.Ack.Count)
	}
	if rep.Deliveries.Missing != 1 || rep.Deliveries.Duplicated != 1 {
		t.Fatalf("totals: %+v", rep.Deliveries)
	}
	if len(rep.Processes) != 2 || rep.Processes[0].RSSBefore <= 0 || rep.Processes[0].Conns != 4 {
		t.Fatalf("processes: %+v", rep.Processes)
	}
	var text bytes.Buffer
	rep.writeText(&text)
	for _, want := range []string{"missing 1 duplicated 1", "missed 1 as recipient", "1 duplicate(s)", "[FAIL]"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestCleanServerHasNoFaults(t *testing.T) {
	hub := &fakeHub{secret: []byte(testSecret), users: map[string][]*fakeConn{}}
	rep := runLoad(t, fakeConfig(t, hub.start(t), hub.start(t)))
	s := rep.Steps[0]
	if s.Missing != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.Received != 30 || len(s.Faults) != 0 {
		t.Fatalf("want 30 clean deliveries: %+v", s)
	}
}

// -browser-headers sends a browser's headers with every upgrade, and they do
// not disturb the websocket handshake.
func TestBrowserHeaders(t *testing.T) {
	hub := &fakeHub{secret: []byte(testSecret), users: map[string][]*fakeConn{}}
	cfg := fakeConfig(t, hub.start(t), hub.start(t))
	cfg.Browser = true
	rep := runLoad(t, cfg)
	if rep.Connect.Connected != cfg.Users*cfg.Devices || rep.Steps[0].Received != 30 {
		t.Fatalf("connects or deliveries failed with browser headers: %+v %+v", rep.Connect, rep.Steps[0])
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.browser != cfg.Users*cfg.Devices {
		t.Fatalf("%d of %d upgrade requests carried the browser headers", hub.browser, cfg.Users*cfg.Devices)
	}
}

// A CONNECT that is never answered counts as stalled, a connect_error as
// failed, and neither device is expected to receive anything.
func TestCountsStalledAndFailedConnects(t *testing.T) {
	hub := &fakeHub{secret: []byte(testSecret), stallUser: "-1", failUser: "-2", users: map[string][]*fakeConn{}}
	cfg := fakeConfig(t, hub.start(t))
	cfg.ConnTimeout = 3 * time.Second // long enough for a loaded CI machine; only the stalled user waits it out
	rep := runLoad(t, cfg)
	c := rep.Connect
	if c.Connected != 4 || c.Stalled != 2 || c.Failed != 2 || c.Attempted != 8 {
		t.Fatalf("connect: %+v", c)
	}
	if c.Reasons["stalled: no CONNECT reply"] != 2 {
		t.Fatalf("reasons: %v", c.Reasons)
	}
	s := rep.Steps[0]
	if s.Missing != 0 || s.Received != s.Expected {
		t.Fatalf("only connected devices are expected to receive: %+v", s)
	}
}

func TestRunWritesJSONReport(t *testing.T) {
	hub := &fakeHub{secret: []byte(testSecret), users: map[string][]*fakeConn{}}
	out := filepath.Join(t.TempDir(), "r.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-secret", testSecret, "-targets", hub.start(t),
		"-users", "3", "-devices", "1", "-rate", "100", "-messages", "5", "-format", "json", "-o", out, "-progress", "10ms", "-label", "x"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var a, b report
	if err := json.Unmarshal(stdout.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	if a.Label != "x" || b.Deliveries.Received != 5 || a.Deliveries.Expected != 5 {
		t.Fatalf("report: %+v", a.Deliveries)
	}
	if !strings.Contains(stderr.String(), "sbload ") {
		t.Fatalf("no progress line on stderr: %q", stderr.String())
	}
}

func TestRefusesNonLoopbackTargets(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "192.168.1.2:7999", "example.com:80", "8.8.8.8:53", "[2001:db8::1]:80"} {
		if _, err := parseConfig([]string{"-secret", "s", "-targets", "127.0.0.1:1," + target}, io.Discard); err == nil {
			t.Errorf("target %s accepted", target)
		}
	}
	if _, err := parseConfig([]string{"-secret", "s", "-targets", "127.0.0.1:1", "-source-ips", "10.1.1.1"}, io.Discard); err == nil {
		t.Error("non-loopback source address accepted")
	}
	cfg, err := parseConfig([]string{"-secret", "s", "-targets", "127.0.0.1:1,localhost:2,[::1]:3,127.1.2.3:4", "-source-ips", "127.0.0.2-127.0.0.5"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Targets) != 4 || len(cfg.SourceIPs) != 4 || cfg.SourceIPs[3].String() != "127.0.0.5" {
		t.Fatalf("targets %v sources %v", cfg.Targets, cfg.SourceIPs)
	}
	if code := run(context.Background(), []string{"-secret", "s", "-targets", "10.0.0.1:80"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

func TestMintTokenVerifies(t *testing.T) {
	now := time.Now()
	tok, err := mintToken([]byte("k"), "alice", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte("k"), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := parsed.Claims.GetSubject()
	if sub != "alice" {
		t.Fatalf("sub %q", sub)
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte("other"), nil }); err == nil {
		t.Fatal("verified with the wrong secret")
	}
}

func TestSummarise(t *testing.T) {
	var xs []time.Duration
	for i := 100; i >= 1; i-- {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	l := summarise(xs)
	if l.Count != 100 || l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("%+v", l)
	}
	if summarise(nil).Count != 0 {
		t.Fatal("empty")
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid(), clockTicks())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKB <= 0 || s.CPU < 0 {
		t.Fatalf("%+v", s)
	}
	if _, err := readProc(1<<30, 100); err == nil {
		t.Fatal("no error for a missing process")
	}
}
