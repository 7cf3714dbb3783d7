package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/switchboard-rt/switchboard/handlers"
	"github.com/switchboard-rt/switchboard/namespaces"
)

// apiError writes the HTTP API's error shape.
func apiError(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, gin.H{"error": gin.H{"code": code, "message": message}})
}

// readJSON reads a body of at most MAX_PAYLOAD_BYTES and decodes one JSON
// value from it. It writes the error answer itself and reports false.
func (s *Server) readJSON(c *gin.Context) (any, bool) {
	limit := s.cfg.MaxPayloadBytes
	if c.Request.ContentLength > limit {
		c.Header("Connection", "close")
		apiError(c, http.StatusRequestEntityTooLarge, "payload_too_large", "body exceeds MAX_PAYLOAD_BYTES")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			apiError(c, http.StatusRequestEntityTooLarge, "payload_too_large", "body exceeds MAX_PAYLOAD_BYTES")
			return nil, false
		}
		apiError(c, http.StatusBadRequest, "bad_request", "cannot read body")
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	// One value and nothing after it but white space.
	if err := dec.Decode(&v); err != nil {
		apiError(c, http.StatusBadRequest, "bad_request", "body is not one JSON value")
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		apiError(c, http.StatusBadRequest, "bad_request", "body is not one JSON value")
		return nil, false
	}
	return v, true
}

// apiEvents is POST /api/events: a backend delivers an event to users, on
// every process, the way a handler's dispatch does.
func (s *Server) apiEvents(c *gin.Context) {
	if s.cfg.APIKey == "" {
		apiError(c, http.StatusNotFound, "not_found", "the events API is disabled (no API_KEY)")
		return
	}
	if !s.validAPIKey(c.GetHeader("Authorization")) {
		c.Header("WWW-Authenticate", "Bearer")
		apiError(c, http.StatusUnauthorized, "unauthorized", "missing or wrong API key")
		return
	}
	v, ok := s.readJSON(c)
	if !ok {
		return
	}
	body, ok := v.(map[string]any)
	if !ok {
		apiError(c, http.StatusBadRequest, "bad_request", "body must be a JSON object")
		return
	}
	list, ok := body["users"].([]any)
	if !ok || len(list) == 0 {
		apiError(c, http.StatusBadRequest, "bad_request", `"users" must be a non-empty array of user ids`)
		return
	}
	users := make([]string, 0, len(list))
	seen := make(map[string]struct{}, len(list))
	for _, u := range list {
		user, ok := u.(string)
		if !ok || user == "" {
			apiError(c, http.StatusBadRequest, "bad_request", `"users" must hold non-empty user ids`)
			return
		}
		// No socket can belong to such a user (its token is refused):
		// publishing for it would only cost Redis.
		if reason := handlers.CheckUserID(user); reason != "" {
			s.metrics.LimitExceeded(handlers.ArgUserID, reason)
			apiError(c, http.StatusBadRequest, "bad_request", fmt.Sprintf(`"users" must hold user ids of at most %d characters, valid UTF-8 without control or bidirectional formatting characters`, handlers.MaxUserIDChars))
			return
		}
		if _, dup := seen[user]; !dup {
			seen[user] = struct{}{}
			users = append(users, user)
		}
	}
	event, ok := body["event"].(string)
	if !ok || event == "" {
		apiError(c, http.StatusBadRequest, "bad_request", `"event" must be a non-empty string`)
		return
	}
	ctx := c.Request.Context()
	for _, user := range users {
		if err := s.app.Dispatcher().Deliver(ctx, user, event, body["args"], ""); err != nil {
			s.logger.ErrorContext(ctx, "api events: deliver", "user", user, "event", event, "err", err)
			apiError(c, http.StatusInternalServerError, "internal", "internal error")
			return
		}
	}
	s.metrics.apiEvents.Add(1)
	c.JSON(http.StatusAccepted, gin.H{"users": len(users)})
}

// validAPIKey compares in constant time (hashes first, so lengths leak
// nothing either).
func (s *Server) validAPIKey(header string) bool {
	got := namespaces.BearerToken(header)
	if got == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.APIKey))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// devToken is POST /api/dev/token: {"user": id} → {"token": JWT}.
func (s *Server) devToken(c *gin.Context) {
	if !s.cfg.DevTokens {
		apiError(c, http.StatusNotFound, "not_found", "dev tokens are disabled")
		return
	}
	v, ok := s.readJSON(c)
	if !ok {
		return
	}
	body, _ := v.(map[string]any)
	user, _ := body["user"].(string)
	// The socket refuses a token whose sub breaks these limits: do not
	// issue one.
	if reason := handlers.CheckUserID(user); reason != "" {
		if user != "" {
			s.metrics.LimitExceeded(handlers.ArgUserID, reason)
		}
		apiError(c, http.StatusBadRequest, "bad_request", fmt.Sprintf(`want {"user": id} with a non-empty id of at most %d characters, valid UTF-8 without control or bidirectional formatting characters`, handlers.MaxUserIDChars))
		return
	}
	token, err := s.tokens.Issue(user)
	if err != nil {
		s.logger.Error("dev token", "err", err)
		apiError(c, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	c.JSON(http.StatusOK, gin.H{"token": token})
}
