package namespaces

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestSlimSessionRequests(t *testing.T) {
	browser := func(r *http.Request) {
		for name, value := range map[string]string{
			"Authorization":            "Bearer t",
			"Origin":                   "https://app.example",
			"X-Forwarded-For":          "203.0.113.7",
			"Accept-Encoding":          "gzip",
			"Cookie":                   "session=0123456789abcdef; prefs=dark",
			"User-Agent":               "Mozilla/5.0",
			"Accept-Language":          "en-GB,en;q=0.9",
			"Cache-Control":            "no-cache",
			"Sec-Websocket-Extensions": "permessage-deflate",
		} {
			r.Header.Set(name, value)
		}
	}
	upgrade := func(r *http.Request) {
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		r.Header.Set("Sec-Websocket-Version", "13")
	}
	kept := []string{"Accept-Encoding", "Authorization", "Origin", "X-Forwarded-For"}
	tests := []struct {
		name, method, target string
		upgrade              bool
		want                 []string // the header names the engine sees; nil: all of them
	}{
		{"websocket handshake", http.MethodGet, "/socket.io/?EIO=4&transport=websocket", true,
			append([]string{"Connection", "Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Version", "Upgrade"}, kept...)},
		{"websocket upgrade of a polling session", http.MethodGet, "/socket.io/?EIO=4&transport=websocket&sid=abc", true,
			append([]string{"Connection", "Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Version", "Upgrade"}, kept...)},
		{"polling handshake", http.MethodGet, "/socket.io/?EIO=4&transport=polling", false, append([]string{"Sec-Websocket-Extensions"}, kept...)},
		{"polling request of a session", http.MethodGet, "/socket.io/?EIO=4&transport=polling&sid=abc", false, nil},
		{"polling post", http.MethodPost, "/socket.io/?EIO=4&transport=polling&sid=abc", false, nil},
		{"preflight", http.MethodOptions, "/socket.io/?EIO=4&transport=polling", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, nil)
			browser(r)
			if tt.upgrade {
				upgrade(r)
			}
			all := slices.Sorted(func(yield func(string) bool) {
				for name := range r.Header {
					if !yield(name) {
						return
					}
				}
			})
			var seen *http.Request
			slimSessionRequests(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = r })).
				ServeHTTP(httptest.NewRecorder(), r)
			var got []string
			for name := range seen.Header {
				got = append(got, name)
			}
			slices.Sort(got)
			want := tt.want
			if want == nil {
				want = all
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("headers seen by the engine:\n got %v\nwant %v", got, want)
			}
			if len(r.Header) != len(all) {
				t.Fatalf("the original request lost headers: %v", r.Header)
			}
			if seen.URL.String() != r.URL.String() || seen.Host != r.Host || seen.Context() != r.Context() {
				t.Fatal("the slim request differs beyond its headers")
			}
		})
	}
}
