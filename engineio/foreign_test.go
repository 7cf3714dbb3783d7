package engineio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engineio"
)

// foreignCall is one request offered to Options.ForeignSession.
type foreignCall struct {
	method, sid string
	upgrade     bool
}

// foreignServer serves an echoing engine whose ForeignSession records what
// it is offered and answers (202 "elsewhere") when answer is set; its
// session ids are "local-" and a counter.
func foreignServer(t *testing.T, answer bool) (string, func() []foreignCall) {
	t.Helper()
	var mu sync.Mutex
	var calls []foreignCall
	n := 0
	eng, err := engineio.NewServer(engineio.Options{
		AllowOrigin: func(string) bool { return true },
		NewID: func() string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return fmt.Sprintf("local-%d", n)
		},
		ForeignSession: func(w http.ResponseWriter, r *http.Request, sid string) bool {
			mu.Lock()
			calls = append(calls, foreignCall{r.Method, sid, r.Header.Get("Upgrade") != ""})
			mu.Unlock()
			if !answer {
				return false
			}
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, "elsewhere")
			return true
		},
	}, confEcho{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(eng)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Close(ctx)
	})
	return hs.URL, func() []foreignCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]foreignCall(nil), calls...)
	}
}

func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestForeignSessionIsOfferedOnlyUnknownSessions(t *testing.T) {
	base, calls := foreignServer(t, true)
	poll := base + "/?EIO=4&transport=polling"

	// A handshake is never offered, and the session id is NewID's.
	res, body := do(t, http.MethodGet, poll, "", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(body, "0{") {
		t.Fatalf("handshake: %d %q", res.StatusCode, body)
	}
	var open struct{ SID string }
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil || open.SID != "local-1" {
		t.Fatalf("open packet %q: sid %q, %v", body, open.SID, err)
	}
	// A local session's requests are served here.
	if res, body := do(t, http.MethodPost, poll+"&sid="+open.SID, "4hi", nil); res.StatusCode != 200 || body != "ok" {
		t.Fatalf("local POST: %d %q", res.StatusCode, body)
	}
	if res, body := do(t, http.MethodGet, poll+"&sid="+open.SID, "", nil); res.StatusCode != 200 || body != "4hi" {
		t.Fatalf("local GET: %d %q", res.StatusCode, body)
	}
	// Another session's GET, POST and upgrade are offered, and the hook's
	// answer is the only one: no CORS header of the engine's own.
	origin := map[string]string{"Origin": "http://example.test"}
	for _, c := range []struct {
		method string
		header map[string]string
	}{
		{http.MethodGet, origin},
		{http.MethodPost, origin},
		{http.MethodGet, map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
	} {
		url := poll + "&sid=remote-1"
		if c.header["Upgrade"] != "" {
			url = base + "/?EIO=4&transport=websocket&sid=remote-1"
		}
		res, body := do(t, c.method, url, "", c.header)
		if res.StatusCode != http.StatusAccepted || body != "elsewhere" {
			t.Fatalf("%s %v: %d %q, want the hook's answer", c.method, c.header, res.StatusCode, body)
		}
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("%s: the engine added Access-Control-Allow-Origin %q to the hook's answer", c.method, got)
		}
	}
	// A CORS preflight is the engine's to answer.
	res, _ = do(t, http.MethodOptions, poll+"&sid=remote-1", "", map[string]string{
		"Origin": "http://example.test", "Access-Control-Request-Method": "POST",
	})
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: %d", res.StatusCode)
	}
	want := []foreignCall{{"GET", "remote-1", false}, {"POST", "remote-1", false}, {"GET", "remote-1", true}}
	if got := calls(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("offered %+v, want %+v", got, want)
	}
}

func TestForeignSessionDeclinedIsSessionUnknown(t *testing.T) {
	base, calls := foreignServer(t, false)
	res, body := do(t, http.MethodPost, base+"/?EIO=4&transport=polling&sid=remote-2", "6",
		map[string]string{"Origin": "http://example.test"})
	if res.StatusCode != http.StatusBadRequest || body != `{"code":1,"message":"Session ID unknown"}` {
		t.Fatalf("declined: %d %q", res.StatusCode, body)
	}
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "http://example.test" {
		t.Fatalf("declined: the engine's answer lacks its CORS header: %q", got)
	}
	if got := calls(); len(got) != 1 || got[0].sid != "remote-2" {
		t.Fatalf("offered %+v", got)
	}
}
