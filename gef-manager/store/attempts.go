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

// reliabilityColumns are the jobs columns of retries and stuck-state
// timeouts; jobRow embeds them.
type reliabilityColumns struct {
	MaxAttempts int            `db:"max_attempts"`
	RetryFailed bool           `db:"retry_failed"`
	Status      string         `db:"status"`
	ProgressAt  sql.NullInt64  `db:"progress_at"`
	AvoidNode   sql.NullString `db:"avoid_node"`
	AvoidUntil  sql.NullInt64  `db:"avoid_until"`
}

// activeStates are the states in which a node holds a job.
const activeStates = `('assigned', 'fetching_image', 'running', 'staging')`

type attemptRow struct {
	JobID      string        `db:"job_id"`
	Attempt    int           `db:"attempt"`
	Node       string        `db:"node"`
	State      string        `db:"state"`
	Reason     string        `db:"reason"`
	ExitCode   sql.NullInt64 `db:"exit_code"`
	AssignedAt sql.NullInt64 `db:"assigned_at"`
	RunningAt  sql.NullInt64 `db:"running_at"`
	FinishedAt int64         `db:"finished_at"`
}

// attachAttempts fills in each job's attempts: those that ended and were
// retried come from job_attempts, the last one from the job's own row.
func (s *Store) attachAttempts(ctx context.Context, ids []string, rows []jobRow, byID map[string]*gef.Job) error {
	q, args, err := sqlx.In(`SELECT * FROM job_attempts WHERE job_id IN (?) ORDER BY job_id, attempt`, ids)
	if err != nil {
		return fmt.Errorf("store: job attempts: %w", err)
	}
	var ended []attemptRow
	if err := s.db.SelectContext(ctx, &ended, s.q(q), args...); err != nil {
		return fmt.Errorf("store: job attempts: %w", classify(err))
	}
	for _, a := range ended {
		j := byID[a.JobID]
		j.Attempts = append(j.Attempts, gef.Attempt{Attempt: a.Attempt, Node: a.Node, State: gef.JobState(a.State),
			Reason: a.Reason, ExitCode: optInt(a.ExitCode), Assigned: optTime(a.AssignedAt), Running: optTime(a.RunningAt),
			Finished: optTime(sql.NullInt64{Int64: a.FinishedAt, Valid: true})})
	}
	for _, r := range rows {
		j := byID[r.ID]
		if r.Attempt < 1 || (len(j.Attempts) > 0 && j.Attempts[len(j.Attempts)-1].Attempt >= r.Attempt) {
			continue // never claimed, or requeued after its last attempt
		}
		j.Attempts = append(j.Attempts, gef.Attempt{Attempt: r.Attempt, Node: r.Node.String, State: j.State,
			Reason: j.Reason, ExitCode: j.ExitCode, Assigned: optTime(r.AssignedAt), Running: optTime(r.RunningAt),
			Finished: optTime(r.FinishedAt)})
	}
	return nil
}

