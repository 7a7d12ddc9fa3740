package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/eudat-gef/gef"
)

// JobExtra is what a new job carries into the store beyond gef.Job.
type JobExtra struct {
	// Expected is the output manifest a rerun is compared with when its
	// original is not a job of this manager, e.g. one read from a crate.
	Expected []gef.OutputFile
}

// endCreated gives a job created final (a reuse) its end state and outputs.
func (s *Store) endCreated(ctx context.Context, tx *sqlx.Tx, j gef.Job) error {
	var exit sql.NullInt64
	if j.ExitCode != nil {
		exit = sql.NullInt64{Int64: int64(*j.ExitCode), Valid: true}
	}
	finished := j.Timestamps.Queued
	if j.Timestamps.Finished != nil {
		finished = *j.Timestamps.Finished
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE jobs SET state = ?, reason = ?, exit_code = ?, finished_at = ? WHERE id = ?`),
		string(j.State), j.Reason, exit, micros(finished), j.ID); err != nil {
		return fmt.Errorf("store: end job %s: %w", j.ID, classify(err))
	}
	return s.insertOutputs(ctx, tx, j.ID, j.Outputs)
}

func nullString(p *string) sql.NullString {
	if p == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: *p, Valid: true}
}

func ptr(n sql.NullString) *string {
	if !n.Valid {
		return nil
	}
	s := n.String
	return &s
}

// loadRepro fills in the reproducibility fields of jobs.
func (s *Store) loadRepro(ctx context.Context, byID map[string]*gef.Job, ids []string) error {
	for _, j := range byID {
		j.DatasetDigests, j.Differences, j.Visibility = map[string]string{}, []gef.Difference{}, gef.Private
	}
	var rows []struct {
		JobID       string         `db:"job_id"`
		RerunOf     sql.NullString `db:"rerun_of"`
		ReuseOf     sql.NullString `db:"reuse_of"`
		Accept      bool           `db:"accept_changed_data"`
		Visibility  string         `db:"visibility"`
		Verdict     sql.NullString `db:"verdict"`
		Differences sql.NullString `db:"differences"`
	}
	q, args, err := sqlx.In(`SELECT job_id, rerun_of, reuse_of, accept_changed_data, visibility, verdict, differences
		FROM job_repro WHERE job_id IN (?)`, ids)
	if err != nil {
		return fmt.Errorf("store: job records: %w", err)
	}
	if err := s.db.SelectContext(ctx, &rows, s.q(q), args...); err != nil {
		return fmt.Errorf("store: job records: %w", classify(err))
	}
	for _, r := range rows {
		j := byID[r.JobID]
		j.RerunOf, j.ReuseOf, j.AcceptChangedData, j.Visibility = ptr(r.RerunOf), ptr(r.ReuseOf), r.Accept, gef.Visibility(r.Visibility)
		if r.Verdict.Valid {
			v := gef.Verdict(r.Verdict.String)
			j.Verdict = &v
		}
		if r.Differences.Valid {
			if err := json.Unmarshal([]byte(r.Differences.String), &j.Differences); err != nil {
				return fmt.Errorf("store: job %s differences: %w", r.JobID, err)
			}
		}
	}
	var digests []struct {
		JobID  string `db:"job_id"`
		Input  string `db:"input"`
		Digest string `db:"digest"`
	}
	q, args, err = sqlx.In(`SELECT job_id, input, digest FROM job_inputs WHERE job_id IN (?) AND digest <> ''`, ids)
	if err != nil {
		return fmt.Errorf("store: job digests: %w", err)
	}
	if err := s.db.SelectContext(ctx, &digests, s.q(q), args...); err != nil {
		return fmt.Errorf("store: job digests: %w", classify(err))
	}
	for _, d := range digests {
		byID[d.JobID].DatasetDigests[d.Input] = d.Digest
	}
	return nil
}

// RecordRunning keeps what a node reported as a job's container started:
// the digest of each bound dataset (input → digest) and the limits it ran
// under. The first digests reported for an input are kept; they also
// update what the node is known to hold.
func (s *Store) RecordRunning(ctx context.Context, node, id string, digests map[string]string, limits *gef.Limits, at time.Time) error {
	return s.tx(ctx, func(tx *sqlx.Tx) error {
		var inputs []struct {
			Input   string `db:"input"`
			Dataset string `db:"dataset"`
		}
		if err := tx.SelectContext(ctx, &inputs, s.q(`SELECT input, dataset FROM job_inputs WHERE job_id = ?`), id); err != nil {
			return fmt.Errorf("store: job %s inputs: %w", id, classify(err))
		}
		var seen []gef.NodeDataset
		for _, in := range inputs {
			d, ok := digests[in.Input]
			if !ok || d == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE job_inputs SET digest = ? WHERE job_id = ? AND input = ? AND digest = ''`),
				d, id, in.Input); err != nil {
				return fmt.Errorf("store: job %s digest: %w", id, classify(err))
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE node_datasets SET digest = ? WHERE node = ? AND dataset = ?`),
				d, node, in.Dataset); err != nil {
				return fmt.Errorf("store: node dataset digest: %w", classify(err))
			}
			var size struct {
				Size  int64 `db:"size"`
				Files int64 `db:"files"`
			}
			_ = tx.GetContext(ctx, &size, s.q(`SELECT size, files FROM node_datasets WHERE node = ? AND dataset = ?`), node, in.Dataset)
			seen = append(seen, gef.NodeDataset{Name: in.Dataset, Digest: d, Size: size.Size, Files: size.Files})
		}
		touched := make([]string, 0, len(seen))
		for _, d := range seen {
			touched = append(touched, d.Name)
		}
		if err := s.recordVersions(ctx, tx, seen, touched, at); err != nil {
			return err
		}
		if limits == nil {
			return nil
		}
		b, err := json.Marshal(limits)
		if err != nil {
			return fmt.Errorf("store: limits: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_repro (job_id, limits) VALUES (?, ?)
			ON CONFLICT (job_id) DO UPDATE SET limits = COALESCE(job_repro.limits, excluded.limits)`), id, string(b)); err != nil {
			return fmt.Errorf("store: job %s limits: %w", id, classify(err))
		}
		return nil
	})
}

