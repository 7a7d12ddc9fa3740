package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eudat-gef/gef"
)

// Reaching a session: the HTTP layer resolves /s/REF/ to a session,
// authenticates the caller, asks whether the caller may reach the session
// now, and dials it through its node's tunnel (DialSession).

// ResolveSession finds the session served at /s/REF/. REF is a session id,
// or a friendly name: then the newest running session of that name, or
// else the newest still starting.
func (m *Manager) ResolveSession(ctx context.Context, ref string) (gef.Session, error) {
	var (
		s   gef.Session
		err error
	)
	switch {
	case gef.ValidID(ref) && ref == strings.ToUpper(ref):
		s, err = m.store.Session(ctx, ref)
	case sessionName.MatchString(ref):
		s, err = m.store.SessionByName(ctx, ref)
	default:
		err = gef.ErrNotFound
	}
	if errors.Is(err, gef.ErrNotFound) {
		return gef.Session{}, fmt.Errorf("no session is running at %s: %w", SessionPath(ref), gef.ErrNotFound)
	}
	if err != nil {
		return gef.Session{}, err
	}
	return m.decorateSession(s), nil
}

// MayReach reports whether p may reach s through its URL: anyone if it is
// public, else its owner, and with access "users" the users it names and
// the members of the groups it names, as they are now. Admins have no say
// over private sessions: they may see and stop them, not use them.
func (m *Manager) MayReach(ctx context.Context, p Principal, s gef.Session) (bool, error) {
	switch {
	case s.Access == gef.AccessPublic:
		return true, nil
	case p.Anonymous() || p.Is(gef.RoleNode):
		return false, nil
	case p.Name == s.Owner:
		return true, nil
	case s.Access != gef.AccessUsers:
		return false, nil
	case slices.Contains(s.Users, p.Name):
		return true, nil
	case len(s.Groups) == 0:
		return false, nil
	}
	groups, err := m.store.UserGroups(ctx, p.Name)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(s.Groups, g) }), nil
}

// Reach checks, for each request, that p may reach s and that s answers:
// anonymous callers of a private session are unauthorized, other users
// forbidden; a session that is starting is unavailable for now, and one
// that is stopping or ended is not found.
func (m *Manager) Reach(ctx context.Context, p Principal, s gef.Session) error {
	ok, err := m.MayReach(ctx, p, s)
	if err != nil {
		return err
	}
	if !ok {
		if p.Anonymous() {
			return fmt.Errorf("session %s is private; sign in first: %w", s.ID, gef.ErrUnauthorized)
		}
		return fmt.Errorf("%s may not reach session %s: %w", p.Name, s.ID, gef.ErrForbidden)
	}
	switch s.State {
	case gef.SessionRunning:
		return nil
	case gef.SessionQueued, gef.SessionStarting:
		return fmt.Errorf("session %s is %s; try again in a moment: %w", s.ID, s.State, gef.ErrUnavailable)
	}
	return fmt.Errorf("session %s has ended: %w", s.ID, gef.ErrNotFound)
}

// sessionScopes are the scopes of access tokens that open s.
func sessionScopes(s gef.Session) []string {
	scopes := []string{"session:" + s.ID}
	if s.Name != "" {
		scopes = append(scopes, "name:"+s.Name)
	}
	return scopes
}

// AuthenticateSession turns a token given at a session's URL into a
// principal: any token the API takes, or an access token for this session
// (see SessionAccessToken).
func (m *Manager) AuthenticateSession(ctx context.Context, token string, s gef.Session) (Principal, error) {
	c, err := m.issuer.VerifyScoped(token, sessionScopes(s)...)
	if err != nil {
		return Principal{}, err
	}
	return m.principal(ctx, token, c)
}

// SessionAccessToken makes the token a browser keeps, in a cookie scoped to
// the session's path, after following a link: it opens only the session at
// /s/REF/, ref being the session's id or its name. One made for a name
// keeps working when the name moves to a restarted session.
func (m *Manager) SessionAccessToken(p Principal, s gef.Session, ref string) (string, time.Time, error) {
	scope := "session:" + s.ID
	if ref == s.Name && s.Name != "" {
		scope = "name:" + s.Name
	}
	return m.issuer.SignScoped(gef.NewID(), gef.User{ID: p.UserID, Name: p.Name, Role: p.Role}, scope, m.cfg.Sessions.AccessTTL)
}

// SessionLink is a URL that signs its holder in to a session.
type SessionLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionLink makes a short-lived link that signs p in to a session it may
// reach, for a browser: the session's URL with a gef_token parameter.
func (m *Manager) SessionLink(ctx context.Context, p Principal, id string) (SessionLink, error) {
	if p.Anonymous() {
		return SessionLink{}, fmt.Errorf("sign in first: %w", gef.ErrUnauthorized)
	}
	if !gef.ValidID(id) {
		return SessionLink{}, gef.Invalid("id", "%q is not a session id", id)
	}
	s, err := m.store.Session(ctx, id)
	if err != nil {
		return SessionLink{}, err
	}
	ok, err := m.MayReach(ctx, p, s)
	if err != nil {
		return SessionLink{}, err
	}
	if !ok && !p.Is(gef.RoleAdmin) {
		return SessionLink{}, fmt.Errorf("session %s: %w", id, gef.ErrNotFound)
	}
	if !ok {
		return SessionLink{}, fmt.Errorf("%s may not reach session %s: %w", p.Name, id, gef.ErrForbidden)
	}
	s = m.decorateSession(s)
	scope := "session:" + s.ID
	if s.Name != "" {
		scope = "name:" + s.Name
	}
	tok, exp, err := m.issuer.SignScoped(gef.NewID(), gef.User{ID: p.UserID, Name: p.Name, Role: p.Role}, scope, m.cfg.Sessions.LinkTTL)
	if err != nil {
		return SessionLink{}, err
	}
	sep := "?"
	if strings.Contains(s.URL, "?") {
		sep = "&"
	}
	return SessionLink{URL: s.URL + sep + TokenParam + "=" + tok, ExpiresAt: exp}, nil
}

// TokenParam is the query parameter that carries a token to a session's
// URL; the manager moves it into a cookie and redirects to the URL without
// it.
const TokenParam = "gef_token"
