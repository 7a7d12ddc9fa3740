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

type jobRow struct {
	ID              string         `db:"id"`
	State           string         `db:"state"`
	FirstDataset    string         `db:"first_dataset"`
	Reason          string         `db:"reason"`
	ExitCode        sql.NullInt64  `db:"exit_code"`
	Service         string         `db:"service"`
	Version         string         `db:"version"`
	ImageDigest     string         `db:"image_digest"`
	Node            sql.NullString `db:"node"`
	Owner           string         `db:"owner"`
	Params          string         `db:"params"`
	Argv            string         `db:"argv"`
	Spec            string         `db:"spec"`
	Attempt         int            `db:"attempt"`
	CancelRequested bool           `db:"cancel_requested"`
	QueuedAt        int64          `db:"queued_at"`
	AssignedAt      sql.NullInt64  `db:"assigned_at"`
	FetchingAt      sql.NullInt64  `db:"fetching_at"`
	RunningAt       sql.NullInt64  `db:"running_at"`
	StagingAt       sql.NullInt64  `db:"staging_at"`
	FinishedAt      sql.NullInt64  `db:"finished_at"`
	reliabilityColumns
}

func (r *jobRow) job() (gef.Job, error) {
	j := gef.Job{
		ID: r.ID, State: gef.JobState(r.State), Reason: r.Reason, Service: r.Service, Version: r.Version,
		ImageDigest: r.ImageDigest, Node: r.Node.String, Owner: r.Owner, Attempt: r.Attempt,
		MaxAttempts: r.MaxAttempts, RetryFailed: r.RetryFailed, Status: r.Status, Attempts: []gef.Attempt{},
		CancelRequested: r.CancelRequested, Inputs: map[string]string{}, Outputs: []gef.OutputFile{},
		Readers: gef.Readers{Users: []string{}, Groups: []string{}},
		Timestamps: gef.Timestamps{
			Queued: fromMicros(r.QueuedAt), Assigned: optTime(r.AssignedAt), FetchingImage: optTime(r.FetchingAt),
			Running: optTime(r.RunningAt), Staging: optTime(r.StagingAt), Finished: optTime(r.FinishedAt),
		},
	}
	if r.ExitCode.Valid {
		c := int(r.ExitCode.Int64)
		j.ExitCode = &c
	}
	if err := json.Unmarshal([]byte(r.Params), &j.Params); err != nil {
		return gef.Job{}, fmt.Errorf("store: job %s params: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(r.Argv), &j.Argv); err != nil {
		return gef.Job{}, fmt.Errorf("store: job %s argv: %w", r.ID, err)
	}
	return j, nil
}

// CreateJob stores a queued job with the assignment a node will be given.
func (s *Store) CreateJob(ctx context.Context, j gef.Job, spec gef.Assignment) error {
	return s.CreateJobWith(ctx, j, spec, JobExtra{})
}

// CreateJobWith stores a job as CreateJob does, with its reproducibility
// record (rerun and reuse links, pinned digests) in the same transaction.
func (s *Store) CreateJobWith(ctx context.Context, j gef.Job, spec gef.Assignment, extra JobExtra) error {
	nj, err := prepareJob(j, spec, extra)
	if err != nil {
		return err
	}
	return s.createJob(ctx, nj)
}

// firstDataset is the first of a job's datasets in name order, which a
// node must hold to run it; "" for a job that binds none.
func firstDataset(inputs map[string]string) string {
	first := ""
	for _, d := range inputs {
		if first == "" || d < first {
			first = d
		}
	}
	return first
}

func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// Job returns one job with its inputs and outputs.
func (s *Store) Job(ctx context.Context, id string) (gef.Job, error) {
	var r jobRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM jobs WHERE id = ?`), id); err != nil {
		return gef.Job{}, fmt.Errorf("store: job %s: %w", id, classify(err))
	}
	jobs, err := s.withDetails(ctx, []jobRow{r})
	if err != nil {
		return gef.Job{}, err
	}
	return jobs[0], nil
}

// JobHead returns a job's own record without what is kept beside it
// (inputs, outputs, readers, reproducibility, attempts), in one query: for
// the hot paths that need only its state, node, attempt or timestamps.
func (s *Store) JobHead(ctx context.Context, id string) (gef.Job, error) {
	var r jobRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM jobs WHERE id = ?`), id); err != nil {
		return gef.Job{}, fmt.Errorf("store: job %s: %w", id, classify(err))
	}
	return r.job()
}