// recordVersions notes that datasets were seen with their digests at, and
// marks which versions of the touched datasets some node still holds. Only
// the touched datasets' rows that change are written: registrations run
// side by side, and each rewriting every version would deadlock them.
func (s *Store) recordVersions(ctx context.Context, tx *sqlx.Tx, datasets []gef.NodeDataset, touched []string, at time.Time) error {
	for _, d := range datasets {
		if d.Digest == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO dataset_versions (dataset, digest, files, size, first_seen, last_seen)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (dataset, digest) DO UPDATE SET
				last_seen = CASE WHEN excluded.last_seen > dataset_versions.last_seen THEN excluded.last_seen ELSE dataset_versions.last_seen END`),
			d.Name, d.Digest, d.Files, d.Size, micros(at), micros(at)); err != nil {
			return fmt.Errorf("store: dataset %q version: %w", d.Name, classify(err))
		}
	}
	touched = slices.Compact(slices.Sorted(slices.Values(touched)))
	if len(touched) == 0 {
		return nil
	}
	// A version no node holds any more is gone; one that came back is not.
	args := []any{micros(at)}
	for _, d := range touched {
		args = append(args, d)
	}
	held := `EXISTS (SELECT 1 FROM node_datasets nd WHERE nd.dataset = dataset_versions.dataset AND nd.digest = dataset_versions.digest)`
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE dataset_versions SET gone_since = CASE WHEN `+held+` THEN NULL ELSE CAST(? AS BIGINT) END
			WHERE dataset IN (?`+strings.Repeat(", ?", len(touched)-1)+`)
			AND ((`+held+` AND gone_since IS NOT NULL) OR (NOT `+held+` AND gone_since IS NULL))`), args...); err != nil {
		return fmt.Errorf("store: dataset versions: %w", classify(err))
	}
	return nil
}

