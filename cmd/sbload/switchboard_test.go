package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgainstRealSwitchboard runs the load tool against two real Switchboard
// processes sharing a real redis-server: every delivery must arrive exactly
// once on every device, across processes too. SBLOAD_TEST_SERVER="node
// /tmp/peer/server.js" runs it against another server of the same contract.
func TestAgainstRealSwitchboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	argv := serverCommand(t)
	redisURL := startRedis(t)
	var targets, pids []string
	for range 2 {
		addr, pid := startServer(t, argv, map[string]string{
			"REDIS_URL": redisURL, "JWT_SECRET": testSecret, "LOG_LEVEL": "warn",
		})
		targets = append(targets, addr)
		pids = append(pids, strconv.Itoa(pid))
	}
	cfg, err := parseConfig([]string{
		"-secret", testSecret, "-targets", strings.Join(targets, ","), "-pids", strings.Join(pids, ","),
		"-users", "20", "-devices", "2", "-rate", "200", "-messages", "100", "-drain", "15s",
		"-progress", "0",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep := runLoad(t, cfg)
	s := rep.Steps[0]
	t.Logf("connect %+v", rep.Connect)
	t.Logf("step sent %d expected %d received %d; same %+v cross %+v ack %+v", s.Sent, s.Expected, s.Received, s.Same, s.Cross, s.Ack)
	if rep.Connect.Failed != 0 || rep.Connect.Connected+rep.Connect.Stalled != 40 {
		t.Fatalf("connect: %+v", rep.Connect)
	}
	if s.Sent != 100 || s.Expected < 200 || s.SendErrors != 0 {
		t.Fatalf("sent %d (errors %d), expected %d", s.Sent, s.SendErrors, s.Expected)
	}
	if s.Missing != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.Received != s.Expected {
		t.Fatalf("want exactly-once delivery: %+v", s)
	}
	if s.AckOK != s.Sent || len(s.AckErrors) != 0 {
		t.Fatalf("acks ok %d of %d, errors %v", s.AckOK, s.Sent, s.AckErrors)
	}
	if s.Cross.Count == 0 || s.Same.Count == 0 {
		t.Fatalf("want deliveries within and across processes: same %d cross %d", s.Same.Count, s.Cross.Count)
	}
	for _, p := range rep.Processes {
		if p.RSSBefore <= 0 || p.RSSConnected <= 0 || p.Conns != 20 || p.CPUTotal <= 0 {
			t.Fatalf("process figures: %+v", p)
		}
	}
	if rep.Disconnects != 0 {
		t.Fatalf("%d connections dropped mid-run", rep.Disconnects)
	}
}

// serverCommand returns the argv of the server under test: SBLOAD_TEST_SERVER,
// else a fresh build of ./cmd/switchboard.
func serverCommand(t *testing.T) []string {
	t.Helper()
	if s := os.Getenv("SBLOAD_TEST_SERVER"); s != "" {
		return strings.Fields(s)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/switchboard: %v\n%s", err, out)
	}
	return []string{bin}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis runs a private, persistence-free redis-server on a free port.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is missing: install it with `apt-get install -y redis-server`")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "redis", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprint(c, "PING\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "+PONG")
	})
	return "redis://" + addr + "/0"
}

// startServer starts one server process on a free loopback port and waits
// until it is ready.
func startServer(t *testing.T, argv []string, env map[string]string) (string, int) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "ADDR="+addr)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(stderr.Name()); err == nil {
				t.Logf("server %s stderr:\n%s", addr, b)
			}
		}
		stderr.Close()
	})
	waitFor(t, "server "+addr, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return addr, cmd.Process.Pid
}

// waitFor polls ready until it holds, for at most 30 seconds.
func waitFor(t *testing.T, what string, ready func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !ready() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready within 30s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
