package namespaces

import (
	"net/http"
	"net/url"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	type (
		auth  = map[string]any
		query = url.Values
		hdr   = http.Header
	)
	tests := []struct {
		name string
		src  tokenSources
		want string
	}{
		{"nothing", tokenSources{}, ""},
		{"auth.token", tokenSources{Auth: auth{"token": "A"}}, "A"},
		{"query token", tokenSources{Query: query{"token": {"Q"}}}, "Q"},
		{"header", tokenSources{Header: hdr{"Authorization": {"Bearer H"}}}, "H"},

		// Precedence: auth.token, then the query, then the header.
		{"auth wins over query and header", tokenSources{
			Auth: auth{"token": "A"}, Query: query{"token": {"Q"}}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "A"},
		{"query wins over header", tokenSources{
			Query: query{"token": {"Q"}}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "Q"},

		// Empty values count as absent.
		{"empty auth.token falls to query", tokenSources{
			Auth: auth{"token": ""}, Query: query{"token": {"Q"}}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "Q"},
		{"empty auth.token and query fall to header", tokenSources{
			Auth: auth{"token": ""}, Query: query{"token": {""}}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "H"},
		{"empty query list falls to header", tokenSources{
			Query: query{"token": {}}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "H"},
		{"non-string auth.token counts as absent", tokenSources{
			Auth: auth{"token": 42.0}, Query: query{"token": {"Q"}},
		}, "Q"},
		{"null auth.token counts as absent", tokenSources{
			Auth: auth{"token": nil}, Header: hdr{"Authorization": {"Bearer H"}},
		}, "H"},
		{"other auth keys are ignored", tokenSources{Auth: auth{"jwt": "A", "Token": "A"}}, ""},

		// Repeated query values: the first one counts.
		{"query first of several", tokenSources{Query: query{"token": {"Q1", "Q2"}}}, "Q1"},
		{"other query keys are ignored", tokenSources{Query: query{"access_token": {"Q"}, "EIO": {"4"}}}, ""},

		// The header name is case-insensitive.
		{"header lower case", tokenSources{Header: hdr{"authorization": {"Bearer H"}}}, "H"},
		{"header upper case", tokenSources{Header: hdr{"AUTHORIZATION": {"Bearer H"}}}, "H"},
		{"scheme case-insensitive", tokenSources{Header: hdr{"Authorization": {"bearer H"}}}, "H"},
		{"non-Bearer scheme ignored", tokenSources{Header: hdr{"Authorization": {"Basic dXNlcjpwYXNz"}}}, ""},
		{"Bearer without credentials", tokenSources{Header: hdr{"Authorization": {"Bearer "}}}, ""},
		{"bare token without scheme", tokenSources{Header: hdr{"Authorization": {"H"}}}, ""},
		{"other headers ignored", tokenSources{Header: hdr{"Cookie": {"token=C"}, "X-Token": {"Bearer X"}}}, ""},
		{"proxy authorization is not authorization", tokenSources{Header: hdr{"Proxy-Authorization": {"Bearer P"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenFrom(tt.src); got != tt.want {
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
