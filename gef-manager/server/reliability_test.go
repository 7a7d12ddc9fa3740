package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
)

// retryNode is a node credential, speaking the node protocol over HTTP as
// a gef-node would.
type retryNode struct {
	name string
	c    *client.Client
}

// withService registers nodes holding dataset d and publishes a service
// from the image they report.
func withService(t *testing.T, b *bundle, nodes ...string) (gef.Service, []retryNode) {
	t.Helper()
	ctx := context.Background()
	img := gef.NodeImage{ID: "sha256:" + strings.Repeat("ab", 32), Entrypoint: []string{"/svc"}, Labels: map[string]string{
		"eudat.gef.service.name": "Retry probe", "eudat.gef.service.version": "1.0",
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data",
		"eudat.gef.service.output.1.name": "out", "eudat.gef.service.output.1.path": "/out",
	}}
	var out []retryNode
	for _, name := range nodes {
		if _, err := b.admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := b.admin.CreateToken(ctx, name, "node", 0)
		if err != nil {
			t.Fatal(err)
		}
		n := retryNode{name: name, c: client.New(b.url, tok.Secret)}
		if err := n.c.Register(ctx, gef.NodeRegistration{Name: name, Capacity: 2, Datasets: []gef.NodeDataset{{Name: "d"}},
			Images: []gef.NodeImage{img}}); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	svc, err := b.admin.RegisterImage(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	return svc, out
}

func (n retryNode) poll(t *testing.T, running ...string) gef.PollResponse {
	t.Helper()
	resp, err := n.c.Poll(context.Background(), gef.PollRequest{Free: 2 - len(running), Running: append([]string{}, running...), WaitMS: 1})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (n retryNode) report(t *testing.T, id string, r gef.JobReport) gef.Job {
	t.Helper()
	j, err := n.c.Report(context.Background(), id, r)
	if err != nil {
		t.Fatalf("report %s %s: %v", id, r.State, err)
	}
	return j
}

// TestRetriesOverTheNodeProtocol drives a job through a system error, a
// retry and a failure of the service, and checks the record keeps every
// attempt and the node protocol refuses what a stale attempt sends.
func TestRetriesOverTheNodeProtocol(t *testing.T) {
	t.Parallel()
	b := setup(t)
	svc, nodes := withService(t, b, "n1")
	n := nodes[0]
	ctx := context.Background()

	if _, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", MaxAttempts: 11}); !isField(err, "max_attempts") {
		t.Fatalf("max_attempts 11: %v", err)
	}
	def, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d"})
	if err != nil || def.MaxAttempts != 3 || def.Attempts == nil {
		t.Fatalf("default attempts: %+v %v", def, err)
	}
	if _, err := b.admin.Cancel(ctx, def.ID); err != nil {
		t.Fatal(err)
	}

	j, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	resp := n.poll(t)
	if len(resp.Jobs) != 1 || resp.Jobs[0].JobID != j.ID || resp.Jobs[0].Attempt != 1 {
		t.Fatalf("first poll: %+v", resp)
	}
	// A restarted agent re-reads what it holds; other nodes may not.
	a, err := n.c.Assignment(ctx, j.ID)
	if err != nil || a.Attempt != 1 || a.ImageDigest != svc.Digest {
		t.Fatalf("assignment: %+v %v", a, err)
	}
	if _, err := n.c.Assignment(ctx, gef.NewID()); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("assignment of an unknown job: %v", err)
	}
	n.report(t, j.ID, gef.JobReport{State: gef.JobRunning, Attempt: 1})
	n.report(t, j.ID, gef.JobReport{State: gef.JobStaging, Attempt: 1})
	got := n.report(t, j.ID, gef.JobReport{State: gef.JobStaging, Attempt: 1, Status: "waiting for the object store: connection refused"})
	if got.Status != "waiting for the object store: connection refused" {
		t.Fatalf("status: %q", got.Status)
	}
	got = n.report(t, j.ID, gef.JobReport{State: gef.JobSystemError, Attempt: 1, Reason: "staging outputs: the store refused"})
	if got.State != gef.JobQueued || got.Status != "" || len(got.Attempts) != 1 || got.Attempts[0].Reason != "staging outputs: the store refused" {
		t.Fatalf("after a system error: %+v", got)
	}
	// The stale attempt can do nothing more.
	if _, err := n.c.UploadURLs(ctx, j.ID, 1, []gef.OutputFile{{Name: "out", Path: "x"}}); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("upload URLs for a stale attempt: %v", err)
	}
	if _, err := n.c.Assignment(ctx, j.ID); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("assignment of a requeued job: %v", err)
	}

	resp = n.poll(t)
	if len(resp.Jobs) != 1 || resp.Jobs[0].Attempt != 2 {
		t.Fatalf("retry poll: %+v", resp)
	}
	if err := n.c.AppendLog(ctx, j.ID, 1, 0, "stdout", []byte("late")); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("a log chunk of the stale attempt: %v", err)
	}
	code := 3
	got = n.report(t, j.ID, gef.JobReport{State: gef.JobFailed, Attempt: 2, ExitCode: &code, Reason: "exited with code 3"})
	if got.State != gef.JobFailed || got.Attempt != 2 || len(got.Attempts) != 2 || got.Attempts[1].State != gef.JobFailed ||
		got.Attempts[0].State != gef.JobSystemError {
		t.Fatalf("a failure of the service is not retried: %+v", got)
	}

	// Asked for, failures are retried too.
	j, err = b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", MaxAttempts: 2, RetryFailed: true})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		resp = n.poll(t)
		if len(resp.Jobs) != 1 || resp.Jobs[0].Attempt != attempt {
			t.Fatalf("attempt %d: %+v", attempt, resp)
		}
		got = n.report(t, j.ID, gef.JobReport{State: gef.JobFailed, Attempt: attempt, ExitCode: &code})
	}
	if got.State != gef.JobFailed || got.Attempt != 2 {
		t.Fatalf("retry_failed: %+v", got)
	}
}

