package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

// RegisterNode records a node, its datasets and its images as it reports
// them. A draining node stays draining across reconnects; a node that was
// down is ready again.
func (s *Store) RegisterNode(ctx context.Context, reg gef.NodeRegistration, at time.Time) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO nodes (name, state, capacity, engine_version, engine_api, runtime, agent_version, registered_at, last_seen)
			VALUES (?, 'ready', ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity, engine_version = excluded.engine_version,
				engine_api = excluded.engine_api, runtime = excluded.runtime, agent_version = excluded.agent_version, last_seen = excluded.last_seen,
				state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'ready' END`),
			reg.Name, reg.Capacity, reg.EngineVersion, reg.EngineAPI, reg.Runtime, reg.AgentVersion, micros(at), micros(at))
		if err != nil {
			return fmt.Errorf("store: register node %q: %w", reg.Name, classify(err))
		}
		// What the node held before and holds now: the versions whose
		// holders this registration can change.
		var touched []string
		if err := tx.SelectContext(ctx, &touched, s.q(`DELETE FROM node_datasets WHERE node = ? RETURNING dataset`), reg.Name); err != nil {
			return fmt.Errorf("store: register node datasets: %w", classify(err))
		}
		for _, d := range reg.Datasets {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO datasets (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`),
				d.Name, micros(at)); err != nil {
				return fmt.Errorf("store: register dataset %q: %w", d.Name, classify(err))
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO node_datasets (node, dataset, size, files, digest) VALUES (?, ?, ?, ?, ?)`),
				reg.Name, d.Name, d.Size, d.Files, d.Digest); err != nil {
				return fmt.Errorf("store: register node dataset %q: %w", d.Name, classify(err))
			}
		}
		for _, d := range reg.Datasets {
			touched = append(touched, d.Name)
		}
		if err := s.recordVersions(ctx, tx, reg.Datasets, touched, at); err != nil {
			return err
		}
		return s.setImages(ctx, tx, reg.Name, reg.Images)
	})
}

func (s *Store) setImages(ctx context.Context, tx *sqlx.Tx, node string, images []gef.NodeImage) error {
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM node_images WHERE node = ?`), node); err != nil {
		return fmt.Errorf("store: node images: %w", classify(err))
	}
	for _, img := range images {
		info, err := json.Marshal(img)
		if err != nil {
			return fmt.Errorf("store: node image: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO node_images (node, image_id, info) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
			node, img.ID, string(info)); err != nil {
			return fmt.Errorf("store: node image %s: %w", img.ID, classify(err))
		}
	}
	return nil
}

// TouchNode records that a node was heard from, and returns its state. A
// node that was marked down comes back ready.
func (s *Store) TouchNode(ctx context.Context, name string, at time.Time) (gef.NodeState, error) {
	var state string
	err := s.db.GetContext(ctx, &state, s.q(`UPDATE nodes SET last_seen = ?,
		state = CASE WHEN state = 'down' THEN 'ready' ELSE state END WHERE name = ? RETURNING state`), micros(at), name)
	if err != nil {
		return "", fmt.Errorf("store: touch node %q: %w", name, classify(err))
	}
	return gef.NodeState(state), nil
}

