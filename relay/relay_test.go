package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/relay"
)

func TestRegistration(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	key := relay.KeyPrefix + a.relay.Tag()
	if len(a.relay.Tag()) != relay.TagLen || strings.Trim(a.relay.Tag(), "0123456789abcdef") != "" {
		t.Fatalf("tag %q: want %d lowercase hex digits", a.relay.Tag(), relay.TagLen)
	}
	ttl, err := rdb.PTTL(context.Background(), key).Result()
	if err != nil || ttl <= 0 || ttl > 15*time.Second {
		t.Fatalf("registration expiry %v (%v): want at most 15 s", ttl, err)
	}
	a.stop(t)
	if n, err := rdb.Exists(context.Background(), key).Result(); err != nil || n != 0 {
		t.Fatalf("registration still there after Close: %d %v", n, err)
	}
	a.stop(t) // idempotent
}

func TestPollingRequestsReachTheOwnerFromAnyProcess(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)

	// POSTs through b, a GET through a and one through b: every one is
	// the owner's answer, and what was sent comes back once, in order.
	for i, p := range []*proc{b, b} {
		got := request(t, http.MethodPost, pollURL(p, sid), strings.NewReader("4m"+string(rune('0'+i))), nil)
		if got.status != 200 || got.body != "ok" || got.node != "b" || got.owner != "a" {
			t.Fatalf("POST %d through b: %+v", i, got)
		}
	}
	got := request(t, http.MethodGet, pollURL(b, sid), nil, nil)
	if got.status != 200 || got.body != "4m0\x1e4m1" || got.node != "b" || got.owner != "a" {
		t.Fatalf("GET through b: %+v", got)
	}
	request(t, http.MethodPost, pollURL(a, sid), strings.NewReader("4m2"), nil)
	if got := request(t, http.MethodGet, pollURL(a, sid), nil, nil); got.body != "4m2" || got.owner != "" {
		t.Fatalf("GET on the owner: %+v", got)
	}
	// HEAD too; CORS headers are the owner's, once.
	got = request(t, http.MethodHead, pollURL(b, sid), nil, http.Header{"Origin": {"http://example.test"}})
	if got.status != 200 || got.owner != "a" || len(got.header.Values("Access-Control-Allow-Origin")) != 1 {
		t.Fatalf("HEAD through b: %+v", got)
	}
	if n := b.relay.Stats().Relayed.Load(); n != 4 {
		t.Fatalf("b relayed %d requests, want 4", n)
	}
	if n := a.relay.Stats().Relayed.Load(); n != 0 {
		t.Fatalf("a relayed %d requests of its own session", n)
	}
}

func TestParkedPollRelayed(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)
	// A GET parked on the owner through b is answered when a message
	// arrives (through a).
	done := make(chan answer, 1)
	go func() { done <- request(t, http.MethodGet, pollURL(b, sid), nil, nil) }()
	waitFor(t, "the relayed GET to reach the owner", func() bool { return a.requests.Load() >= 2 })
	request(t, http.MethodPost, pollURL(a, sid), strings.NewReader("4late"), nil)
	if got := <-done; got.status != 200 || got.body != "4late" || got.owner != "a" {
		t.Fatalf("parked GET through b: %+v", got)
	}
}

func TestUpgradeTunneledToTheOwner(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)

	u := "ws" + strings.TrimPrefix(b.base, "http") + testPath + "?EIO=4&transport=websocket&sid=" + sid
	ws, res, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("upgrade through b: %v", err)
	}
	defer ws.Close()
	if res.Header.Get("X-Node") != "b" || res.Header.Get(relay.OwnerHeader) != "a" {
		t.Fatalf("101 headers: %v", res.Header)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	mustWrite(t, ws, "2probe")
	mustRead(t, ws, "3probe")
	mustWrite(t, ws, "5")
	mustWrite(t, ws, "4over the tunnel")
	mustRead(t, ws, "4over the tunnel")
	if s := a.engine.Session(sid); s == nil || s.Transport() != "websocket" {
		t.Fatalf("the owner's session is not on a websocket: %v", s)
	}
	if got := b.relay.Stats(); got.Tunneled.Load() != 1 || got.Tunnels.Load() != 1 {
		t.Fatalf("b: tunneled %d, open %d; want 1 and 1", got.Tunneled.Load(), got.Tunnels.Load())
	}

	// The tunnelling process stops: its tunnels close, the client sees it.
	b.stop(t)
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	if n := b.relay.Stats().Tunnels.Load(); n != 0 {
		t.Fatalf("%d tunnels open after Close", n)
	}
}