// withDigests adds to datasets the digests their nodes hold now and, if
// versions is set, every version they were seen with.
func (s *Store) withDigests(ctx context.Context, datasets []gef.Dataset, versions bool) error {
	if len(datasets) == 0 {
		return nil
	}
	names := make([]string, len(datasets))
	for i := range datasets {
		names[i] = datasets[i].Name
		datasets[i].Digests = []string{}
	}
	var held []struct {
		Dataset string `db:"dataset"`
		Digest  string `db:"digest"`
	}
	q, args, err := sqlx.In(`SELECT DISTINCT dataset, digest FROM node_datasets WHERE dataset IN (?) AND digest <> '' ORDER BY dataset, digest`, names)
	if err != nil {
		return fmt.Errorf("store: dataset digests: %w", err)
	}
	if err := s.db.SelectContext(ctx, &held, s.q(q), args...); err != nil {
		return fmt.Errorf("store: dataset digests: %w", classify(err))
	}
	byName := map[string]*gef.Dataset{}
	for i := range datasets {
		byName[datasets[i].Name] = &datasets[i]
	}
	for _, h := range held {
		byName[h.Dataset].Digests = append(byName[h.Dataset].Digests, h.Digest)
	}
	if !versions {
		return nil
	}
	for i := range datasets {
		vs, err := s.DatasetVersions(ctx, datasets[i].Name)
		if err != nil {
			return err
		}
		datasets[i].Versions = vs
	}
	return nil
}

type versionRow struct {
	Dataset   string        `db:"dataset"`
	Digest    string        `db:"digest"`
	Files     int64         `db:"files"`
	Size      int64         `db:"size"`
	FirstSeen int64         `db:"first_seen"`
	LastSeen  int64         `db:"last_seen"`
	GoneSince sql.NullInt64 `db:"gone_since"`
}

func (r versionRow) version() gef.DatasetVersion {
	return gef.DatasetVersion{Digest: r.Digest, FirstSeen: fromMicros(r.FirstSeen), LastSeen: fromMicros(r.LastSeen),
		GoneSince: optTime(r.GoneSince)}
}

// DatasetVersions lists every version a dataset was seen with, newest
// first.
func (s *Store) DatasetVersions(ctx context.Context, dataset string) ([]gef.DatasetVersion, error) {
	var rows []versionRow
	if err := s.db.SelectContext(ctx, &rows, s.q(`SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY last_seen DESC, first_seen DESC, digest`),
		dataset); err != nil {
		return nil, fmt.Errorf("store: dataset versions: %w", classify(err))
	}
	out := make([]gef.DatasetVersion, len(rows))
	for i, r := range rows {
		out[i] = r.version()
	}
	return out, nil
}