// SetNodeState sets a node's state, e.g. to drain it.
func (s *Store) SetNodeState(ctx context.Context, name string, state gef.NodeState) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE nodes SET state = ? WHERE name = ?`), string(state), name)
	if err != nil {
		return fmt.Errorf("store: node state: %w", classify(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: node %q: %w", name, gef.ErrNotFound)
	}
	return nil
}

type nodeRow struct {
	Name          string `db:"name"`
	State         string `db:"state"`
	Capacity      int    `db:"capacity"`
	EngineVersion string `db:"engine_version"`
	EngineAPI     string `db:"engine_api"`
	Runtime       string `db:"runtime"`
	AgentVersion  string `db:"agent_version"`
	RegisteredAt  int64  `db:"registered_at"`
	LastSeen      int64  `db:"last_seen"`
	Running       int    `db:"running"`
}

const nodeSelect = `SELECT n.*, (SELECT COUNT(*) FROM jobs j WHERE j.node = n.name
	AND j.state IN ('assigned', 'fetching_image', 'running', 'staging')) AS running FROM nodes n`

// Nodes lists every node by name.
func (s *Store) Nodes(ctx context.Context) ([]gef.Node, error) {
	var rows []nodeRow
	if err := s.db.SelectContext(ctx, &rows, nodeSelect+` ORDER BY n.name`); err != nil {
		return nil, fmt.Errorf("store: nodes: %w", classify(err))
	}
	held, err := s.nodeDatasets(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]gef.Node, len(rows))
	for i, r := range rows {
		out[i] = r.node(held[r.Name])
	}
	return out, nil
}

// Node returns one node.
func (s *Store) Node(ctx context.Context, name string) (gef.Node, error) {
	var r nodeRow
	if err := s.db.GetContext(ctx, &r, s.q(nodeSelect+` WHERE n.name = ?`), name); err != nil {
		return gef.Node{}, fmt.Errorf("store: node %q: %w", name, classify(err))
	}
	var ds []string
	if err := s.db.SelectContext(ctx, &ds, s.q(`SELECT dataset FROM node_datasets WHERE node = ? ORDER BY dataset`), name); err != nil {
		return gef.Node{}, fmt.Errorf("store: node datasets: %w", classify(err))
	}
	return r.node(ds), nil
}

func (r nodeRow) node(datasets []string) gef.Node {
	if datasets == nil {
		datasets = []string{}
	}
	return gef.Node{Name: r.Name, State: gef.NodeState(r.State), Capacity: r.Capacity, Running: r.Running,
		Datasets: datasets, EngineVersion: r.EngineVersion, EngineAPI: r.EngineAPI, Runtime: r.Runtime, AgentVersion: r.AgentVersion,
		RegisteredAt: fromMicros(r.RegisteredAt), LastSeen: fromMicros(r.LastSeen)}
}

func (s *Store) nodeDatasets(ctx context.Context) (map[string][]string, error) {
	var rows []struct {
		Node    string `db:"node"`
		Dataset string `db:"dataset"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT node, dataset FROM node_datasets ORDER BY node, dataset`); err != nil {
		return nil, fmt.Errorf("store: node datasets: %w", classify(err))
	}
	m := map[string][]string{}
	for _, r := range rows {
		m[r.Node] = append(m[r.Node], r.Dataset)
	}
	return m, nil
}

// NodesHolding returns the nodes that hold every one of datasets. It asks
// only for those datasets' holders: each submission calls it, and a large
// site has many nodes.
func (s *Store) NodesHolding(ctx context.Context, datasets []string) ([]string, error) {
	want := map[string]bool{}
	for _, d := range datasets {
		want[d] = true
	}
	if len(want) == 0 {
		var all []string // as before: the nodes that hold some dataset
		if err := s.db.SelectContext(ctx, &all, `SELECT DISTINCT node FROM node_datasets ORDER BY node`); err != nil {
			return nil, fmt.Errorf("store: nodes: %w", classify(err))
		}
		return all, nil
	}
	q, args, err := sqlx.In(`SELECT node FROM node_datasets WHERE dataset IN (?) GROUP BY node
		HAVING COUNT(DISTINCT dataset) = ? ORDER BY node`, slices.Collect(maps.Keys(want)), len(want))
	if err != nil {
		return nil, fmt.Errorf("store: nodes holding: %w", err)
	}
	var out []string
	if err := s.db.SelectContext(ctx, &out, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: nodes holding: %w", classify(err))
	}
	return out, nil
}

// DatasetAccess returns who may use a dataset, and ErrNotFound if there is
// no such dataset: what a submission must check, without the rest of
// Dataset's record.
func (s *Store) DatasetAccess(ctx context.Context, name string) (gef.DatasetAccess, error) {
	var rows []struct {
		Restricted bool           `db:"restricted"`
		Kind       sql.NullString `db:"kind"`
		Name       sql.NullString `db:"name"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT d.restricted, a.kind, a.name FROM datasets d
		LEFT JOIN dataset_access a ON a.dataset = d.name WHERE d.name = ? ORDER BY a.kind, a.name`), name); err != nil {
		return gef.DatasetAccess{}, fmt.Errorf("store: dataset access: %w", classify(err))
	}
	if len(rows) == 0 {
		return gef.DatasetAccess{}, fmt.Errorf("store: dataset %q: %w", name, gef.ErrNotFound)
	}
	a := gef.DatasetAccess{Restricted: rows[0].Restricted, Users: []string{}, Groups: []string{}}
	for _, r := range rows {
		switch {
		case !r.Kind.Valid:
		case r.Kind.String == "group":
			a.Groups = append(a.Groups, r.Name.String)
		default:
			a.Users = append(a.Users, r.Name.String)
		}
	}
	return a, nil
}

// NodeImage returns what a node reported of a local image.
func (s *Store) NodeImage(ctx context.Context, imageID string) (gef.NodeImage, error) {
	var info string
	if err := s.db.GetContext(ctx, &info, s.q(`SELECT info FROM node_images WHERE image_id = ? LIMIT 1`), imageID); err != nil {
		return gef.NodeImage{}, fmt.Errorf("store: image %s on no node: %w", imageID, classify(err))
	}
	var img gef.NodeImage
	if err := json.Unmarshal([]byte(info), &img); err != nil {
		return gef.NodeImage{}, fmt.Errorf("store: image %s: %w", imageID, err)
	}
	return img, nil
}

type datasetRow struct {
	Name        string `db:"name"`
	Description string `db:"description"`
	CreatedAt   int64  `db:"created_at"`
	Restricted  bool   `db:"restricted"`
	Size        int64  `db:"size"`
	Files       int64  `db:"files"`
}

const datasetSelect = `SELECT d.name, d.description, d.created_at, d.restricted,
	COALESCE((SELECT MAX(size) FROM node_datasets nd WHERE nd.dataset = d.name), 0) AS size,
	COALESCE((SELECT MAX(files) FROM node_datasets nd WHERE nd.dataset = d.name), 0) AS files FROM datasets d`

// Datasets lists every dataset by name, with the nodes that hold it.
func (s *Store) Datasets(ctx context.Context) ([]gef.Dataset, error) {
	var rows []datasetRow
	if err := s.db.SelectContext(ctx, &rows, datasetSelect+` ORDER BY d.name`); err != nil {
		return nil, fmt.Errorf("store: datasets: %w", classify(err))
	}
	var links []struct {
		Node    string `db:"node"`
		Dataset string `db:"dataset"`
	}
	if err := s.db.SelectContext(ctx, &links, `SELECT node, dataset FROM node_datasets ORDER BY dataset, node`); err != nil {
		return nil, fmt.Errorf("store: dataset nodes: %w", classify(err))
	}
	nodes := map[string][]string{}
	for _, l := range links {
		nodes[l.Dataset] = append(nodes[l.Dataset], l.Node)
	}
	access, err := s.datasetAccess(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]gef.Dataset, len(rows))
	for i, r := range rows {
		out[i] = r.dataset(nodes[r.Name], access[r.Name])
	}
	return out, s.withDigests(ctx, out, false)
}

// datasetAccess loads the access lists of one dataset, or of all for "".
func (s *Store) datasetAccess(ctx context.Context, name string) (map[string]gef.DatasetAccess, error) {
	var rows []struct {
		Dataset string `db:"dataset"`
		Kind    string `db:"kind"`
		Name    string `db:"name"`
	}
	q, args := `SELECT dataset, kind, name FROM dataset_access ORDER BY dataset, kind, name`, []any{}
	if name != "" {
		q, args = s.q(`SELECT dataset, kind, name FROM dataset_access WHERE dataset = ? ORDER BY kind, name`), []any{name}
	}
	if err := s.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("store: dataset access: %w", classify(err))
	}
	out := map[string]gef.DatasetAccess{}
	for _, r := range rows {
		a := out[r.Dataset]
		if r.Kind == "group" {
			a.Groups = append(a.Groups, r.Name)
		} else {
			a.Users = append(a.Users, r.Name)
		}
		out[r.Dataset] = a
	}
	return out, nil
}

// SetDatasetAccess replaces who may use a dataset.
func (s *Store) SetDatasetAccess(ctx context.Context, name string, a gef.DatasetAccess) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE datasets SET restricted = ? WHERE name = ?`), a.Restricted, name)
		if err != nil {
			return fmt.Errorf("store: dataset access: %w", classify(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: dataset %q: %w", name, gef.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM dataset_access WHERE dataset = ?`), name); err != nil {
			return fmt.Errorf("store: dataset access: %w", classify(err))
		}
		add := func(kind string, names []string) error {
			for _, n := range names {
				if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO dataset_access (dataset, kind, name) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
					name, kind, n); err != nil {
					return fmt.Errorf("store: dataset access: %w", classify(err))
				}
			}
			return nil
		}
		if err := add("user", a.Users); err != nil {
			return err
		}
		return add("group", a.Groups)
	})
}

