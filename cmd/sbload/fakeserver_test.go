package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeHub is a deliberately small Socket.IO server of the contract's
// sendMessage, shared by several httptest servers (the "processes"). It can
// drop one delivery, duplicate another, leave a user's CONNECT unanswered,
// and refuse a user with a connect_error.
type fakeHub struct {
	secret    []byte
	dropText  string // the first recipient of this message never gets it
	dupText   string // the first recipient of this message gets it twice
	stallUser string // user id suffix whose CONNECT is never answered
	failUser  string // user id suffix refused with connect_error

	mu      sync.Mutex
	users   map[string][]*fakeConn
	n       int
	browser int // upgrade requests that carried a browser's Cookie and User-Agent
}

type fakeConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	user string
}

func (c *fakeConn) send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.WriteMessage(websocket.TextMessage, []byte(s))
}

// start serves the hub on a new loopback httptest server.
func (h *fakeHub) start(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/socket.io/" || r.URL.Query().Get("transport") != "websocket" || r.URL.Query().Get("EIO") != "4" {
			http.Error(w, "want a websocket Engine.IO v4 request", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Cookie") != "" && strings.HasPrefix(r.Header.Get("User-Agent"), "Mozilla/") {
			h.mu.Lock()
			h.browser++
			h.mu.Unlock()
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		h.serve(ws)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (h *fakeHub) serve(ws *websocket.Conn) {
	defer ws.Close()
	c := &fakeConn{ws: ws}
	c.send(`0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`)
	_, msg, err := ws.ReadMessage()
	if err != nil {
		return
	}
	var auth struct{ Token string }
	body, ok := strings.CutPrefix(string(msg), "40/socket,")
	if !ok || json.Unmarshal([]byte(body), &auth) != nil {
		return
	}
	user, err := h.verify(auth.Token)
	if err != nil {
		c.send(`44/socket,{"message":"unauthorized","data":{"reason":"invalid_token"}}`)
		return
	}
	switch {
	case h.stallUser != "" && strings.HasSuffix(user, h.stallUser):
		ws.ReadMessage() // never answers: waits for the client to give up
		return
	case h.failUser != "" && strings.HasSuffix(user, h.failUser):
		c.send(`44/socket,{"message":"unauthorized","data":{"reason":"invalid_token"}}`)
		return
	}
	c.user = user
	h.mu.Lock()
	h.users[user] = append(h.users[user], c)
	h.n++
	sid := h.n
	h.mu.Unlock()
	c.send(fmt.Sprintf(`40/socket,{"sid":"x%d"}`, sid))
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		rest, ok := strings.CutPrefix(string(msg), "42/socket,")
		if !ok {
			continue
		}
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			continue
		}
		ackID := rest[:i]
		var ev []json.RawMessage
		var args struct{ To, Text string }
		if json.Unmarshal([]byte(rest[i:]), &ev) != nil || len(ev) != 2 || string(ev[0]) != `"sendMessage"` ||
			json.Unmarshal(ev[1], &args) != nil {
			continue
		}
		h.deliver(c, args.To, args.Text, ackID)
	}
}

func (h *fakeHub) verify(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("want 3 parts")
	}
	mac := hmac.New(sha256.New, h.secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		return "", fmt.Errorf("bad signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims struct {
		Sub string
		Exp int64
	}
	if err := json.Unmarshal(raw, &claims); err != nil || claims.Sub == "" || claims.Exp < time.Now().Unix() {
		return "", fmt.Errorf("bad claims")
	}
	return claims.Sub, nil
}

func (h *fakeHub) deliver(from *fakeConn, to, text, ackID string) {
	msg, _ := json.Marshal(map[string]string{
		"id": "m-" + text, "from": from.user, "to": to, "text": text,
		"sentAt": time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	})
	h.mu.Lock()
	var targets []*fakeConn
	var ids []string
	for _, c := range h.users[to] {
		targets, ids = append(targets, c), append(ids, to)
	}
	for _, c := range h.users[from.user] {
		if c != from {
			targets, ids = append(targets, c), append(ids, from.user)
		}
	}
	h.mu.Unlock()
	for i, c := range targets {
		idJSON, _ := json.Marshal(ids[i])
		pkt := `42/socket,["message",{"event":"message_sent","id":` + string(idJSON) + `,"args":` + string(msg) + `}]`
		switch {
		case i == 0 && text == h.dropText:
			continue
		case i == 0 && text == h.dupText:
			c.send(pkt)
		}
		c.send(pkt)
	}
	if ackID != "" {
		if _, err := strconv.Atoi(ackID); err == nil {
			from.send("43/socket," + ackID + `[{"ok":true,"message":` + string(msg) + `}]`)
		}
	}
}
