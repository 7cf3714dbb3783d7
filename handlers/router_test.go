package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/handlers"
)

// spy is a registry with one handler, "echo", that records its requests and
// answers with the reply or error it is given (or panics with panicWith).
type spy struct {
	calls     []handlers.Request
	reply     any
	err       error
	panicWith any
}

func (s *spy) router(t *testing.T) (*handlers.Router, *bytes.Buffer) {
	t.Helper()
	reg := handlers.NewRegistry()
	reg.Add("echo", func(_ context.Context, req handlers.Request) (any, error) {
		s.calls = append(s.calls, req)
		if s.panicWith != nil {
			panic(s.panicWith)
		}
		return s.reply, s.err
	})
	var logs bytes.Buffer
	return handlers.NewRouter(reg, slog.New(slog.NewJSONHandler(&logs, nil))), &logs
}

// failureReply is the exact ack of a failed event.
func failureReply(code handlers.Code, message string) map[string]any {
	return map[string]any{"ok": false, "error": map[string]any{"code": string(code), "message": message}}
}

// wantFailure asserts the outcome's name, code and that its Reply is exactly
// {ok:false, error:{code, message}} with the error's message.
func wantFailure(t *testing.T, out handlers.Outcome, name string, code handlers.Code) {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("outcome %+v succeeded, want %s", out, code)
	}
	if out.Name != name || out.Err.Code != code {
		t.Fatalf("outcome = {Name %q, Code %q}, want {%q, %q}", out.Name, out.Err.Code, name, code)
	}
	if out.Err.Message == "" {
		t.Fatalf("%s error has an empty message", code)
	}
	if want := failureReply(code, out.Err.Message); !reflect.DeepEqual(out.Reply, want) {
		t.Fatalf("Reply = %#v, want %#v", out.Reply, want)
	}
}

func TestRouteBothRoutesReachTheSameHandler(t *testing.T) {
	args := map[string]any{"to": "bob", "text": "hi"}
	routes := []struct {
		name  string
		event string
		args  []any
	}{
		{"direct", "echo", []any{args}},
		{"through message", "message", []any{map[string]any{"event": "echo", "args": args}}},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			s := &spy{reply: map[string]any{"ok": true}}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", rt.event, rt.args, true)
			if out.Err != nil || out.Name != "echo" || !reflect.DeepEqual(out.Reply, s.reply) {
				t.Fatalf("outcome = %+v, want success of echo with the handler's reply", out)
			}
			want := []handlers.Request{{User: "alice", Socket: "sock-1", Args: args}}
			if !reflect.DeepEqual(s.calls, want) {
				t.Fatalf("handler saw %#v, want %#v", s.calls, want)
			}
		})
	}
}

// TestRouteRealHandlersAgree routes the same sendMessage both ways through
// the real registry: same ack, same deliveries.
func TestRouteRealHandlersAgree(t *testing.T) {
	var acks []any
	var deliveries [][]delivery
	for _, route := range []struct {
		event string
		args  []any
	}{
		{"sendMessage", []any{map[string]any{"to": "bob", "text": "hi"}}},
		{"message", []any{map[string]any{"event": "sendMessage", "args": map[string]any{"to": "bob", "text": "hi"}}}},
	} {
		rec := &recorder{}
		reg := handlers.NewRegistry()
		handlers.Register(reg, newDeps(rec))
		out := handlers.NewRouter(reg, slog.New(slog.DiscardHandler)).Route(context.Background(), "alice", "sock-1", route.event, route.args, true)
		if out.Err != nil || out.Name != "sendMessage" {
			t.Fatalf("%s: outcome = %+v", route.event, out)
		}
		acks = append(acks, out.Reply)
		deliveries = append(deliveries, rec.deliveries)
	}
	if !reflect.DeepEqual(acks[0], acks[1]) {
		t.Fatalf("acks differ:\n%#v\n%#v", acks[0], acks[1])
	}
	if !reflect.DeepEqual(deliveries[0], deliveries[1]) || len(deliveries[0]) != 2 {
		t.Fatalf("deliveries differ or are not 2:\n%#v\n%#v", deliveries[0], deliveries[1])
	}
}

