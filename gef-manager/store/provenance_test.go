package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

func digestN(n int) string { return "sha256:" + fmt.Sprintf("%064x", n) }

func register(t *testing.T, s *Store, node string, at time.Time, ds ...gef.NodeDataset) {
	t.Helper()
	reg := gef.NodeRegistration{Name: node, Capacity: 4, EngineVersion: "20.10", EngineAPI: "1.41", Runtime: "runc 1.1", Datasets: ds}
	if err := s.RegisterNode(context.Background(), reg, at); err != nil {
		t.Fatal(err)
	}
}

func TestDatasetVersionsAndGoneBytes(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		d1, d2 := digestN(1), digestN(2)
		register(t, s, "n1", t0, gef.NodeDataset{Name: "alpha", Size: 3, Files: 1, Digest: d1})
		ds, err := s.Dataset(ctx, "alpha")
		if err != nil || len(ds.Digests) != 1 || ds.Digests[0] != d1 || len(ds.Versions) != 1 || ds.Versions[0].GoneSince != nil {
			t.Fatalf("after the first registration: %+v %v", ds, err)
		}
		if n, _ := s.Node(ctx, "n1"); n.Runtime != "runc 1.1" {
			t.Fatalf("node runtime = %q", n.Runtime)
		}
		// The data changed on n1: d1 is held by no node any more.
		register(t, s, "n1", t0.Add(time.Hour), gef.NodeDataset{Name: "alpha", Size: 3, Files: 1, Digest: d2})
		ds, _ = s.Dataset(ctx, "alpha")
		if len(ds.Versions) != 2 || ds.Versions[0].Digest != d2 || ds.Versions[1].Digest != d1 {
			t.Fatalf("versions: %+v", ds.Versions)
		}
		old := ds.Versions[1]
		if old.GoneSince == nil || !old.GoneSince.Equal(t0.Add(time.Hour)) || !old.FirstSeen.Equal(t0) || ds.Versions[0].GoneSince != nil {
			t.Fatalf("old version: %+v", old)
		}
		if held, _ := s.HeldDigests(ctx, "alpha"); len(held) != 1 || held[0] != d2 {
			t.Fatalf("held: %v", held)
		}
		// Another node brings the old bytes back.
		register(t, s, "n2", t0.Add(2*time.Hour), gef.NodeDataset{Name: "alpha", Digest: d1})
		v, err := s.DatasetVersion(ctx, "alpha", d1)
		if err != nil || v.GoneSince != nil || !v.LastSeen.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("d1 held again: %+v %v", v, err)
		}
		if held, _ := s.HeldDigests(ctx, "alpha"); len(held) != 2 {
			t.Fatalf("two copies that differ: %v", held)
		}
		all, err := s.Datasets(ctx)
		if err != nil || len(all) != 1 || len(all[0].Digests) != 2 || all[0].Versions != nil {
			t.Fatalf("list: %+v %v", all, err)
		}
		if _, err := s.DatasetVersion(ctx, "alpha", digestN(9)); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown version: %v", err)
		}
	})
}

func TestPinnedRerunGoesWhereTheBytesAre(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, nil)
		register(t, s, "old", t0, gef.NodeDataset{Name: "alpha", Digest: digestN(1)})
		register(t, s, "new", t0, gef.NodeDataset{Name: "alpha", Digest: digestN(2)})
		orig := gef.NewID()
		j := gef.Job{ID: gef.NewID(), Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Owner: "u1",
			Inputs: map[string]string{"data": "alpha"}, Params: map[string]any{}, Argv: []string{"/x"},
			Timestamps: gef.Timestamps{Queued: t0}, RerunOf: &orig}
		spec := gef.Assignment{ImageDigest: svc.Digest, Argv: j.Argv, DatasetDigests: map[string]string{"data": digestN(1)},
			Mounts: []gef.Mount{{Input: "data", Dataset: "alpha", Path: "/data"}}}
		expected := []gef.OutputFile{{Name: "out", Path: "a", Size: 1, SHA256: "x"}}
		if err := s.CreateJobWith(ctx, j, spec, JobExtra{Expected: expected}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ClaimJobs(ctx, "new", 4, t0); len(got) != 0 {
			t.Fatalf("a node without the pinned bytes claimed %+v", got)
		}
		got, err := s.ClaimJobs(ctx, "old", 4, t0)
		if err != nil || len(got) != 1 || got[0].DatasetDigests["data"] != digestN(1) {
			t.Fatalf("claim on the node holding the bytes: %+v %v", got, err)
		}
		job, err := s.Job(ctx, j.ID)
		if err != nil || job.RerunOf == nil || *job.RerunOf != orig || job.ReuseOf != nil || job.Visibility != gef.Private ||
			job.Verdict != nil || len(job.DatasetDigests) != 0 || job.Differences == nil {
			t.Fatalf("rerun job: %+v %v", job, err)
		}
		rep, err := s.Repro(ctx, j.ID)
		if err != nil || len(rep.Expected) != 1 || rep.Limits != nil {
			t.Fatalf("repro: %+v %v", rep, err)
		}
	})
}

