package handlers

import (
	"context"
	"fmt"
)

// Router and delivery event names of postUpdated, and its limit.
const (
	EventPostUpdated             = "postUpdated"
	EventPostUpdatedNotification = "post_updated_notification"
	MaxMentions                  = 100
)

// PostUpdated notifies every mentioned user, once each, that the sender
// mentioned them in a post.
func PostUpdated(d Deps) Handler {
	return func(ctx context.Context, req Request) (any, error) {
		args, ok := req.Args.(map[string]any)
		if !ok {
			return nil, invalidArgs(`args must be an object {"postId", "mentions"}`)
		}
		postID, ok := args["postId"].(string)
		if !ok || postID == "" {
			return nil, invalidArgs(`"postId" must be a non-empty string`)
		}
		if longerThan(postID, MaxPostIDChars) {
			return nil, limitExceeded(ArgPostID, ReasonTooLong, `"postId" must be at most %d characters`, MaxPostIDChars)
		}
		mentions, ok := args["mentions"].([]any)
		if !ok || len(mentions) < 1 || len(mentions) > MaxMentions {
			return nil, invalidArgs(`"mentions" must list 1 to %d user ids`, MaxMentions)
		}
		users := make([]string, 0, len(mentions))
		seen := make(map[string]struct{}, len(mentions))
		for _, m := range mentions {
			user, ok := m.(string)
			if !ok || user == "" {
				return nil, invalidArgs(`"mentions" must hold non-empty user ids`)
			}
			if reason := CheckUserID(user); reason != "" {
				return nil, limitExceeded(ArgUserID, reason, `"mentions" must hold user ids of at most %d characters, %s`, MaxUserIDChars, userIDCharacters)
			}
			if _, dup := seen[user]; dup {
				continue
			}
			seen[user] = struct{}{}
			users = append(users, user)
		}
		text := fmt.Sprintf("%s mentioned you in post %s", req.User, postID)
		for _, user := range users {
			payload := map[string]any{"postId": postID, "by": req.User, "message": text}
			if err := d.Dispatcher.Deliver(ctx, user, EventPostUpdatedNotification, payload, ""); err != nil {
				return nil, fmt.Errorf("notify %q: %w", user, err)
			}
		}
		return map[string]any{"ok": true, "notified": len(users)}, nil
	}
}
