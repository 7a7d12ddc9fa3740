package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
)

// eachDB runs the store suite against both databases: one contract, two
// dialects.
func eachDB(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, d := range []Dialect{SQLite, Postgres} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, open(t, d))
		})
	}
}

func open(t testing.TB, d Dialect) *Store {
	t.Helper()
	var dsn string
	if d == Postgres {
		dsn = testenv.Postgres(t)
	} else {
		dsn = "sqlite:" + filepath.Join(t.TempDir(), "gef.db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)

// fixture registers nodes holding datasets and one service with one input.
func fixture(t testing.TB, s *Store, nodes map[string][]string) gef.Service {
	t.Helper()
	ctx := context.Background()
	for name, ds := range nodes {
		reg := gef.NodeRegistration{Name: name, Capacity: 4, EngineVersion: "20.10", EngineAPI: "1.41"}
		for _, d := range ds {
			reg.Datasets = append(reg.Datasets, gef.NodeDataset{Name: d, Size: 10, Files: 2})
		}
		if err := s.RegisterNode(ctx, reg, t0); err != nil {
			t.Fatal(err)
		}
	}
	svc := gef.Service{Name: "checksum", Title: "Checksum", Version: "1.0", Digest: "sha256:" + fmt.Sprintf("%064d", 1),
		Inputs: []gef.Input{{Name: "data", Path: "/data", Type: gef.InputURL}}, CreatedAt: t0}
	if _, _, err := s.PublishService(ctx, svc); err != nil {
		t.Fatal(err)
	}
	return svc
}

func newJob(t testing.TB, s *Store, svc gef.Service, inputs map[string]string) gef.Job {
	t.Helper()
	j := gef.Job{ID: gef.NewID(), Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest,
		Owner: "u1", Inputs: inputs, Params: map[string]any{"n": 1.0}, Argv: []string{"/bin/x", "--n", "1"},
		Timestamps: gef.Timestamps{Queued: t0}}
	spec := gef.Assignment{ImageDigest: svc.Digest, Argv: j.Argv}
	for in, ds := range inputs {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in, Dataset: ds, Path: "/" + in})
	}
	if err := s.CreateJob(context.Background(), j, spec); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestUsersAndTokens(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		u := gef.User{ID: gef.NewID(), Name: "ada", Role: gef.RoleUser, CreatedAt: t0}
		if err := s.CreateUser(ctx, u, "hash"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateUser(ctx, gef.User{ID: gef.NewID(), Name: "ada", Role: gef.RoleUser, CreatedAt: t0}, ""); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("duplicate name: got %v, want ErrConflict", err)
		}
		exp := t0.Add(time.Hour)
		tok := gef.Token{ID: gef.NewID(), UserID: u.ID, Name: "ci", CreatedAt: t0, ExpiresAt: &exp}
		if err := s.CreateToken(ctx, tok, "h1"); err != nil {
			t.Fatal(err)
		}
		got, gotUser, err := s.TokenByHash(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != tok.ID || !got.ExpiresAt.Equal(exp) || got.RevokedAt != nil || gotUser.Name != "ada" || gotUser.Role != gef.RoleUser {
			t.Fatalf("token round trip: %+v %+v", got, gotUser)
		}
		if _, _, err := s.TokenByHash(ctx, "nope"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown hash: got %v", err)
		}
		if err := s.RevokeToken(ctx, tok.ID, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeToken(ctx, tok.ID, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, _, _ = s.TokenByHash(ctx, "h1")
		if got.RevokedAt == nil || !got.RevokedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("revoked_at = %v, want the first revocation time", got.RevokedAt)
		}
		if err := s.RevokeToken(ctx, "missing", t0); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("revoke missing: %v", err)
		}
		toks, err := s.Tokens(ctx, u.ID)
		if err != nil || len(toks) != 1 {
			t.Fatalf("tokens: %v %v", toks, err)
		}
	})
}

func TestNodesAndDatasets(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		fixture(t, s, map[string][]string{"n1": {"alpha", "beta"}, "n2": {"beta"}})
		nodes, err := s.Nodes(ctx)
		if err != nil || len(nodes) != 2 {
			t.Fatalf("nodes: %v %v", nodes, err)
		}
		if nodes[0].Name != "n1" || len(nodes[0].Datasets) != 2 || nodes[0].State != gef.NodeReady || nodes[0].Capacity != 4 {
			t.Fatalf("n1 = %+v", nodes[0])
		}
		ds, err := s.Dataset(ctx, "beta")
		if err != nil || len(ds.Nodes) != 2 || ds.Files != 2 || ds.Size != 10 {
			t.Fatalf("dataset beta: %+v %v", ds, err)
		}
		if _, err := s.Dataset(ctx, "gamma"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown dataset: %v", err)
		}
		holding, err := s.NodesHolding(ctx, []string{"alpha", "beta"})
		if err != nil || len(holding) != 1 || holding[0] != "n1" {
			t.Fatalf("holding alpha+beta: %v %v", holding, err)
		}
		// Draining survives a reconnect; down does not.
		if err := s.SetNodeState(ctx, "n1", gef.NodeDraining); err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterNode(ctx, gef.NodeRegistration{Name: "n1", Capacity: 2}, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		n1, err := s.Node(ctx, "n1")
		if err != nil || n1.State != gef.NodeDraining || len(n1.Datasets) != 0 || n1.Capacity != 2 {
			t.Fatalf("n1 after re-register: %+v %v", n1, err)
		}
		if err := s.SetNodeState(ctx, "n2", gef.NodeDown); err != nil {
			t.Fatal(err)
		}
		if st, err := s.TouchNode(ctx, "n2", t0.Add(time.Minute)); err != nil || st != gef.NodeReady {
			t.Fatalf("touch down node: %v %v", st, err)
		}
		if _, err := s.TouchNode(ctx, "ghost", t0); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("touch unknown node: %v", err)
		}
	})
}

