package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
)

// retryJob queues a job that may run attempts times.
func retryJob(t *testing.T, s *Store, svc gef.Service, attempts int, retryFailed bool) gef.Job {
	t.Helper()
	j := gef.Job{ID: gef.NewID(), Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Owner: "u1",
		Inputs: map[string]string{"data": "alpha"}, Argv: []string{"/x"}, MaxAttempts: attempts, RetryFailed: retryFailed,
		Timestamps: gef.Timestamps{Queued: t0}}
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: j.Argv, Mounts: []gef.Mount{{Input: "data", Dataset: "alpha", Path: "/data"}},
		Resources: gef.Resources{TimeoutSeconds: 60}}
	if err := s.CreateJob(context.Background(), j, spec); err != nil {
		t.Fatal(err)
	}
	return j
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func claimOne(t *testing.T, s *Store, node string, at time.Time) []gef.Assignment {
	t.Helper()
	got, err := s.ClaimJobs(context.Background(), node, 1, at)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestFailAttemptRetriesElsewhereThenEnds(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"alpha"}})
		j := retryJob(t, s, svc, 3, false)
		if got := claimOne(t, s, "n1", t0); len(got) != 1 || got[0].Attempt != 1 {
			t.Fatalf("claim: %+v", got)
		}
		fail := func(f AttemptFailure) (gef.Job, Outcome) {
			t.Helper()
			f.JobID = j.ID
			if f.At.IsZero() {
				f.At = t0.Add(time.Second)
			}
			got, out, err := s.FailAttempt(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			return got, out
		}
		// A failure of another node, attempt or state changes nothing.
		for _, f := range []AttemptFailure{{Node: "n2"}, {Node: "n1", Attempt: 2}, {Node: "n1", IfState: gef.JobRunning}} {
			if _, out := fail(f); out != Unchanged {
				t.Fatalf("%+v: %v", f, out)
			}
		}
		got, out := fail(AttemptFailure{Node: "n1", Attempt: 1, Reason: "node n1 stopped responding", AvoidFor: time.Minute})
		if out != Retried || got.State != gef.JobQueued || got.Node != "" || got.Timestamps.Assigned != nil ||
			!strings.Contains(got.Reason, "retrying (attempt 2 of 3)") {
			t.Fatalf("after the first failure: %v %+v", out, got)
		}
		if len(got.Attempts) != 1 || got.Attempts[0].Node != "n1" || got.Attempts[0].State != gef.JobSystemError ||
			got.Attempts[0].Reason != "node n1 stopped responding" || got.Attempts[0].Assigned == nil || got.Attempts[0].Finished == nil {
			t.Fatalf("attempts: %+v", got.Attempts)
		}
		// Another ready node holds the data, so n1 is passed over for a
		// while, and n2 takes the retry.
		if got := claimOne(t, s, "n1", t0.Add(2*time.Second)); len(got) != 0 {
			t.Fatalf("n1 took the retry at once: %+v", got)
		}
		if got := claimOne(t, s, "n2", t0.Add(2*time.Second)); len(got) != 1 || got[0].Attempt != 2 {
			t.Fatalf("n2 claim: %+v", got)
		}
		if _, out := fail(AttemptFailure{Node: "n2", Reason: "engine: boom", AvoidFor: time.Minute}); out != Retried {
			t.Fatalf("second failure: %v", out)
		}
		// Once the avoidance ends, the node it failed on may take it.
		if got := claimOne(t, s, "n2", t0.Add(5*time.Second)); len(got) != 0 {
			t.Fatalf("n2 took its own retry at once: %+v", got)
		}
		if got := claimOne(t, s, "n2", t0.Add(2*time.Minute)); len(got) != 1 || got[0].Attempt != 3 {
			t.Fatalf("n2 after the avoidance: %+v", got)
		}
		got, out = fail(AttemptFailure{Node: "n2", Reason: "engine: boom again", At: t0.Add(3 * time.Minute)})
		if out != Ended || got.State != gef.JobSystemError || got.Reason != "engine: boom again (attempt 3 of 3)" ||
			got.Timestamps.Finished == nil || !got.Timestamps.Finished.Equal(t0.Add(3*time.Minute)) {
			t.Fatalf("last failure: %v %+v", out, got)
		}
		var nodes, states []string
		for i, a := range got.Attempts {
			if a.Attempt != i+1 {
				t.Fatalf("attempts out of order: %+v", got.Attempts)
			}
			nodes, states = append(nodes, a.Node), append(states, string(a.State))
		}
		if fmt.Sprint(nodes) != "[n1 n2 n2]" || fmt.Sprint(states) != "[system_error system_error system_error]" {
			t.Fatalf("attempts: %v %v", nodes, states)
		}
		if _, out := fail(AttemptFailure{}); out != Unchanged {
			t.Fatal("a final job failed again")
		}
	})
}

