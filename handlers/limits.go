package handlers

import (
	"unicode"
	"unicode/utf8"
)

// The size limits of an event's arguments, in characters (Unicode code
// points, as the contract counts text), so that no honest client is refused
// whatever its script: 256 characters are at most 1024 bytes of UTF-8. They
// bound what one event can make this process publish on Redis: a delivery
// carries each id and the postId a fixed number of times, so one
// postUpdated (MaxMentions deliveries) writes at most about 100 × 12 KiB
// (web/test/hardening-app.test.mjs measures it).
const (
	MaxUserIDChars    = 256 // a token's sub, sendMessage's "to", each mention
	MaxPostIDChars    = 256 // postUpdated's "postId"
	MaxEventNameChars = 256 // the router event's name, either route
)

// The arguments a limit applies to, and why a value broke it: the labels of
// the refusal counter in /metrics (a closed set: never a client's string).
const (
	ArgEventName = "event_name"
	ArgPostID    = "post_id"
	ArgUserID    = "user_id" // "to" and mentions
	ArgTokenSub  = "token_sub"

	ReasonTooLong       = "too_long"
	ReasonBadCharacters = "bad_characters"
)

// Limit names the limit an argument broke: Arg is one of the Arg
// constants, Reason ReasonTooLong or ReasonBadCharacters.
type Limit struct {
	Arg, Reason string
}

// CheckUserID returns "" for an acceptable user id, else the Reason it is
// refused: empty or longer than MaxUserIDChars (ReasonTooLong is also given
// for empty: it is never counted, callers answer it before), or holding
// invalid UTF-8 (or U+FFFD, what decoders make of it), a control character (NUL included) or a bidirectional
// override or isolate (U+202A..U+202E, U+2066..U+2069), which would let an
// id display as another (ReasonBadCharacters). User ids are echoed to
// other users, into room names and logs, so the check runs wherever one
// enters: the token's sub, "to", mentions.
func CheckUserID(id string) string {
	if id == "" || len(id) > MaxUserIDChars*utf8.UTFMax {
		return ReasonTooLong
	}
	n := 0
	for i := 0; i < len(id); n++ {
		r, size := utf8.DecodeRuneInString(id[i:])
		// U+FFFD too: JSON decoders (a token's claims, a client's packet)
		// turn invalid UTF-8 and lone surrogates into it, so it is how
		// bytes that were not text arrive.
		if r == utf8.RuneError {
			return ReasonBadCharacters
		}
		if unicode.IsControl(r) || isBidiControl(r) {
			return ReasonBadCharacters
		}
		i += size
	}
	if n > MaxUserIDChars {
		return ReasonTooLong
	}
	return ""
}

// userIDCharacters ends the refusal message of a bad user id.
const userIDCharacters = "valid UTF-8 without control or bidirectional formatting characters"

// isBidiControl reports the explicit directional embeddings, overrides and
// isolates (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI).
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}

// longerThan reports whether s has more than max characters; it stops
// counting there, so an oversized value costs no more to refuse than a
// legal one to accept.
func longerThan(s string, max int) bool {
	if len(s) <= max {
		return false // fewer bytes than max: fewer characters too
	}
	return runesUpTo(s, max+1) > max
}

// truncateChars cuts s to at most max characters (for the event name an
// error echoes: a refusal must not send back what it refused).
func truncateChars(s string, max int) string {
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}
