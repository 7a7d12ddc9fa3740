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

type sessionRow struct {
	ID            string         `db:"id"`
	Name          sql.NullString `db:"name"`
	State         string         `db:"state"`
	Reason        string         `db:"reason"`
	ExitCode      sql.NullInt64  `db:"exit_code"`
	Service       string         `db:"service"`
	Version       string         `db:"version"`
	ImageDigest   string         `db:"image_digest"`
	Node          sql.NullString `db:"node"`
	Owner         string         `db:"owner"`
	Access        string         `db:"access"`
	Users         string         `db:"users"`
	Groups        string         `db:"access_groups"`
	Params        string         `db:"params"`
	Argv          string         `db:"argv"`
	Spec          string         `db:"spec"`
	HTTPPath      string         `db:"http_path"`
	IdleTimeout   int64          `db:"idle_timeout"`
	MaxLifetime   int64          `db:"max_lifetime"`
	StopRequested bool           `db:"stop_requested"`
	CreatedAt     int64          `db:"created_at"`
	AssignedAt    sql.NullInt64  `db:"assigned_at"`
	StartedAt     sql.NullInt64  `db:"started_at"`
	LastActiveAt  sql.NullInt64  `db:"last_active_at"`
	EndedAt       sql.NullInt64  `db:"ended_at"`
}

func (r *sessionRow) session() (gef.Session, error) {
	s := gef.Session{
		ID: r.ID, Name: r.Name.String, State: gef.SessionState(r.State), Reason: r.Reason, Service: r.Service,
		Version: r.Version, ImageDigest: r.ImageDigest, Node: r.Node.String, Owner: r.Owner,
		Access: gef.SessionAccess(r.Access), Inputs: map[string]string{}, Path: r.HTTPPath,
		IdleTimeoutSeconds: r.IdleTimeout, MaxLifetimeSeconds: r.MaxLifetime, StopRequested: r.StopRequested,
		Timestamps: gef.SessionTimestamps{
			Created: fromMicros(r.CreatedAt), Assigned: optTime(r.AssignedAt), Started: optTime(r.StartedAt),
			LastActive: optTime(r.LastActiveAt), Ended: optTime(r.EndedAt),
		},
	}
	if r.ExitCode.Valid {
		c := int(r.ExitCode.Int64)
		s.ExitCode = &c
	}
	if st := s.Timestamps.Started; st != nil {
		exp := st.Add(time.Duration(r.MaxLifetime) * time.Second)
		s.ExpiresAt = &exp
	}
	for _, f := range []struct {
		name string
		raw  string
		into any
	}{{"users", r.Users, &s.Users}, {"groups", r.Groups, &s.Groups}, {"params", r.Params, &s.Params}, {"argv", r.Argv, &s.Argv}} {
		if err := json.Unmarshal([]byte(f.raw), f.into); err != nil {
			return gef.Session{}, fmt.Errorf("store: session %s %s: %w", r.ID, f.name, err)
		}
	}
	if s.Users == nil {
		s.Users = []string{}
	}
	if s.Groups == nil {
		s.Groups = []string{}
	}
	return s, nil
}

