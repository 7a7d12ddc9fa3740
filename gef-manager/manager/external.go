package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
)

// LoginExternal signs in a user whom an OIDC provider vouched for. The
// identity is linked to one GEF user by issuer and subject; a first sign-in
// makes a user with the user role. A provider can never take over an
// existing local account by choosing its name.
func (m *Manager) LoginExternal(ctx context.Context, id auth.Identity) (Session, error) {
	u, err := m.store.UserByExternalID(ctx, id.ExternalID())
	if errors.Is(err, gef.ErrNotFound) {
		u, err = m.createExternalUser(ctx, id)
	}
	if err != nil {
		return Session{}, err
	}
	tok, exp, err := m.issuer.Sign(gef.NewID(), u, auth.KindSession, m.cfg.SessionTTL)
	if err != nil {
		return Session{}, err
	}
	return Session{Token: tok, ExpiresAt: exp, User: u}, nil
}

func (m *Manager) createExternalUser(ctx context.Context, id auth.Identity) (gef.User, error) {
	base := externalName(id.Username)
	sum := sha256.Sum256([]byte(id.ExternalID()))
	for _, name := range []string{base, base + "-" + hex.EncodeToString(sum[:3])} {
		u := gef.User{ID: gef.NewID(), Name: name, Role: gef.RoleUser, CreatedAt: m.now().UTC()}
		err := m.store.CreateExternalUser(ctx, u, id.ExternalID())
		if err == nil {
			m.log.Info("user created at first sign-in", "user", name, "issuer", id.Issuer)
			return u, nil
		}
		if !errors.Is(err, gef.ErrConflict) {
			return gef.User{}, err
		}
		// The same identity may have been created by a concurrent sign-in.
		if u, err := m.store.UserByExternalID(ctx, id.ExternalID()); err == nil {
			return u, nil
		}
	}
	return gef.User{}, fmt.Errorf("no free user name for %q: %w", id.Username, gef.ErrConflict)
}

// externalName turns a provider's user name into a valid GEF name.
func externalName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '.' || r == '_' || r == '-':
			if b.Len() > 0 {
				b.WriteRune(r)
			}
		}
		if b.Len() >= 48 {
			break
		}
	}
	if b.Len() == 0 {
		return "user"
	}
	return b.String()
}

// MAC authenticates short-lived browser state with the manager's key.
func (m *Manager) MAC(purpose string, data []byte) []byte { return m.issuer.MAC(purpose, data) }

// SessionTTL is how long a browser session lasts.
func (m *Manager) SessionTTL() time.Duration { return m.cfg.SessionTTL }
