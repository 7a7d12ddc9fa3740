package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
)

// Principal is who makes a request. The zero value is anonymous.
type Principal struct {
	UserID  string
	Name    string
	Role    gef.Role
	TokenID string
}

// Anonymous reports whether no one signed in.
func (p Principal) Anonymous() bool { return p.UserID == "" }

// Is reports whether p holds one of roles.
func (p Principal) Is(roles ...gef.Role) bool {
	for _, r := range roles {
		if p.Role == r {
			return true
		}
	}
	return false
}

func requireRole(p Principal, roles ...gef.Role) error {
	if p.Anonymous() {
		return fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !p.Is(roles...) {
		return fmt.Errorf("role %s may not do this: %w", p.Role, gef.ErrForbidden)
	}
	return nil
}

// Authenticate turns a bearer token into a principal. API tokens must also
// be known to the store, unexpired and unrevoked.
func (m *Manager) Authenticate(ctx context.Context, token string) (Principal, error) {
	c, err := m.issuer.Verify(token)
	if err != nil {
		return Principal{}, err
	}
	return m.principal(ctx, token, c)
}

// principal is who a verified token speaks for.
func (m *Manager) principal(ctx context.Context, token string, c *auth.Claims) (Principal, error) {
	if c.Kind == auth.KindAPI {
		hash := auth.HashToken(token)
		now := m.now()
		if p, ok := m.tokens.get(hash, now); ok && p.UserID == c.Subject && p.TokenID == c.ID {
			return p, nil
		}
		t, u, err := m.store.TokenByHash(ctx, hash)
		switch {
		case errors.Is(err, gef.ErrNotFound):
			return Principal{}, fmt.Errorf("%w: unknown API token", auth.ErrInvalidToken)
		case err != nil:
			return Principal{}, err
		case t.RevokedAt != nil:
			return Principal{}, fmt.Errorf("%w: token revoked", auth.ErrInvalidToken)
		case t.ExpiresAt != nil && !m.now().Before(*t.ExpiresAt):
			return Principal{}, fmt.Errorf("%w: token expired", auth.ErrInvalidToken)
		case u.ID != c.Subject || t.ID != c.ID:
			return Principal{}, fmt.Errorf("%w: token does not match its record", auth.ErrInvalidToken)
		}
		p := Principal{UserID: u.ID, Name: u.Name, Role: u.Role, TokenID: t.ID}
		m.tokens.put(hash, p, t.ExpiresAt, now)
		return p, nil
	}
	return Principal{UserID: c.Subject, Name: c.Name, Role: c.Role, TokenID: c.ID}, nil
}

// CreateUser adds a user (admins only). An empty password makes a user
// who signs in with API tokens only.
func (m *Manager) CreateUser(ctx context.Context, p Principal, name string, role gef.Role, password string) (gef.User, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return gef.User{}, err
	}
	hash := ""
	if password != "" {
		if role == gef.RoleNode {
			return gef.User{}, gef.Invalid("password", "a node signs in with its token, not a password")
		}
		var err error
		if hash, err = hashPassword(password); err != nil {
			return gef.User{}, err
		}
	}
	return m.createUser(ctx, name, role, hash)
}

func (m *Manager) createUser(ctx context.Context, name string, role gef.Role, passwordHash string) (gef.User, error) {
	if !validName(name) {
		return gef.User{}, gef.Invalid("name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if !role.Valid() {
		return gef.User{}, gef.Invalid("role", "must be one of admin, maintainer, user, node")
	}
	u := gef.User{ID: gef.NewID(), Name: name, Role: role, CreatedAt: m.now().UTC()}
	if err := m.store.CreateUser(ctx, u, passwordHash); err != nil {
		return gef.User{}, err
	}
	return u, nil
}

// Users lists users (admins only).
func (m *Manager) Users(ctx context.Context, p Principal) ([]gef.User, error) {
	if err := requireRole(p, gef.RoleAdmin); err != nil {
		return nil, err
	}
	return m.store.Users(ctx)
}

// NewToken is a freshly made API token. Secret is shown once, never stored.
type NewToken struct {
	gef.Token
	Secret string `json:"token"`
}

// CreateToken makes an API token for the named user, or for the caller when
// user is empty. Only admins make tokens for others. ttl 0 never expires.
func (m *Manager) CreateToken(ctx context.Context, p Principal, user, name string, ttl time.Duration) (NewToken, error) {
	if p.Anonymous() {
		return NewToken{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if ttl < 0 {
		return NewToken{}, gef.Invalid("ttl", "must not be negative")
	}
	target := gef.User{ID: p.UserID, Name: p.Name, Role: p.Role}
	if user != "" && user != p.Name {
		if err := requireRole(p, gef.RoleAdmin); err != nil {
			return NewToken{}, err
		}
		u, _, err := m.store.UserByName(ctx, user)
		if err != nil {
			return NewToken{}, fmt.Errorf("user %q: %w", user, err)
		}
		target = u
	}
	return m.issueToken(ctx, target, name, ttl)
}

func (m *Manager) issueToken(ctx context.Context, u gef.User, name string, ttl time.Duration) (NewToken, error) {
	id := gef.NewID()
	secret, exp, err := m.issuer.Sign(id, u, auth.KindAPI, ttl)
	if err != nil {
		return NewToken{}, err
	}
	t := gef.Token{ID: id, UserID: u.ID, Name: name, CreatedAt: m.now().UTC()}
	if !exp.IsZero() {
		t.ExpiresAt = &exp
	}
	if err := m.store.CreateToken(ctx, t, auth.HashToken(secret)); err != nil {
		return NewToken{}, err
	}
	return NewToken{Token: t, Secret: secret}, nil
}

// Tokens lists the caller's tokens.
func (m *Manager) Tokens(ctx context.Context, p Principal) ([]gef.Token, error) {
	if p.Anonymous() {
		return nil, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	return m.store.Tokens(ctx, p.UserID)
}

// RevokeToken revokes one of the caller's tokens, or any token for admins.
func (m *Manager) RevokeToken(ctx context.Context, p Principal, id string) error {
	if p.Anonymous() {
		return fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !p.Is(gef.RoleAdmin) {
		mine, err := m.store.Tokens(ctx, p.UserID)
		if err != nil {
			return err
		}
		found := false
		for _, t := range mine {
			found = found || t.ID == id
		}
		if !found {
			return fmt.Errorf("token %s: %w", id, gef.ErrNotFound)
		}
	}
	err := m.store.RevokeToken(ctx, id, m.now())
	m.tokens.reset()
	return err
}

// Bootstrap makes sure a user with the given role exists and returns a new
// API token for it, so a fresh deployment can be reached at all and the
// dev-mode node has a credential.
func (m *Manager) Bootstrap(ctx context.Context, name string, role gef.Role) (NewToken, error) {
	u, _, err := m.store.UserByName(ctx, name)
	if errors.Is(err, gef.ErrNotFound) {
		u, err = m.createUser(ctx, name, role, "")
		if errors.Is(err, gef.ErrConflict) { // another manager made it just now
			u, _, err = m.store.UserByName(ctx, name)
		}
	}
	if err != nil {
		return NewToken{}, fmt.Errorf("manager: bootstrap %s: %w", name, err)
	}
	if u.Role != role {
		return NewToken{}, fmt.Errorf("manager: bootstrap: user %q exists but is %s, not %s", name, u.Role, role)
	}
	return m.issueToken(ctx, u, "bootstrap", 0)
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != '-') {
			return false
		}
	}
	return true
}