// CreateSession stores a queued session with the assignment a node will be
// given. A friendly name is claimed for the session's owner the first time
// it is used; a name another user holds is a gef.ErrConflict.
func (s *Store) CreateSession(ctx context.Context, sess gef.Session, spec gef.SessionAssignment) error {
	users, groups := sess.Users, sess.Groups
	if users == nil {
		users = []string{}
	}
	if groups == nil {
		groups = []string{}
	}
	enc := map[string]any{"users": users, "groups": groups, "params": nonNilMap(sess.Params), "argv": sess.Argv, "spec": spec}
	raw := map[string]string{}
	for k, v := range enc {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("store: session %s: %w", k, err)
		}
		raw[k] = string(b)
	}
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		var name sql.NullString
		if sess.Name != "" {
			name = sql.NullString{String: sess.Name, Valid: true}
			if err := s.claimName(ctx, tx, sess.Name, sess.Owner, sess.Timestamps.Created); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO sessions (id, name, state, service, version, image_digest, owner,
			access, users, access_groups, params, argv, spec, http_path, idle_timeout, max_lifetime, created_at)
			VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			sess.ID, name, sess.Service, sess.Version, sess.ImageDigest, sess.Owner, string(sess.Access), raw["users"],
			raw["groups"], raw["params"], raw["argv"], raw["spec"], sess.Path, sess.IdleTimeoutSeconds, sess.MaxLifetimeSeconds,
			micros(sess.Timestamps.Created))
		if err != nil {
			return fmt.Errorf("store: create session: %w", classify(err))
		}
		for input, dataset := range sess.Inputs {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO session_inputs (session_id, input, dataset) VALUES (?, ?, ?)`),
				sess.ID, input, dataset); err != nil {
				return fmt.Errorf("store: session input %q: %w", input, classify(err))
			}
		}
		return nil
	})
}

func (s *Store) claimName(ctx context.Context, tx *sqlx.Tx, name, owner string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO session_names (name, owner, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`), name, owner, micros(at)); err != nil {
		return fmt.Errorf("store: session name %q: %w", name, classify(err))
	}
	var holder string
	if err := tx.GetContext(ctx, &holder, s.q(`SELECT owner FROM session_names WHERE name = ?`), name); err != nil {
		return fmt.Errorf("store: session name %q: %w", name, classify(err))
	}
	if holder != owner {
		return fmt.Errorf("store: the session name %q belongs to another user: %w", name, gef.ErrConflict)
	}
	return nil
}

// SessionNameOwner returns the user who holds a friendly name.
func (s *Store) SessionNameOwner(ctx context.Context, name string) (string, error) {
	var owner string
	if err := s.db.GetContext(ctx, &owner, s.q(`SELECT owner FROM session_names WHERE name = ?`), name); err != nil {
		return "", fmt.Errorf("store: session name %q: %w", name, classify(err))
	}
	return owner, nil
}

// Session returns one session with its inputs.
func (s *Store) Session(ctx context.Context, id string) (gef.Session, error) {
	var r sessionRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM sessions WHERE id = ?`), id); err != nil {
		return gef.Session{}, fmt.Errorf("store: session %s: %w", id, classify(err))
	}
	out, err := s.sessionDetails(ctx, []sessionRow{r})
	if err != nil {
		return gef.Session{}, err
	}
	return out[0], nil
}

// SessionByName returns the session a friendly name points at: the newest
// running session of that name, or else the newest one still starting.
// The error wraps gef.ErrNotFound when no live session holds the name.
func (s *Store) SessionByName(ctx context.Context, name string) (gef.Session, error) {
	var r sessionRow
	err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM sessions WHERE name = ? AND state IN ('queued', 'starting', 'running')
		ORDER BY CASE WHEN state = 'running' THEN 0 ELSE 1 END, id DESC LIMIT 1`), name)
	if err != nil {
		return gef.Session{}, fmt.Errorf("store: no live session is named %q: %w", name, classify(err))
	}
	out, err := s.sessionDetails(ctx, []sessionRow{r})
	if err != nil {
		return gef.Session{}, err
	}
	return out[0], nil
}

