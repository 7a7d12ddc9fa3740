package manager

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
)

// Password rules. bcrypt reads at most 72 bytes, so longer passwords are
// refused rather than silently cut.
const (
	minPassword = 10
	maxPassword = 72
)

// dummyHash is compared against when a user does not exist, so a failed
// sign-in takes as long whether or not the name is known.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("gef-no-such-user-0000"), bcrypt.DefaultCost)

// ErrBadLogin is the one answer to a failed sign-in, whatever failed.
var ErrBadLogin = fmt.Errorf("wrong user name or password: %w", gef.ErrUnauthorized)

// Session is a signed-in browser or client session.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      gef.User  `json:"user"`
}

// Login checks a password and issues a short-lived session token.
func (m *Manager) Login(ctx context.Context, name, password string) (Session, error) {
	u, hash, err := m.store.UserByName(ctx, name)
	switch {
	case errors.Is(err, gef.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return Session{}, ErrBadLogin
	case err != nil:
		return Session{}, err
	case hash == "" || u.Role == gef.RoleNode:
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return Session{}, ErrBadLogin
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return Session{}, ErrBadLogin
	}
	tok, exp, err := m.issuer.Sign(gef.NewID(), u, auth.KindSession, m.cfg.SessionTTL)
	if err != nil {
		return Session{}, err
	}
	return Session{Token: tok, ExpiresAt: exp, User: u}, nil
}

// SetPassword sets a user's password: your own, or anyone's for admins.
func (m *Manager) SetPassword(ctx context.Context, p Principal, user, password string) error {
	if p.Anonymous() {
		return fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	target := p.UserID
	if user != "" && user != p.Name {
		if err := requireRole(p, gef.RoleAdmin); err != nil {
			return err
		}
		u, _, err := m.store.UserByName(ctx, user)
		if err != nil {
			return fmt.Errorf("user %q: %w", user, err)
		}
		target = u.ID
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return m.store.SetPassword(ctx, target, hash)
}

func hashPassword(password string) (string, error) {
	if n := utf8.RuneCountInString(password); n < minPassword || len(password) > maxPassword {
		return "", gef.Invalid("password", "must be %d to %d bytes long", minPassword, maxPassword)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("manager: hash password: %w", err)
	}
	return string(h), nil
}
