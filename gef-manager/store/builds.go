package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

type buildRow struct {
	ID           string         `db:"id"`
	State        string         `db:"state"`
	Reason       string         `db:"reason"`
	Kind         string         `db:"kind"`
	Spec         string         `db:"spec"`
	Hash         string         `db:"hash"`
	BaseImage    string         `db:"base_image"`
	NeedsImage   string         `db:"needs_image"`
	Node         sql.NullString `db:"node"`
	Owner        string         `db:"owner"`
	ImageDigest  string         `db:"image_digest"`
	Service      string         `db:"service"`
	Version      string         `db:"version"`
	QueuedAt     int64          `db:"queued_at"`
	BuildingAt   sql.NullInt64  `db:"building_at"`
	PublishingAt sql.NullInt64  `db:"publishing_at"`
	FinishedAt   sql.NullInt64  `db:"finished_at"`
}

func (r *buildRow) build() (gef.Build, error) {
	b := gef.Build{ID: r.ID, State: gef.BuildState(r.State), Reason: r.Reason, Kind: r.Kind, Hash: r.Hash,
		Node: r.Node.String, Owner: r.Owner, ImageDigest: r.ImageDigest, Service: r.Service, Version: r.Version,
		Timestamps: gef.BuildTimestamps{Queued: fromMicros(r.QueuedAt), Building: optTime(r.BuildingAt),
			Publishing: optTime(r.PublishingAt), Finished: optTime(r.FinishedAt)}}
	if r.Spec != "" {
		b.Spec = &gef.BuildSpec{}
		if err := json.Unmarshal([]byte(r.Spec), b.Spec); err != nil {
			return gef.Build{}, fmt.Errorf("store: build %s spec: %w", r.ID, err)
		}
	}
	return b, nil
}

// NewBuild is a build to queue.
type NewBuild struct {
	gef.Build
	// BaseImage is the image ID the build starts from, if known.
	BaseImage string
	// NeedsImage, if set, limits the build to nodes that hold this image.
	NeedsImage string
}

// CreateBuild stores a queued build.
func (s *Store) CreateBuild(ctx context.Context, nb NewBuild) error {
	b := nb.Build
	spec := ""
	if b.Spec != nil {
		j, err := json.Marshal(b.Spec)
		if err != nil {
			return fmt.Errorf("store: build spec: %w", err)
		}
		spec = string(j)
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO builds (id, state, kind, spec, hash, base_image, needs_image, owner, queued_at)
		VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)`),
		b.ID, b.Kind, spec, b.Hash, nb.BaseImage, nb.NeedsImage, b.Owner, micros(b.Timestamps.Queued))
	if err != nil {
		return fmt.Errorf("store: create build: %w", classify(err))
	}
	return nil
}

// Build returns one build.
func (s *Store) Build(ctx context.Context, id string) (gef.Build, error) {
	var r buildRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM builds WHERE id = ?`), id); err != nil {
		return gef.Build{}, fmt.Errorf("store: build %s: %w", id, classify(err))
	}
	return r.build()
}

// BuildFilter selects builds for a list. Empty fields match everything.
type BuildFilter struct {
	Owner     string
	State     gef.BuildState
	Limit     int
	PageToken string // an id: list builds older than it
}

// Builds lists builds newest first, one page at a time.
func (s *Store) Builds(ctx context.Context, f BuildFilter) (gef.Page[gef.Build], error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	query := `SELECT * FROM builds WHERE 1 = 1`
	var args []any
	if f.Owner != "" {
		query += " AND owner = ?"
		args = append(args, f.Owner)
	}
	if f.State != "" {
		query += " AND state = ?"
		args = append(args, string(f.State))
	}
	if f.PageToken != "" {
		query += " AND id < ?"
		args = append(args, f.PageToken)
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []buildRow
	if err := s.db.SelectContext(ctx, &rows, s.q(query), args...); err != nil {
		return gef.Page[gef.Build]{}, fmt.Errorf("store: builds: %w", classify(err))
	}
	page := gef.Page[gef.Build]{Items: []gef.Build{}}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextPageToken = rows[limit-1].ID
	}
	for i := range rows {
		b, err := rows[i].build()
		if err != nil {
			return gef.Page[gef.Build]{}, err
		}
		page.Items = append(page.Items, b)
	}
	return page, nil
}

