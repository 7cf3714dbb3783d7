package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/handlers"
)

// delivery is one recorded Dispatcher.Deliver call.
type delivery struct {
	User, Event  string
	Payload      any
	ExceptSocket string
}

// recorder is the hand-written Dispatcher of these tests: it records every
// delivery and fails the ones whose user is in failFor.
type recorder struct {
	deliveries []delivery
	failFor    map[string]error
}

var _ handlers.Dispatcher = (*recorder)(nil)

func (r *recorder) Deliver(_ context.Context, user, event string, payload any, exceptSocket string) error {
	if err := r.failFor[user]; err != nil {
		return err
	}
	r.deliveries = append(r.deliveries, delivery{User: user, Event: event, Payload: payload, ExceptSocket: exceptSocket})
	return nil
}

// fixedNow is the injected clock: 2026-03-04T05:06:07.089123456 at UTC+02:00,
// so a handler that forgets UTC or rounds instead of truncating shows.
var fixedNow = time.Date(2026, 3, 4, 7, 6, 7, 89_123_456, time.FixedZone("EET", 2*3600))

const fixedSentAt = "2026-03-04T05:06:07.089Z"

// newDeps returns deps over rec with the fixed clock and ids id-1, id-2, ...
func newDeps(rec *recorder) handlers.Deps {
	n := 0
	return handlers.Deps{
		Dispatcher: rec,
		Now:        func() time.Time { return fixedNow },
		NewID:      func() string { n++; return fmt.Sprintf("id-%d", n) },
	}
}

func sendReq(args any) handlers.Request {
	return handlers.Request{User: "alice", Socket: "sock-a1", Args: args}
}

// wantCode asserts that err is an *handlers.Error with code.
func wantCode(t *testing.T, err error, code handlers.Code) {
	t.Helper()
	var he *handlers.Error
	if !errors.As(err, &he) {
		t.Fatalf("err = %v (%T), want *handlers.Error with code %q", err, err, code)
	}
	if he.Code != code {
		t.Fatalf("code = %q (%q), want %q", he.Code, he.Message, code)
	}
	if he.Message == "" {
		t.Fatalf("error %q has an empty message", code)
	}
}

// TestSendMessageDeliveries pins the ack and every delivery: the recipient's
// sockets (except none) and the sender's other sockets (except the sending
// one); a message to oneself is only the latter.
func TestSendMessageDeliveries(t *testing.T) {
	tests := []struct {
		name, to string
		want     []string // users delivered to, in order; the sender's is last
	}{
		{"to another user", "bob", []string{"bob", "alice"}},
		{"to oneself", "alice", []string{"alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			reply, err := handlers.SendMessage(newDeps(rec))(context.Background(), sendReq(map[string]any{"to": tt.to, "text": "hi"}))
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			msg := map[string]any{"id": "id-1", "from": "alice", "to": tt.to, "text": "hi", "sentAt": fixedSentAt}
			if want := map[string]any{"ok": true, "message": msg}; !reflect.DeepEqual(reply, want) {
				t.Fatalf("ack = %#v\nwant %#v", reply, want)
			}
			var want []delivery
			for i, u := range tt.want {
				except := ""
				if i == len(tt.want)-1 {
					except = "sock-a1"
				}
				want = append(want, delivery{User: u, Event: "message_sent", Payload: msg, ExceptSocket: except})
			}
			if !reflect.DeepEqual(rec.deliveries, want) {
				t.Fatalf("deliveries = %#v\nwant %#v", rec.deliveries, want)
			}
		})
	}
}

func TestSendMessageIDsComeFromTheGenerator(t *testing.T) {
	rec := &recorder{}
	h := handlers.SendMessage(newDeps(rec))
	for i, want := range []string{"id-1", "id-2", "id-3"} {
		reply, err := h(context.Background(), sendReq(map[string]any{"to": "bob", "text": "x"}))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if got := reply.(map[string]any)["message"].(map[string]any)["id"]; got != want {
			t.Fatalf("send %d: id = %v, want %s", i, got, want)
		}
	}
}