// Jobs lists jobs newest first, filtered, one page at a time.
func (s *Store) Jobs(ctx context.Context, f gef.JobFilter) (gef.Page[gef.Job], error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	query := `SELECT * FROM jobs j WHERE 1 = 1`
	var args []any
	add := func(cond string, arg any) {
		query += " AND " + cond
		args = append(args, arg)
	}
	if f.State != "" {
		add("j.state = ?", string(f.State))
	}
	if f.Service != "" {
		add("j.service = ?", f.Service)
	}
	if f.Owner != "" {
		add("j.owner = ?", f.Owner)
	}
	if f.Node != "" {
		add("j.node = ?", f.Node)
	}
	if f.Dataset != "" {
		add("EXISTS (SELECT 1 FROM job_inputs ji WHERE ji.job_id = j.id AND ji.dataset = ?)", f.Dataset)
	}
	if f.PageToken != "" {
		add("j.id < ?", f.PageToken)
	}
	query += " ORDER BY j.id DESC LIMIT ?"
	args = append(args, limit+1)

	var rows []jobRow
	if err := s.db.SelectContext(ctx, &rows, s.q(query), args...); err != nil {
		return gef.Page[gef.Job]{}, fmt.Errorf("store: jobs: %w", classify(err))
	}
	page := gef.Page[gef.Job]{Items: []gef.Job{}}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextPageToken = rows[limit-1].ID
	}
	if len(rows) == 0 {
		return page, nil
	}
	jobs, err := s.withDetails(ctx, rows)
	if err != nil {
		return gef.Page[gef.Job]{}, err
	}
	page.Items = jobs
	return page, nil
}

// withDetails turns rows into jobs, loading inputs and outputs for all of
// them in two queries.
func (s *Store) withDetails(ctx context.Context, rows []jobRow) ([]gef.Job, error) {
	ids := make([]string, len(rows))
	byID := make(map[string]*gef.Job, len(rows))
	jobs := make([]gef.Job, len(rows))
	for i := range rows {
		j, err := rows[i].job()
		if err != nil {
			return nil, err
		}
		jobs[i] = j
		ids[i] = j.ID
	}
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	var inputs []struct {
		JobID   string `db:"job_id"`
		Input   string `db:"input"`
		Dataset string `db:"dataset"`
	}
	q, args, err := sqlx.In(`SELECT job_id, input, dataset FROM job_inputs WHERE job_id IN (?)`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: job inputs: %w", err)
	}
	if err := s.db.SelectContext(ctx, &inputs, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: job inputs: %w", classify(err))
	}
	for _, in := range inputs {
		byID[in.JobID].Inputs[in.Input] = in.Dataset
	}
	var outputs []struct {
		JobID string `db:"job_id"`
		gef.OutputFile
	}
	q, args, err = sqlx.In(`SELECT job_id, output AS name, path, size, sha256 FROM job_outputs WHERE job_id IN (?) ORDER BY job_id, output, path`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: job outputs: %w", err)
	}
	if err := s.db.SelectContext(ctx, &outputs, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: job outputs: %w", classify(err))
	}
	for _, o := range outputs {
		j := byID[o.JobID]
		j.Outputs = append(j.Outputs, o.OutputFile)
	}
	var readers []struct {
		JobID string `db:"job_id"`
		Kind  string `db:"kind"`
		Name  string `db:"name"`
	}
	q, args, err = sqlx.In(`SELECT job_id, kind, name FROM job_readers WHERE job_id IN (?) ORDER BY job_id, kind, name`, ids)
	if err != nil {
		return nil, fmt.Errorf("store: job readers: %w", err)
	}
	if err := s.db.SelectContext(ctx, &readers, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: job readers: %w", classify(err))
	}
	for _, r := range readers {
		j := byID[r.JobID]
		if r.Kind == "group" {
			j.Readers.Groups = append(j.Readers.Groups, r.Name)
		} else {
			j.Readers.Users = append(j.Readers.Users, r.Name)
		}
	}
	if err := s.loadRepro(ctx, byID, ids); err != nil {
		return nil, err
	}
	if err := s.attachAttempts(ctx, ids, rows, byID); err != nil {
		return nil, err
	}
	return jobs, nil
}