func TestRouteArgs(t *testing.T) {
	tests := []struct {
		name  string
		event string
		args  []any
		want  any // the handler's Args
	}{
		{"direct without args", "echo", nil, nil},
		{"direct, only the first argument", "echo", []any{"a", "b"}, "a"},
		{"direct null", "echo", []any{nil}, nil},
		{"envelope without args", "message", []any{map[string]any{"event": "echo"}}, nil},
		{"envelope args array", "message", []any{map[string]any{"event": "echo", "args": []any{1.0}}}, []any{1.0}},
		{"envelope extra keys ignored", "message", []any{map[string]any{"event": "echo", "args": "x", "id": "y"}}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spy{reply: "ok"}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", tt.event, tt.args, true)
			if out.Err != nil {
				t.Fatalf("outcome = %+v", out)
			}
			if len(s.calls) != 1 || !reflect.DeepEqual(s.calls[0].Args, tt.want) {
				t.Fatalf("handler saw %#v, want Args %#v", s.calls, tt.want)
			}
		})
	}
}

func TestRouteMessageThatIsNotAnEnvelope(t *testing.T) {
	tests := []struct {
		name string
		args []any
	}{
		{"no argument", nil},
		{"null", []any{nil}},
		{"string", []any{"sendMessage"}},
		{"number", []any{1.0}},
		{"array", []any{[]any{"echo", map[string]any{}}}},
		{"empty object", []any{map[string]any{}}},
		{"event missing", []any{map[string]any{"args": map[string]any{}}}},
		{"event a number", []any{map[string]any{"event": 5.0, "args": nil}}},
		{"event null", []any{map[string]any{"event": nil}}},
		{"event an object", []any{map[string]any{"event": map[string]any{"name": "echo"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spy{}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", "message", tt.args, true)
			wantFailure(t, out, "message", handlers.CodeInvalidArgs)
			if len(s.calls) != 0 {
				t.Fatalf("handler called %d times", len(s.calls))
			}
			env := handlers.ErrorEnvelope("alice", out)
			if env["args"].(map[string]any)["event"] != "message" {
				t.Fatalf("error envelope %#v does not name \"message\"", env)
			}
		})
	}
}

func TestRouteUnknownEvent(t *testing.T) {
	tests := []struct {
		name, event string
		args        []any
		wantName    string
	}{
		{"direct", "nope", []any{map[string]any{}}, "nope"},
		{"through message", "message", []any{map[string]any{"event": "nope"}}, "nope"},
		{"envelope naming message", "message", []any{map[string]any{"event": "message", "args": map[string]any{"event": "echo"}}}, "message"},
		{"empty name", "message", []any{map[string]any{"event": ""}}, ""},
		{"case matters", "ECHO", nil, "ECHO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spy{}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", tt.event, tt.args, true)
			wantFailure(t, out, tt.wantName, handlers.CodeUnknownEvent)
			if len(s.calls) != 0 {
				t.Fatalf("handler called %d times", len(s.calls))
			}
			if r.Registered(tt.wantName) {
				t.Fatalf("Registered(%q) = true", tt.wantName)
			}
		})
	}
}

func TestRouteRateLimited(t *testing.T) {
	tests := []struct {
		name, event string
		args        []any
		wantName    string
	}{
		{"direct", "echo", []any{map[string]any{}}, "echo"},
		{"through message names the router event", "message", []any{map[string]any{"event": "echo", "args": map[string]any{}}}, "echo"},
		{"unknown event is limited, not unknown", "nope", nil, "nope"},
		{"bad envelope is limited, not invalid", "message", []any{"x"}, "message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &spy{reply: "ok"}
			r, _ := s.router(t)
			out := r.Route(context.Background(), "alice", "sock-1", tt.event, tt.args, false)
			wantFailure(t, out, tt.wantName, handlers.CodeRateLimited)
			if len(s.calls) != 0 {
				t.Fatalf("a limited event reached its handler %d times", len(s.calls))
			}
		})
	}
}

func TestRouteRateLimitedDeliversNothing(t *testing.T) {
	rec := &recorder{}
	reg := handlers.NewRegistry()
	handlers.Register(reg, newDeps(rec))
	r := handlers.NewRouter(reg, slog.New(slog.DiscardHandler))
	out := r.Route(context.Background(), "alice", "sock-1", "message",
		[]any{map[string]any{"event": "sendMessage", "args": map[string]any{"to": "bob", "text": "hi"}}}, false)
	wantFailure(t, out, "sendMessage", handlers.CodeRateLimited)
	if len(rec.deliveries) != 0 {
		t.Fatalf("a limited sendMessage was delivered: %#v", rec.deliveries)
	}
}