func TestRunningDigestsProvenanceAndVerdict(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, nil)
		register(t, s, "n1", t0, gef.NodeDataset{Name: "alpha", Digest: digestN(1)})
		j := newJob(t, s, svc, map[string]string{"data": "alpha"})
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		// The data changed between registration and the container start.
		limits := &gef.Limits{MemoryBytes: 1 << 20, CPUs: 1, Pids: 10, TimeoutSeconds: 60}
		if err := s.RecordRunning(ctx, "n1", j.ID, map[string]string{"data": digestN(2), "bogus": digestN(3)}, limits, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		// A repeated report does not rewrite the digest taken at the start.
		if err := s.RecordRunning(ctx, "n1", j.ID, map[string]string{"data": digestN(4)}, &gef.Limits{Pids: 99}, t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Job(ctx, j.ID)
		if got.DatasetDigests["data"] != digestN(2) || len(got.DatasetDigests) != 1 {
			t.Fatalf("dataset digests: %v", got.DatasetDigests)
		}
		if rep, _ := s.Repro(ctx, j.ID); rep.Limits == nil || rep.Limits.Pids != 10 {
			t.Fatalf("limits: %+v", rep.Limits)
		}
		if v, err := s.DatasetVersion(ctx, "alpha", digestN(1)); err != nil || v.GoneSince == nil {
			t.Fatalf("the version the node no longer holds: %+v %v", v, err)
		}

		rec := gef.Provenance{JobID: j.ID, ImageDigest: svc.Digest, Params: []byte(`{"n":1}`), State: gef.JobSucceeded, SealedAt: t0}
		sealed, err := s.SealProvenance(ctx, rec, "key-1")
		if err != nil || sealed.ImageDigest != svc.Digest || string(sealed.Params) != `{"n":1}` {
			t.Fatalf("seal: %+v %v", sealed, err)
		}
		// Sealed means read-only: a second seal changes nothing.
		forged := rec
		forged.ImageDigest, forged.State = digestN(7), gef.JobFailed
		again, err := s.SealProvenance(ctx, forged, "key-2")
		if err != nil || again.ImageDigest != svc.Digest || again.State != gef.JobSucceeded {
			t.Fatalf("second seal changed the record: %+v %v", again, err)
		}
		if rep, _ := s.Repro(ctx, j.ID); rep.ReuseKey != "key-1" {
			t.Fatalf("reuse key = %q", rep.ReuseKey)
		}
		if _, err := s.Provenance(ctx, gef.NewID()); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unsealed: %v", err)
		}

		// The verdict is set once.
		if ok, err := s.SetVerdict(ctx, j.ID, gef.VerdictDiffers, []gef.Difference{{Path: "out/a", Change: gef.ChangeChanged}}); err != nil || !ok {
			t.Fatalf("verdict: %v %v", ok, err)
		}
		if ok, _ := s.SetVerdict(ctx, j.ID, gef.VerdictIdentical, nil); ok {
			t.Fatal("a second verdict was recorded")
		}
		got, _ = s.Job(ctx, j.ID)
		if got.Verdict == nil || *got.Verdict != gef.VerdictDiffers || len(got.Differences) != 1 || got.Differences[0].Path != "out/a" {
			t.Fatalf("verdict: %v %+v", got.Verdict, got.Differences)
		}
		if ref, err := s.ImageReferenced(ctx, svc.Digest); err != nil || !ref {
			t.Fatalf("image referenced: %v %v", ref, err)
		}
		if ref, _ := s.ImageReferenced(ctx, digestN(8)); ref {
			t.Fatal("an unused image is referenced")
		}
	})
}