// SetReaders replaces a job's named readers.
func (s *Store) SetReaders(ctx context.Context, id string, r gef.Readers) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM job_readers WHERE job_id = ?`), id); err != nil {
			return fmt.Errorf("store: job readers: %w", classify(err))
		}
		add := func(kind string, names []string) error {
			for _, n := range names {
				if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_readers (job_id, kind, name) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
					id, kind, n); err != nil {
					return fmt.Errorf("store: job readers: %w", classify(err))
				}
			}
			return nil
		}
		if err := add("user", r.Users); err != nil {
			return err
		}
		return add("group", r.Groups)
	})
}

// ClaimJobs assigns up to n queued jobs to node, oldest first, in one
// statement. It takes only jobs whose every bound dataset the node holds,
// and only if the node is ready; jobs it cannot place stay queued for other
// nodes and never block the ones behind them. A retried job is left for
// other nodes for a while if it failed on this one.
func (s *Store) ClaimJobs(ctx context.Context, node string, n int, at time.Time) ([]gef.Assignment, error) {
	if n <= 0 {
		return nil, nil
	}
	// A job can run only on a node holding its first dataset, so only the
	// queued jobs of the node's own datasets are looked at (and those that
	// bind none): a backlog on other datasets costs this node nothing.
	eligible := `j.state = 'queued'
			AND EXISTS (SELECT 1 FROM nodes n WHERE n.name = ? AND n.state = 'ready')
			AND (SELECT COUNT(*) FROM job_inputs ji WHERE ji.job_id = j.id
				AND NOT EXISTS (SELECT 1 FROM node_datasets nd WHERE nd.node = ? AND nd.dataset = ji.dataset
					AND (ji.pinned = '' OR nd.digest = ji.pinned))) = 0
			AND (j.avoid_node IS NULL OR j.avoid_node <> ? OR j.avoid_until <= ?)`
	// The CTE is materialized: as a plain IN subquery, PostgreSQL may rescan
	// it per row and so lock and claim more than n jobs.
	picked := `SELECT j.id FROM jobs j
			WHERE j.first_dataset IN (SELECT nd0.dataset FROM node_datasets nd0 WHERE nd0.node = ? UNION ALL SELECT '')
			AND ` + eligible + `
			ORDER BY j.id LIMIT ?`
	if s.dialect == Postgres {
		// PostgreSQL cannot tell how few queued jobs the node's datasets
		// have, so it is led there: one index range per dataset.
		picked = `SELECT c.id FROM (SELECT nd0.dataset FROM node_datasets nd0 WHERE nd0.node = ? UNION ALL SELECT '') d
			CROSS JOIN LATERAL (SELECT j.id FROM jobs j WHERE j.first_dataset = d.dataset AND ` + eligible + `
				ORDER BY j.id LIMIT ? FOR UPDATE SKIP LOCKED) c
			ORDER BY c.id LIMIT ?`
	}
	query := s.q(`WITH picked AS MATERIALIZED (` + picked + `)
		UPDATE jobs SET state = 'assigned', node = ?, assigned_at = ?, progress_at = ?, attempt = attempt + 1
		FROM picked WHERE jobs.id = picked.id AND jobs.state = 'queued'
		RETURNING jobs.id, jobs.attempt, jobs.spec`)
	args := []any{node, node, node, node, micros(at), n}
	if s.dialect == Postgres {
		args = append(args, n)
	}
	args = append(args, node, micros(at), micros(at))
	var rows []struct {
		ID      string `db:"id"`
		Attempt int    `db:"attempt"`
		Spec    string `db:"spec"`
	}
	if err := s.db.SelectContext(ctx, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("store: claim jobs for %q: %w", node, classify(err))
	}
	out := make([]gef.Assignment, 0, len(rows))
	for _, r := range rows {
		var a gef.Assignment
		if err := json.Unmarshal([]byte(r.Spec), &a); err != nil {
			return nil, fmt.Errorf("store: job %s spec: %w", r.ID, err)
		}
		a.JobID, a.Attempt = r.ID, r.Attempt
		out = append(out, a)
	}
	// RETURNING does not promise an order.
	sortAssignments(out)
	return out, nil
}

func sortAssignments(a []gef.Assignment) {
	for i := 1; i < len(a); i++ {
		for k := i; k > 0 && a[k].JobID < a[k-1].JobID; k-- {
			a[k], a[k-1] = a[k-1], a[k]
		}
	}
}

// ActiveJobs returns the ids of the non-final jobs a node holds.
func (s *Store) ActiveJobs(ctx context.Context, node string) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.q(`SELECT id FROM jobs WHERE node = ?
		AND state IN ('assigned', 'fetching_image', 'running', 'staging') ORDER BY id`), node)
	if err != nil {
		return nil, fmt.Errorf("store: active jobs: %w", classify(err))
	}
	return ids, nil
}

// PendingCancels returns the ids of a node's jobs that must be stopped.
func (s *Store) PendingCancels(ctx context.Context, node string) ([]string, error) {
	var ids []string
	err := s.db.SelectContext(ctx, &ids, s.q(`SELECT id FROM jobs WHERE node = ? AND cancel_requested
		AND state IN ('assigned', 'fetching_image', 'running', 'staging') ORDER BY id`), node)
	if err != nil {
		return nil, fmt.Errorf("store: pending cancels: %w", classify(err))
	}
	return ids, nil
}

// stateColumn is the timestamp column a state sets when a job enters it.
var stateColumn = map[gef.JobState]string{
	gef.JobAssigned:      "assigned_at",
	gef.JobFetchingImage: "fetching_at",
	gef.JobRunning:       "running_at",
	gef.JobStaging:       "staging_at",
	gef.JobSucceeded:     "finished_at",
	gef.JobFailed:        "finished_at",
	gef.JobSystemError:   "finished_at",
	gef.JobCanceled:      "finished_at",
}

// ReportJob applies a node's report to a job it holds. Reports are
// idempotent: a report that does not move the job forward changes nothing
// but the job's status, if it gives one for the state the job is in, and
// returns applied false. A report from a node or attempt that no longer
// holds the job is a gef.ErrConflict.
func (s *Store) ReportJob(ctx context.Context, node, id string, r gef.JobReport) (job gef.Job, applied bool, err error) {
	return s.ReportJobWith(ctx, node, id, r, ReportExtra{})
}

// ReportJobWith applies a report as ReportJob does, and with it, in the
// same transaction, what the manager decided of a job that ends (a rerun's
// verdict), so that no reader sees the job final without it.
func (s *Store) ReportJobWith(ctx context.Context, node, id string, r gef.JobReport, extra ReportExtra) (job gef.Job, applied bool, err error) {
	col, ok := stateColumn[r.State]
	if !ok {
		return gef.Job{}, false, gef.Invalid("state", "cannot report state %q", r.State)
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		var cur struct {
			State   string         `db:"state"`
			Node    sql.NullString `db:"node"`
			Attempt int            `db:"attempt"`
		}
		if err := tx.GetContext(ctx, &cur, s.q(`SELECT state, node, attempt FROM jobs WHERE id = ?`+lock), id); err != nil {
			return fmt.Errorf("store: job %s: %w", id, classify(err))
		}
		if cur.Node.String != node || (r.Attempt != 0 && r.Attempt != cur.Attempt) {
			return fmt.Errorf("store: job %s attempt %d is not held by node %q: %w", id, r.Attempt, node, gef.ErrConflict)
		}
		if !gef.JobState(cur.State).CanMoveTo(r.State) {
			if r.State == gef.JobState(cur.State) && r.Status != "" {
				return s.setStatus(ctx, tx, id, r.Status, r.At)
			}
			return nil
		}
		var exit sql.NullInt64
		if r.ExitCode != nil {
			exit = sql.NullInt64{Int64: int64(*r.ExitCode), Valid: true}
		}
		_, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, `+col+` = ?,
			image_digest = CASE WHEN ? = '' THEN image_digest ELSE ? END,
			exit_code = COALESCE(?, exit_code), reason = CASE WHEN ? = '' THEN reason ELSE ? END,
			status = ?, progress_at = ? WHERE id = ?`),
			string(r.State), micros(r.At), r.ImageDigest, r.ImageDigest, exit, r.Reason, r.Reason, r.Status, micros(r.At), id)
		if err != nil {
			return fmt.Errorf("store: report job %s: %w", id, classify(err))
		}
		if err := s.insertOutputs(ctx, tx, id, r.Outputs); err != nil {
			return err
		}
		applied = true
		return s.applyReportExtra(ctx, tx, id, r, extra)
	})
	if err != nil {
		return gef.Job{}, false, err
	}
	job, err = s.Job(ctx, id)
	return job, applied, err
}

