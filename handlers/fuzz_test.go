package handlers_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"sort"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/handlers"
)

// FuzzRoute feeds the router what a Socket.IO EVENT packet's payload decodes
// to, ["event", arg...], through the real handlers and a recorder. Its seed
// corpus is testdata/fuzz/FuzzRoute; run it longer with
// go test -fuzz=FuzzRoute -fuzztime=30s ./handlers/
func FuzzRoute(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var packet []any
		if json.Unmarshal(data, &packet) != nil || len(packet) == 0 {
			t.Skip("not a JSON array")
		}
		event, ok := packet[0].(string)
		if !ok {
			t.Skip("first element is not an event name")
		}
		args := packet[1:]

		limited := route(t, event, args, false)
		out, rec := routeRecorded(t, event, args)
		checkOutcome(t, out)
		if limited.Err == nil || limited.Err.Code != handlers.CodeRateLimited || limited.Name != out.Name {
			t.Fatalf("limited outcome = %+v, want rate_limited naming %q", limited, out.Name)
		}
		if out.Err != nil {
			// Handlers validate before any side effect, and the recorder
			// never fails: a rejected event delivers nothing.
			if len(rec.deliveries) != 0 {
				t.Fatalf("failed with %v yet delivered %#v", out.Err, rec.deliveries)
			}
			return
		}
		switch out.Name {
		case handlers.EventSendMessage:
			checkSendMessage(t, out, rec.deliveries)
		case handlers.EventPostUpdated:
			checkPostUpdated(t, out, rec.deliveries)
		default:
			t.Fatalf("success for %q, which has no checks here", out.Name)
		}
	})
}

func route(t *testing.T, event string, args []any, allowed bool) handlers.Outcome {
	reg := handlers.NewRegistry()
	handlers.Register(reg, newDeps(&recorder{}))
	out := handlers.NewRouter(reg, slog.New(slog.DiscardHandler)).Route(context.Background(), "alice", "sock-a1", event, args, allowed)
	checkOutcome(t, out)
	return out
}

func routeRecorded(t *testing.T, event string, args []any) (handlers.Outcome, *recorder) {
	rec := &recorder{}
	reg := handlers.NewRegistry()
	handlers.Register(reg, newDeps(rec))
	r := handlers.NewRouter(reg, slog.New(slog.DiscardHandler))
	out := r.Route(context.Background(), "alice", "sock-a1", event, args, true)
	if out.Err == nil && !r.Registered(out.Name) {
		t.Fatalf("success for unregistered event %q", out.Name)
	}
	return out, rec
}

// checkOutcome holds for every outcome: a known code, an exact failure
// reply, and a reply and error envelope that encode.
func checkOutcome(t *testing.T, out handlers.Outcome) {
	t.Helper()
	if _, err := json.Marshal(out.Reply); err != nil {
		t.Fatalf("reply %#v does not encode: %v", out.Reply, err)
	}
	if out.Err == nil {
		return
	}
	switch out.Err.Code {
	case handlers.CodeUnknownEvent, handlers.CodeInvalidArgs, handlers.CodeRateLimited, handlers.CodeInternal:
	default:
		t.Fatalf("code %q is not in the contract", out.Err.Code)
	}
	if want := failureReply(out.Err.Code, out.Err.Message); !reflect.DeepEqual(out.Reply, want) {
		t.Fatalf("failure reply = %#v, want %#v", out.Reply, want)
	}
	env := handlers.ErrorEnvelope("alice", out)
	if _, err := json.Marshal(env); err != nil {
		t.Fatalf("error envelope does not encode: %v", err)
	}
	if env["args"].(map[string]any)["event"] != out.Name {
		t.Fatalf("error envelope %#v does not name %q", env, out.Name)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func checkSendMessage(t *testing.T, out handlers.Outcome, ds []delivery) {
	t.Helper()
	reply := out.Reply.(map[string]any)
	msg, _ := reply["message"].(map[string]any)
	if len(reply) != 2 || reply["ok"] != true || msg == nil {
		t.Fatalf("ack = %#v, want {ok: true, message}", reply)
	}
	if n := utf8.RuneCountInString(msg["text"].(string)); n < 1 || n > handlers.MaxTextChars {
		t.Fatalf("accepted a text of %d code points", n)
	}
	want := 2
	if msg["to"] == "alice" {
		want = 1
	}
	if len(ds) != want {
		t.Fatalf("%d deliveries, want %d: %#v", len(ds), want, ds)
	}
	for _, d := range ds {
		p, ok := d.Payload.(map[string]any)
		if !ok || d.Event != handlers.EventMessageSent {
			t.Fatalf("delivery %#v is not a message_sent map", d)
		}
		if got := sortedKeys(p); !reflect.DeepEqual(got, []string{"from", "id", "sentAt", "text", "to"}) {
			t.Fatalf("message_sent payload keys = %v", got)
		}
		if !reflect.DeepEqual(p, msg) {
			t.Fatalf("delivered %#v, acked %#v", p, msg)
		}
	}
	if last := ds[len(ds)-1]; last.User != "alice" || last.ExceptSocket != "sock-a1" {
		t.Fatalf("sender's delivery = %#v, want alice except sock-a1", last)
	}
}

func checkPostUpdated(t *testing.T, out handlers.Outcome, ds []delivery) {
	t.Helper()
	reply := out.Reply.(map[string]any)
	n, _ := reply["notified"].(int)
	if len(reply) != 2 || reply["ok"] != true || n < 1 || n > handlers.MaxMentions || n != len(ds) {
		t.Fatalf("ack = %#v with %d deliveries", reply, len(ds))
	}
	seen := map[string]bool{}
	for _, d := range ds {
		p, ok := d.Payload.(map[string]any)
		if !ok || d.Event != handlers.EventPostUpdatedNotification || d.ExceptSocket != "" || seen[d.User] {
			t.Fatalf("delivery %#v is not one notification per distinct user", d)
		}
		seen[d.User] = true
		if got := sortedKeys(p); !reflect.DeepEqual(got, []string{"by", "message", "postId"}) || p["by"] != "alice" {
			t.Fatalf("post_updated_notification payload = %#v", p)
		}
	}
}
