// Package auth holds THON's credentials: API tokens today; accounts,
// sessions and sign-in providers later.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// TokenPrefix marks THON tokens so secret scanners and people recognise them.
const TokenPrefix = "thon_"

// NewToken returns a fresh 256-bit token and the hash to store. The token
// itself is shown once and never stored.
func NewToken() (token, hash string) {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics on an unusable source)
	token = TokenPrefix + hex.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the stored form of a token. Tokens carry 256 random bits, so a
// plain SHA-256 (no salt, no stretching) is enough and keeps lookups indexed.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
