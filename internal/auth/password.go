package auth

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"github.com/thon-dev/thon/internal/config"
)

// Passwords: the organizers' dashboard password and participants' own,
// under one rule (config.MinPassword..config.MaxPassword, what `thon config
// validate` checks too).
const (
	MinPassword = config.MinPassword
	MaxPassword = config.MaxPassword
)

// ErrPasswordLength: a password outside MinPassword..MaxPassword.
var ErrPasswordLength = fmt.Errorf("a password needs %d to %d characters", MinPassword, MaxPassword)

// PasswordHash is the stored form of a password (bcrypt); "" is none.
type PasswordHash string

// HashPassword checks a new password against the rule and hashes it.
func HashPassword(password string) (PasswordHash, error) {
	if n := len(password); n < MinPassword || n > MaxPassword {
		return "", fmt.Errorf("%w (got %d)", ErrPasswordLength, n)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", err
	}
	return PasswordHash(h), nil
}

// Check reports whether password is the one hashed; never for no hash.
func (h PasswordHash) Check(password string) bool {
	return h != "" && bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
}

// IsLengthError reports whether err is a password that breaks the rule.
func IsLengthError(err error) bool { return errors.Is(err, ErrPasswordLength) }
