package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/eudat-gef/gef"
)

type userRow struct {
	ID           string         `db:"id"`
	Name         string         `db:"name"`
	Role         string         `db:"role"`
	PasswordHash string         `db:"password_hash"`
	CreatedAt    int64          `db:"created_at"`
	ExternalID   sql.NullString `db:"external_id"`
}

func (r userRow) user() gef.User {
	return gef.User{ID: r.ID, Name: r.Name, Role: gef.Role(r.Role), CreatedAt: fromMicros(r.CreatedAt)}
}

// CreateUser adds a user; a taken name is a gef.ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u gef.User, passwordHash string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO users (id, name, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`),
		u.ID, u.Name, string(u.Role), passwordHash, micros(u.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", u.Name, classify(err))
	}
	return nil
}

// CreateExternalUser adds a user linked to an external identity.
func (s *Store) CreateExternalUser(ctx context.Context, u gef.User, externalID string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO users (id, name, role, created_at, external_id) VALUES (?, ?, ?, ?, ?)`),
		u.ID, u.Name, string(u.Role), micros(u.CreatedAt), externalID)
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", u.Name, classify(err))
	}
	return nil
}

// UserByExternalID returns the user linked to an external identity.
func (s *Store) UserByExternalID(ctx context.Context, externalID string) (gef.User, error) {
	var r userRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM users WHERE external_id = ?`), externalID); err != nil {
		return gef.User{}, fmt.Errorf("store: external user: %w", classify(err))
	}
	return r.user(), nil
}

// User returns a user by id.
func (s *Store) User(ctx context.Context, id string) (gef.User, error) {
	var r userRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM users WHERE id = ?`), id); err != nil {
		return gef.User{}, fmt.Errorf("store: user %s: %w", id, classify(err))
	}
	return r.user(), nil
}

// UserByName returns a user and its password hash by name.
func (s *Store) UserByName(ctx context.Context, name string) (gef.User, string, error) {
	var r userRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM users WHERE name = ?`), name); err != nil {
		return gef.User{}, "", fmt.Errorf("store: user %q: %w", name, classify(err))
	}
	return r.user(), r.PasswordHash, nil
}

// Users lists every user by name.
func (s *Store) Users(ctx context.Context) ([]gef.User, error) {
	var rows []userRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT * FROM users ORDER BY name`); err != nil {
		return nil, fmt.Errorf("store: users: %w", classify(err))
	}
	out := make([]gef.User, len(rows))
	for i, r := range rows {
		out[i] = r.user()
	}
	return out, nil
}

type tokenRow struct {
	ID        string        `db:"id"`
	UserID    string        `db:"user_id"`
	Name      string        `db:"name"`
	Hash      string        `db:"hash"`
	CreatedAt int64         `db:"created_at"`
	ExpiresAt sql.NullInt64 `db:"expires_at"`
	RevokedAt sql.NullInt64 `db:"revoked_at"`
}

func (r tokenRow) token() gef.Token {
	return gef.Token{ID: r.ID, UserID: r.UserID, Name: r.Name, CreatedAt: fromMicros(r.CreatedAt),
		ExpiresAt: optTime(r.ExpiresAt), RevokedAt: optTime(r.RevokedAt)}
}

// CreateToken stores an API token by the hash of its secret.
func (s *Store) CreateToken(ctx context.Context, t gef.Token, hash string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO api_tokens (id, user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`),
		t.ID, t.UserID, t.Name, hash, micros(t.CreatedAt), optMicros(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: create token: %w", classify(err))
	}
	return nil
}

// TokenByHash returns a token and its user by the hash of its secret.
func (s *Store) TokenByHash(ctx context.Context, hash string) (gef.Token, gef.User, error) {
	var row struct {
		tokenRow
		U userRow `db:"u"`
	}
	err := s.db.GetContext(ctx, &row, s.q(`SELECT t.*, u.id AS "u.id", u.name AS "u.name", u.role AS "u.role",
		u.password_hash AS "u.password_hash", u.created_at AS "u.created_at", u.external_id AS "u.external_id"
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`), hash)
	if err != nil {
		return gef.Token{}, gef.User{}, fmt.Errorf("store: token: %w", classify(err))
	}
	return row.token(), row.U.user(), nil
}

// Tokens lists a user's tokens, newest first.
func (s *Store) Tokens(ctx context.Context, userID string) ([]gef.Token, error) {
	var rows []tokenRow
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT * FROM api_tokens WHERE user_id = ? ORDER BY id DESC`), userID); err != nil {
		return nil, fmt.Errorf("store: tokens: %w", classify(err))
	}
	out := make([]gef.Token, len(rows))
	for i, r := range rows {
		out[i] = r.token()
	}
	return out, nil
}

// RevokeToken marks a token revoked. Revoking twice keeps the first time.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`), micros(at), id)
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: token %s: %w", id, gef.ErrNotFound)
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (s *Store) SetPassword(ctx context.Context, userID, hash string) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE users SET password_hash = ? WHERE id = ?`), hash, userID)
	if err != nil {
		return fmt.Errorf("store: set password: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: user %s: %w", userID, gef.ErrNotFound)
	}
	return nil
}
