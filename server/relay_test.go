package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/relay"
)

func TestAdvertiseAddr(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 7001}
	ifaces := func(addrs ...string) func() ([]net.Addr, error) {
		return func() ([]net.Addr, error) {
			var out []net.Addr
			for _, a := range addrs {
				_, n, err := net.ParseCIDR(a)
				if err != nil {
					t.Fatal(err)
				}
				ip, _, _ := net.ParseCIDR(a)
				n.IP = ip
				out = append(out, n)
			}
			return out, nil
		}
	}
	none := func() ([]net.Addr, error) { return nil, errors.New("no interfaces") }
	tests := []struct {
		name, configured, listen string
		interfaces               func() ([]net.Addr, error)
		want                     string
	}{
		{"ADVERTISE_ADDR wins", "sb1:7999", "127.0.0.1:7001", none, "sb1:7999"},
		{"ADDR's host with the bound port", "", "127.0.0.1:0", none, "127.0.0.1:7001"},
		{"ADDR's host name", "", "sb1:7001", none, "sb1:7001"},
		{"no host: first IPv4 not loopback", "", ":7001", ifaces("127.0.0.1/8", "fe80::1/64", "2001:db8::5/64", "10.1.2.3/24", "10.9.9.9/24"), "10.1.2.3:7001"},
		{"a wildcard: the same", "", "0.0.0.0:7001", ifaces("127.0.0.1/8", "172.18.0.4/16"), "172.18.0.4:7001"},
		{"IPv6 wildcard, IPv6 only", "", "[::]:7001", ifaces("::1/128", "fe80::1/64", "2001:db8::5/64"), "[2001:db8::5]:7001"},
		{"nothing but loopback", "", ":7001", ifaces("127.0.0.1/8", "::1/128"), "127.0.0.1:7001"},
		{"interfaces unknown", "", ":7001", none, "127.0.0.1:7001"},
	}
	for _, tt := range tests {
		if got := advertiseAddr(tt.configured, tt.listen, bound, tt.interfaces); got != tt.want {
			t.Errorf("%s: advertiseAddr = %q, want %q", tt.name, got, tt.want)
		}
		if err := relay.CheckAdvertise(tt.want); err != nil {
			t.Errorf("%s: %q is not an address to advertise: %v", tt.name, tt.want, err)
		}
	}
}

// poller is a raw Engine.IO v4 polling session: each request goes to the
// server the test names.
type poller struct {
	t   *testing.T
	sid string
}

type polled struct {
	status      int
	body        string
	node, owner string
}

func pollRequest(t *testing.T, method string, srv *Server, query, body string) polled {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.baseURL()+"/socket.io/?EIO=4&transport=polling"+query, rd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, query, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return polled{res.StatusCode, string(b), res.Header.Get(nodeHeader), res.Header.Get(relay.OwnerHeader)}
}