func TestPublishServiceIsImmutable(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, nil)
		again, created, err := s.PublishService(ctx, svc)
		if err != nil || created || again.Digest != svc.Digest {
			t.Fatalf("same digest again: created=%v err=%v", created, err)
		}
		other := svc
		other.Digest = "sha256:" + fmt.Sprintf("%064d", 2)
		if _, _, err := s.PublishService(ctx, other); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("other digest: got %v, want ErrConflict", err)
		}
		got, err := s.Service(ctx, "checksum", "1.0")
		if err != nil || got.Digest != svc.Digest || len(got.Inputs) != 1 || got.Title != "Checksum" {
			t.Fatalf("service: %+v %v", got, err)
		}
		if err := s.DeprecateService(ctx, "checksum", "1.0", true); err != nil {
			t.Fatal(err)
		}
		all, err := s.Services(ctx, "checksum")
		if err != nil || len(all) != 1 || !all[0].Deprecated {
			t.Fatalf("services: %+v %v", all, err)
		}
	})
}

func TestClaimPlacesJobsWhereTheDataIs(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"beta"}})
		ja := newJob(t, s, svc, map[string]string{"data": "alpha"})
		jb := newJob(t, s, svc, map[string]string{"data": "beta"})

		got, err := s.ClaimJobs(ctx, "n2", 10, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].JobID != jb.ID || got[0].Attempt != 1 || got[0].Mounts[0].Dataset != "beta" {
			t.Fatalf("n2 claimed %+v, want only %s", got, jb.ID)
		}
		// A job n2 cannot run does not block it, and stays for n1.
		if got, _ := s.ClaimJobs(ctx, "n2", 10, t0); len(got) != 0 {
			t.Fatalf("n2 claimed again: %+v", got)
		}
		// A draining node gets nothing.
		if err := s.SetNodeState(ctx, "n1", gef.NodeDraining); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ClaimJobs(ctx, "n1", 10, t0); len(got) != 0 {
			t.Fatalf("draining n1 claimed %+v", got)
		}
		if err := s.SetNodeState(ctx, "n1", gef.NodeReady); err != nil {
			t.Fatal(err)
		}
		got, err = s.ClaimJobs(ctx, "n1", 10, t0)
		if err != nil || len(got) != 1 || got[0].JobID != ja.ID {
			t.Fatalf("n1 claimed %+v %v", got, err)
		}
		j, _ := s.Job(ctx, ja.ID)
		if j.State != gef.JobAssigned || j.Node != "n1" || j.Timestamps.Assigned == nil {
			t.Fatalf("claimed job: %+v", j)
		}
		active, _ := s.ActiveJobs(ctx, "n1")
		if len(active) != 1 || active[0] != ja.ID {
			t.Fatalf("active: %v", active)
		}
	})
}

