package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

// jobWriter gathers the new jobs that arrive while others are being
// written and writes them together: one transaction and one statement per
// table for many submissions, where each alone costs five round trips and
// a commit. A job waits for at most the batch written before its own.
type jobWriter struct {
	mu      sync.Mutex
	pending []*pendingJob
	busy    bool // a writer is under way and takes what is pending
}

// maxJobBatch bounds a batch: 13 arguments a job stay far below the
// databases' limits on arguments to one statement.
const maxJobBatch = 64

// pendingJob is a job to create, its JSON columns encoded, and where its
// writer tells how it went.
type pendingJob struct {
	j                  gef.Job
	spec               gef.Assignment
	extra              JobExtra
	params, argv, body string
	expected           sql.NullString
	done               chan error
}

func prepareJob(j gef.Job, spec gef.Assignment, extra JobExtra) (*pendingJob, error) {
	params, err := json.Marshal(nonNilMap(j.Params))
	if err != nil {
		return nil, fmt.Errorf("store: job params: %w", err)
	}
	argv, err := json.Marshal(j.Argv)
	if err != nil {
		return nil, fmt.Errorf("store: job argv: %w", err)
	}
	body, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("store: job spec: %w", err)
	}
	nj := &pendingJob{j: j, spec: spec, extra: extra, params: string(params), argv: string(argv), body: string(body),
		done: make(chan error, 1)}
	if extra.Expected != nil {
		b, err := json.Marshal(extra.Expected)
		if err != nil {
			return nil, fmt.Errorf("store: expected outputs: %w", err)
		}
		nj.expected = sql.NullString{String: string(b), Valid: true}
	}
	return nj, nil
}

// createJob queues nj and returns once it is written or has failed. The
// caller that finds no writer under way becomes it.
func (s *Store) createJob(ctx context.Context, nj *pendingJob) error {
	w := &s.jobs
	w.mu.Lock()
	w.pending = append(w.pending, nj)
	lead := !w.busy
	w.busy = true
	w.mu.Unlock()
	if lead {
		// Other callers' jobs ride on this write: it must not end with
		// this caller's request.
		s.writeJobs(context.WithoutCancel(ctx), nj)
	}
	return <-nj.done
}

// writeJobs writes batches until own is written, then leaves what is
// pending to a writer of its own, so that no caller waits for more than
// the batch ahead of its own. With own nil it writes until none is left.
func (s *Store) writeJobs(ctx context.Context, own *pendingJob) {
	w := &s.jobs
	for {
		w.mu.Lock()
		n := min(len(w.pending), maxJobBatch)
		if n == 0 {
			w.busy = false
			w.mu.Unlock()
			return
		}
		batch := slices.Clone(w.pending[:n])
		w.pending = slices.Delete(w.pending, 0, n)
		w.mu.Unlock()

		s.writeBatch(ctx, batch)
		if own != nil && slices.Contains(batch, own) {
			w.mu.Lock()
			more := len(w.pending) > 0
			if !more {
				w.busy = false
			}
			w.mu.Unlock()
			if more {
				go s.writeJobs(ctx, nil)
			}
			return
		}
	}
}

// writeBatch writes a batch in one transaction. If that fails, each job is
// written alone, so that one job's fault is only its own.
func (s *Store) writeBatch(ctx context.Context, batch []*pendingJob) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := s.tx(ctx, func(tx *sqlx.Tx) error { return s.insertJobs(ctx, tx, batch) })
	if err != nil && len(batch) > 1 {
		for _, nj := range batch {
			nj.done <- s.tx(ctx, func(tx *sqlx.Tx) error { return s.insertJobs(ctx, tx, []*pendingJob{nj}) })
		}
		return
	}
	for _, nj := range batch {
		nj.done <- err
	}
}

// insertJobs inserts queued jobs, their inputs and their reproducibility
// records, a statement a table; a job created final (a reuse) then gets
// its end state and outputs.
func (s *Store) insertJobs(ctx context.Context, tx *sqlx.Tx, batch []*pendingJob) error {
	var jobs, inputs, repro []any
	for _, nj := range batch {
		j := nj.j
		jobs = append(jobs, j.ID, j.Service, j.Version, j.ImageDigest, j.Owner, nj.params, nj.argv, nj.body,
			micros(j.Timestamps.Queued), max(j.MaxAttempts, 1), j.RetryFailed, firstDataset(j.Inputs))
		for _, input := range slices.Sorted(maps.Keys(j.Inputs)) {
			inputs = append(inputs, j.ID, input, j.Inputs[input], nj.spec.DatasetDigests[input], j.DatasetDigests[input])
		}
		vis := cmp.Or(j.Visibility, gef.Private)
		repro = append(repro, j.ID, nullString(j.RerunOf), nullString(j.ReuseOf), j.AcceptChangedData, string(vis), nj.expected)
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO jobs (id, state, service, version, image_digest, owner, params, argv, spec, queued_at,
			max_attempts, retry_failed, first_dataset) VALUES `+rows(len(batch), "(?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")), jobs...); err != nil {
		return fmt.Errorf("store: create job: %w", classify(err))
	}
	if len(inputs) > 0 {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_inputs (job_id, input, dataset, pinned, digest) VALUES `+
			rows(len(inputs)/5, "(?, ?, ?, ?, ?)")), inputs...); err != nil {
			return fmt.Errorf("store: job inputs: %w", classify(err))
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_repro (job_id, rerun_of, reuse_of, accept_changed_data, visibility, expected_outputs)
			VALUES `+rows(len(batch), "(?, ?, ?, ?, ?, ?)")), repro...); err != nil {
		return fmt.Errorf("store: job record: %w", classify(err))
	}
	for _, nj := range batch {
		if nj.j.State.Final() {
			if err := s.endCreated(ctx, tx, nj.j); err != nil {
				return err
			}
		}
	}
	return nil
}

// rows repeats a VALUES tuple n times.
func rows(n int, tuple string) string {
	return strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ")
}
