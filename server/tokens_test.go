package server_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchboard-rt/switchboard/namespaces"
	"github.com/switchboard-rt/switchboard/server"
)

// fuzzSecret is the fixed HS256 secret of these tests.
var fuzzSecret = []byte("tokens-test-secret")

// tokenNow is the injected clock: every token below is judged at this instant.
var tokenNow = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// sign signs claims with method and key, as any JWT library would.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// raw builds header.payload.signature by hand, signing with HMAC-SHA256
// whatever the header claims, so that only the header differs.
func raw(header, payload string) string {
	enc := base64.RawURLEncoding
	text := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(text))
	return text + "." + enc.EncodeToString(mac.Sum(nil))
}

func claims(sub any, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": exp.Unix()}
}

func TestVerifyToken(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	later, earlier := tokenNow.Add(time.Hour), tokenNow.Add(-time.Second)
	valid := sign(t, jwt.SigningMethodHS256, fuzzSecret, claims("alice", later))
	validParts := strings.Split(valid, ".")
	tests := []struct {
		name    string
		token   string
		want    string // the user; "" for a refused token
		expired bool
	}{
		{"valid", valid, "alice", false},
		{"valid, unicode sub", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims("Zoë 😀", later)), "Zoë 😀", false},
		{"valid, hand-built", raw(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"bob","exp":1999999999}`), "bob", false},
		{"expired", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims("alice", earlier)), "", true},
		{"expired and wrong secret", sign(t, jwt.SigningMethodHS256, []byte("other"), claims("alice", earlier)), "", false},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("other"), claims("alice", later)), "", false},
		{"payload swapped under a valid signature", validParts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":1999999999}`)) + "." + validParts[2], "", false},
		{"signature stripped", validParts[0] + "." + validParts[1] + ".", "", false},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice", later)), "", false},
		{"alg none by hand", raw(`{"alg":"none"}`, `{"sub":"alice"}`), "", false},
		{"alg lower-case hs256", raw(`{"alg":"hs256"}`, `{"sub":"alice"}`), "", false},
		{"HS384", sign(t, jwt.SigningMethodHS384, fuzzSecret, claims("alice", later)), "", false},
		{"HS512", sign(t, jwt.SigningMethodHS512, fuzzSecret, claims("alice", later)), "", false},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, claims("alice", later)), "", false},
		{"RS256 header over an HMAC signature", raw(`{"alg":"RS256"}`, `{"sub":"alice"}`), "", false},
		{"no alg", raw(`{"typ":"JWT"}`, `{"sub":"alice"}`), "", false},
		{"no sub", sign(t, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"exp": later.Unix()}), "", false},
		{"sub a number", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims(42, later)), "", false},
		{"sub empty", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims("", later)), "", false},
		{"sub null", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims(nil, later)), "", false},
		{"sub a list", sign(t, jwt.SigningMethodHS256, fuzzSecret, claims([]string{"alice"}, later)), "", false},
		// exp 0 is 1970-01-01: long past, as the Node peer also judges it.
		{"exp 0", sign(t, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"sub": "alice", "exp": 0}), "", true},
		{"exp a string", sign(t, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"sub": "alice", "exp": "1999999999"}), "", false},
		{"exp a past string", sign(t, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"sub": "alice", "exp": "1"}), "", false},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"sub": "alice", "nbf": later.Unix()}), "", false},
		{"payload not an object", raw(`{"alg":"HS256"}`, `["alice"]`), "", false},
		{"payload not JSON", raw(`{"alg":"HS256"}`, `sub=alice`), "", false},
		{"empty", "", "", false},
		{"garbage", "not a token", "", false},
		{"two parts", validParts[0] + "." + validParts[1], "", false},
		{"four parts", valid + ".x", "", false},
		{"Bearer prefix left on", "Bearer " + valid, "", false},
	}
	tokens := server.NewTokens(fuzzSecret, clockAt(tokenNow))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := tokens.VerifyToken(tt.token)
			if tt.want != "" {
				if err != nil || user != tt.want {
					t.Fatalf("VerifyToken = %q, %v; want %q", user, err, tt.want)
				}
				return
			}
			if err == nil || user != "" {
				t.Fatalf("VerifyToken = %q, %v; want refused", user, err)
			}
			if got := errors.Is(err, namespaces.ErrExpiredToken); got != tt.expired {
				t.Fatalf("errors.Is(%v, ErrExpiredToken) = %v, want %v", err, got, tt.expired)
			}
		})
	}
}