func optInt(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

func (s *Store) setStatus(ctx context.Context, tx *sqlx.Tx, id, status string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET status = ?, progress_at = ? WHERE id = ?`), status, micros(at), id); err != nil {
		return fmt.Errorf("store: job %s status: %w", id, classify(err))
	}
	return nil
}

// AttemptFailure says how an attempt of a job ended abnormally: its node
// reported a system error or a failure, or the manager found it lost or
// stuck.
type AttemptFailure struct {
	JobID string
	// Node is the node that must hold the job; "" accepts any.
	Node string
	// Attempt is the attempt that failed; 0 means the job's current one.
	Attempt int
	// IfState, if set, applies the failure only while the job is still in
	// that state, so a job that moved on since it was seen stuck is spared.
	IfState gef.JobState
	// State is how the attempt ended: gef.JobSystemError (the default) or
	// gef.JobFailed.
	State    gef.JobState
	Reason   string
	ExitCode *int
	At       time.Time
	// AvoidFor keeps a retry away from Node for this long, when another
	// ready node holds the job's data.
	AvoidFor time.Duration
	// RetryOnly leaves a job that may not be retried as it is, for the
	// caller to end it its own way.
	RetryOnly bool
}

// Outcome is what FailAttempt did.
type Outcome int

// Outcomes of FailAttempt.
const (
	Unchanged Outcome = iota // the job had moved on, or RetryOnly and no retry was due
	Retried                  // the job is queued again for another attempt
	Ended                    // the job ended in its final state
)

// FailAttempt ends the job's current attempt. The job is queued again if
// the attempt ended in a system error, or in a failure of a job that asked
// for failures to be retried, while attempts remain and no cancel was
// asked for. Otherwise the job ends: canceled if a cancel was asked for,
// else in f.State. The attempt is kept in the job's record either way.
func (s *Store) FailAttempt(ctx context.Context, f AttemptFailure) (gef.Job, Outcome, error) {
	if f.State == "" {
		f.State = gef.JobSystemError
	}
	if f.State != gef.JobSystemError && f.State != gef.JobFailed {
		return gef.Job{}, Unchanged, gef.Invalid("state", "an attempt cannot fail as %q", f.State)
	}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	outcome := Unchanged
	err := s.tx(ctx, func(tx *sqlx.Tx) error {
		var cur struct {
			State           string         `db:"state"`
			Node            sql.NullString `db:"node"`
			Attempt         int            `db:"attempt"`
			MaxAttempts     int            `db:"max_attempts"`
			RetryFailed     bool           `db:"retry_failed"`
			CancelRequested bool           `db:"cancel_requested"`
			Reason          string         `db:"reason"`
			AssignedAt      sql.NullInt64  `db:"assigned_at"`
			RunningAt       sql.NullInt64  `db:"running_at"`
		}
		err := tx.GetContext(ctx, &cur, s.q(`SELECT state, node, attempt, max_attempts, retry_failed, cancel_requested, reason,
			assigned_at, running_at FROM jobs WHERE id = ?`+lock), f.JobID)
		if err != nil {
			return fmt.Errorf("store: job %s: %w", f.JobID, classify(err))
		}
		st := gef.JobState(cur.State)
		switch {
		case st.Final() || st == gef.JobQueued,
			f.Node != "" && cur.Node.String != f.Node,
			f.Attempt != 0 && f.Attempt != cur.Attempt,
			f.IfState != "" && f.IfState != st:
			return nil
		}
		retry := !cur.CancelRequested && cur.Attempt < cur.MaxAttempts &&
			(f.State == gef.JobSystemError || cur.RetryFailed)
		var exit sql.NullInt64
		if f.ExitCode != nil {
			exit = sql.NullInt64{Int64: int64(*f.ExitCode), Valid: true}
		}
		at := micros(f.At)
		if !retry {
			if f.RetryOnly {
				return nil
			}
			state, reason := f.State, f.Reason
			if cur.Attempt > 1 {
				reason = fmt.Sprintf("%s (attempt %d of %d)", reason, cur.Attempt, cur.MaxAttempts)
			}
			if cur.CancelRequested {
				state, reason = gef.JobCanceled, cur.Reason+"; "+reason
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, reason = ?, finished_at = ?,
				exit_code = COALESCE(?, exit_code), status = '' WHERE id = ?`),
				string(state), reason, at, exit, f.JobID); err != nil {
				return fmt.Errorf("store: end job %s: %w", f.JobID, classify(err))
			}
			outcome = Ended
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_attempts (job_id, attempt, node, state, reason, exit_code,
			assigned_at, running_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
			f.JobID, cur.Attempt, cur.Node.String, string(f.State), f.Reason, exit, cur.AssignedAt, cur.RunningAt, at); err != nil {
			return fmt.Errorf("store: record attempt of %s: %w", f.JobID, classify(err))
		}
		var avoidNode sql.NullString
		var avoidUntil sql.NullInt64
		if f.AvoidFor > 0 && cur.Node.Valid {
			var other bool
			if err := tx.GetContext(ctx, &other, s.q(`SELECT EXISTS (SELECT 1 FROM nodes n WHERE n.name <> ? AND n.state = 'ready'
				AND NOT EXISTS (SELECT 1 FROM job_inputs ji WHERE ji.job_id = ?
					AND NOT EXISTS (SELECT 1 FROM node_datasets nd WHERE nd.node = n.name AND nd.dataset = ji.dataset)))`),
				cur.Node.String, f.JobID); err != nil {
				return fmt.Errorf("store: other nodes for %s: %w", f.JobID, classify(err))
			}
			if other {
				avoidNode = cur.Node
				avoidUntil = sql.NullInt64{Int64: micros(f.At.Add(f.AvoidFor)), Valid: true}
			}
		}
		reason := fmt.Sprintf("attempt %d failed: %s; retrying (attempt %d of %d)", cur.Attempt, f.Reason, cur.Attempt+1, cur.MaxAttempts)
		// progress_at starts the queue timeout of the retry.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = 'queued', node = NULL, assigned_at = NULL, fetching_at = NULL,
			running_at = NULL, staging_at = NULL, finished_at = NULL, exit_code = NULL, reason = ?, status = '',
			progress_at = ?, avoid_node = ?, avoid_until = ? WHERE id = ?`),
			reason, at, avoidNode, avoidUntil, f.JobID); err != nil {
			return fmt.Errorf("store: requeue job %s: %w", f.JobID, classify(err))
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM job_outputs WHERE job_id = ?`), f.JobID); err != nil {
			return fmt.Errorf("store: requeue job %s: %w", f.JobID, classify(err))
		}
		outcome = Retried
		return nil
	})
	if err != nil {
		return gef.Job{}, Unchanged, err
	}
	j, err := s.Job(ctx, f.JobID)
	return j, outcome, err
}