// DatasetVersion returns one version of a dataset.
func (s *Store) DatasetVersion(ctx context.Context, dataset, digest string) (gef.DatasetVersion, error) {
	var r versionRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM dataset_versions WHERE dataset = ? AND digest = ?`), dataset, digest); err != nil {
		return gef.DatasetVersion{}, fmt.Errorf("store: dataset %q version %s: %w", dataset, digest, classify(err))
	}
	return r.version(), nil
}

// HeldDigests returns the digests of a dataset that nodes hold now, sorted;
// more than one when the nodes' copies differ.
func (s *Store) HeldDigests(ctx context.Context, dataset string) ([]string, error) {
	var out []string
	if err := s.db.SelectContext(ctx, &out, s.q(`SELECT DISTINCT digest FROM node_datasets WHERE dataset = ? AND digest <> '' ORDER BY digest`),
		dataset); err != nil {
		return nil, fmt.Errorf("store: dataset %q digests: %w", dataset, classify(err))
	}
	return out, nil
}

// JobRepro is what the store keeps of a job beyond gef.Job, for sealing its
// provenance and judging a rerun.
type JobRepro struct {
	Limits   *gef.Limits
	Expected []gef.OutputFile // nil unless set at creation
	ReuseKey string
	RerunOf  *string // the job this one repeats
	Judged   bool    // a rerun whose verdict is in
}

// Repro returns a job's reproducibility record; a job older than it has
// an empty one.
func (s *Store) Repro(ctx context.Context, id string) (JobRepro, error) {
	var r struct {
		Limits   sql.NullString `db:"limits"`
		Expected sql.NullString `db:"expected_outputs"`
		ReuseKey string         `db:"reuse_key"`
		RerunOf  sql.NullString `db:"rerun_of"`
		Verdict  sql.NullString `db:"verdict"`
	}
	err := s.db.GetContext(ctx, &r, s.q(`SELECT limits, expected_outputs, reuse_key, rerun_of, verdict FROM job_repro WHERE job_id = ?`), id)
	if errors.Is(classify(err), gef.ErrNotFound) {
		return JobRepro{}, nil
	}
	if err != nil {
		return JobRepro{}, fmt.Errorf("store: job %s record: %w", id, classify(err))
	}
	out := JobRepro{ReuseKey: r.ReuseKey, RerunOf: ptr(r.RerunOf), Judged: r.Verdict.Valid}
	if r.Limits.Valid {
		out.Limits = &gef.Limits{}
		if err := json.Unmarshal([]byte(r.Limits.String), out.Limits); err != nil {
			return JobRepro{}, fmt.Errorf("store: job %s limits: %w", id, err)
		}
	}
	if r.Expected.Valid {
		out.Expected = []gef.OutputFile{}
		if err := json.Unmarshal([]byte(r.Expected.String), &out.Expected); err != nil {
			return JobRepro{}, fmt.Errorf("store: job %s expected outputs: %w", id, err)
		}
	}
	return out, nil
}

// SealProvenance stores a final job's provenance record, once: a record
// already sealed is never replaced, and is returned as it is. reuseKey, if
// not empty, is what identical requests will match from now on.
func (s *Store) SealProvenance(ctx context.Context, rec gef.Provenance, reuseKey string) (gef.Provenance, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return gef.Provenance{}, fmt.Errorf("store: provenance: %w", err)
	}
	err = s.tx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_provenance (job_id, record, sealed_at) VALUES (?, ?, ?)
			ON CONFLICT (job_id) DO NOTHING`), rec.JobID, string(b), micros(rec.SealedAt))
		if err != nil {
			return fmt.Errorf("store: seal provenance of %s: %w", rec.JobID, classify(err))
		}
		if n, _ := res.RowsAffected(); n == 0 || reuseKey == "" {
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO job_repro (job_id, reuse_key) VALUES (?, ?)
			ON CONFLICT (job_id) DO UPDATE SET reuse_key = excluded.reuse_key`), rec.JobID, reuseKey); err != nil {
			return fmt.Errorf("store: reuse key of %s: %w", rec.JobID, classify(err))
		}
		return nil
	})
	if err != nil {
		return gef.Provenance{}, err
	}
	return s.Provenance(ctx, rec.JobID)
}

// Provenance returns a job's sealed provenance record; gef.ErrNotFound
// until the job has ended and been sealed.
func (s *Store) Provenance(ctx context.Context, id string) (gef.Provenance, error) {
	var rec string
	if err := s.db.GetContext(ctx, &rec, s.q(`SELECT record FROM job_provenance WHERE job_id = ?`), id); err != nil {
		return gef.Provenance{}, fmt.Errorf("store: provenance of %s: %w", id, classify(err))
	}
	var p gef.Provenance
	if err := json.Unmarshal([]byte(rec), &p); err != nil {
		return gef.Provenance{}, fmt.Errorf("store: provenance of %s: %w", id, err)
	}
	return p, nil
}

// ReportExtra is what the manager decides of a job as a report ends it.
type ReportExtra struct {
	// Verdict, if not nil, is the rerun's verdict, recorded as the report
	// ends the job.
	Verdict     *gef.Verdict
	Differences []gef.Difference
}

func (s *Store) applyReportExtra(ctx context.Context, tx *sqlx.Tx, id string, r gef.JobReport, extra ReportExtra) error {
	if extra.Verdict == nil || !r.State.Final() {
		return nil
	}
	_, err := s.setVerdict(ctx, tx, id, *extra.Verdict, extra.Differences)
	return err
}

// SetVerdict records a rerun's verdict, once; it reports whether this call
// set it.
func (s *Store) SetVerdict(ctx context.Context, id string, v gef.Verdict, diffs []gef.Difference) (bool, error) {
	return s.setVerdict(ctx, s.db, id, v, diffs)
}

func (s *Store) setVerdict(ctx context.Context, db sqlx.ExecerContext, id string, v gef.Verdict, diffs []gef.Difference) (bool, error) {
	if diffs == nil {
		diffs = []gef.Difference{}
	}
	b, err := json.Marshal(diffs)
	if err != nil {
		return false, fmt.Errorf("store: differences: %w", err)
	}
	res, err := db.ExecContext(ctx, s.q(`UPDATE job_repro SET verdict = ?, differences = ? WHERE job_id = ? AND verdict IS NULL`),
		string(v), string(b), id)
	if err != nil {
		return false, fmt.Errorf("store: verdict of %s: %w", id, classify(err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SetVisibility makes a job public or private.
func (s *Store) SetVisibility(ctx context.Context, id string, v gef.Visibility) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO job_repro (job_id, visibility) VALUES (?, ?)
		ON CONFLICT (job_id) DO UPDATE SET visibility = excluded.visibility`), id, string(v))
	if err != nil {
		return fmt.Errorf("store: visibility of %s: %w", id, classify(err))
	}
	return nil
}