// Sessions lists sessions newest first, filtered, one page at a time.
func (s *Store) Sessions(ctx context.Context, f gef.SessionFilter) (gef.Page[gef.Session], error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	query := `SELECT * FROM sessions WHERE 1 = 1`
	var args []any
	add := func(cond string, arg any) {
		query += " AND " + cond
		args = append(args, arg)
	}
	if f.State != "" {
		add("state = ?", string(f.State))
	}
	if f.Service != "" {
		add("service = ?", f.Service)
	}
	if f.Name != "" {
		add("name = ?", f.Name)
	}
	if f.Node != "" {
		add("node = ?", f.Node)
	}
	if f.Owner != "" {
		add("owner = ?", f.Owner)
	}
	if f.PageToken != "" {
		add("id < ?", f.PageToken)
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []sessionRow
	if err := s.db.SelectContext(ctx, &rows, s.q(query), args...); err != nil {
		return gef.Page[gef.Session]{}, fmt.Errorf("store: sessions: %w", classify(err))
	}
	page := gef.Page[gef.Session]{Items: []gef.Session{}}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextPageToken = rows[limit-1].ID
	}
	if len(rows) == 0 {
		return page, nil
	}
	items, err := s.sessionDetails(ctx, rows)
	if err != nil {
		return gef.Page[gef.Session]{}, err
	}
	page.Items = items
	return page, nil
}

// sessionDetails turns rows into sessions, loading all their inputs in
// one query.
func (s *Store) sessionDetails(ctx context.Context, rows []sessionRow) ([]gef.Session, error) {
	out := make([]gef.Session, len(rows))
	ids := make([]string, len(rows))
	byID := make(map[string]*gef.Session, len(rows))
	for i := range rows {
		sess, err := rows[i].session()
		if err != nil {
			return nil, err
		}
		out[i], ids[i] = sess, sess.ID
	}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	q, args, err := sqlx.In(`SELECT session_id, input, dataset FROM session_inputs WHERE session_id IN (?)`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: session inputs: %w", err)
	}
	var inputs []struct {
		SessionID string `db:"session_id"`
		Input     string `db:"input"`
		Dataset   string `db:"dataset"`
	}
	if err := s.db.SelectContext(ctx, &inputs, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: session inputs: %w", classify(err))
	}
	for _, in := range inputs {
		byID[in.SessionID].Inputs[in.Input] = in.Dataset
	}
	return out, nil
}

