package handlers_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/handlers"
)

func TestCheckUserID(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"plain", "alice", ""},
		{"unicode", "Zoë 😀", ""},
		{"256 ASCII characters", strings.Repeat("a", 256), ""},
		{"256 four-byte characters", strings.Repeat("😀", 256), ""},
		{"right-to-left script", "مريم", ""},
		{"right-to-left mark is not an override", "a\u200fb", ""},
		{"empty", "", handlers.ReasonTooLong},
		{"257 ASCII characters", strings.Repeat("a", 257), handlers.ReasonTooLong},
		{"257 four-byte characters", strings.Repeat("😀", 257), handlers.ReasonTooLong},
		{"450 KB", strings.Repeat("x", 450_000), handlers.ReasonTooLong},
		{"NUL", "ali\x00ce", handlers.ReasonBadCharacters},
		{"newline", "alice\nadmin", handlers.ReasonBadCharacters},
		{"escape", "\x1b[31malice", handlers.ReasonBadCharacters},
		{"DEL", "alice\x7f", handlers.ReasonBadCharacters},
		{"C1 control", "alice\u0085", handlers.ReasonBadCharacters},
		{"LRE", "a\u202ab", handlers.ReasonBadCharacters},
		{"RLO", "alice\u202egnp.exe", handlers.ReasonBadCharacters},
		{"PDF", "a\u202cb", handlers.ReasonBadCharacters},
		{"LRI", "a\u2066b", handlers.ReasonBadCharacters},
		{"PDI", "a\u2069b", handlers.ReasonBadCharacters},
		{"invalid UTF-8", "ali\xffce", handlers.ReasonBadCharacters},
		{"truncated UTF-8", "alice\xf0\x9f", handlers.ReasonBadCharacters},
		{"replacement character, as JSON decodes invalid UTF-8", "ali\ufffdce", handlers.ReasonBadCharacters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := handlers.CheckUserID(tt.id); got != tt.want {
				t.Fatalf("CheckUserID = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestArgumentLimits routes events at and past each limit, both routes,
// through the real handlers: past a limit, invalid_args naming the limit
// and nothing delivered; at it, success.
func TestArgumentLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("p", n) }
	mentions := func(ids ...string) []any {
		out := []any{}
		for _, id := range ids {
			out = append(out, id)
		}
		return out
	}
	tests := []struct {
		name      string
		event     string
		args      any
		wantLimit handlers.Limit // zero: success
	}{
		{"postId of 256", "postUpdated", map[string]any{"postId": long(256), "mentions": mentions("bob")}, handlers.Limit{}},
		{"postId of 256 four-byte characters", "postUpdated", map[string]any{"postId": strings.Repeat("😀", 256), "mentions": mentions("bob")}, handlers.Limit{}},
		{"postId of 257", "postUpdated", map[string]any{"postId": long(257), "mentions": mentions("bob")}, handlers.Limit{Arg: handlers.ArgPostID, Reason: handlers.ReasonTooLong}},
		{"postId of 450 KB", "postUpdated", map[string]any{"postId": long(450_000), "mentions": mentions("bob")}, handlers.Limit{Arg: handlers.ArgPostID, Reason: handlers.ReasonTooLong}},
		{"mention of 256", "postUpdated", map[string]any{"postId": "p", "mentions": mentions("bob", long(256))}, handlers.Limit{}},
		{"one mention of 257 among good ones", "postUpdated", map[string]any{"postId": "p", "mentions": mentions("bob", long(257), "carol")}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonTooLong}},
		{"mention with NUL", "postUpdated", map[string]any{"postId": "p", "mentions": mentions("bob", "car\x00ol")}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonBadCharacters}},
		{"mention with RLO", "postUpdated", map[string]any{"postId": "p", "mentions": mentions("\u202ebob")}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonBadCharacters}},
		{"to of 256", "sendMessage", map[string]any{"to": long(256), "text": "hi"}, handlers.Limit{}},
		{"to of 257", "sendMessage", map[string]any{"to": long(257), "text": "hi"}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonTooLong}},
		{"to with NUL", "sendMessage", map[string]any{"to": "bob\x00", "text": "hi"}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonBadCharacters}},
		{"to with LRI", "sendMessage", map[string]any{"to": "b\u2066ob", "text": "hi"}, handlers.Limit{Arg: handlers.ArgUserID, Reason: handlers.ReasonBadCharacters}},
	}
	for _, tt := range tests {
		for _, route := range []string{"direct", "through message"} {
			t.Run(tt.name+", "+route, func(t *testing.T) {
				event, args := tt.event, []any{tt.args}
				if route != "direct" {
					event, args = "message", []any{map[string]any{"event": tt.event, "args": tt.args}}
				}
				rec := &recorder{}
				reg := handlers.NewRegistry()
				handlers.Register(reg, newDeps(rec))
				out := handlers.NewRouter(reg, slog.New(slog.DiscardHandler)).Route(context.Background(), "alice", "sock-1", event, args, true)
				if tt.wantLimit == (handlers.Limit{}) {
					if out.Err != nil {
						t.Fatalf("refused: %+v", out.Err)
					}
					if len(rec.deliveries) == 0 {
						t.Fatal("nothing delivered")
					}
					return
				}
				wantFailure(t, out, tt.event, handlers.CodeInvalidArgs)
				if out.Err.Limit != tt.wantLimit {
					t.Fatalf("Limit = %+v, want %+v", out.Err.Limit, tt.wantLimit)
				}
				if len(rec.deliveries) != 0 {
					t.Fatalf("a refused event delivered %d times", len(rec.deliveries))
				}
			})
		}
	}
}

func TestEventNameLimit(t *testing.T) {
	at, past := strings.Repeat("e", handlers.MaxEventNameChars), strings.Repeat("e", 450_000)
	tests := []struct {
		name     string
		event    string
		args     []any
		allowed  bool
		wantCode handlers.Code
		wantName string
		limited  bool
	}{
		{"direct, 256: unknown", at, nil, true, handlers.CodeUnknownEvent, at, false},
		{"through message, 256: unknown", "message", []any{map[string]any{"event": at}}, true, handlers.CodeUnknownEvent, at, false},
		{"direct, 257", at + "e", nil, true, handlers.CodeInvalidArgs, at, true},
		{"direct, 450 KB", past, nil, true, handlers.CodeInvalidArgs, at, true},
		{"through message, 450 KB", "message", []any{map[string]any{"event": past, "args": map[string]any{}}}, true, handlers.CodeInvalidArgs, at, true},
		{"four-byte characters cut on a character", strings.Repeat("😀", 300), nil, true, handlers.CodeInvalidArgs, strings.Repeat("😀", 256), true},
		{"rate limited first, name cut all the same", past, nil, false, handlers.CodeRateLimited, at, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spy{}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", tt.event, tt.args, tt.allowed)
			wantFailure(t, out, tt.wantName, tt.wantCode)
			if len(out.Err.Message) > 4*handlers.MaxEventNameChars+64 {
				t.Fatalf("the message echoes the whole name: %d bytes", len(out.Err.Message))
			}
			if got := out.Err.Limit.Arg == handlers.ArgEventName; got != tt.limited {
				t.Fatalf("Limit = %+v, want event_name: %v", out.Err.Limit, tt.limited)
			}
		})
	}
}
