package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

// BenchmarkClaimBehindBacklog claims a job on one dataset while 20,000
// jobs wait for another dataset, held by a node that takes none: the
// backlog must not cost the other nodes anything.
func BenchmarkClaimBehindBacklog(b *testing.B) {
	s := open(b, Postgres)
	ctx := context.Background()
	svc := fixture(b, s, map[string][]string{"busy": {"alpha"}, "idle": {"beta"}})
	first := newJob(b, s, svc, map[string]string{"data": "alpha"})
	// The backlog, copied from a real job in one statement.
	if _, err := s.db.ExecContext(ctx, `
		INSERT INTO jobs (id, state, service, version, image_digest, owner, params, argv, spec, queued_at, max_attempts, retry_failed, first_dataset)
		SELECT $1 || '-' || g, state, service, version, image_digest, owner, params, argv, spec, queued_at, max_attempts, retry_failed, first_dataset
		FROM jobs, generate_series(1, 20000) g WHERE id = $1`, first.ID); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO job_inputs (job_id, input, dataset)
		SELECT id, 'data', 'alpha' FROM jobs WHERE id LIKE $1 || '-%'`, first.ID); err != nil {
		b.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	j := newJob(b, s, svc, map[string]string{"data": "beta"})
	b.ResetTimer()
	for b.Loop() {
		got, err := s.ClaimJobs(ctx, "idle", 4, t0)
		if err != nil || len(got) != 1 || got[0].JobID != j.ID {
			b.Fatalf("claimed %+v, %v; want %s", got, err, j.ID)
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE jobs SET state = 'queued' WHERE id = $1`, j.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClaimNeedsEveryDataset: a job binding two datasets goes only to a node
// holding both, whichever of them sorts first.
func TestClaimNeedsEveryDataset(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"first": {"alpha"}, "second": {"beta"}, "both": {"alpha", "beta"}})
		j := newJob(t, s, svc, map[string]string{"x": "beta", "y": "alpha"})
		for _, n := range []string{"first", "second"} {
			if got, err := s.ClaimJobs(ctx, n, 4, t0); err != nil || len(got) != 0 {
				t.Fatalf("%s, holding one dataset, claimed %+v, %v", n, got, err)
			}
		}
		if got, err := s.ClaimJobs(ctx, "both", 4, t0); err != nil || len(got) != 1 || got[0].JobID != j.ID {
			t.Fatalf("both claimed %+v, %v; want %s", got, err, j.ID)
		}
	})
}

// TestConcurrentRegistrations: nodes registering at once, beside datasets
// with recorded versions, all succeed; none is refused for a deadlock.
func TestConcurrentRegistrations(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		reg := func(i int, digest string) error {
			name := fmt.Sprintf("n%02d", i)
			return s.RegisterNode(ctx, gef.NodeRegistration{Name: name, Capacity: 1, Datasets: []gef.NodeDataset{
				{Name: "shared", Digest: digest, Size: 1, Files: 1}, {Name: "own-" + name, Digest: digest, Size: 1, Files: 1}}}, t0)
		}
		for i := range 20 {
			if err := reg(i, "sha256:a"); err != nil {
				t.Fatal(err)
			}
		}
		errs := make(chan error, 100)
		for round := range 5 {
			for i := range 20 {
				go func() { errs <- reg(i, fmt.Sprintf("sha256:%d", (i+round)%3)) }()
			}
		}
		for range 100 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestConcurrentCreates creates jobs from many goroutines at once, so they
// are written in shared batches, with one bad job among them: it alone
// fails, and every other job is stored whole.
func TestConcurrentCreates(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha", "beta"}})
		dup := newJob(t, s, svc, map[string]string{"data": "alpha"})
		const n = 200
		errs := make([]error, n)
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j := gef.Job{ID: gef.NewID(), Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Owner: "u1",
					Inputs: map[string]string{"data": "alpha", "more": "beta"}, Params: map[string]any{"i": float64(i)},
					Argv: []string{"/bin/x"}, Timestamps: gef.Timestamps{Queued: t0}, Visibility: gef.Public,
					DatasetDigests: map[string]string{"data": fmt.Sprintf("sha256:%064d", i)}}
				spec := gef.Assignment{ImageDigest: svc.Digest, Argv: j.Argv,
					DatasetDigests: map[string]string{"more": fmt.Sprintf("sha256:%064d", i+1)}}
				if i == n/2 {
					j.ID = dup.ID // taken: this one must fail, alone
				}
				ids[i], errs[i] = j.ID, s.CreateJob(ctx, j, spec)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if i == n/2 {
				if !errors.Is(err, gef.ErrConflict) {
					t.Fatalf("a job with a taken id: %v, want a conflict", err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
			j, err := s.Job(ctx, ids[i])
			if err != nil {
				t.Fatal(err)
			}
			if j.State != gef.JobQueued || len(j.Inputs) != 2 || j.Params["i"] != float64(i) || j.Visibility != gef.Public ||
				j.DatasetDigests["data"] != fmt.Sprintf("sha256:%064d", i) {
				t.Fatalf("job %d stored as %+v", i, j)
			}
			if a, err := s.Assignment(ctx, ids[i]); err != nil || a.DatasetDigests["more"] != fmt.Sprintf("sha256:%064d", i+1) {
				t.Fatalf("job %d assignment %+v, %v", i, a, err)
			}
		}
		if got, err := s.Job(ctx, dup.ID); err != nil || got.Params["n"] != 1.0 {
			t.Fatalf("the job whose id was reused: %+v, %v", got, err)
		}
	})
}

// TestManyOutputs ends a job with more output files than one statement
// takes: every one is recorded, once, and the report stays idempotent.
func TestManyOutputs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		j := newJob(t, s, svc, map[string]string{"data": "alpha"})
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		const n = 1201
		outs := make([]gef.OutputFile, 0, n+1)
		for i := range n {
			outs = append(outs, gef.OutputFile{Name: "out", Path: fmt.Sprintf("f%05d", i), Size: int64(i), SHA256: fmt.Sprint(i)})
		}
		outs = append(outs, outs[7]) // a file listed twice counts once
		code := 0
		done := gef.JobReport{State: gef.JobSucceeded, Attempt: 1, ExitCode: &code, Outputs: outs, At: t0.Add(time.Minute)}
		for range 2 {
			got, _, err := s.ReportJob(ctx, "n1", j.ID, done)
			if err != nil || got.State != gef.JobSucceeded || len(got.Outputs) != n {
				t.Fatalf("report: %d outputs, state %s, %v", len(got.Outputs), got.State, err)
			}
			if o := got.Outputs[n-1]; o.Path != fmt.Sprintf("f%05d", n-1) || o.Size != n-1 {
				t.Fatalf("last output %+v", o)
			}
		}
	})
}