// DoneBuildByHash returns the newest successful build with hash.
func (s *Store) DoneBuildByHash(ctx context.Context, hash string) (gef.Build, error) {
	var r buildRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM builds WHERE hash = ? AND state = 'done' ORDER BY id DESC LIMIT 1`), hash); err != nil {
		return gef.Build{}, fmt.Errorf("store: build with hash %s: %w", hash, classify(err))
	}
	return r.build()
}

// ClaimedBuild is a build a node has just been given.
type ClaimedBuild struct {
	gef.Build
	BaseImage string
}

// ClaimBuilds gives up to n queued builds to node, oldest first, in one
// statement, if the node is ready. A build whose base only some nodes hold
// goes only to those.
func (s *Store) ClaimBuilds(ctx context.Context, node string, n int, at time.Time) ([]ClaimedBuild, error) {
	if n <= 0 {
		return nil, nil
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	// Materialized for the reason given in ClaimJobs.
	query := s.q(`WITH picked AS MATERIALIZED (
			SELECT b.id FROM builds b
			WHERE b.state = 'queued'
			AND EXISTS (SELECT 1 FROM nodes n WHERE n.name = ? AND n.state = 'ready')
			AND (b.needs_image = '' OR EXISTS (SELECT 1 FROM node_images ni WHERE ni.node = ? AND ni.image_id = b.needs_image))
			ORDER BY b.id LIMIT ?` + lock + `)
		UPDATE builds SET state = 'building', node = ?, building_at = ?
		FROM picked WHERE builds.id = picked.id AND builds.state = 'queued'
		RETURNING builds.id`)
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, query, node, node, n, node, micros(at)); err != nil {
		return nil, fmt.Errorf("store: claim builds for %q: %w", node, classify(err))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(`SELECT * FROM builds WHERE id IN (?) ORDER BY id`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: claimed builds: %w", err)
	}
	var rows []buildRow
	if err := s.db.SelectContext(ctx, &rows, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: claimed builds: %w", classify(err))
	}
	out := make([]ClaimedBuild, 0, len(rows))
	for i := range rows {
		b, err := rows[i].build()
		if err != nil {
			return nil, err
		}
		out = append(out, ClaimedBuild{Build: b, BaseImage: rows[i].BaseImage})
	}
	return out, nil
}

// ActiveBuilds returns the ids of the builds a node runs.
func (s *Store) ActiveBuilds(ctx context.Context, node string) ([]string, error) {
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, s.q(`SELECT id FROM builds WHERE node = ? AND state IN ('building', 'publishing') ORDER BY id`), node); err != nil {
		return nil, fmt.Errorf("store: active builds: %w", classify(err))
	}
	return ids, nil
}

// StartPublishing moves a build that node runs to publishing. Asking again
// is no error; a build that ended, or that another node holds, is a
// gef.ErrConflict.
func (s *Store) StartPublishing(ctx context.Context, node, id string, at time.Time) (gef.Build, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE builds SET state = 'publishing', publishing_at = COALESCE(publishing_at, ?)
		WHERE id = ? AND node = ? AND state IN ('building', 'publishing')`), micros(at), id, node)
	if err != nil {
		return gef.Build{}, fmt.Errorf("store: publish build %s: %w", id, classify(err))
	}
	b, err := s.Build(ctx, id)
	if err != nil {
		return gef.Build{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return b, fmt.Errorf("store: build %s is %s on node %q, not building on %q: %w", id, b.State, b.Node, node, gef.ErrConflict)
	}
	return b, nil
}

// BuildResult is how a build ended.
type BuildResult struct {
	State                         gef.BuildState // done or failed
	Reason                        string
	ImageDigest, Service, Version string
	At                            time.Time
}

// FinishBuild ends a build that has not ended yet. node, if not empty,
// must hold it. It returns the build and whether this call ended it.
func (s *Store) FinishBuild(ctx context.Context, node, id string, r BuildResult) (gef.Build, bool, error) {
	if !r.State.Final() {
		return gef.Build{}, false, gef.Invalid("state", "a build ends done or failed, not %q", r.State)
	}
	query := `UPDATE builds SET state = ?, reason = ?, image_digest = ?, service = ?, version = ?, finished_at = ?
		WHERE id = ? AND state IN ('queued', 'building', 'publishing')`
	args := []any{string(r.State), r.Reason, r.ImageDigest, r.Service, r.Version, micros(r.At), id}
	if node != "" {
		query += " AND node = ?"
		args = append(args, node)
	}
	res, err := s.db.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return gef.Build{}, false, fmt.Errorf("store: finish build %s: %w", id, classify(err))
	}
	b, err := s.Build(ctx, id)
	if err != nil {
		return gef.Build{}, false, err
	}
	n, _ := res.RowsAffected()
	if n == 0 && node != "" && b.Node != node {
		return b, false, fmt.Errorf("store: build %s is not held by node %q: %w", id, node, gef.ErrConflict)
	}
	return b, n > 0, nil
}

// EndLostBuilds fails those of ids that node still runs, and returns the
// ids it failed.
func (s *Store) EndLostBuilds(ctx context.Context, node string, ids []string, reason string, at time.Time) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(`UPDATE builds SET state = 'failed', reason = ?, finished_at = ?
		WHERE node = ? AND id IN (?) AND state IN ('building', 'publishing') RETURNING id`, reason, micros(at), node, ids)
	if err != nil {
		return nil, fmt.Errorf("store: end lost builds: %w", err)
	}
	var ended []string
	if err := s.db.SelectContext(ctx, &ended, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: end lost builds: %w", classify(err))
	}
	return ended, nil
}

// EndBuildsOfDownNodes fails the builds held by nodes marked down, and
// returns their ids.
func (s *Store) EndBuildsOfDownNodes(ctx context.Context, at time.Time) ([]string, error) {
	var ended []string
	err := s.db.SelectContext(ctx, &ended, s.q(`UPDATE builds SET state = 'failed', finished_at = ?,
		reason = 'node ' || node || ' stopped responding; the build is lost'
		WHERE state IN ('building', 'publishing') AND node IN (SELECT name FROM nodes WHERE state = 'down') RETURNING id`), micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: end builds of down nodes: %w", classify(err))
	}
	return ended, nil
}