func TestReuseLookupAndReusedJobs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		orig := newJob(t, s, svc, map[string]string{"data": "alpha"})
		if _, err := s.FindReusable(ctx, "k", "u1"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("nothing to reuse yet: %v", err)
		}
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		code := 0
		outs := []gef.OutputFile{{Name: "out", Path: "r.txt", Size: 2, SHA256: "ab"}}
		if _, _, err := s.ReportJob(ctx, "n1", orig.ID, gef.JobReport{State: gef.JobSucceeded, Attempt: 1, At: t0, ExitCode: &code, Outputs: outs}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SealProvenance(ctx, gef.Provenance{JobID: orig.ID, SealedAt: t0}, "k"); err != nil {
			t.Fatal(err)
		}
		if id, err := s.FindReusable(ctx, "k", "u1"); err != nil || id != orig.ID {
			t.Fatalf("owner's lookup: %q %v", id, err)
		}
		// Another user reuses only public results.
		if _, err := s.FindReusable(ctx, "k", "u2"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("another user found a private result: %v", err)
		}
		if err := s.SetVisibility(ctx, orig.ID, gef.Public); err != nil {
			t.Fatal(err)
		}
		if id, err := s.FindReusable(ctx, "k", "u2"); err != nil || id != orig.ID {
			t.Fatalf("public result: %q %v", id, err)
		}

		finished := t0.Add(time.Second)
		reused := gef.Job{ID: gef.NewID(), State: gef.JobSucceeded, Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest,
			Owner: "u2", Inputs: map[string]string{"data": "alpha"}, Params: map[string]any{}, Argv: []string{"/x"},
			ExitCode: &code, Outputs: outs, ReuseOf: &orig.ID, Reason: "reused",
			DatasetDigests: map[string]string{"data": digestN(1)},
			Timestamps:     gef.Timestamps{Queued: t0, Finished: &finished}}
		if err := s.CreateJobWith(ctx, reused, gef.Assignment{ImageDigest: svc.Digest}, JobExtra{}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Job(ctx, reused.ID)
		if err != nil || got.State != gef.JobSucceeded || got.ReuseOf == nil || *got.ReuseOf != orig.ID || len(got.Outputs) != 1 ||
			got.DatasetDigests["data"] != digestN(1) || got.Timestamps.Finished == nil || got.Node != "" || *got.ExitCode != 0 {
			t.Fatalf("reused job: %+v %v", got, err)
		}
		// Nothing is left for a node to claim.
		if a, _ := s.ClaimJobs(ctx, "n1", 4, t0); len(a) != 0 {
			t.Fatalf("a reused job was claimed: %+v", a)
		}
	})
}

func TestVerdictLandsWithTheFinalState(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		orig := gef.NewID()
		j := gef.Job{ID: gef.NewID(), Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest, Owner: "u1",
			Inputs: map[string]string{"data": "alpha"}, Params: map[string]any{}, Argv: []string{"/x"},
			Timestamps: gef.Timestamps{Queued: t0}, RerunOf: &orig}
		if err := s.CreateJobWith(ctx, j, gef.Assignment{ImageDigest: svc.Digest}, JobExtra{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		v := gef.VerdictDiffers
		extra := ReportExtra{Verdict: &v, Differences: []gef.Difference{{Path: "o/a", Change: gef.ChangeRemoved}}}
		// A report that does not end the job records no verdict.
		if _, _, err := s.ReportJobWith(ctx, "n1", j.ID, gef.JobReport{State: gef.JobRunning, Attempt: 1, At: t0}, extra); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Job(ctx, j.ID); got.Verdict != nil {
			t.Fatalf("verdict before the end: %v", *got.Verdict)
		}
		// A report from a node that does not hold the job records nothing.
		code := 0
		done := gef.JobReport{State: gef.JobSucceeded, Attempt: 1, At: t0, ExitCode: &code}
		if _, _, err := s.ReportJobWith(ctx, "n2", j.ID, done, extra); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("report from another node: %v", err)
		}
		got, applied, err := s.ReportJobWith(ctx, "n1", j.ID, done, extra)
		if err != nil || !applied || got.State != gef.JobSucceeded || got.Verdict == nil || *got.Verdict != gef.VerdictDiffers ||
			len(got.Differences) != 1 || got.Differences[0].Change != gef.ChangeRemoved {
			t.Fatalf("final report with a verdict: %+v %v %v", got, applied, err)
		}
	})
}