// insertOutputs records a job's output files, many to a statement; a
// file recorded before is left as it is.
func (s *Store) insertOutputs(ctx context.Context, tx *sqlx.Tx, id string, outs []gef.OutputFile) error {
	const chunk = 500 // five arguments each, far below the databases' limits
	for len(outs) > 0 {
		n := min(len(outs), chunk)
		args := make([]any, 0, 5*n)
		for _, o := range outs[:n] {
			args = append(args, id, o.Name, o.Path, o.Size, o.SHA256)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_outputs (job_id, output, path, size, sha256) VALUES `+
			rows(n, "(?, ?, ?, ?, ?)")+` ON CONFLICT DO NOTHING`), args...); err != nil {
			return fmt.Errorf("store: job %s outputs: %w", id, classify(err))
		}
		outs = outs[n:]
	}
	return nil
}

// CancelJob ends a queued job at once. A job a node holds is marked for
// cancel; it ends once the node has stopped it. Canceling a finished job
// is a gef.ErrConflict.
func (s *Store) CancelJob(ctx context.Context, id, reason string, at time.Time) (gef.Job, error) {
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		var state string
		if err := tx.GetContext(ctx, &state, s.q(`SELECT state FROM jobs WHERE id = ?`+lock), id); err != nil {
			return fmt.Errorf("store: job %s: %w", id, classify(err))
		}
		var err error
		switch st := gef.JobState(state); {
		case st.Final():
			return fmt.Errorf("store: job %s already %s: %w", id, st, gef.ErrConflict)
		case st == gef.JobQueued:
			_, err = tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'canceled', reason = ?, finished_at = ?, cancel_requested = ? WHERE id = ?`),
				reason, micros(at), true, id)
		default:
			// progress_at starts the wait for the node to confirm the stop.
			_, err = tx.ExecContext(ctx, s.q(`UPDATE jobs SET cancel_requested = ?, reason = ?, progress_at = ? WHERE id = ?`),
				true, reason, micros(at), id)
		}
		if err != nil {
			return fmt.Errorf("store: cancel job %s: %w", id, classify(err))
		}
		return nil
	})
	if err != nil {
		return gef.Job{}, err
	}
	return s.Job(ctx, id)
}