func TestSendMessageSentAt(t *testing.T) {
	shape := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)
	tests := []struct {
		name string
		now  time.Time
		want string
	}{
		{"whole second keeps three zeros", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000Z"},
		{"truncated, not rounded", time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.UTC), "2026-01-02T03:04:05.999Z"},
		{"converted to UTC", time.Date(2026, 1, 1, 1, 0, 0, 7_000_000, time.FixedZone("X", 3*3600)), "2025-12-31T22:00:00.007Z"},
		{"west of UTC", time.Date(2026, 6, 30, 23, 59, 59, 120_000_000, time.FixedZone("Y", -5*3600)), "2026-07-01T04:59:59.120Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			deps := newDeps(rec)
			deps.Now = func() time.Time { return tt.now }
			reply, err := handlers.SendMessage(deps)(context.Background(), sendReq(map[string]any{"to": "bob", "text": "x"}))
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			got := reply.(map[string]any)["message"].(map[string]any)["sentAt"]
			if got != tt.want {
				t.Fatalf("sentAt = %v, want %s", got, tt.want)
			}
			if !shape.MatchString(got.(string)) {
				t.Fatalf("sentAt %v is not RFC 3339 UTC with three fractional digits", got)
			}
		})
	}
}

func TestSendMessageTextLength(t *testing.T) {
	tests := []struct {
		name string
		text string
		ok   bool
	}{
		{"one character", "a", true},
		{"4096 ASCII", strings.Repeat("a", 4096), true},
		{"4097 ASCII", strings.Repeat("a", 4097), false},
		{"4096 emoji (16384 bytes)", strings.Repeat("😀", 4096), true},
		{"4097 emoji", strings.Repeat("😀", 4097), false},
		// Code points, not graphemes: e + combining acute is two.
		{"2048 decomposed é = 4096 code points", strings.Repeat("e\u0301", 2048), true},
		{"2049 decomposed é = 4098 code points", strings.Repeat("e\u0301", 2049), false},
		{"4095 ASCII + 1 emoji", strings.Repeat("a", 4095) + "😀", true},
		{"whitespace only counts", " ", true},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			reply, err := handlers.SendMessage(newDeps(rec))(context.Background(), sendReq(map[string]any{"to": "bob", "text": tt.text}))
			if !tt.ok {
				wantCode(t, err, handlers.CodeInvalidArgs)
				if reply != nil || len(rec.deliveries) != 0 {
					t.Fatalf("rejected text still replied %v / delivered %d", reply, len(rec.deliveries))
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got := reply.(map[string]any)["message"].(map[string]any)["text"]; got != tt.text {
				t.Fatalf("text changed on the way: %d bytes, want %d", len(got.(string)), len(tt.text))
			}
			if len(rec.deliveries) != 2 {
				t.Fatalf("deliveries = %d, want 2", len(rec.deliveries))
			}
		})
	}
}

