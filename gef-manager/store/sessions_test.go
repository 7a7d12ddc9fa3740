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

func newSession(t testing.TB, s *Store, svc gef.Service, owner, name string, inputs map[string]string) gef.Session {
	t.Helper()
	sess := gef.Session{ID: gef.NewID(), Name: name, Service: svc.Name, Version: svc.Version, ImageDigest: svc.Digest,
		Owner: owner, Access: gef.AccessUsers, Users: []string{"bob"}, Groups: []string{"lab"}, Inputs: inputs,
		Params: map[string]any{"title": "x"}, Argv: []string{"/srv", "--title", "x"}, Path: "/index.html",
		IdleTimeoutSeconds: 60, MaxLifetimeSeconds: 3600, Timestamps: gef.SessionTimestamps{Created: t0}}
	spec := gef.SessionAssignment{ImageDigest: svc.Digest, Argv: sess.Argv, Port: 8080,
		IdleTimeoutSeconds: 60, MaxLifetimeSeconds: 3600}
	for in, ds := range inputs {
		spec.Mounts = append(spec.Mounts, gef.Mount{Input: in, Dataset: ds, Path: "/" + in})
	}
	if err := s.CreateSession(context.Background(), sess, spec); err != nil {
		t.Fatal(err)
	}
	return sess
}

func TestSessionRecord(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		made := newSession(t, s, svc, "ada", "viewer", map[string]string{"data": "alpha"})
		got, err := s.Session(ctx, made.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != gef.SessionQueued || got.Name != "viewer" || got.Owner != "ada" || got.Access != gef.AccessUsers ||
			fmt.Sprint(got.Users) != "[bob]" || fmt.Sprint(got.Groups) != "[lab]" || got.Inputs["data"] != "alpha" || got.Params["title"] != "x" ||
			len(got.Argv) != 3 || got.Path != "/index.html" || got.IdleTimeoutSeconds != 60 || got.MaxLifetimeSeconds != 3600 ||
			!got.Timestamps.Created.Equal(t0) || got.Timestamps.Started != nil || got.ExpiresAt != nil || got.ExitCode != nil {
			t.Fatalf("session round trip: %+v", got)
		}
		if _, err := s.Session(ctx, gef.NewID()); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		unnamed := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		if got, _ := s.Session(ctx, unnamed.ID); got.Name != "" {
			t.Fatalf("unnamed session has name %q", got.Name)
		}
	})
}

func TestSessionNamesBelongToOneUser(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		in := map[string]string{"data": "alpha"}
		first := newSession(t, s, svc, "ada", "viewer", in)
		if owner, err := s.SessionNameOwner(ctx, "viewer"); err != nil || owner != "ada" {
			t.Fatalf("owner of viewer = %q, %v", owner, err)
		}
		other := gef.Session{ID: gef.NewID(), Name: "viewer", Service: svc.Name, Version: svc.Version, Owner: "eve",
			Access: gef.AccessOwner, Timestamps: gef.SessionTimestamps{Created: t0}}
		if err := s.CreateSession(ctx, other, gef.SessionAssignment{}); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("another user's name: %v, want ErrConflict", err)
		}
		if _, err := s.Session(ctx, other.ID); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("a refused session was stored: %v", err)
		}

		// The name points at the newest running session, else the newest
		// still starting, and at nothing once all have ended.
		if got, err := s.SessionByName(ctx, "viewer"); err != nil || got.ID != first.ID {
			t.Fatalf("by name (queued) = %s, %v; want %s", got.ID, err, first.ID)
		}
		if _, err := s.ClaimSessions(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReportSession(ctx, "n1", first.ID, gef.SessionReport{State: gef.SessionRunning, At: t0}); err != nil {
			t.Fatal(err)
		}
		second := newSession(t, s, svc, "ada", "viewer", in)
		if got, _ := s.SessionByName(ctx, "viewer"); got.ID != first.ID {
			t.Fatalf("by name while the second starts = %s; want the running %s", got.ID, first.ID)
		}
		s.ClaimSessions(ctx, "n1", 1, t0)
		s.ReportSession(ctx, "n1", second.ID, gef.SessionReport{State: gef.SessionRunning, At: t0})
		if got, _ := s.SessionByName(ctx, "viewer"); got.ID != second.ID {
			t.Fatalf("by name with both running = %s; want the newer %s", got.ID, second.ID)
		}
		for _, id := range []string{first.ID, second.ID} {
			s.StopSession(ctx, id, "stopped by ada", t0)
			s.ReportSession(ctx, "n1", id, gef.SessionReport{State: gef.SessionStopped, At: t0})
		}
		if _, err := s.SessionByName(ctx, "viewer"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("by name after stop: %v, want ErrNotFound", err)
		}
		third := newSession(t, s, svc, "ada", "viewer", in)
		if got, _ := s.SessionByName(ctx, "viewer"); got.ID != third.ID {
			t.Fatalf("by name after a restart = %s; want %s", got.ID, third.ID)
		}
	})
}

