package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testimages"
)

// gefctl runs the gefctl binary against the stack as the admin and returns
// its combined output, failing the test if it fails.
func (s *stack) gefctl(args ...string) string {
	s.t.Helper()
	out, err := s.gefctlResult(args...)
	if err != nil {
		s.t.Fatalf("gefctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *stack) gefctlResult(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tok, err := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(s.t), "gefctl"), args...)
	cmd.Env = append(os.Environ(), "GEF_URL="+s.url, "GEF_TOKEN="+strings.TrimSpace(string(tok)))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGefctlCatalog drives the catalog with gefctl as a maintainer would:
// publish a tarball, build from a spec and follow it, list versions,
// deprecate and delete.
func TestGefctlCatalog(t *testing.T) {
	s := newStack(t)
	base := image(t, s.rt, testimages.TestService)
	s.node(nodeName("site-a"), map[string]string{"d": dataset(t, map[string]string{"x": "x"})})

	id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "5.0.0"})
	tarball := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(tarball, s.save(id), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := s.gefctl("publish", "--tarball", tarball); !strings.Contains(out, "published gef-test-service 5.0.0 ("+id+")") {
		t.Fatalf("gefctl publish --tarball:\n%s", out)
	}
	if out := s.gefctl("publish", "--tarball", tarball); !strings.Contains(out, "already published gef-test-service 5.0.0") {
		t.Fatalf("gefctl publish of the same tarball again:\n%s", out)
	}
	out, err := s.gefctlResult("publish", "--tarball", tarball, "--ref", "x")
	if err == nil || !strings.Contains(out, "exactly one") {
		t.Fatalf("gefctl publish with two sources: %v\n%s", err, out)
	}

	spec := gef.BuildSpec{Base: "gef-test-service:5.0.0", Labels: map[string]string{"eudat.gef.service.version": "5.1.0"},
		Files: map[string]string{"/etc/gef-test-note": "from gefctl\n"}}
	specFile := filepath.Join(t.TempDir(), "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(specFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out = s.gefctl("build", specFile, "--follow")
	for _, want := range []string{"queued", "Step 1/", ": done", "service gef-test-service 5.1.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("gefctl build --follow lacks %q:\n%s", want, out)
		}
	}
	if out := s.gefctl("build", specFile); !strings.Contains(out, "reusing build") {
		t.Fatalf("gefctl build of the same spec again:\n%s", out)
	}
	if out := s.gefctl("builds"); !strings.Contains(out, "done") || !strings.Contains(out, "gef-test-service 5.1.0") {
		t.Fatalf("gefctl builds:\n%s", out)
	}

	out = s.gefctl("versions", "gef-test-service")
	if !strings.Contains(out, "5.0.0") || !strings.Contains(out, "5.1.0") {
		t.Fatalf("gefctl versions:\n%s", out)
	}
	if out := s.gefctl("deprecate", "gef-test-service", "5.1.0"); !strings.Contains(out, "deprecated=true") {
		t.Fatalf("gefctl deprecate:\n%s", out)
	}
	if out := s.gefctl("versions", "gef-test-service"); !strings.Contains(out, "deprecated") {
		t.Fatalf("gefctl versions after deprecate:\n%s", out)
	}
	j := s.run(s.admin, gef.JobRequest{Service: "gef-test-service", Dataset: "d"})
	if j.Version != "5.0.0" {
		t.Fatalf("a new run after deprecating 5.1.0 got %s", j.Version)
	}
	out, err = s.gefctlResult("delete", "gef-test-service", "5.0.0")
	if err == nil || !strings.Contains(out, "409") {
		t.Fatalf("gefctl delete of a version a job ran: %v\n%s", err, out)
	}
	if out := s.gefctl("delete", "gef-test-service", "5.1.0"); !strings.Contains(out, "deleted gef-test-service 5.1.0") {
		t.Fatalf("gefctl delete:\n%s", out)
	}
}
