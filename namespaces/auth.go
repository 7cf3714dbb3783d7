package namespaces

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/socketio"
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

// socketData is what a connected socket carries. Its JSON form is what
// fetchSockets shows other processes (Node's included), as the Node
// implementation's socket.data.
type socketData struct {
	User string `json:"user"`
}

// authenticate is the namespace's first middleware; it runs on the
// connection's strand.
func (a *App) authenticate(s *socketio.Socket, next func(error)) {
	req := s.Session().Request()
	token := tokenFrom(tokenSources{Auth: s.Auth(), Query: req.Query(), Header: req.Header})
	// The token has served its purpose: it is not kept with the socket,
	// nor shown to other processes by fetchSockets.
	s.ForgetAuth()
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
	case handlers.CheckUserID(user) != "":
		// A well-signed token whose sub could not be an honest user id:
		// it would become a room name, every delivery's "id" and a log
		// field.
		a.observer.LimitExceeded(handlers.ArgTokenSub, handlers.CheckUserID(user))
		a.refuse(next, ReasonInvalidToken)
	default:
		s.SetData(&socketData{User: user})
		next(nil)
	}
}

func (a *App) refuse(next func(error), reason string) {
	a.observer.AuthFailed(reason)
	next(&socketio.ConnectError{Message: "unauthorized", Data: map[string]any{"reason": reason}})
}

// tokenSources are where a token may come from, in the contract's order.
type tokenSources struct {
	Auth   map[string]any // the CONNECT auth (v2 clients: the namespace query)
	Query  url.Values     // the Engine.IO handshake's query
	Header http.Header
}

// tokenFrom reads the token from the first source present: the handshake
// auth.token, the query parameter token, the Authorization: Bearer header.
// An empty value counts as absent.
func tokenFrom(src tokenSources) string {
	if t, _ := src.Auth["token"].(string); t != "" {
		return t
	}
	if t := src.Query.Get("token"); t != "" {
		return t
	}
	for name, v := range src.Header {
		if strings.EqualFold(name, "Authorization") && len(v) > 0 {
			return BearerToken(v[0])
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