// ClaimSessions gives up to n queued sessions to node, oldest first, in one
// statement, as ClaimJobs does for jobs: only sessions whose every dataset
// the node holds, and only if the node is ready.
func (s *Store) ClaimSessions(ctx context.Context, node string, n int, at time.Time) ([]gef.SessionAssignment, error) {
	if n <= 0 {
		return nil, nil
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	query := s.q(`WITH picked AS MATERIALIZED (
			SELECT x.id FROM sessions x
			WHERE x.state = 'queued'
			AND EXISTS (SELECT 1 FROM nodes n WHERE n.name = ? AND n.state = 'ready')
			AND NOT EXISTS (SELECT 1 FROM session_inputs si WHERE si.session_id = x.id
				AND NOT EXISTS (SELECT 1 FROM node_datasets nd WHERE nd.node = ? AND nd.dataset = si.dataset))
			ORDER BY x.id LIMIT ?` + lock + `)
		UPDATE sessions SET state = 'starting', node = ?, assigned_at = ?
		FROM picked WHERE sessions.id = picked.id AND sessions.state = 'queued'
		RETURNING sessions.id, sessions.spec`)
	var rows []struct {
		ID   string `db:"id"`
		Spec string `db:"spec"`
	}
	if err := s.db.SelectContext(ctx, &rows, query, node, node, n, node, micros(at)); err != nil {
		return nil, fmt.Errorf("store: claim sessions for %q: %w", node, classify(err))
	}
	out := make([]gef.SessionAssignment, 0, len(rows))
	for _, r := range rows {
		var a gef.SessionAssignment
		if err := json.Unmarshal([]byte(r.Spec), &a); err != nil {
			return nil, fmt.Errorf("store: session %s spec: %w", r.ID, err)
		}
		a.SessionID = r.ID
		out = append(out, a)
	}
	for i := 1; i < len(out); i++ { // RETURNING does not promise an order
		for k := i; k > 0 && out[k].SessionID < out[k-1].SessionID; k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	return out, nil
}

// NodeSessions returns the ids of the live sessions a node holds, and of
// those among them it must stop.
func (s *Store) NodeSessions(ctx context.Context, node string) (active, stop []string, err error) {
	var rows []struct {
		ID   string `db:"id"`
		Stop bool   `db:"stop_requested"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT id, stop_requested FROM sessions WHERE node = ?
		AND state IN ('starting', 'running', 'stopping') ORDER BY id`), node); err != nil {
		return nil, nil, fmt.Errorf("store: node sessions: %w", classify(err))
	}
	for _, r := range rows {
		active = append(active, r.ID)
		if r.Stop {
			stop = append(stop, r.ID)
		}
	}
	return active, stop, nil
}

// ReportSession applies a node's report on a session it holds. Like job
// reports, it is idempotent: a report that does not move the session
// forward changes nothing and returns applied false. A final report keeps
// the reason of a stop that was asked for.
func (s *Store) ReportSession(ctx context.Context, node, id string, r gef.SessionReport) (sess gef.Session, applied bool, err error) {
	var col string
	switch r.State {
	case gef.SessionRunning:
		col = "started_at"
	case gef.SessionStopped, gef.SessionFailed:
		col = "ended_at"
	default:
		return gef.Session{}, false, gef.Invalid("state", "a node cannot report state %q", r.State)
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		var cur struct {
			State string         `db:"state"`
			Node  sql.NullString `db:"node"`
		}
		if err := tx.GetContext(ctx, &cur, s.q(`SELECT state, node FROM sessions WHERE id = ?`+lock), id); err != nil {
			return fmt.Errorf("store: session %s: %w", id, classify(err))
		}
		if cur.Node.String != node {
			return fmt.Errorf("store: session %s is not held by node %q: %w", id, node, gef.ErrConflict)
		}
		if !gef.SessionState(cur.State).CanMoveTo(r.State) {
			return nil
		}
		var exit sql.NullInt64
		if r.ExitCode != nil {
			exit = sql.NullInt64{Int64: int64(*r.ExitCode), Valid: true}
		}
		_, err := tx.ExecContext(ctx, s.q(`UPDATE sessions SET state = ?, `+col+` = ?, exit_code = COALESCE(?, exit_code),
			reason = CASE WHEN reason = '' THEN ? ELSE reason END WHERE id = ?`),
			string(r.State), micros(r.At), exit, r.Reason, id)
		if err != nil {
			return fmt.Errorf("store: report session %s: %w", id, classify(err))
		}
		if !r.LastActive.IsZero() {
			at := micros(r.LastActive)
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE sessions SET last_active_at = ?
				WHERE id = ? AND (last_active_at IS NULL OR last_active_at < ?)`), at, id, at); err != nil {
				return fmt.Errorf("store: report session %s: %w", id, classify(err))
			}
		}
		applied = true
		return nil
	})
	if err != nil {
		return gef.Session{}, false, err
	}
	sess, err = s.Session(ctx, id)
	return sess, applied, err
}

// StopSession ends a queued session at once; one a node holds is marked to
// stop, and ends once its node has stopped it. Stopping a session that is
// stopping already changes nothing; stopping one that ended is a
// gef.ErrConflict.
func (s *Store) StopSession(ctx context.Context, id, reason string, at time.Time) (gef.Session, error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		var state string
		if err := tx.GetContext(ctx, &state, s.q(`SELECT state FROM sessions WHERE id = ?`+lock), id); err != nil {
			return fmt.Errorf("store: session %s: %w", id, classify(err))
		}
		var err error
		switch st := gef.SessionState(state); {
		case st.Final():
			return fmt.Errorf("store: session %s already %s: %w", id, st, gef.ErrConflict)
		case st == gef.SessionStopping:
			return nil
		case st == gef.SessionQueued:
			_, err = tx.ExecContext(ctx, s.q(`UPDATE sessions SET state = 'stopped', reason = ?, ended_at = ?, stop_requested = ?
				WHERE id = ?`), reason, micros(at), true, id)
		default:
			_, err = tx.ExecContext(ctx, s.q(`UPDATE sessions SET state = 'stopping', reason = ?, stop_requested = ? WHERE id = ?`),
				reason, true, id)
		}
		if err != nil {
			return fmt.Errorf("store: stop session %s: %w", id, classify(err))
		}
		return nil
	})
	if err != nil {
		return gef.Session{}, err
	}
	return s.Session(ctx, id)
}

// endSessions is the ending of sessions the manager gives up on: one
// that was asked to stop counts as stopped, any other as failed.
const endSessions = `UPDATE sessions SET
	state = CASE WHEN stop_requested THEN 'stopped' ELSE 'failed' END,
	reason = CASE WHEN stop_requested AND reason <> '' THEN reason ELSE ? END, ended_at = ?`

// EndLostSessions ends those of ids that node holds but no longer runs,
// and returns the ids it ended.
func (s *Store) EndLostSessions(ctx context.Context, node string, ids []string, reason string, at time.Time) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	q, args, err := sqlx.In(endSessions+` WHERE node = ? AND id IN (?) AND state IN ('starting', 'running', 'stopping')
		RETURNING id`, reason, micros(at), node, ids)
	if err != nil {
		return nil, fmt.Errorf("store: end lost sessions: %w", err)
	}
	var ended []string
	if err := s.db.SelectContext(ctx, &ended, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: end lost sessions: %w", classify(err))
	}
	return ended, nil
}

// EndSessionsOfDownNodes ends the live sessions of nodes marked down, and
// returns the ids it ended.
func (s *Store) EndSessionsOfDownNodes(ctx context.Context, at time.Time) ([]string, error) {
	var ended []string
	err := s.db.SelectContext(ctx, &ended, s.q(`UPDATE sessions SET
		state = CASE WHEN stop_requested THEN 'stopped' ELSE 'failed' END,
		reason = CASE WHEN stop_requested AND reason <> '' THEN reason
			ELSE 'node ' || node || ' stopped responding; the session is lost' END, ended_at = ?
		WHERE state IN ('starting', 'running', 'stopping')
		AND node IN (SELECT name FROM nodes WHERE state = 'down') RETURNING id`), micros(at))
	if err != nil {
		return nil, fmt.Errorf("store: end sessions of down nodes: %w", classify(err))
	}
	return ended, nil
}

// TouchSessions records when the sessions a node runs last carried
// traffic, as the node reports it. Times only move forward.
func (s *Store) TouchSessions(ctx context.Context, node string, seen []gef.NodeSession) error {
	for _, ns := range seen {
		if ns.LastActive.IsZero() {
			continue
		}
		at := micros(ns.LastActive)
		if _, err := s.db.ExecContext(ctx, s.q(`UPDATE sessions SET last_active_at = ?
			WHERE id = ? AND node = ? AND (last_active_at IS NULL OR last_active_at < ?)`), at, ns.ID, node, at); err != nil {
			return fmt.Errorf("store: touch session %s: %w", ns.ID, classify(err))
		}
	}
	return nil
}

// StopOverdueSessions asks the nodes of running sessions that have outlived
// their maximum lifetime by more than slack to stop them, and returns
// those nodes. Nodes end their sessions on time themselves; this is the
// manager's backstop.
func (s *Store) StopOverdueSessions(ctx context.Context, now time.Time, slack time.Duration) ([]string, error) {
	var nodes []string
	err := s.db.SelectContext(ctx, &nodes, s.q(`UPDATE sessions SET state = 'stopping', stop_requested = ?,
		reason = 'reached its maximum lifetime'
		WHERE state = 'running' AND NOT stop_requested AND started_at + max_lifetime * 1000000 + ? < ?
		RETURNING node`), true, slack.Microseconds(), micros(now))
	if err != nil {
		return nil, fmt.Errorf("store: stop overdue sessions: %w", classify(err))
	}
	return nodes, nil
}