func TestFailAttemptOfTheServiceAndOfCanceledJobs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		code := 3
		failed := AttemptFailure{State: gef.JobFailed, Reason: "exited with code 3", ExitCode: &code, At: t0, RetryOnly: true}

		plain := retryJob(t, s, svc, 3, false)
		claimOne(t, s, "n1", t0)
		f := failed
		f.JobID = plain.ID
		if j, out, err := s.FailAttempt(ctx, f); err != nil || out != Unchanged || j.State != gef.JobAssigned {
			t.Fatalf("a failure not asked to be retried: %v %v %+v", out, err, j)
		}
		// The caller then records it as it is.
		if _, _, err := s.ReportJob(ctx, "n1", plain.ID, gef.JobReport{State: gef.JobFailed, Attempt: 1, ExitCode: &code, At: t0}); err != nil {
			t.Fatal(err)
		}

		again := retryJob(t, s, svc, 2, true)
		claimOne(t, s, "n1", t0)
		f.JobID = again.ID
		j, out, err := s.FailAttempt(ctx, f)
		if err != nil || out != Retried || j.Attempts[0].ExitCode == nil || *j.Attempts[0].ExitCode != 3 || j.Attempts[0].State != gef.JobFailed {
			t.Fatalf("retry_failed: %v %v %+v", out, err, j)
		}
		claimOne(t, s, "n1", t0)
		if _, out, _ := s.FailAttempt(ctx, f); out != Unchanged {
			t.Fatalf("the last attempt was retried: %v", out)
		}

		canceled := retryJob(t, s, svc, 3, false)
		claimOne(t, s, "n1", t0)
		if _, err := s.CancelJob(ctx, canceled.ID, "canceled by ada", t0); err != nil {
			t.Fatal(err)
		}
		j, out, err = s.FailAttempt(ctx, AttemptFailure{JobID: canceled.ID, Reason: "node n1 stopped responding", At: t0})
		if err != nil || out != Ended || j.State != gef.JobCanceled || j.Reason != "canceled by ada; node n1 stopped responding" {
			t.Fatalf("a canceled job's failure: %v %v %+v", out, err, j)
		}
		if _, _, err := s.FailAttempt(ctx, AttemptFailure{JobID: canceled.ID, State: gef.JobSucceeded}); !errors.Is(err, gef.ErrInvalid) {
			t.Fatalf("an attempt failing as succeeded: %v", err)
		}
	})
}

func TestReportStatusAndAStaleAttempt(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		j := retryJob(t, s, svc, 2, false)
		claimOne(t, s, "n1", t0)
		report := func(r gef.JobReport) gef.Job {
			t.Helper()
			r.Attempt = 1
			got, _, err := s.ReportJob(ctx, "n1", j.ID, r)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		report(gef.JobReport{State: gef.JobRunning, At: t0})
		if got := report(gef.JobReport{State: gef.JobStaging, At: t0.Add(time.Second)}); got.Status != "" {
			t.Fatalf("status %q", got.Status)
		}
		if got := report(gef.JobReport{State: gef.JobStaging, Status: "waiting for the object store", At: t0.Add(2 * time.Second)}); got.State != gef.JobStaging || got.Status != "waiting for the object store" {
			t.Fatalf("status report: %+v", got)
		}
		// A status for a state the job left is ignored.
		if got := report(gef.JobReport{State: gef.JobRunning, Status: "old news"}); got.Status != "waiting for the object store" {
			t.Fatalf("status %q", got.Status)
		}
		// The staging stall is measured from the last status.
		lim := StateLimits{StagingStall: 10 * time.Second}
		if o, _ := s.OverdueJobs(ctx, lim, t0.Add(11*time.Second), "", 10); len(o) != 0 {
			t.Fatalf("overdue 9 s after a status: %+v", o)
		}
		if o, _ := s.OverdueJobs(ctx, lim, t0.Add(13*time.Second), "", 10); len(o) != 1 || o[0].Limit != "staging_stall" {
			t.Fatalf("overdue: %+v", o)
		}
		if _, out, _ := s.FailAttempt(ctx, AttemptFailure{JobID: j.ID, Reason: "stuck", At: t0.Add(time.Minute)}); out != Retried {
			t.Fatal("not retried")
		}
		if _, _, err := s.ReportJob(ctx, "n1", j.ID, gef.JobReport{State: gef.JobSucceeded, Attempt: 1}); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("a report of the retried attempt: %v", err)
		}
	})
}