func TestIssueThenVerify(t *testing.T) {
	now := tokenNow
	tokens := server.NewTokens(fuzzSecret, func() time.Time { return now })
	tok, err := tokens.Issue("alice")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil || !strings.Contains(string(header), `"alg":"HS256"`) {
		t.Fatalf("issued header %s (%v), want HS256", header, err)
	}
	steps := []struct {
		after   time.Duration
		want    string
		expired bool
	}{
		{0, "alice", false},
		{24*time.Hour - time.Second, "alice", false},
		{24*time.Hour + time.Second, "", true},
	}
	for _, s := range steps {
		now = tokenNow.Add(s.after)
		user, err := tokens.VerifyToken(tok)
		if user != s.want || errors.Is(err, namespaces.ErrExpiredToken) != s.expired || (s.want != "") != (err == nil) {
			t.Fatalf("after %v: VerifyToken = %q, %v; want %q, expired %v", s.after, user, err, s.want, s.expired)
		}
	}
	// Another secret's verifier refuses it as invalid, not expired.
	now = tokenNow
	other := server.NewTokens([]byte("other"), func() time.Time { return now })
	if user, err := other.VerifyToken(tok); err == nil || user != "" || errors.Is(err, namespaces.ErrExpiredToken) {
		t.Fatalf("other secret: VerifyToken = %q, %v; want invalid", user, err)
	}
}

// FuzzVerifyToken: no string panics, and none verifies unless it is an
// HS256 token signed with the secret whose sub is a non-empty string, as
// checked here independently of the JWT library. Seed corpus:
// testdata/fuzz/FuzzVerifyToken; run it longer with
// go test -run '^$' -fuzz=FuzzVerifyToken -fuzztime=30s ./server/
func FuzzVerifyToken(f *testing.F) {
	tokens := server.NewTokens(fuzzSecret, clockAt(tokenNow))
	f.Fuzz(func(t *testing.T, token string) {
		checkVerify(t, tokens, token)
	})
}

// checkVerify fails t if tokens accepts token while notGenuine finds fault
// with it, or refuses it yet names a user.
func checkVerify(t *testing.T, tokens *server.Tokens, token string) {
	t.Helper()
	user, err := tokens.VerifyToken(token)
	if err != nil {
		if user != "" {
			t.Fatalf("refused with %v yet returned user %q", err, user)
		}
		return
	}
	if why := notGenuine(token, user); why != "" {
		t.Fatalf("VerifyToken(%q) = %q, but %s", token, user, why)
	}
}

// FuzzVerifySignedClaims signs an arbitrary header and payload with the
// secret, so that the fuzzer reaches the claim checks behind the signature:
// whatever verifies must still say alg HS256, carry a non-empty string sub
// and be unexpired. Seed corpus: testdata/fuzz/FuzzVerifySignedClaims.
func FuzzVerifySignedClaims(f *testing.F) {
	tokens := server.NewTokens(fuzzSecret, clockAt(tokenNow))
	f.Fuzz(func(t *testing.T, header, payload string) {
		checkVerify(t, tokens, raw(header, payload))
	})
}

// notGenuine says why token is not an HS256 token signed with fuzzSecret
// whose sub is user, unexpired at tokenNow; "" if it is one.
func notGenuine(token, user string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "it has not three parts"
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return "its signature is not base64url"
	}
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return "its HMAC-SHA256 signature is wrong"
	}
	var header map[string]any
	if b, err := enc.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &header) != nil || header["alg"] != "HS256" {
		return "its header is not alg HS256"
	}
	// Like JWT libraries, read the payload's first JSON value only.
	var payload map[string]any
	if b, err := enc.DecodeString(parts[1]); err != nil || json.NewDecoder(bytes.NewReader(b)).Decode(&payload) != nil {
		return "its payload is not a JSON object"
	}
	if sub, _ := payload["sub"].(string); sub == "" || sub != user {
		return "its sub is not that non-empty string"
	}
	if exp, ok := payload["exp"].(float64); ok && exp <= float64(tokenNow.Unix()) {
		return "it has expired"
	}
	return ""
}

// BenchmarkVerifyToken is the token check every connect pays (S4 of issue 5).
func BenchmarkVerifyToken(b *testing.B) {
	tokens := server.NewTokens(fuzzSecret, clockAt(tokenNow))
	tok := sign(b, jwt.SigningMethodHS256, fuzzSecret, jwt.MapClaims{"sub": "user-1234", "iat": tokenNow.Unix(), "exp": tokenNow.Add(time.Hour).Unix()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tokens.VerifyToken(tok); err != nil {
			b.Fatal(err)
		}
	}
}
