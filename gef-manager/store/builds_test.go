package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
)

func newBuild(t testing.TB, s *Store, owner, hash string, spec *gef.BuildSpec, needs string) gef.Build {
	t.Helper()
	b := gef.Build{ID: gef.NewID(), State: gef.BuildQueued, Kind: gef.BuildDockerfile, Hash: hash, Owner: owner,
		Timestamps: gef.BuildTimestamps{Queued: t0}}
	if spec != nil {
		b.Kind, b.Spec = gef.BuildFromSpec, spec
	}
	if err := s.CreateBuild(context.Background(), NewBuild{Build: b, BaseImage: needs, NeedsImage: needs}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildLifecycle(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		fixture(t, s, map[string][]string{"n1": {"d1"}, "n2": nil})
		spec := &gef.BuildSpec{Base: "sha256:" + fmt.Sprintf("%064d", 1), Apt: []string{"cdo"},
			Files: map[string]string{"/etc/x": "y"}, Labels: map[string]string{"a": "b"}}
		b1 := newBuild(t, s, "maint", "sha256:h1", spec, "")
		b2 := newBuild(t, s, "other", "sha256:h2", nil, "")

		got, err := s.Build(ctx, b1.ID)
		if err != nil || got.State != gef.BuildQueued || got.Kind != gef.BuildFromSpec || got.Spec == nil ||
			got.Spec.Files["/etc/x"] != "y" || got.Spec.Apt[0] != "cdo" || !got.Timestamps.Queued.Equal(t0) || got.Node != "" {
			t.Fatalf("Build round trip = %+v, %v", got, err)
		}
		if _, err := s.Build(ctx, gef.NewID()); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("unknown build: %v", err)
		}
		page, err := s.Builds(ctx, BuildFilter{Owner: "maint"})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != b1.ID {
			t.Fatalf("Builds(owner) = %+v, %v", page, err)
		}
		page, err = s.Builds(ctx, BuildFilter{Limit: 1})
		if err != nil || len(page.Items) != 1 || page.Items[0].ID != b2.ID || page.NextPageToken != b2.ID {
			t.Fatalf("Builds(limit 1) = %+v, %v; want the newest first with a page token", page, err)
		}

		// Oldest first, at most n.
		at := t0.Add(time.Minute)
		claimed, err := s.ClaimBuilds(ctx, "n1", 1, at)
		if err != nil || len(claimed) != 1 || claimed[0].ID != b1.ID || claimed[0].State != gef.BuildBuilding ||
			claimed[0].Node != "n1" || claimed[0].Timestamps.Building == nil || !claimed[0].Timestamps.Building.Equal(at) {
			t.Fatalf("ClaimBuilds = %+v, %v", claimed, err)
		}
		// A draining node takes nothing.
		if err := s.SetNodeState(ctx, "n2", gef.NodeDraining); err != nil {
			t.Fatal(err)
		}
		if c, err := s.ClaimBuilds(ctx, "n2", 5, at); err != nil || len(c) != 0 {
			t.Fatalf("a draining node claimed %+v, %v", c, err)
		}
		if err := s.SetNodeState(ctx, "n2", gef.NodeReady); err != nil {
			t.Fatal(err)
		}
		if c, err := s.ClaimBuilds(ctx, "n2", 5, at); err != nil || len(c) != 1 || c[0].ID != b2.ID {
			t.Fatalf("n2 claimed %+v, %v", c, err)
		}
		if active, err := s.ActiveBuilds(ctx, "n1"); err != nil || !slices.Equal(active, []string{b1.ID}) {
			t.Fatalf("ActiveBuilds(n1) = %v, %v", active, err)
		}

		// Only the node holding a build may publish it.
		if _, err := s.StartPublishing(ctx, "n2", b1.ID, at); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("StartPublishing by another node: %v", err)
		}
		pub, err := s.StartPublishing(ctx, "n1", b1.ID, at.Add(time.Second))
		if err != nil || pub.State != gef.BuildPublishing || pub.Timestamps.Publishing == nil {
			t.Fatalf("StartPublishing = %+v, %v", pub, err)
		}
		if again, err := s.StartPublishing(ctx, "n1", b1.ID, at.Add(time.Hour)); err != nil || !again.Timestamps.Publishing.Equal(*pub.Timestamps.Publishing) {
			t.Fatalf("StartPublishing again = %+v, %v; want the first time kept", again, err)
		}
		done := BuildResult{State: gef.BuildDone, ImageDigest: "sha256:" + fmt.Sprintf("%064d", 7), Service: "svc", Version: "1", At: at.Add(time.Minute)}
		if _, _, err := s.FinishBuild(ctx, "n2", b1.ID, done); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("FinishBuild by another node: %v", err)
		}
		fin, applied, err := s.FinishBuild(ctx, "n1", b1.ID, done)
		if err != nil || !applied || fin.State != gef.BuildDone || fin.Service != "svc" || fin.ImageDigest != done.ImageDigest || fin.Timestamps.Finished == nil {
			t.Fatalf("FinishBuild = %+v, %v, %v", fin, applied, err)
		}
		fin, applied, err = s.FinishBuild(ctx, "", b1.ID, BuildResult{State: gef.BuildFailed, Reason: "late", At: at})
		if err != nil || applied || fin.State != gef.BuildDone {
			t.Fatalf("a second FinishBuild changed the build: %+v, %v, %v", fin, applied, err)
		}
		if _, err := s.StartPublishing(ctx, "n1", b1.ID, at); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("StartPublishing after the end: %v", err)
		}
		if _, _, err := s.FinishBuild(ctx, "", b2.ID, BuildResult{State: gef.BuildPublishing}); !errors.Is(err, gef.ErrInvalid) {
			t.Fatalf("FinishBuild to a non-final state: %v", err)
		}

		// The newest successful build of a hash is found; failed ones are not.
		if _, err := s.DoneBuildByHash(ctx, "sha256:h2"); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("DoneBuildByHash of a running build: %v", err)
		}
		if hit, err := s.DoneBuildByHash(ctx, "sha256:h1"); err != nil || hit.ID != b1.ID {
			t.Fatalf("DoneBuildByHash = %+v, %v", hit, err)
		}
		b3 := newBuild(t, s, "maint", "sha256:h1", nil, "")
		if _, _, err := s.FinishBuild(ctx, "", b3.ID, BuildResult{State: gef.BuildFailed, Reason: "x", At: at}); err != nil {
			t.Fatal(err)
		}
		if hit, err := s.DoneBuildByHash(ctx, "sha256:h1"); err != nil || hit.ID != b1.ID {
			t.Fatalf("DoneBuildByHash after a failed rebuild = %+v, %v", hit, err)
		}

		// A build the node no longer runs is failed.
		ended, err := s.EndLostBuilds(ctx, "n2", []string{b2.ID, b1.ID}, "lost", at)
		if err != nil || !slices.Equal(ended, []string{b2.ID}) {
			t.Fatalf("EndLostBuilds = %v, %v", ended, err)
		}
		if got, _ := s.Build(ctx, b2.ID); got.State != gef.BuildFailed || got.Reason != "lost" {
			t.Fatalf("lost build = %+v", got)
		}
	})
}

