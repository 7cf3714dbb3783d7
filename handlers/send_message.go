package handlers

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// Router and delivery event names of sendMessage.
const (
	EventSendMessage = "sendMessage"
	EventMessageSent = "message_sent"
	MaxTextChars     = 4096
)

// sentAtLayout is RFC 3339 in UTC with exactly three fractional digits.
const sentAtLayout = "2006-01-02T15:04:05.000Z07:00"

// SendMessage delivers {to, text} to every socket of `to` and to the
// sender's other sockets; the sending socket gets the message in its ack.
func SendMessage(d Deps) Handler {
	return func(ctx context.Context, req Request) (any, error) {
		args, ok := req.Args.(map[string]any)
		if !ok {
			return nil, invalidArgs(`args must be an object {"to", "text"}`)
		}
		to, ok := args["to"].(string)
		if !ok || to == "" {
			return nil, invalidArgs(`"to" must be a non-empty user id`)
		}
		if reason := CheckUserID(to); reason != "" {
			return nil, limitExceeded(ArgUserID, reason, `"to" must be a user id of at most %d characters, %s`, MaxUserIDChars, userIDCharacters)
		}
		text, ok := args["text"].(string)
		if !ok {
			return nil, invalidArgs(`"text" must be a string`)
		}
		// Characters are Unicode code points, as the contract counts them.
		if n := runesUpTo(text, MaxTextChars+1); n < 1 || n > MaxTextChars {
			return nil, invalidArgs(`"text" must be 1 to %d characters`, MaxTextChars)
		}
		msg := map[string]any{
			"id":     d.NewID(),
			"from":   req.User,
			"to":     to,
			"text":   text,
			"sentAt": formatSentAt(d.Now()),
		}
		if to != req.User {
			if err := d.Dispatcher.Deliver(ctx, to, EventMessageSent, msg, ""); err != nil {
				return nil, fmt.Errorf("deliver to recipient: %w", err)
			}
		}
		if err := d.Dispatcher.Deliver(ctx, req.User, EventMessageSent, msg, req.Socket); err != nil {
			return nil, fmt.Errorf("deliver to sender's devices: %w", err)
		}
		return map[string]any{"ok": true, "message": msg}, nil
	}
}

func formatSentAt(t time.Time) string { return t.UTC().Format(sentAtLayout) }

// runesUpTo counts the code points of s, stopping at limit, so that an
// oversized text costs no more to reject than a legal one costs to accept.
func runesUpTo(s string, limit int) int {
	n := 0
	for i := 0; i < len(s) && n < limit; n++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return n
}