func TestSessionLife(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"beta"}})
		sa := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		sb := newSession(t, s, svc, "ada", "", map[string]string{"data": "beta"})

		// Sessions go where their data is, like jobs.
		got, err := s.ClaimSessions(ctx, "n2", 5, t0)
		if err != nil || len(got) != 1 || got[0].SessionID != sb.ID || got[0].Port != 8080 || got[0].Mounts[0].Dataset != "beta" {
			t.Fatalf("n2 claimed %+v, %v; want only %s", got, err, sb.ID)
		}
		if err := s.SetNodeState(ctx, "n1", gef.NodeDraining); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ClaimSessions(ctx, "n1", 5, t0); len(got) != 0 {
			t.Fatalf("draining n1 claimed %+v", got)
		}
		s.SetNodeState(ctx, "n1", gef.NodeReady)
		if got, _ := s.ClaimSessions(ctx, "n1", 5, t0); len(got) != 1 || got[0].SessionID != sa.ID {
			t.Fatalf("n1 claimed %+v", got)
		}
		cur, _ := s.Session(ctx, sa.ID)
		if cur.State != gef.SessionStarting || cur.Node != "n1" || cur.Timestamps.Assigned == nil {
			t.Fatalf("claimed session: %+v", cur)
		}

		report := func(node, id string, r gef.SessionReport) (gef.Session, bool, error) {
			if r.At.IsZero() {
				r.At = t0.Add(time.Second)
			}
			return s.ReportSession(ctx, node, id, r)
		}
		if _, _, err := report("n2", sa.ID, gef.SessionReport{State: gef.SessionRunning}); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("report from another node: %v", err)
		}
		if _, _, err := report("n1", sa.ID, gef.SessionReport{State: gef.SessionStopping}); !errors.Is(err, gef.ErrInvalid) {
			t.Fatalf("report of stopping: %v", err)
		}
		cur, applied, err := report("n1", sa.ID, gef.SessionReport{State: gef.SessionRunning})
		if err != nil || !applied || cur.State != gef.SessionRunning || cur.Timestamps.Started == nil ||
			!cur.ExpiresAt.Equal(t0.Add(time.Second+time.Hour)) {
			t.Fatalf("running: %+v %v %v", cur, applied, err)
		}
		if _, applied, _ := report("n1", sa.ID, gef.SessionReport{State: gef.SessionRunning}); applied {
			t.Fatal("a repeated report was applied twice")
		}

		// Activity only moves forward.
		later, earlier := t0.Add(time.Minute), t0.Add(30*time.Second)
		if err := s.TouchSessions(ctx, "n1", []gef.NodeSession{{ID: sa.ID, LastActive: later}}); err != nil {
			t.Fatal(err)
		}
		s.TouchSessions(ctx, "n1", []gef.NodeSession{{ID: sa.ID, LastActive: earlier}, {ID: sb.ID, LastActive: later}})
		cur, _ = s.Session(ctx, sa.ID)
		if cur.Timestamps.LastActive == nil || !cur.Timestamps.LastActive.Equal(later) {
			t.Fatalf("last active = %v, want %v", cur.Timestamps.LastActive, later)
		}
		if other, _ := s.Session(ctx, sb.ID); other.Timestamps.LastActive != nil {
			t.Fatal("n1 touched a session of n2")
		}

		active, stop, err := s.NodeSessions(ctx, "n1")
		if err != nil || fmt.Sprint(active) != fmt.Sprint([]string{sa.ID}) || len(stop) != 0 {
			t.Fatalf("node sessions: %v %v %v", active, stop, err)
		}
		cur, err = s.StopSession(ctx, sa.ID, "stopped by ada", t0.Add(time.Hour))
		if err != nil || cur.State != gef.SessionStopping || !cur.StopRequested || cur.Reason != "stopped by ada" {
			t.Fatalf("stop running: %+v %v", cur, err)
		}
		if again, err := s.StopSession(ctx, sa.ID, "stopped by bob", t0); err != nil || again.Reason != "stopped by ada" {
			t.Fatalf("stop twice: %+v %v", again, err)
		}
		if _, stop, _ := s.NodeSessions(ctx, "n1"); fmt.Sprint(stop) != fmt.Sprint([]string{sa.ID}) {
			t.Fatalf("stops for n1: %v", stop)
		}
		code := 143
		lastTraffic := t0.Add(90 * time.Minute)
		cur, applied, err = report("n1", sa.ID, gef.SessionReport{State: gef.SessionStopped, ExitCode: &code, Reason: "exited",
			At: t0.Add(2 * time.Hour), LastActive: lastTraffic})
		if err != nil || !applied || cur.State != gef.SessionStopped || *cur.ExitCode != 143 || cur.Reason != "stopped by ada" ||
			!cur.Timestamps.Ended.Equal(t0.Add(2*time.Hour)) || !cur.Timestamps.LastActive.Equal(lastTraffic) {
			t.Fatalf("stopped: %+v %v %v", cur, applied, err)
		}
		if _, err := s.StopSession(ctx, sa.ID, "", t0); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("stop an ended session: %v", err)
		}

		// A queued session stops at once.
		q := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		cur, err = s.StopSession(ctx, q.ID, "stopped by ada", t0)
		if err != nil || cur.State != gef.SessionStopped || cur.Timestamps.Ended == nil {
			t.Fatalf("stop queued: %+v %v", cur, err)
		}
		if _, err := s.StopSession(ctx, gef.NewID(), "", t0); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("stop unknown: %v", err)
		}
	})
}