// FindReusable returns the id of the oldest succeeded job, owned by owner
// or public, whose reuse key is key; gef.ErrNotFound if there is none.
func (s *Store) FindReusable(ctx context.Context, key, owner string) (string, error) {
	var id string
	err := s.db.GetContext(ctx, &id, s.q(`SELECT r.job_id FROM job_repro r JOIN jobs j ON j.id = r.job_id
		WHERE r.reuse_key = ? AND j.state = 'succeeded' AND (j.owner = ? OR r.visibility = 'public')
		ORDER BY r.job_id LIMIT 1`), key, owner)
	if err != nil {
		return "", fmt.Errorf("store: reusable job: %w", classify(err))
	}
	return id, nil
}

// ImageReferenced reports whether any job ran, or is to run, the image
// digest. Such an image must never be deleted: its jobs could not be rerun.
func (s *Store) ImageReferenced(ctx context.Context, digest string) (bool, error) {
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, s.q(`SELECT id FROM jobs WHERE image_digest = ? LIMIT 1`), digest); err != nil {
		return false, fmt.Errorf("store: jobs of image %s: %w", digest, classify(err))
	}
	return len(ids) > 0, nil
}

// ServiceByDigest returns the first version published with an image digest.
func (s *Store) ServiceByDigest(ctx context.Context, digest string) (gef.Service, error) {
	var r serviceRow
	if err := s.db.GetContext(ctx, &r, s.q(`SELECT * FROM services WHERE digest = ? ORDER BY created_at LIMIT 1`), digest); err != nil {
		return gef.Service{}, fmt.Errorf("store: service with image %s: %w", digest, classify(err))
	}
	return r.service()
}