func TestUpgradeRefusedByTheOwnerIsRelayed(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)
	// Protocol 3 against a v4 session: the owner refuses it (400 Bad
	// request); b relays that answer.
	u := "ws" + strings.TrimPrefix(b.base, "http") + testPath + "?EIO=3&transport=websocket&sid=" + sid
	_, res, err := websocket.DefaultDialer.Dial(u, nil)
	if err == nil || res == nil {
		t.Fatalf("upgrade with the wrong protocol through b: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 400 || string(body) != `{"code":3,"message":"Bad request"}` || res.Header.Get(relay.OwnerHeader) != "a" {
		t.Fatalf("refusal through b: %d %q %v", res.StatusCode, body, res.Header)
	}
}

func mustWrite(t *testing.T, ws *websocket.Conn, s string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	for {
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if string(m) == "2" { // a ping of the owner's
			continue
		}
		if string(m) != want {
			t.Fatalf("got %q, want %q", m, want)
		}
		return
	}
}

func TestNotRelayed(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)
	cases := []struct {
		name, url string
		header    http.Header
	}{
		{"a tag no process registered", pollURL(b, "0123456789ab"+sid[12:]), nil},
		{"the receiver's own tag", pollURL(b, b.relay.Tag()+sid[12:]), nil},
		{"a tag that is not lowercase hex", pollURL(b, strings.ToUpper(sid[:12])+sid[12:]), nil},
		{"an id no longer than a tag", pollURL(b, sid[:12]), nil},
		{"a request relayed once already", pollURL(b, sid), http.Header{relay.ForwardedHeader: {"1"}}},
	}
	for _, c := range cases {
		got := request(t, http.MethodPost, c.url, strings.NewReader("6"), c.header)
		if got.status != 400 || got.body != sessionUnknown || got.owner != "" {
			t.Errorf("%s: %+v, want 400 Session ID unknown from b", c.name, got)
		}
	}
	if n := b.relay.Stats().Relayed.Load(); n != 0 {
		t.Fatalf("b relayed %d requests", n)
	}
	// Only the unregistered tag was looked up, and no owner was dialled.
	if got := b.relay.Stats(); got.UnknownNode.Load() != 1 || got.Unreachable.Load() != 0 {
		t.Fatalf("unknown %d, unreachable %d; want 1 and 0", got.UnknownNode.Load(), got.Unreachable.Load())
	}
	// Only the Engine.IO path: the same id elsewhere is not relayed.
	req, _ := http.NewRequest(http.MethodGet, b.base+"/elsewhere/?sid="+sid, nil)
	if b.relay.Serve(httpDiscard{}, req, sid) {
		t.Fatal("a request outside the Engine.IO path was relayed")
	}
}

type httpDiscard struct{}

func (httpDiscard) Header() http.Header         { return http.Header{} }
func (httpDiscard) Write(p []byte) (int, error) { return len(p), nil }
func (httpDiscard) WriteHeader(int)             {}

func TestOwnerGoneIsSessionUnknownAtOnce(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)
	if got := request(t, http.MethodPost, pollURL(b, sid), strings.NewReader("6"), nil); got.status != 200 {
		t.Fatalf("before the crash: %+v", got)
	}
	a.crash() // its registration stays in Redis
	for i := range 3 {
		got := request(t, http.MethodPost, pollURL(b, sid), strings.NewReader("6"), nil)
		if got.status != 400 || got.body != sessionUnknown {
			t.Fatalf("request %d after the crash: %+v", i, got)
		}
	}
	// The first found the owner unreachable (the connection pooled to it
	// may fail one more, and only a refused dial says that the owner is
	// gone); the last was answered without trying again.
	if got := b.relay.Stats(); got.Unreachable.Load() < 1 || got.UnknownNode.Load() < 1 || got.Unreachable.Load()+got.UnknownNode.Load() != 3 {
		t.Fatalf("unreachable %d, unknown %d; want at least 1 each, 3 in all", got.Unreachable.Load(), got.UnknownNode.Load())
	}

	// Drained instead: the registration goes with it.
	c := startProc(t, "c", rdb)
	sid = handshake(t, c)
	c.stop(t)
	if got := request(t, http.MethodGet, pollURL(b, sid), nil, nil); got.status != 400 || got.body != sessionUnknown {
		t.Fatalf("after a drain: %+v", got)
	}
}