func TestRouteHandlerErrors(t *testing.T) {
	const secret = "dial tcp 10.1.2.3:6379: connection refused"
	tests := []struct {
		name     string
		spy      spy
		wantCode handlers.Code
		wantMsg  string
		logged   bool
	}{
		{"user-safe error passes through", spy{err: &handlers.Error{Code: handlers.CodeInvalidArgs, Message: "bad to"}}, handlers.CodeInvalidArgs, "bad to", false},
		{"wrapped user-safe error passes through", spy{err: fmt.Errorf("ctx: %w", &handlers.Error{Code: handlers.CodeInvalidArgs, Message: "bad to"})}, handlers.CodeInvalidArgs, "bad to", false},
		{"other error is internal", spy{err: errors.New(secret)}, handlers.CodeInternal, "internal error", true},
		{"dispatcher error wrapped by a handler is internal", spy{err: fmt.Errorf("deliver: %w", errors.New(secret))}, handlers.CodeInternal, "internal error", true},
		{"panic is internal", spy{panicWith: secret}, handlers.CodeInternal, "internal error", true},
		{"panic with an error is internal", spy{panicWith: errors.New(secret)}, handlers.CodeInternal, "internal error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spy
			r, logs := s.router(t)
			var out handlers.Outcome
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("a panic escaped Route: %v", p)
					}
				}()
				out = r.Route(context.Background(), "alice", "sock-1", "echo", []any{map[string]any{}}, true)
			}()
			wantFailure(t, out, "echo", tt.wantCode)
			if out.Err.Message != tt.wantMsg {
				t.Fatalf("message = %q, want %q", out.Err.Message, tt.wantMsg)
			}
			wire, err := json.Marshal([]any{out.Reply, handlers.ErrorEnvelope("alice", out)})
			if err != nil {
				t.Fatalf("reply does not encode: %v", err)
			}
			if strings.Contains(string(wire), "10.1.2.3") {
				t.Fatalf("internal detail leaked to the client: %s", wire)
			}
			if got := strings.Contains(logs.String(), "10.1.2.3"); got != tt.logged {
				t.Fatalf("detail logged = %v, want %v; logs:\n%s", got, tt.logged, logs)
			}
			if tt.logged && strings.Count(logs.String(), "\n") != 1 {
				t.Fatalf("want the internal error logged once, logs:\n%s", logs)
			}
		})
	}
}

// TestRouteDispatcherErrorThroughRealHandlers drives the real sendMessage and
// postUpdated into a failing dispatcher.
func TestRouteDispatcherErrorThroughRealHandlers(t *testing.T) {
	for _, tt := range []struct {
		event string
		args  any
	}{
		{"sendMessage", map[string]any{"to": "bob", "text": "hi"}},
		{"postUpdated", map[string]any{"postId": "p", "mentions": []any{"bob"}}},
	} {
		t.Run(tt.event, func(t *testing.T) {
			rec := &recorder{failFor: map[string]error{"bob": errors.New("redis: i/o timeout on 10.9.9.9")}}
			reg := handlers.NewRegistry()
			handlers.Register(reg, newDeps(rec))
			var logs bytes.Buffer
			r := handlers.NewRouter(reg, slog.New(slog.NewJSONHandler(&logs, nil)))
			out := r.Route(context.Background(), "alice", "sock-1", tt.event, []any{tt.args}, true)
			wantFailure(t, out, tt.event, handlers.CodeInternal)
			if out.Err.Message != "internal error" {
				t.Fatalf("message = %q", out.Err.Message)
			}
			if !strings.Contains(logs.String(), "10.9.9.9") {
				t.Fatalf("the dispatcher error was not logged: %q", logs.String())
			}
		})
	}
}

func TestErrorEnvelope(t *testing.T) {
	s := &spy{}
	r, _ := s.router(t)
	out := r.Route(context.Background(), "alice", "sock-1", "message", []any{map[string]any{"event": "nope"}}, true)
	got := handlers.ErrorEnvelope("alice", out)
	want := map[string]any{
		"event": "error",
		"id":    "alice",
		"args":  map[string]any{"code": "unknown_event", "message": out.Err.Message, "event": "nope"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ErrorEnvelope = %#v\nwant %#v", got, want)
	}
}

func TestRegistered(t *testing.T) {
	reg := handlers.NewRegistry()
	handlers.Register(reg, newDeps(&recorder{}))
	r := handlers.NewRouter(reg, slog.New(slog.DiscardHandler))
	for name, want := range map[string]bool{"sendMessage": true, "postUpdated": true, "message": false, "": false, "x": false} {
		if got := r.Registered(name); got != want {
			t.Errorf("Registered(%q) = %v, want %v", name, got, want)
		}
	}
}