func TestSendMessageBadArgs(t *testing.T) {
	tests := []struct {
		name string
		args any
	}{
		{"nil", nil},
		{"string", "bob: hi"},
		{"number", 5.0},
		{"bool", true},
		{"array", []any{"bob", "hi"}},
		{"empty object", map[string]any{}},
		{"missing to", map[string]any{"text": "hi"}},
		{"to empty", map[string]any{"to": "", "text": "hi"}},
		{"to number", map[string]any{"to": 7.0, "text": "hi"}},
		{"to null", map[string]any{"to": nil, "text": "hi"}},
		{"to array", map[string]any{"to": []any{"bob"}, "text": "hi"}},
		{"missing text", map[string]any{"to": "bob"}},
		{"text number", map[string]any{"to": "bob", "text": 1.0}},
		{"text null", map[string]any{"to": "bob", "text": nil}},
		{"text object", map[string]any{"to": "bob", "text": map[string]any{"s": "hi"}}},
		{"text array", map[string]any{"to": "bob", "text": []any{"hi"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ids := 0
			deps := newDeps(rec)
			deps.NewID = func() string { ids++; return "x" }
			reply, err := handlers.SendMessage(deps)(context.Background(), sendReq(tt.args))
			wantCode(t, err, handlers.CodeInvalidArgs)
			if reply != nil {
				t.Fatalf("reply = %v, want nil on error", reply)
			}
			if len(rec.deliveries) != 0 {
				t.Fatalf("delivered %d times for bad args", len(rec.deliveries))
			}
			if ids != 0 {
				t.Fatalf("an id was drawn for bad args")
			}
		})
	}
}

func TestSendMessageDispatcherFailure(t *testing.T) {
	boom := errors.New("redis: connection refused")
	tests := []struct {
		name     string
		failUser string
		to       string
	}{
		{"recipient", "bob", "bob"},
		{"sender's devices", "alice", "bob"},
		{"self message", "alice", "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{failFor: map[string]error{tt.failUser: boom}}
			reply, err := handlers.SendMessage(newDeps(rec))(context.Background(), sendReq(map[string]any{"to": tt.to, "text": "hi"}))
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want it to wrap the dispatcher's error", err)
			}
			var he *handlers.Error
			if errors.As(err, &he) {
				t.Fatalf("a dispatcher failure must not be a user-safe *Error: %v", he)
			}
			if reply != nil {
				t.Fatalf("reply = %v, want nil on error", reply)
			}
		})
	}
}

func postReq(args any) handlers.Request {
	return handlers.Request{User: "alice", Socket: "sock-a1", Args: args}
}

func users(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%d", i)
	}
	return out
}

func TestPostUpdated(t *testing.T) {
	rec := &recorder{}
	reply, err := handlers.PostUpdated(newDeps(rec))(context.Background(),
		postReq(map[string]any{"postId": "p1", "mentions": []any{"bob", "carol", "bob", "alice", "carol"}}))
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if want := map[string]any{"ok": true, "notified": 3}; !reflect.DeepEqual(reply, want) {
		t.Fatalf("ack = %#v, want %#v", reply, want)
	}
	payload := map[string]any{"postId": "p1", "by": "alice", "message": "alice mentioned you in post p1"}
	want := []delivery{
		{User: "bob", Event: "post_updated_notification", Payload: payload},
		{User: "carol", Event: "post_updated_notification", Payload: payload},
		{User: "alice", Event: "post_updated_notification", Payload: payload},
	}
	if !reflect.DeepEqual(rec.deliveries, want) {
		t.Fatalf("deliveries = %#v\nwant %#v", rec.deliveries, want)
	}
}

