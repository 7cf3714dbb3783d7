package namespaces

import (
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
)

// slimSessionRequests hands the Engine.IO server, for every request that
// opens a session (a websocket upgrade, or a polling handshake without a
// sid), a copy of the request that carries only the headers a session
// needs. The library keeps the opening request for the whole life of the
// connection, and holds three copies of its headers: the request's own map,
// the engine's parameter bag and Socket.IO's handshake. For an idle
// connection that is a large share of its memory, most of it headers nobody
// reads again (User-Agent, Accept-Language, and above all Cookie, which a
// browser sends to the whole site and which can run to kilobytes).
//
// What stays: the websocket handshake headers, Origin (the CORS check),
// Authorization (a token source of the contract), X-Forwarded-For (the
// client address behind a proxy) and Accept-Encoding (the polling
// handshake's own response).
func slimSessionRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) || (r.Method == http.MethodGet && !hasParam(r.URL.RawQuery, "sid")) {
			r = slimRequest(r)
		}
		next.ServeHTTP(w, r)
	})
}

// hasParam reports whether the raw query has the parameter name (a key
// written plainly, not percent-encoded), as url.Values.Has would, without
// parsing the query into a map: every polling request passes here, and the
// engine parses the query itself anyway.
func hasParam(rawQuery, name string) bool {
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if key, _, _ := strings.Cut(pair, "="); key == name {
			return true
		}
	}
	return false
}

// slimRequest is a shallow copy of r with only the kept headers.
func slimRequest(r *http.Request) *http.Request {
	h := make(http.Header, 8)
	for name, values := range r.Header {
		if keepHeader(name) {
			h[name] = values
		}
	}
	slim := r.WithContext(r.Context()) // a shallow copy
	slim.Header = h
	return slim
}

// keepHeader reports whether the header (canonical name, as net/http stores
// it) is kept for the life of a session.
func keepHeader(name string) bool {
	switch name {
	case "Upgrade", "Connection", "Origin", "Authorization", "X-Forwarded-For", "Accept-Encoding":
		return true
	}
	return strings.HasPrefix(name, "Sec-Websocket-")
}