func TestBuildsNeedingAnImage(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		img := "sha256:" + fmt.Sprintf("%064d", 42)
		for _, reg := range []gef.NodeRegistration{
			{Name: "with", Capacity: 2, Images: []gef.NodeImage{{ID: img, Labels: map[string]string{}}}},
			{Name: "without", Capacity: 2},
		} {
			if err := s.RegisterNode(ctx, reg, t0); err != nil {
				t.Fatal(err)
			}
		}
		needs := newBuild(t, s, "u", "sha256:a", nil, img)
		anywhere := newBuild(t, s, "u", "sha256:b", nil, "")
		// The node without the image skips the older build that needs it.
		c, err := s.ClaimBuilds(ctx, "without", 5, t0)
		if err != nil || len(c) != 1 || c[0].ID != anywhere.ID {
			t.Fatalf("node without the image claimed %+v, %v", c, err)
		}
		c, err = s.ClaimBuilds(ctx, "with", 5, t0)
		if err != nil || len(c) != 1 || c[0].ID != needs.ID || c[0].BaseImage != img {
			t.Fatalf("node with the image claimed %+v, %v", c, err)
		}
	})
}

func TestClaimBuildsConcurrently(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		nodes := map[string][]string{}
		for i := range 4 {
			nodes[fmt.Sprintf("n%d", i)] = nil
		}
		fixture(t, s, nodes)
		const n = 20
		for i := range n {
			newBuild(t, s, "u", fmt.Sprintf("sha256:%d", i), nil, "")
		}
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		for node := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := s.ClaimBuilds(ctx, node, 2, t0)
					if err != nil {
						t.Error(err)
						return
					}
					if len(c) == 0 {
						return
					}
					mu.Lock()
					for _, b := range c {
						if prev, ok := seen[b.ID]; ok {
							t.Errorf("build %s claimed by %s and %s", b.ID, prev, node)
						}
						seen[b.ID] = node
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("%d builds claimed, want %d", len(seen), n)
		}
	})
}

