package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchboard-rt/switchboard/namespaces"
)

// devTokenTTL is the lifetime of tokens from POST /api/dev/token.
const devTokenTTL = 24 * time.Hour

// Tokens issues and verifies HS256 access tokens whose sub is the user id.
type Tokens struct {
	secret []byte
	now    func() time.Time
	parser *jwt.Parser
}

var _ namespaces.TokenVerifier = (*Tokens)(nil)

// NewTokens returns a verifier (and dev issuer) for secret.
func NewTokens(secret []byte, now func() time.Time) *Tokens {
	return &Tokens{
		secret: secret,
		now:    now,
		// HS256 only: alg "none" and every other algorithm are refused
		// before the key is even looked at.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithTimeFunc(now)),
	}
}

// Issue signs a token for user, valid for devTokenTTL.
func (t *Tokens) Issue(user string) (string, error) {
	now := t.now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"iat": now.Unix(),
		"exp": now.Add(devTokenTTL).Unix(),
	})
	s, err := tok.SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// VerifyToken implements namespaces.TokenVerifier. The signature is checked
// before the claims, so a forged expired token is invalid, not expired.
func (t *Tokens) VerifyToken(token string) (string, error) {
	claims := jwt.MapClaims{}
	_, err := t.parser.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return t.secret, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", fmt.Errorf("verify token: %w", namespaces.ErrExpiredToken)
	case err != nil:
		return "", fmt.Errorf("verify token: %w", err)
	}
	// golang-jwt reads "exp": 0 as no expiry; it is the epoch, long past.
	if exp, ok := claims["exp"].(float64); ok && exp == 0 {
		return "", fmt.Errorf("verify token: %w", namespaces.ErrExpiredToken)
	}
	sub, ok := claims["sub"].(string)
	if !ok || sub == "" {
		return "", errors.New("verify token: no sub claim")
	}
	return sub, nil
}