func TestPostUpdatedMentionCount(t *testing.T) {
	dup := make([]any, 100)
	for i := range dup {
		dup[i] = "bob"
	}
	tests := []struct {
		name     string
		mentions []any
		notified int // -1: rejected
	}{
		{"one", []any{"bob"}, 1},
		{"100 distinct", users(100), 100},
		{"100 of the same", dup, 1},
		{"101", users(101), -1},
		{"0", []any{}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			reply, err := handlers.PostUpdated(newDeps(rec))(context.Background(),
				postReq(map[string]any{"postId": "p1", "mentions": tt.mentions}))
			if tt.notified < 0 {
				wantCode(t, err, handlers.CodeInvalidArgs)
				if len(rec.deliveries) != 0 {
					t.Fatalf("delivered %d times for a rejected list", len(rec.deliveries))
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if want := map[string]any{"ok": true, "notified": tt.notified}; !reflect.DeepEqual(reply, want) {
				t.Fatalf("ack = %#v, want %#v", reply, want)
			}
			if len(rec.deliveries) != tt.notified {
				t.Fatalf("deliveries = %d, want %d", len(rec.deliveries), tt.notified)
			}
		})
	}
}

func TestPostUpdatedBadArgs(t *testing.T) {
	tests := []struct {
		name string
		args any
	}{
		{"nil", nil},
		{"string", "p1"},
		{"array", []any{"p1", []any{"bob"}}},
		{"missing postId", map[string]any{"mentions": []any{"bob"}}},
		{"postId empty", map[string]any{"postId": "", "mentions": []any{"bob"}}},
		{"postId number", map[string]any{"postId": 1.0, "mentions": []any{"bob"}}},
		{"missing mentions", map[string]any{"postId": "p1"}},
		{"mentions string", map[string]any{"postId": "p1", "mentions": "bob"}},
		{"mentions object", map[string]any{"postId": "p1", "mentions": map[string]any{"0": "bob"}}},
		{"mentions null", map[string]any{"postId": "p1", "mentions": nil}},
		{"mention number", map[string]any{"postId": "p1", "mentions": []any{"bob", 2.0}}},
		{"mention null", map[string]any{"postId": "p1", "mentions": []any{nil}}},
		{"mention empty", map[string]any{"postId": "p1", "mentions": []any{"bob", ""}}},
		{"mention nested list", map[string]any{"postId": "p1", "mentions": []any{[]any{"bob"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			reply, err := handlers.PostUpdated(newDeps(rec))(context.Background(), postReq(tt.args))
			wantCode(t, err, handlers.CodeInvalidArgs)
			if reply != nil {
				t.Fatalf("reply = %v, want nil on error", reply)
			}
			// Validation comes before any side effect: a bad mention late
			// in the list must not leave the earlier ones notified.
			if len(rec.deliveries) != 0 {
				t.Fatalf("delivered %d times for bad args", len(rec.deliveries))
			}
		})
	}
}

func TestPostUpdatedDispatcherFailure(t *testing.T) {
	boom := errors.New("adapter closed")
	rec := &recorder{failFor: map[string]error{"carol": boom}}
	_, err := handlers.PostUpdated(newDeps(rec))(context.Background(),
		postReq(map[string]any{"postId": "p1", "mentions": []any{"bob", "carol"}}))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap the dispatcher's error", err)
	}
	var he *handlers.Error
	if errors.As(err, &he) {
		t.Fatalf("a dispatcher failure must not be a user-safe *Error: %v", he)
	}
}

func TestEnvelope(t *testing.T) {
	got := handlers.Envelope("message_sent", "bob", map[string]any{"k": 1})
	want := map[string]any{"event": "message_sent", "id": "bob", "args": map[string]any{"k": 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Envelope = %#v, want %#v", got, want)
	}
}

func TestRegistryDuplicateAddPanics(t *testing.T) {
	reg := handlers.NewRegistry()
	h := func(context.Context, handlers.Request) (any, error) { return nil, nil }
	reg.Add("x", h)
	defer func() {
		p := recover()
		if p == nil {
			t.Fatal("a second Add of the same name did not panic")
		}
		if !strings.Contains(fmt.Sprint(p), `"x"`) {
			t.Fatalf("panic %v does not name the event", p)
		}
	}()
	reg.Add("x", h)
}

func TestRegisterRegistersTheContractEvents(t *testing.T) {
	reg := handlers.NewRegistry()
	handlers.Register(reg, newDeps(&recorder{}))
	if got, want := reg.Names(), []string{"postUpdated", "sendMessage"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	for _, name := range []string{"sendMessage", "postUpdated"} {
		if h, ok := reg.Lookup(name); !ok || h == nil {
			t.Fatalf("Lookup(%q) = %v, %v", name, h, ok)
		}
	}
	for _, name := range []string{"", "message", "SendMessage", "error"} {
		if _, ok := reg.Lookup(name); ok {
			t.Fatalf("Lookup(%q) found a handler", name)
		}
	}
	// Registering twice into one registry is the sanctioned start-up panic.
	defer func() {
		if recover() == nil {
			t.Fatal("Register twice into one registry did not panic")
		}
	}()
	handlers.Register(reg, newDeps(&recorder{}))
}
