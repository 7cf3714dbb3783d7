package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// jwtHeader is {"alg":"HS256","typ":"JWT"}, base64url-encoded: the header of
// every token sbload mints.
const jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// mintToken returns an HS256 JWT for user sub, valid for ttl from now.
func mintToken(secret []byte, sub string, now time.Time, ttl time.Duration) (string, error) {
	claims, err := json.Marshal(struct {
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}{sub, now.Unix(), now.Add(ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