func TestLostSessionsEnd(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}, "n2": {"beta"}})
		lost := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		stopping := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		s.ClaimSessions(ctx, "n1", 5, t0)
		s.StopSession(ctx, stopping.ID, "stopped by ada", t0)
		ended, err := s.EndLostSessions(ctx, "n1", []string{lost.ID, stopping.ID}, "node n1 no longer runs it", t0)
		if err != nil || len(ended) != 2 {
			t.Fatalf("ended %v, %v", ended, err)
		}
		if got, _ := s.Session(ctx, lost.ID); got.State != gef.SessionFailed || got.Reason != "node n1 no longer runs it" {
			t.Fatalf("lost: %+v", got)
		}
		if got, _ := s.Session(ctx, stopping.ID); got.State != gef.SessionStopped || got.Reason != "stopped by ada" {
			t.Fatalf("lost while stopping: %+v", got)
		}

		// The sessions of a node that went silent end with it.
		onDown := newSession(t, s, svc, "ada", "", map[string]string{"data": "beta"})
		s.ClaimSessions(ctx, "n2", 5, t0)
		if err := s.SetNodeState(ctx, "n2", gef.NodeDown); err != nil {
			t.Fatal(err)
		}
		ended, err = s.EndSessionsOfDownNodes(ctx, t0)
		if err != nil || len(ended) != 1 || ended[0] != onDown.ID {
			t.Fatalf("ended on down nodes: %v, %v", ended, err)
		}
		if got, _ := s.Session(ctx, onDown.ID); got.State != gef.SessionFailed || got.Reason != "node n2 stopped responding; the session is lost" {
			t.Fatalf("on a down node: %+v", got)
		}
	})
}

func TestOverdueSessionsAreStopped(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		sess := newSession(t, s, svc, "ada", "", map[string]string{"data": "alpha"})
		s.ClaimSessions(ctx, "n1", 1, t0)
		s.ReportSession(ctx, "n1", sess.ID, gef.SessionReport{State: gef.SessionRunning, At: t0})
		if nodes, err := s.StopOverdueSessions(ctx, t0.Add(time.Hour+30*time.Second), time.Minute); err != nil || len(nodes) != 0 {
			t.Fatalf("within slack: %v %v", nodes, err)
		}
		nodes, err := s.StopOverdueSessions(ctx, t0.Add(time.Hour+2*time.Minute), time.Minute)
		if err != nil || fmt.Sprint(nodes) != "[n1]" {
			t.Fatalf("overdue: %v %v", nodes, err)
		}
		if got, _ := s.Session(ctx, sess.ID); got.State != gef.SessionStopping || !got.StopRequested {
			t.Fatalf("overdue session: %+v", got)
		}
	})
}

func TestSessionClaimIsAtomic(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		nodes := map[string][]string{}
		for i := range 4 {
			nodes[fmt.Sprintf("n%d", i)] = []string{"shared"}
		}
		svc := fixture(t, s, nodes)
		const total = 60
		for range total {
			newSession(t, s, svc, "ada", "", map[string]string{"data": "shared"})
		}
		var (
			mu   sync.Mutex
			seen = map[string]int{}
			wg   sync.WaitGroup
		)
		for node := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := s.ClaimSessions(ctx, node, 2, t0)
					if err != nil || len(got) == 0 {
						return
					}
					mu.Lock()
					for _, a := range got {
						seen[a.SessionID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for id, n := range seen {
			if n != 1 {
				t.Errorf("session %s claimed %d times", id, n)
			}
		}
		if len(seen) != total {
			t.Fatalf("claimed %d sessions, want %d", len(seen), total)
		}
	})
}

func TestListSessions(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"alpha"}})
		for i := range 5 {
			owner := "ada"
			if i%2 == 1 {
				owner = "bob"
			}
			newSession(t, s, svc, owner, "", map[string]string{"data": "alpha"})
		}
		page, err := s.Sessions(ctx, gef.SessionFilter{Owner: "ada", Limit: 2})
		if err != nil || len(page.Items) != 2 || page.NextPageToken == "" || page.Items[0].ID < page.Items[1].ID {
			t.Fatalf("first page: %+v %v", page, err)
		}
		rest, err := s.Sessions(ctx, gef.SessionFilter{Owner: "ada", PageToken: page.NextPageToken})
		if err != nil || len(rest.Items) != 1 || rest.NextPageToken != "" || rest.Items[0].Inputs["data"] != "alpha" {
			t.Fatalf("second page: %+v %v", rest, err)
		}
		if none, _ := s.Sessions(ctx, gef.SessionFilter{State: gef.SessionRunning}); len(none.Items) != 0 || none.Items == nil {
			t.Fatalf("state filter: %+v", none)
		}
	})
}