func TestClaimIsAtomicUnderConcurrency(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		nodes := map[string][]string{}
		for i := range 4 {
			nodes[fmt.Sprintf("n%d", i)] = []string{"shared"}
		}
		svc := fixture(t, s, nodes)
		const jobs = 200
		for range jobs {
			newJob(t, s, svc, map[string]string{"data": "shared"})
		}
		var (
			mu     sync.Mutex
			seen   = map[string]string{}
			wg     sync.WaitGroup
			errs   = make(chan error, 4)
			double []string
		)
		for node := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := s.ClaimJobs(ctx, node, 3, t0)
					if err != nil {
						errs <- err
						return
					}
					if len(got) == 0 {
						return
					}
					if len(got) > 3 {
						errs <- fmt.Errorf("asked for 3 jobs, claimed %d", len(got))
						return
					}
					mu.Lock()
					for _, a := range got {
						if prev, ok := seen[a.JobID]; ok {
							double = append(double, a.JobID+" by "+prev+" and "+node)
						}
						seen[a.JobID] = node
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(double) > 0 {
			t.Fatalf("claimed twice: %v", double)
		}
		if len(seen) != jobs {
			t.Fatalf("claimed %d jobs, want %d", len(seen), jobs)
		}
	})
}

func TestReportsAreIdempotentAndForwardOnly(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"alpha"}})
		j := newJob(t, s, svc, map[string]string{"data": "alpha"})
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		report := func(node string, r gef.JobReport) (gef.Job, bool, error) {
			if r.At.IsZero() {
				r.At = t0.Add(time.Second)
			}
			return s.ReportJob(ctx, node, j.ID, r)
		}
		if _, _, err := report("n2", gef.JobReport{State: gef.JobRunning, Attempt: 1}); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("report from another node: %v", err)
		}
		if _, _, err := report("n1", gef.JobReport{State: gef.JobRunning, Attempt: 7}); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("report of a stale attempt: %v", err)
		}
		got, applied, err := report("n1", gef.JobReport{State: gef.JobRunning, Attempt: 1, ImageDigest: svc.Digest})
		if err != nil || !applied || got.State != gef.JobRunning || got.Timestamps.Running == nil {
			t.Fatalf("running: %+v %v %v", got, applied, err)
		}
		if _, applied, _ := report("n1", gef.JobReport{State: gef.JobRunning, Attempt: 1}); applied {
			t.Fatal("a repeated report was applied twice")
		}
		if _, applied, _ := report("n1", gef.JobReport{State: gef.JobAssigned, Attempt: 1}); applied {
			t.Fatal("a backwards report was applied")
		}
		code := 0
		outs := []gef.OutputFile{{Name: "out", Path: "a/b.txt", Size: 3, SHA256: "abc"}, {Name: "out", Path: "c", Size: 0, SHA256: "def"}}
		done := gef.JobReport{State: gef.JobSucceeded, Attempt: 1, ExitCode: &code, Outputs: outs, At: t0.Add(time.Minute)}
		got, applied, err = report("n1", done)
		if err != nil || !applied || got.State != gef.JobSucceeded || *got.ExitCode != 0 || len(got.Outputs) != 2 {
			t.Fatalf("succeeded: %+v %v %v", got, applied, err)
		}
		if !got.Timestamps.Finished.Equal(t0.Add(time.Minute)) || got.Outputs[0].Path != "a/b.txt" {
			t.Fatalf("finished: %+v", got)
		}
		if _, applied, err := report("n1", done); err != nil || applied {
			t.Fatalf("duplicate final report: applied=%v err=%v", applied, err)
		}
		if got, _ := s.Job(ctx, j.ID); len(got.Outputs) != 2 {
			t.Fatalf("outputs after duplicate report: %d", len(got.Outputs))
		}
		// The head is the same record, without what is kept beside it.
		head, err := s.JobHead(ctx, j.ID)
		if err != nil || head.State != gef.JobSucceeded || head.Node != "n1" || head.Attempt != 1 ||
			!head.Timestamps.Finished.Equal(t0.Add(time.Minute)) || len(head.Outputs) != 0 {
			t.Fatalf("head: %+v %v", head, err)
		}
		if _, err := s.JobHead(ctx, "nosuchjob"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("head of no job: %v", err)
		}
		if _, _, err := report("n1", gef.JobReport{State: "bogus"}); !errors.Is(err, gef.ErrInvalid) {
			t.Fatalf("bogus state: %v", err)
		}
	})
}

