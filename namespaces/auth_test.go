package namespaces

import (
	"testing"

	sio "github.com/zishang520/socket.io/servers/socket/v3"
)

func TestTokenFrom(t *testing.T) {
	type (
		auth    = map[string]any
		query   = map[string]any
		headers = map[string]any
	)
	tests := []struct {
		name string
		h    *sio.Handshake
		want string
	}{
		{"nil handshake", nil, ""},
		{"nothing", &sio.Handshake{}, ""},
		{"auth.token", &sio.Handshake{Auth: auth{"token": "A"}}, "A"},
		{"query token", &sio.Handshake{Query: query{"token": "Q"}}, "Q"},
		{"header", &sio.Handshake{Headers: headers{"Authorization": "Bearer H"}}, "H"},

		// Precedence: auth.token, then the query, then the header.
		{"auth wins over query and header", &sio.Handshake{
			Auth: auth{"token": "A"}, Query: query{"token": []string{"Q"}}, Headers: headers{"Authorization": "Bearer H"},
		}, "A"},
		{"query wins over header", &sio.Handshake{
			Query: query{"token": []string{"Q"}}, Headers: headers{"Authorization": "Bearer H"},
		}, "Q"},

		// Empty values count as absent.
		{"empty auth.token falls to query", &sio.Handshake{
			Auth: auth{"token": ""}, Query: query{"token": "Q"}, Headers: headers{"Authorization": "Bearer H"},
		}, "Q"},
		{"empty auth.token and query fall to header", &sio.Handshake{
			Auth: auth{"token": ""}, Query: query{"token": []string{""}}, Headers: headers{"Authorization": "Bearer H"},
		}, "H"},
		{"empty query list falls to header", &sio.Handshake{
			Query: query{"token": []string{}}, Headers: headers{"Authorization": "Bearer H"},
		}, "H"},
		{"non-string auth.token counts as absent", &sio.Handshake{
			Auth: auth{"token": 42.0}, Query: query{"token": "Q"},
		}, "Q"},
		{"null auth.token counts as absent", &sio.Handshake{
			Auth: auth{"token": nil}, Headers: headers{"Authorization": "Bearer H"},
		}, "H"},
		{"other auth keys are ignored", &sio.Handshake{Auth: auth{"jwt": "A", "Token": "A"}}, ""},

		// Query values come as []string or []any; the first one counts.
		{"query []string", &sio.Handshake{Query: query{"token": []string{"Q1", "Q2"}}}, "Q1"},
		{"query []any", &sio.Handshake{Query: query{"token": []any{"Q1", "Q2"}}}, "Q1"},
		{"query []any of a non-string", &sio.Handshake{
			Query: query{"token": []any{1.0}}, Headers: headers{"Authorization": "Bearer H"},
		}, "H"},
		{"other query keys are ignored", &sio.Handshake{Query: query{"access_token": "Q", "EIO": "4"}}, ""},

		// The header name is case-insensitive; its value a string or a list.
		{"header lower case", &sio.Handshake{Headers: headers{"authorization": "Bearer H"}}, "H"},
		{"header upper case", &sio.Handshake{Headers: headers{"AUTHORIZATION": "Bearer H"}}, "H"},
		{"header []string", &sio.Handshake{Headers: headers{"Authorization": []string{"Bearer H"}}}, "H"},
		{"header []any", &sio.Handshake{Headers: headers{"Authorization": []any{"Bearer H"}}}, "H"},
		{"scheme case-insensitive", &sio.Handshake{Headers: headers{"Authorization": "bearer H"}}, "H"},
		{"non-Bearer scheme ignored", &sio.Handshake{Headers: headers{"Authorization": "Basic dXNlcjpwYXNz"}}, ""},
		{"Bearer without credentials", &sio.Handshake{Headers: headers{"Authorization": "Bearer "}}, ""},
		{"bare token without scheme", &sio.Handshake{Headers: headers{"Authorization": "H"}}, ""},
		{"other headers ignored", &sio.Handshake{Headers: headers{"Cookie": "token=C", "X-Token": "Bearer X"}}, ""},
		{"proxy authorization is not authorization", &sio.Handshake{Headers: headers{"Proxy-Authorization": "Bearer P"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenFrom(tt.h); got != tt.want {
				t.Fatalf("tokenFrom = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct{ header, want string }{
		{"Bearer abc.def.ghi", "abc.def.ghi"},
		{"bearer abc", "abc"},
		{"BEARER abc", "abc"},
		{"  Bearer   abc  ", "abc"},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"Bearer    ", ""},
		{"Bearerabc", ""},
		{"Basic abc", ""},
		{"Token abc", ""},
		{"abc", ""},
		{"", ""},
		// RFC 7235 separates the scheme with a space, not a tab.
		{"Bearer\tabc", ""},
	}
	for _, tt := range tests {
		if got := BearerToken(tt.header); got != tt.want {
			t.Errorf("BearerToken(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}
