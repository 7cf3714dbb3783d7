package namespaces

import (
	"errors"
	"strings"

	sio "github.com/zishang520/socket.io/servers/socket/v3"
)

// TokenVerifier checks an access token and returns its user id. It returns
// an error wrapping ErrExpiredToken for an expired token and any other error
// for an invalid one.
type TokenVerifier interface {
	VerifyToken(token string) (user string, err error)
}

// ErrExpiredToken marks a well-signed token past its exp.
var ErrExpiredToken = errors.New("token expired")

// The reasons of the contract's connect_error data.
const (
	ReasonMissingToken = "missing_token"
	ReasonInvalidToken = "invalid_token"
	ReasonExpiredToken = "expired_token"
)

// session is what a connected socket carries.
type session struct {
	user string
	hold *hold // released once the socket is registered (see hold.go)
}

// authenticate is the namespace's first middleware. It runs on the goroutine
// that decoded the client's CONNECT, which is where the connection's later
// packets are held until the namespace connect completes.
func (a *App) authenticate(s *sio.Socket, next func(*sio.ExtendedError)) {
	token := tokenFrom(s.Handshake())
	if token == "" {
		a.refuse(next, ReasonMissingToken)
		return
	}
	user, err := a.verifier.VerifyToken(token)
	switch {
	case errors.Is(err, ErrExpiredToken):
		a.refuse(next, ReasonExpiredToken)
	case err != nil:
		a.refuse(next, ReasonInvalidToken)
	default:
		h := a.holdFor(s.Conn().Id())
		if h != nil {
			h.acquire()
		}
		s.SetData(&session{user: user, hold: h})
		next(nil)
	}
}

func (a *App) refuse(next func(*sio.ExtendedError), reason string) {
	a.observer.AuthFailed(reason)
	next(sio.NewExtendedError("unauthorized", map[string]any{"reason": reason}))
}

// tokenFrom reads the token from the first source present: the handshake
// auth.token, the query parameter token, the Authorization: Bearer header.
// An empty value counts as absent.
func tokenFrom(h *sio.Handshake) string {
	if h == nil {
		return ""
	}
	if t := firstString(h.Auth["token"]); t != "" {
		return t
	}
	if t := firstString(h.Query["token"]); t != "" {
		return t
	}
	for name, v := range h.Headers {
		if strings.EqualFold(name, "Authorization") {
			return BearerToken(firstString(v))
		}
	}
	return ""
}

// firstString accepts a string, or the first element of a list, because the
// library hands query values (and a v2 client's namespace query) as lists.
func firstString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []string:
		if len(v) > 0 {
			return v[0]
		}
	case []any:
		if len(v) > 0 {
			s, _ := v[0].(string)
			return s
		}
	}
	return ""
}

// BearerToken returns the credentials of an "Authorization: Bearer x" value,
// or "" for any other scheme.
func BearerToken(h string) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}