func TestBuildsOfDownNodes(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		fixture(t, s, map[string][]string{"n1": nil})
		b := newBuild(t, s, "u", "sha256:x", nil, "")
		if _, err := s.ClaimBuilds(ctx, "n1", 1, t0); err != nil {
			t.Fatal(err)
		}
		if ended, err := s.EndBuildsOfDownNodes(ctx, t0); err != nil || len(ended) != 0 {
			t.Fatalf("builds of a live node ended: %v, %v", ended, err)
		}
		if _, err := s.MarkSilentNodes(ctx, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		ended, err := s.EndBuildsOfDownNodes(ctx, t0.Add(time.Hour))
		if err != nil || !slices.Equal(ended, []string{b.ID}) {
			t.Fatalf("EndBuildsOfDownNodes = %v, %v", ended, err)
		}
		got, _ := s.Build(ctx, b.ID)
		if got.State != gef.BuildFailed || got.Reason != "node n1 stopped responding; the build is lost" || got.Timestamps.Finished == nil {
			t.Fatalf("build of a down node = %+v", got)
		}
	})
}

func TestDeleteService(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		svc := fixture(t, s, map[string][]string{"n1": {"d1"}})
		unused := svc
		unused.Version = "2.0"
		if _, _, err := s.PublishService(ctx, unused); err != nil {
			t.Fatal(err)
		}
		newJob(t, s, svc, map[string]string{"data": "d1"})

		if list, err := s.ServicesWithDigest(ctx, svc.Digest); err != nil || len(list) != 2 {
			t.Fatalf("ServicesWithDigest = %+v, %v", list, err)
		}
		err := s.DeleteService(ctx, svc.Name, svc.Version)
		if !errors.Is(err, gef.ErrConflict) || !strings.Contains(err.Error(), "referenced by 1 jobs") {
			t.Fatalf("deleting a version a job references: %v, want a conflict", err)
		}
		if err := s.DeleteService(ctx, unused.Name, unused.Version); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Service(ctx, unused.Name, unused.Version); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("deleted version still found: %v", err)
		}
		if err := s.DeleteService(ctx, unused.Name, unused.Version); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("deleting twice: %v", err)
		}
		if list, err := s.ServicesWithDigest(ctx, svc.Digest); err != nil || len(list) != 1 || list[0].Version != svc.Version {
			t.Fatalf("ServicesWithDigest after delete = %+v, %v", list, err)
		}
	})
}
