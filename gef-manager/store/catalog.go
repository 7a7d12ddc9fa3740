package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

// DeleteService removes a service version that no job references. A version
// that jobs reference is a gef.ErrConflict: their records must keep saying
// what ran.
func (s *Store) DeleteService(ctx context.Context, name, version string) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, s.q(`SELECT COUNT(*) FROM jobs WHERE service = ? AND version = ?`), name, version); err != nil {
			return fmt.Errorf("store: delete service: %w", classify(err))
		}
		if n > 0 {
			return fmt.Errorf("store: service %s %s is referenced by %d jobs; deprecate it instead: %w", name, version, n, gef.ErrConflict)
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM services WHERE name = ? AND version = ?`), name, version)
		if err != nil {
			return fmt.Errorf("store: delete service %s %s: %w", name, version, classify(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: service %s %s: %w", name, version, gef.ErrNotFound)
		}
		return nil
	})
}

// ServicesWithDigest returns the services, every version, bound to an image.
func (s *Store) ServicesWithDigest(ctx context.Context, digest string) ([]gef.Service, error) {
	var rows []serviceRow
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT * FROM services WHERE digest = ? ORDER BY name, version`), digest); err != nil {
		return nil, fmt.Errorf("store: services with digest: %w", classify(err))
	}
	out := make([]gef.Service, 0, len(rows))
	for _, r := range rows {
		svc, err := r.service()
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
}