func TestRelayedBodyIsCappedAtTheLimit(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	for _, c := range []struct {
		name    string
		body    func() io.Reader
		chunked bool
	}{
		{"declared length", func() io.Reader { return bytes.NewReader(bytes.Repeat([]byte("x"), 50*testMaxPayload)) }, false},
		{"chunked", func() io.Reader {
			return io.MultiReader(strings.NewReader("4"), bytes.NewReader(bytes.Repeat([]byte("x"), 50*testMaxPayload)))
		}, true},
	} {
		sid := handshake(t, a)
		before := a.bodyBytes.Load()
		got := request(t, http.MethodPost, pollURL(b, sid), c.body(), nil)
		if got.status != http.StatusRequestEntityTooLarge || got.owner != "a" {
			t.Fatalf("%s: %+v, want the owner's 413", c.name, got)
		}
		if n := a.bodyBytes.Load() - before; n > testMaxPayload+1 {
			t.Fatalf("%s: %d bytes reached the owner, limit %d", c.name, n, testMaxPayload)
		}
		// As for a direct request, the session is closed.
		if reason := a.echo.closeReason(sid); reason != "transport error" {
			t.Fatalf("%s: the session is not closed after the 413 (%q)", c.name, reason)
		}
	}
	// A body within the limit goes through whole.
	sid := handshake(t, a)
	msg := "4" + strings.Repeat("y", testMaxPayload-1)
	if got := request(t, http.MethodPost, pollURL(b, sid), strings.NewReader(msg), nil); got.status != 200 {
		t.Fatalf("a body of exactly the limit: %+v", got)
	}
	if got := request(t, http.MethodGet, pollURL(b, sid), nil, nil); got.body != msg {
		t.Fatalf("echo of a body of exactly the limit: %d bytes", len(got.body))
	}
}

func TestCloseCancelsRelayedRequests(t *testing.T) {
	rdb := startRedis(t)
	a := startProc(t, "a", rdb)
	b := startProc(t, "b", rdb)
	sid := handshake(t, a)
	done := make(chan error, 1)
	go func() {
		res, err := http.Get(pollURL(b, sid))
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the GET to reach the owner", func() bool { return a.requests.Load() >= 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.relay.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-done // the client's request ends (however the server answers it)
	// The owner saw its client go: the session is closed, as for an
	// aborted GET sent to it directly.
	waitFor(t, "the owner to close the session", func() bool { return a.echo.closeReason(sid) == "transport error" })
	// Closed, b relays nothing more, and counts no failure for it.
	sid = handshake(t, a)
	if got := request(t, http.MethodPost, pollURL(b, sid), strings.NewReader("6"), nil); got.status != 400 || got.body != sessionUnknown {
		t.Fatalf("through b after Close: %+v", got)
	}
	if st := b.relay.Stats(); st.Relayed.Load() != 0 || st.Unreachable.Load() != 0 || st.UnknownNode.Load() != 0 {
		t.Fatalf("after Close: relayed %d, unreachable %d, unknown %d; want 0", st.Relayed.Load(), st.Unreachable.Load(), st.UnknownNode.Load())
	}
}

func TestMadeUpTagsDoNotGrowTheCache(t *testing.T) {
	rdb := startRedis(t)
	b := startProc(t, "b", rdb)
	for i := range 3000 {
		sid := fmt.Sprintf("%012x", 0x100000000+i) + "AAAAAAAAAAAAAAAAAAAA"
		req, _ := http.NewRequest(http.MethodPost, b.base+testPath+"?EIO=4&transport=polling&sid="+sid, nil)
		if b.relay.Serve(httpDiscard{}, req, sid) {
			t.Fatalf("relayed %s", sid)
		}
	}
	if n := b.relay.CacheLen(); n > 1024 {
		t.Fatalf("the cache holds %d tags after 3000 made-up ones", n)
	}
	if n := b.relay.Stats().UnknownNode.Load(); n != 3000 {
		t.Fatalf("unknown %d, want 3000", n)
	}
}