// Assignment returns what a node was given for a job, for a node that
// restarted and must re-read it.
func (s *Store) Assignment(ctx context.Context, id string) (gef.Assignment, error) {
	var row struct {
		Spec    string `db:"spec"`
		Attempt int    `db:"attempt"`
	}
	if err := s.db.GetContext(ctx, &row, s.q(`SELECT spec, attempt FROM jobs WHERE id = ?`), id); err != nil {
		return gef.Assignment{}, fmt.Errorf("store: job %s: %w", id, classify(err))
	}
	var a gef.Assignment
	if err := json.Unmarshal([]byte(row.Spec), &a); err != nil {
		return gef.Assignment{}, fmt.Errorf("store: job %s spec: %w", id, err)
	}
	a.JobID, a.Attempt = id, row.Attempt
	return a, nil
}

// EndJobs moves those of ids that node still holds in a non-final state to
// the final state, and returns the ids it ended.
func (s *Store) EndJobs(ctx context.Context, node string, ids []string, state gef.JobState, reason string, at time.Time) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	if !state.Final() {
		return nil, fmt.Errorf("store: end jobs: %s is not a final state", state)
	}
	q, args, err := sqlx.In(`UPDATE jobs SET state = ?, reason = ?, finished_at = ?
		WHERE node = ? AND id IN (?) AND state IN ('assigned', 'fetching_image', 'running', 'staging') RETURNING id`,
		string(state), reason, micros(at), node, ids)
	if err != nil {
		return nil, fmt.Errorf("store: end jobs: %w", err)
	}
	var ended []string
	if err := s.db.SelectContext(ctx, &ended, s.q(q), args...); err != nil {
		return nil, fmt.Errorf("store: end jobs: %w", classify(err))
	}
	return ended, nil
}