func openPolling(t *testing.T, srv *Server) *poller {
	t.Helper()
	got := pollRequest(t, http.MethodGet, srv, "", "")
	if got.status != 200 || !strings.HasPrefix(got.body, "0{") {
		t.Fatalf("handshake: %+v", got)
	}
	var open struct{ SID string }
	if err := json.Unmarshal([]byte(got.body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	return &poller{t: t, sid: open.SID}
}

func (p *poller) post(srv *Server, packets string) polled {
	p.t.Helper()
	return pollRequest(p.t, http.MethodPost, srv, "&sid="+p.sid, packets)
}

func (p *poller) get(srv *Server) polled {
	p.t.Helper()
	return pollRequest(p.t, http.MethodGet, srv, "&sid="+p.sid, "")
}

func TestPollingSessionServedByEveryProcess(t *testing.T) {
	rdb := startRedis(t)
	cluster := func(node string) func(*Config) {
		return func(c *Config) { c.RedisURL = rdb.url(); c.NodeID = node }
	}
	a := startServer(t, cluster("a"))
	b := startServer(t, cluster("b"))
	waitReady(t, a)
	waitReady(t, b)

	p := openPolling(t, a)
	if len(p.sid) != 32 || p.sid[:relay.TagLen] != a.relay.Tag() {
		t.Fatalf("session id %q does not start with a's tag %q", p.sid, a.relay.Tag())
	}
	// Connect to /socket through b, the CONNECT reply through b; an
	// acknowledged event through b, the ack through a.
	if got := p.post(b, `40/socket,{"token":"`+token(t, "alice")+`"}`); got.status != 200 || got.node != "b" || got.owner != "a" {
		t.Fatalf("CONNECT through b: %+v", got)
	}
	if got := p.get(b); got.status != 200 || !strings.HasPrefix(got.body, `40/socket,{"sid":`) || got.node != "b" || got.owner != "a" {
		t.Fatalf("CONNECT reply through b: %+v", got)
	}
	bob := dial(t, b, token(t, "bob")) // a websocket on b
	if got := p.post(b, `42/socket,1["sendMessage",{"to":"bob","text":"over b"}]`); got.status != 200 {
		t.Fatalf("event through b: %+v", got)
	}
	got := p.get(a)
	if got.status != 200 || !strings.HasPrefix(got.body, `43/socket,1[{"message":`) || got.owner != "" {
		t.Fatalf("ack on a: %+v", got)
	}
	if m := bob.next(t); m["event"] != "message_sent" || m["args"].(map[string]any)["text"] != "over b" {
		t.Fatalf("bob got %v", m)
	}

	// The upgrade through b ends on a websocket held by a.
	u := "ws://" + b.Addr().String() + "/socket.io/?EIO=4&transport=websocket&sid=" + p.sid
	ws, res, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("upgrade through b: %v", err)
	}
	defer ws.Close()
	if res.Header.Get(nodeHeader) != "b" || res.Header.Get(relay.OwnerHeader) != "a" {
		t.Fatalf("101 through b: %v", res.Header)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, step := range []struct{ send, want string }{{"2probe", "3probe"}, {"5", ""}} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(step.send)); err != nil {
			t.Fatal(err)
		}
		if step.want != "" {
			if _, m, err := ws.ReadMessage(); err != nil || string(m) != step.want {
				t.Fatalf("after %q: %q %v", step.send, m, err)
			}
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`42/socket,2["sendMessage",{"to":"bob","text":"tunneled"}]`)); err != nil {
		t.Fatal(err)
	}
	if m := bob.next(t); m["args"].(map[string]any)["text"] != "tunneled" {
		t.Fatalf("bob got %v", m)
	}
	if sess := a.app.Engine().Session(p.sid); sess == nil || sess.Transport() != "websocket" {
		t.Fatalf("a's session is not on a websocket: %v", sess)
	}
	metrics := getText(t, b, "/metrics")
	for _, line := range []string{
		`switchboard_relayed_total{transport="polling"} 3`,
		`switchboard_relayed_total{transport="websocket"} 1`,
		"switchboard_relay_tunnels 1",
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("b's metrics lack %q", line)
		}
	}

	// a stops: b's tunnel ends with it, and b answers a's sessions
	// "Session ID unknown" at once.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	if got := p.post(b, "6"); got.status != 400 || got.body != `{"code":1,"message":"Session ID unknown"}` {
		t.Fatalf("after a stopped: %+v", got)
	}
}

func TestNoRelayWithoutRedis(t *testing.T) {
	srv := startServer(t, nil)
	if srv.relay != nil {
		t.Fatal("a relay without Redis")
	}
	p := openPolling(t, srv)
	if len(p.sid) != 20 {
		t.Fatalf("session id %q: want the engine's own 20 characters", p.sid)
	}
	if m := getText(t, srv, "/metrics"); strings.Contains(m, "switchboard_relay") {
		t.Fatal("relay metrics without a relay")
	}
}

func waitReady(t *testing.T, srv *Server) {
	t.Helper()
	waitFor(t, srv.nodeID+" to be ready", func() bool { return ready(t, srv) })
}

func getText(t *testing.T, srv *Server, path string) string {
	t.Helper()
	res, err := http.Get(srv.baseURL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