func TestCancel(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		queued := newJob(t, s, svc, map[string]string{"data": "alpha"})
		got, err := s.CancelJob(ctx, queued.ID, "canceled by ada", t0)
		if err != nil || got.State != gef.JobCanceled || got.Timestamps.Finished == nil {
			t.Fatalf("cancel queued: %+v %v", got, err)
		}
		if _, err := s.CancelJob(ctx, queued.ID, "", t0); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("cancel twice: %v", err)
		}
		held := newJob(t, s, svc, map[string]string{"data": "alpha"})
		if _, err := s.ClaimJobs(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		got, err = s.CancelJob(ctx, held.ID, "canceled by ada", t0)
		if err != nil || got.State != gef.JobAssigned || !got.CancelRequested {
			t.Fatalf("cancel held: %+v %v", got, err)
		}
		pending, _ := s.PendingCancels(ctx, "n1")
		if len(pending) != 1 || pending[0] != held.ID {
			t.Fatalf("pending cancels: %v", pending)
		}
		if _, err := s.CancelJob(ctx, gef.NewID(), "", t0); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("cancel unknown: %v", err)
		}
	})
}

func TestListJobsFiltersAndPages(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha", "beta"}})
		var ids []string
		for i := range 7 {
			ds := "alpha"
			if i%2 == 1 {
				ds = "beta"
			}
			ids = append(ids, newJob(t, s, svc, map[string]string{"data": ds}).ID)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(ids)))
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			page, err := s.Jobs(ctx, gef.JobFilter{Limit: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range page.Items {
				got = append(got, j.ID)
				if j.Inputs["data"] == "" {
					t.Fatalf("job %s lost its inputs", j.ID)
				}
			}
			if page.NextPageToken == "" {
				if pages != 2 {
					t.Fatalf("%d pages, want 3", pages+1)
				}
				break
			}
			token = page.NextPageToken
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("pages gave %v, want %v", got, ids)
		}
		beta, err := s.Jobs(ctx, gef.JobFilter{Dataset: "beta"})
		if err != nil || len(beta.Items) != 3 {
			t.Fatalf("dataset filter: %d %v", len(beta.Items), err)
		}
		if _, err := s.ClaimJobs(ctx, "n1", 2, t0); err != nil {
			t.Fatal(err)
		}
		assigned, _ := s.Jobs(ctx, gef.JobFilter{State: gef.JobAssigned, Node: "n1", Service: "checksum", Owner: "u1"})
		if len(assigned.Items) != 2 {
			t.Fatalf("state+node filter: %d", len(assigned.Items))
		}
		none, _ := s.Jobs(ctx, gef.JobFilter{Owner: "someone-else"})
		if len(none.Items) != 0 || none.Items == nil {
			t.Fatalf("owner filter: %+v", none)
		}
	})
}

