package e2e

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/internal/testimages"
)

// waitBuild follows a build's output to its end and returns the build and
// its output.
func (s *stack) waitBuild(b gef.Build) (gef.Build, string) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := s.admin.FollowBuildLogs(ctx, b.ID, &out); err != nil {
		s.t.Fatalf("follow build %s: %v", b.ID, err)
	}
	b, err := s.admin.WaitBuild(ctx, b.ID, nil)
	if err != nil {
		s.t.Fatalf("wait for build %s: %v", b.ID, err)
	}
	return b, out.String()
}

// TestPublishByBuild builds the checksum example from its Dockerfile on a
// node, then a new version of it from a small spec, runs both, and shows
// that an identical request reuses the earlier build and that failures end
// the build with their reason.
func TestPublishByBuild(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	node := nodeName("site-a")
	s.node(node, map[string]string{"d": dataset(t, map[string]string{"a.txt": "alpha\n", "b.txt": "beta\n"})})
	checksumContext, err := testimages.Checksum.Context(ctx)
	if err != nil {
		t.Fatal(err)
	}

	b, reused, err := s.admin.SubmitBuildContext(ctx, bytes.NewReader(checksumContext))
	if err != nil || reused || b.State != gef.BuildQueued || b.Kind != gef.BuildDockerfile || !strings.HasPrefix(b.Hash, "dockerfile:sha256:") {
		t.Fatalf("submit: %+v reused %v, %v", b, reused, err)
	}
	b, logs := s.waitBuild(b)
	if b.State != gef.BuildDone || b.Service != "checksum" || b.Version != "1.0.0" || b.Node != node ||
		b.Timestamps.Building == nil || b.Timestamps.Publishing == nil || b.Timestamps.Finished == nil {
		t.Fatalf("build ended %+v\n%s", b, logs)
	}
	for _, want := range []string{"gef: building on node " + node, "Step 1/", "gef: built image " + b.ImageDigest, "uploaded"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("build output lacks %q:\n%s", want, logs)
		}
	}
	if stored, err := s.admin.BuildLogs(ctx, b.ID); err != nil || string(stored) != logs {
		t.Fatalf("stored build output differs from the followed one: %v\n%s", err, stored)
	}
	svc, err := s.admin.Service(ctx, "checksum", "1.0.0")
	if err != nil || svc.Digest != b.ImageDigest || svc.Title != "Checksum" {
		t.Fatalf("published by the build: %+v, %v", svc, err)
	}
	if blob := s.blob(b.ImageDigest); len(blob) == 0 {
		t.Fatal("the built image's tarball is not stored")
	}
	j := s.run(s.admin, gef.JobRequest{Service: "checksum", Dataset: "d", Params: map[string]any{"algorithm": "md5"}})
	if j.State != gef.JobSucceeded || j.ImageDigest != b.ImageDigest {
		t.Fatalf("job on the built service: %s %s", j.State, j.Reason)
	}

	// The same context again: the earlier build, at once.
	again, reused, err := s.admin.SubmitBuildContext(ctx, bytes.NewReader(checksumContext))
	if err != nil || !reused || again.ID != b.ID || again.State != gef.BuildDone {
		t.Fatalf("resubmitted context: %+v reused %v, %v", again, reused, err)
	}

	t.Run("from a spec", func(t *testing.T) {
		spec := gef.BuildSpec{
			Base:  "checksum:1.0.0",
			Files: map[string]string{"/usr/share/gef/NOTE.txt": "built from a spec\n"},
			Labels: map[string]string{"eudat.gef.service.version": "1.0.1", "org.opencontainers.image.revision": "spec $HOME \"quoted\"",
				"eudat.gef.service.param.1.default": "sha1"},
		}
		b, reused, err := s.admin.SubmitBuild(ctx, spec)
		if err != nil || reused || b.Kind != gef.BuildFromSpec || b.Spec.Base != svc.Digest {
			t.Fatalf("submit spec: %+v reused %v, %v", b, reused, err)
		}
		b, logs := s.waitBuild(b)
		if b.State != gef.BuildDone || b.Service != "checksum" || b.Version != "1.0.1" || b.ImageDigest == svc.Digest {
			t.Fatalf("spec build ended %+v\n%s", b, logs)
		}
		got, err := s.admin.Service(ctx, "checksum", "1.0.1")
		if err != nil || got.OCI.Revision != `spec $HOME "quoted"` || got.Params[0].Default != "sha1" {
			t.Fatalf("service built from the spec: %+v, %v", got, err)
		}
		j := s.run(s.admin, gef.JobRequest{Service: "checksum", Version: "1.0.1", Dataset: "d"})
		if j.State != gef.JobSucceeded || !strings.Contains(strings.Join(j.Argv, " "), "--algorithm sha1") {
			t.Fatalf("job on the spec-built service: %s %s %q", j.State, j.Reason, j.Argv)
		}
		again, reused, err := s.admin.SubmitBuild(ctx, spec)
		if err != nil || !reused || again.ID != b.ID {
			t.Fatalf("resubmitted spec: %+v reused %v, %v", again, reused, err)
		}
	})

	t.Run("a base the node lacks is fetched", func(t *testing.T) {
		base := s.freshImage(b.ImageDigest, map[string]string{"eudat.gef.service.version": "2.0.0"})
		s.publishTarball(base)
		s.removeImage(base)
		df := "FROM " + base + "\nLABEL eudat.gef.service.version=2.0.1\n"
		built, _, err := s.admin.SubmitBuildContext(ctx, bytes.NewReader(contextTar(t, map[string]string{"Dockerfile": df})))
		if err != nil {
			t.Fatal(err)
		}
		built, logs := s.waitBuild(built)
		if built.State != gef.BuildDone || built.Version != "2.0.1" || !strings.Contains(logs, "gef: fetching base image "+base) {
			t.Fatalf("build on a fetched base: %+v\n%s", built, logs)
		}
		t.Cleanup(func() { _ = s.rt.RemoveImage(context.Background(), built.ImageDigest) })
	})

	t.Run("refused before building", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			spec        gef.BuildSpec
			field, says string
		}{
			{"no base", gef.BuildSpec{}, "base", "is required"},
			{"unknown base", gef.BuildSpec{Base: "nothing"}, "base", `no service "nothing" is published`},
			{"unknown base version", gef.BuildSpec{Base: "checksum:9"}, "base", `service "checksum" has no version "9"`},
			{"base not on any node", gef.BuildSpec{Base: "sha256:" + strings.Repeat("ab", 32)}, "base", "neither published nor on any node"},
			{"bad label", gef.BuildSpec{Base: "checksum:1.0.0", Labels: map[string]string{"eudat.gef.service.version": "1.0.9",
				"eudat.gef.service.output.1.path": "relative"}}, "eudat.gef.service.output.1.path", "absolute"},
			{"bad package", gef.BuildSpec{Base: "checksum:1.0.0", Apt: []string{"cdo; rm -rf /"}}, "apt", "not a package name"},
			{"relative file", gef.BuildSpec{Base: "checksum:1.0.0", Files: map[string]string{"etc/x": "y"}}, "files.etc/x", "absolute"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := s.admin.SubmitBuild(ctx, tc.spec)
				wantInvalid(t, err, tc.field, tc.says)
			})
		}
		_, _, err := s.admin.SubmitBuild(ctx, gef.BuildSpec{Base: "checksum:1.0.0"})
		if !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("a spec that would rebind checksum 1.0.0: %v, want 409", err)
		}
	})

	t.Run("failures end the build with their reason", func(t *testing.T) {
		for _, tc := range []struct{ name, dockerfile, says string }{
			{"bad label", "FROM " + svc.Digest + "\nLABEL eudat.gef.service.version=1.0.2 eudat.gef.service.input.1.path=data\n",
				"eudat.gef.service.input.1.path"},
			{"taken version", "FROM " + svc.Digest + "\nLABEL eudat.gef.test.nonce=" + nonce() + "\n", "already bound to image " + svc.Digest},
			{"the builder fails", "FROM " + svc.Digest + "\nCOPY missing /missing\n", "missing"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, _, err := s.admin.SubmitBuildContext(ctx, bytes.NewReader(contextTar(t, map[string]string{"Dockerfile": tc.dockerfile})))
				if err != nil {
					t.Fatal(err)
				}
				b, logs := s.waitBuild(b)
				if b.State != gef.BuildFailed || !strings.Contains(b.Reason, tc.says) {
					t.Fatalf("build ended %s: %q; want failed saying %q\n%s", b.State, b.Reason, tc.says, logs)
				}
			})
		}
	})

	t.Run("builds are the owner's", func(t *testing.T) {
		if _, err := s.admin.CreateUser(ctx, "maint", gef.RoleMaintainer, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := s.admin.CreateToken(ctx, "maint", "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		m := client.New(s.url, tok.Secret)
		if _, err := m.Build(ctx, b.ID); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("another maintainer's view of the admin's build: %v", err)
		}
		page, err := m.Builds(ctx, client.BuildFilter{})
		if err != nil || len(page.Items) != 0 {
			t.Fatalf("another maintainer's build list: %+v %v", page, err)
		}
		all, err := s.admin.Builds(ctx, client.BuildFilter{})
		if err != nil || len(all.Items) < 5 {
			t.Fatalf("the admin's build list: %d builds, %v", len(all.Items), err)
		}
	})
}