// TestLostJobsAreRetried shows a job a node's poll no longer lists is
// retried, and a node that still runs a job the manager gave up is told
// to stop it.
func TestLostJobsAreRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	svc, nodes := withService(t, b, "n1", "n2")
	ctx := context.Background()
	j, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d"})
	if err != nil {
		t.Fatal(err)
	}
	first, other := nodes[0], nodes[1]
	if resp := first.poll(t); len(resp.Jobs) != 1 {
		first, other = other, first
		if resp := first.poll(t); len(resp.Jobs) != 1 {
			t.Fatal("no node got the job")
		}
	}
	// The agent restarted without it.
	first.poll(t)
	got, err := b.admin.Job(ctx, j.ID)
	if err != nil || len(got.Attempts) != 1 || !strings.Contains(got.Attempts[0].Reason, "no longer runs the job") {
		t.Fatalf("lost job: %+v %v", got, err)
	}
	// The retry goes to the other node, not back to the one it was lost on.
	if resp := first.poll(t); len(resp.Jobs) != 0 {
		t.Fatalf("the node that lost it took it again: %+v", resp)
	}
	resp := other.poll(t)
	if len(resp.Jobs) != 1 || resp.Jobs[0].Attempt != 2 {
		t.Fatalf("the other node: %+v", resp)
	}
	// The first node finds it still runs it after all: it must stop.
	if resp := first.poll(t, j.ID); len(resp.Cancel) != 1 || resp.Cancel[0] != j.ID {
		t.Fatalf("the orphan was not canceled: %+v", resp)
	}
	if _, err := first.c.Report(ctx, j.ID, gef.JobReport{State: gef.JobSucceeded, Attempt: 1}); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("the orphan's report: %v", err)
	}
}

// TestSweeperEndsStuckJobs shows a job no node starts is retried, then
// ended, once it passed the assigned timeout.
func TestSweeperEndsStuckJobs(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *managerConfig) {
		c.AssignedTimeout = 300 * time.Millisecond
		c.SweepInterval = 50 * time.Millisecond
	})
	svc, nodes := withService(t, b, "n1")
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = b.m.Run(runCtx) }()
	j, err := b.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Listed as running, so it is not lost; but never started.
			resp := nodes[0].poll(t, j.ID)
			if len(resp.Jobs) == 1 && resp.Jobs[0].Attempt == attempt {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("attempt %d never came", attempt)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nodes[0].poll(t, j.ID) // the node stays alive
		got, err := b.admin.Job(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State.Final() {
			if got.State != gef.JobSystemError || !strings.Contains(got.Reason, "did not start the job within 300ms (attempt 2 of 2)") {
				t.Fatalf("stuck job ended %s: %s", got.State, got.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stuck job is still %s", got.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isField(err error, field string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == http.StatusUnprocessableEntity && e.Field == field
}