// EndQueuedJob ends a job that is still queued, e.g. one no node took in
// time. It reports whether the job was still queued.
func (s *Store) EndQueuedJob(ctx context.Context, id string, state gef.JobState, reason string, at time.Time) (bool, error) {
	if !state.Final() {
		return false, gef.Invalid("state", "%q is not final", state)
	}
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, reason = ?, finished_at = ?, status = ''
		WHERE id = ? AND state = 'queued'`), string(state), reason, micros(at), id)
	if err != nil {
		return false, fmt.Errorf("store: end queued job %s: %w", id, classify(err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// MarkSilentNodes marks ready or draining nodes not heard from since
// silentSince as down, and returns their names. Their jobs are failed
// separately (see JobsOnDownNodes), so a pass cut short is finished by the
// next.
func (s *Store) MarkSilentNodes(ctx context.Context, silentSince time.Time) ([]string, error) {
	var names []string
	if err := s.db.SelectContext(ctx, &names, s.q(`UPDATE nodes SET state = 'down'
		WHERE state <> 'down' AND last_seen < ? RETURNING name`), micros(silentSince)); err != nil {
		return nil, fmt.Errorf("store: mark silent nodes: %w", classify(err))
	}
	return names, nil
}

// HeldJob is a job a node holds, as the sweeper sees it.
type HeldJob struct {
	ID              string       `db:"id"`
	Node            string       `db:"node"`
	Attempt         int          `db:"attempt"`
	State           gef.JobState `db:"state"`
	CancelRequested bool         `db:"cancel_requested"`
}

// JobsOnDownNodes lists the jobs held by nodes that are down.
func (s *Store) JobsOnDownNodes(ctx context.Context) ([]HeldJob, error) {
	var out []HeldJob
	if err := s.db.SelectContext(ctx, &out, `SELECT j.id, j.node, j.attempt, j.state, j.cancel_requested FROM jobs j
		JOIN nodes n ON n.name = j.node WHERE n.state = 'down' AND j.state IN `+activeStates+` ORDER BY j.id`); err != nil {
		return nil, fmt.Errorf("store: jobs on down nodes: %w", classify(err))
	}
	return out, nil
}

// StateLimits bound how long a job may stay in each state that is not
// final. A zero limit is not enforced.
type StateLimits struct {
	Queued        time.Duration // since it was queued, or queued again
	Assigned      time.Duration // since it was assigned
	FetchingImage time.Duration // since the node began to fetch the image
	// Running jobs are returned once they ran longer than RunningMin; the
	// caller compares each with its own wall-time limit.
	RunningMin   time.Duration
	StagingStall time.Duration // since the node last reported during staging
	Staging      time.Duration // since staging began
	Cancel       time.Duration // since a cancel was asked for
}

// OverdueJob is a job that stayed too long in its state.
type OverdueJob struct {
	HeldJob
	// Limit names the limit passed: queued, assigned, fetching_image,
	// running, staging_stall, staging or cancel.
	Limit string
	// Since is when the job entered the state, or last made progress.
	Since time.Time
	// TimeoutSeconds is the wall-time limit the service asked for; 0 if none.
	TimeoutSeconds int64
}

// OverdueJobs lists jobs that stayed in a state longer than its limit, at
// most limit of them, in id order after the id after.
func (s *Store) OverdueJobs(ctx context.Context, lim StateLimits, now time.Time, after string, limit int) ([]OverdueJob, error) {
	before := func(d time.Duration) int64 {
		if d <= 0 {
			return -1 // matches nothing
		}
		return micros(now.Add(-d))
	}
	var rows []struct {
		ID              string         `db:"id"`
		Node            sql.NullString `db:"node"`
		Attempt         int            `db:"attempt"`
		State           string         `db:"state"`
		CancelRequested bool           `db:"cancel_requested"`
		Limit           string         `db:"lim"`
		Since           int64          `db:"since"`
		Spec            string         `db:"spec"`
	}
	query := s.q(`SELECT id, node, attempt, state, cancel_requested, lim, since, spec FROM (
		SELECT j.*, 'cancel' AS lim, COALESCE(j.progress_at, j.queued_at) AS since FROM jobs j
			WHERE j.cancel_requested AND j.state IN ` + activeStates + ` AND COALESCE(j.progress_at, j.queued_at) < ?
		UNION ALL SELECT j.*, 'queued', COALESCE(j.progress_at, j.queued_at) FROM jobs j
			WHERE j.state = 'queued' AND COALESCE(j.progress_at, j.queued_at) < ?
		UNION ALL SELECT j.*, 'assigned', j.assigned_at FROM jobs j WHERE j.state = 'assigned' AND j.assigned_at < ?
		UNION ALL SELECT j.*, 'fetching_image', j.fetching_at FROM jobs j WHERE j.state = 'fetching_image' AND j.fetching_at < ?
		UNION ALL SELECT j.*, 'running', j.running_at FROM jobs j WHERE j.state = 'running' AND j.running_at < ?
		UNION ALL SELECT j.*, 'staging', j.staging_at FROM jobs j WHERE j.state = 'staging' AND j.staging_at < ?
		UNION ALL SELECT j.*, 'staging_stall', COALESCE(j.progress_at, j.staging_at) FROM jobs j
			WHERE j.state = 'staging' AND COALESCE(j.progress_at, j.staging_at) < ?
	) overdue WHERE id > ? ORDER BY id LIMIT ?`)
	err := s.db.SelectContext(ctx, &rows, query, before(lim.Cancel), before(lim.Queued), before(lim.Assigned),
		before(lim.FetchingImage), before(lim.RunningMin), before(lim.Staging), before(lim.StagingStall), after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: overdue jobs: %w", classify(err))
	}
	out := make([]OverdueJob, 0, len(rows))
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.ID] {
			continue // over two limits at once: one is enough
		}
		seen[r.ID] = true
		o := OverdueJob{HeldJob: HeldJob{ID: r.ID, Node: r.Node.String, Attempt: r.Attempt, State: gef.JobState(r.State),
			CancelRequested: r.CancelRequested}, Limit: r.Limit, Since: fromMicros(r.Since)}
		if r.Limit == "running" {
			var a gef.Assignment
			if err := json.Unmarshal([]byte(r.Spec), &a); err != nil {
				return nil, fmt.Errorf("store: job %s spec: %w", r.ID, err)
			}
			o.TimeoutSeconds = a.Resources.TimeoutSeconds
		}
		out = append(out, o)
	}
	return out, nil
}