// Dataset returns one dataset.
func (s *Store) Dataset(ctx context.Context, name string) (gef.Dataset, error) {
	var r datasetRow
	if err := s.db.GetContext(ctx, &r, s.q(datasetSelect+` WHERE d.name = ?`), name); err != nil {
		return gef.Dataset{}, fmt.Errorf("store: dataset %q: %w", name, classify(err))
	}
	var nodes []string
	if err := s.db.SelectContext(ctx, &nodes, s.q(`SELECT node FROM node_datasets WHERE dataset = ? ORDER BY node`), name); err != nil {
		return gef.Dataset{}, fmt.Errorf("store: dataset nodes: %w", classify(err))
	}
	access, err := s.datasetAccess(ctx, name)
	if err != nil {
		return gef.Dataset{}, err
	}
	ds := []gef.Dataset{r.dataset(nodes, access[name])}
	if err := s.withDigests(ctx, ds, true); err != nil {
		return gef.Dataset{}, err
	}
	return ds[0], nil
}

func (r datasetRow) dataset(nodes []string, a gef.DatasetAccess) gef.Dataset {
	if nodes == nil {
		nodes = []string{}
	}
	a.Restricted = r.Restricted
	if a.Users == nil {
		a.Users = []string{}
	}
	if a.Groups == nil {
		a.Groups = []string{}
	}
	return gef.Dataset{Name: r.Name, Description: r.Description, Nodes: nodes, Size: r.Size, Files: r.Files,
		Access: a, CreatedAt: fromMicros(r.CreatedAt)}
}