func TestExternalUsers(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		u := gef.User{ID: gef.NewID(), Name: "carol", Role: gef.RoleUser, CreatedAt: t0}
		if err := s.CreateExternalUser(ctx, u, "https://idp|123"); err != nil {
			t.Fatal(err)
		}
		got, err := s.UserByExternalID(ctx, "https://idp|123")
		if err != nil || got.ID != u.ID || got.Name != "carol" {
			t.Fatalf("by external id: %+v %v", got, err)
		}
		dup := gef.User{ID: gef.NewID(), Name: "carol2", Role: gef.RoleUser, CreatedAt: t0}
		if err := s.CreateExternalUser(ctx, dup, "https://idp|123"); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("a second user for one identity: %v", err)
		}
		if _, err := s.UserByExternalID(ctx, "https://idp|999"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown identity: %v", err)
		}
		// Local users have no external id, and several may coexist.
		for _, n := range []string{"l1", "l2"} {
			if err := s.CreateUser(ctx, gef.User{ID: gef.NewID(), Name: n, Role: gef.RoleUser, CreatedAt: t0}, ""); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestDatasetAccessAndGroups(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		fixture(t, s, map[string][]string{"n1": {"open", "closed"}})
		d, err := s.Dataset(ctx, "open")
		if err != nil || d.Access.Restricted || len(d.Access.Users) != 0 {
			t.Fatalf("a new dataset: %+v %v", d.Access, err)
		}
		want := gef.DatasetAccess{Restricted: true, Users: []string{"ada"}, Groups: []string{"lab"}}
		if err := s.SetDatasetAccess(ctx, "closed", want); err != nil {
			t.Fatal(err)
		}
		all, err := s.Datasets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got gef.DatasetAccess
		for _, x := range all {
			if x.Name == "closed" {
				got = x.Access
			}
		}
		if !got.Restricted || fmt.Sprint(got.Users) != "[ada]" || fmt.Sprint(got.Groups) != "[lab]" {
			t.Fatalf("access = %+v", got)
		}
		if err := s.SetDatasetAccess(ctx, "nowhere", want); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("access of an unknown dataset: %v", err)
		}
		// Re-registering the node keeps the access list.
		if err := s.RegisterNode(ctx, gef.NodeRegistration{Name: "n1", Capacity: 1,
			Datasets: []gef.NodeDataset{{Name: "closed"}}}, t0); err != nil {
			t.Fatal(err)
		}
		if d, _ := s.Dataset(ctx, "closed"); !d.Access.Restricted || len(d.Access.Users) != 1 {
			t.Fatalf("access after re-registration: %+v", d.Access)
		}

		if err := s.CreateGroup(ctx, "lab", t0); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateGroup(ctx, "lab", t0); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("duplicate group: %v", err)
		}
		for _, u := range []string{"bob", "carol"} {
			if err := s.SetGroupMember(ctx, "lab", u, true); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SetGroupMember(ctx, "lab", "carol", false); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroupMember(ctx, "nogroup", "bob", true); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("member of an unknown group: %v", err)
		}
		gs, err := s.UserGroups(ctx, "bob")
		if err != nil || fmt.Sprint(gs) != "[lab]" {
			t.Fatalf("bob's groups: %v %v", gs, err)
		}
		groups, _ := s.Groups(ctx)
		if len(groups) != 1 || fmt.Sprint(groups[0].Members) != "[bob]" {
			t.Fatalf("groups: %+v", groups)
		}
		if !got.Allows("ada", nil) || !got.Allows("bob", gs) || got.Allows("carol", nil) {
			t.Fatal("Allows disagrees with the access list")
		}
	})
}