func TestOverdueJobs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		j1 := retryJob(t, s, svc, 1, false)
		j2 := retryJob(t, s, svc, 1, false)
		j3 := retryJob(t, s, svc, 1, false)
		// Claims take the oldest first: j1 runs, j2 is assigned, j3 waits.
		claimOne(t, s, "n1", t0)
		claimOne(t, s, "n1", t0)
		if _, _, err := s.ReportJob(ctx, "n1", j1.ID, gef.JobReport{State: gef.JobRunning, Attempt: 1, At: t0}); err != nil {
			t.Fatal(err)
		}
		lim := StateLimits{Queued: time.Hour, Assigned: time.Minute, RunningMin: 30 * time.Second}
		if o, err := s.OverdueJobs(ctx, lim, t0.Add(10*time.Second), "", 10); err != nil || len(o) != 0 {
			t.Fatalf("overdue too soon: %+v %v", o, err)
		}
		o, err := s.OverdueJobs(ctx, lim, t0.Add(2*time.Hour), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, x := range o {
			got[x.ID] = x.Limit
			if x.Limit == "running" && x.TimeoutSeconds != 60 {
				t.Fatalf("running job's wall time: %+v", x)
			}
		}
		if len(got) != 3 || got[j1.ID] != "running" || got[j2.ID] != "assigned" || got[j3.ID] != "queued" {
			t.Fatalf("overdue: %v", got)
		}
		page, _ := s.OverdueJobs(ctx, lim, t0.Add(2*time.Hour), o[0].ID, 10)
		if len(page) != 2 || page[0].ID != o[1].ID {
			t.Fatalf("the page after %s: %+v", o[0].ID, page)
		}
		if ended, err := s.EndQueuedJob(ctx, j3.ID, gef.JobSystemError, "no node took it", t0); err != nil || !ended {
			t.Fatalf("end queued: %v %v", ended, err)
		}
		if ended, _ := s.EndQueuedJob(ctx, j2.ID, gef.JobSystemError, "x", t0); ended {
			t.Fatal("ended a job that was not queued")
		}
	})
}

func TestSilentNodesAndTheirJobs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"alpha"}})
		j := retryJob(t, s, svc, 2, false)
		claimOne(t, s, "n1", t0)
		if _, err := s.TouchNode(ctx, "n2", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		down, err := s.MarkSilentNodes(ctx, t0.Add(30*time.Second))
		if err != nil || fmt.Sprint(down) != "[n1]" {
			t.Fatalf("down: %v %v", down, err)
		}
		if again, _ := s.MarkSilentNodes(ctx, t0.Add(30*time.Second)); len(again) != 0 {
			t.Fatalf("marked down twice: %v", again)
		}
		held, err := s.JobsOnDownNodes(ctx)
		if err != nil || len(held) != 1 || held[0].ID != j.ID || held[0].Node != "n1" || held[0].State != gef.JobAssigned {
			t.Fatalf("held: %+v %v", held, err)
		}
		// A node heard from again is ready, and holds nothing lost.
		if st, _ := s.TouchNode(ctx, "n1", t0.Add(time.Hour)); st != gef.NodeReady {
			t.Fatalf("state %s", st)
		}
		if held, _ := s.JobsOnDownNodes(ctx); len(held) != 0 {
			t.Fatalf("held: %+v", held)
		}
	})
}

func TestExclusiveRunsInOnePlace(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	a, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	inside, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ran, err := a.Exclusive(ctx, "reaper", func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
		if !ran || err != nil {
			t.Errorf("the first did not run: %v %v", ran, err)
		}
	}()
	<-inside
	if ran, err := b.Exclusive(ctx, "reaper", func(context.Context) error { return nil }); ran || err != nil {
		t.Fatalf("two managers ran the reaper at once: %v %v", ran, err)
	}
	if ran, err := b.Exclusive(ctx, "sweeper", func(context.Context) error { return nil }); !ran || err != nil {
		t.Fatalf("other work was kept from running: %v %v", ran, err)
	}
	close(release)
	wg.Wait()
	want := errors.New("pass failed")
	if ran, err := b.Exclusive(ctx, "reaper", func(context.Context) error { return want }); !ran || !errors.Is(err, want) {
		t.Fatalf("after release: %v %v", ran, err)
	}
	// On SQLite, one process: it always runs.
	lite := open(t, SQLite)
	if ran, err := lite.Exclusive(ctx, "reaper", func(context.Context) error { return nil }); !ran || err != nil {
		t.Fatalf("sqlite: %v %v", ran, err)
	}
	if lite.CanNotify() || lite.Notify(ctx, "x", "y") != nil {
		t.Fatal("sqlite claims to notify")
	}
}

func TestNotifyReachesAnotherStore(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan string, 10)
	up := make(chan bool, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- a.Listen(lctx, "gef_test", testLogger(), func(p string) { got <- p }, func(u bool) { up <- u })
	}()
	if u := <-up; !u {
		t.Fatal("the listener reported down first")
	}
	if err := b.Notify(ctx, "gef_test", "r1 n1,n2"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "r1 n1,n2" {
			t.Fatalf("payload %q", p)
		}
	case <-ctx.Done():
		t.Fatal("no notification arrived")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConnectionErrorsAreUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{io.ErrUnexpectedEOF, true},
		{errors.New("driver: bad connection"), true},
		{&pq.Error{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{&pq.Error{Code: "57P03", Message: "the database system is starting up"}, true},
		{&pq.Error{Code: "08006"}, true},
		{&pq.Error{Code: "23505"}, false},
		{&pq.Error{Code: "42P01"}, false},
		{errors.New("syntax error"), false},
	} {
		err := classify(tc.err)
		if got := errors.Is(err, gef.ErrUnavailable); got != tc.unavailable {
			t.Errorf("%v: unavailable=%v, want %v", tc.err, got, tc.unavailable)
		}
		if tc.unavailable && !errors.Is(err, ErrDatabaseUnavailable) {
			t.Errorf("%v: not ErrDatabaseUnavailable", tc.err)
		}
	}
}
