package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

type serviceRow struct {
	Name       string `db:"name"`
	Version    string `db:"version"`
	Digest     string `db:"digest"`
	Spec       string `db:"spec"`
	Deprecated bool   `db:"deprecated"`
	Publisher  string `db:"publisher"`
	CreatedAt  int64  `db:"created_at"`
	Network    bool   `db:"network"`
}

func (r serviceRow) service() (gef.Service, error) {
	var svc gef.Service
	if err := json.Unmarshal([]byte(r.Spec), &svc); err != nil {
		return gef.Service{}, fmt.Errorf("store: service %s %s: %w", r.Name, r.Version, err)
	}
	svc.Name, svc.Version, svc.Digest = r.Name, r.Version, r.Digest
	svc.Deprecated, svc.Publisher, svc.CreatedAt = r.Deprecated, r.Publisher, fromMicros(r.CreatedAt)
	svc.Network = r.Network
	return svc, nil
}

// PublishService binds (name, version) to a digest for good. Publishing the
// same binding again returns the stored service with created false; binding
// the pair to another digest is a gef.ErrConflict.
func (s *Store) PublishService(ctx context.Context, svc gef.Service) (stored gef.Service, created bool, err error) {
	spec, err := json.Marshal(svc)
	if err != nil {
		return gef.Service{}, false, fmt.Errorf("store: service: %w", err)
	}
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		var r serviceRow
		err := tx.GetContext(ctx, &r, s.q(`SELECT * FROM services WHERE name = ? AND version = ?`), svc.Name, svc.Version)
		switch {
		case err == nil:
			if r.Digest != svc.Digest {
				return fmt.Errorf("store: service %s %s is already bound to image %s: %w", svc.Name, svc.Version, r.Digest, gef.ErrConflict)
			}
			stored, err = r.service()
			return err
		case !errors.Is(classify(err), gef.ErrNotFound):
			return fmt.Errorf("store: service: %w", classify(err))
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO services (name, version, digest, spec, publisher, created_at) VALUES (?, ?, ?, ?, ?, ?)`),
			svc.Name, svc.Version, svc.Digest, string(spec), svc.Publisher, micros(svc.CreatedAt))
		if err != nil {
			return fmt.Errorf("store: publish service %s %s: %w", svc.Name, svc.Version, classify(err))
		}
		stored, created = svc, true
		return nil
	})
	return stored, created, err
}

// Service returns one version of a service.
func (s *Store) Service(ctx context.Context, name, version string) (gef.Service, error) {
	var r serviceRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM services WHERE name = ? AND version = ?`), name, version); err != nil {
		return gef.Service{}, fmt.Errorf("store: service %s %s: %w", name, version, classify(err))
	}
	return r.service()
}

// Services lists services by name, every version of each. An empty name
// lists all of them.
func (s *Store) Services(ctx context.Context, name string) ([]gef.Service, error) {
	var rows []serviceRow
	var err error
	if name == "" {
		err = s.db.SelectContext(ctx, &rows, `SELECT * FROM services ORDER BY name, created_at DESC`)
	} else {
		err = s.db.SelectContext(ctx, &rows, s.q(`SELECT * FROM services WHERE name = ? ORDER BY created_at DESC`), name)
	}
	if err != nil {
		return nil, fmt.Errorf("store: services: %w", classify(err))
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

// DeprecateService hides a version from new runs, or shows it again.
func (s *Store) DeprecateService(ctx context.Context, name, version string, deprecated bool) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE services SET deprecated = ? WHERE name = ? AND version = ?`), deprecated, name, version)
	if err != nil {
		return fmt.Errorf("store: deprecate: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: service %s %s: %w", name, version, gef.ErrNotFound)
	}
	return nil
}

// SetServiceNetwork allows a service version's containers the network, or
// takes it away.
func (s *Store) SetServiceNetwork(ctx context.Context, name, version string, allow bool) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE services SET network = ? WHERE name = ? AND version = ?`), allow, name, version)
	if err != nil {
		return fmt.Errorf("store: service network: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: service %s %s: %w", name, version, gef.ErrNotFound)
	}
	return nil
}
