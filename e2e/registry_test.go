package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testenv"
	"github.com/eudat-gef/gef/internal/testimages"
)

// registry is a CNCF distribution registry (Debian's docker-registry)
// started for one test on loopback, with its storage in a temporary
// directory.
type registry struct {
	addr string
	proc *proc
}

func startRegistry(t *testing.T) *registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		testenv.Unavailable(t, "docker-registry (apt-get install docker-registry)", err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &registry{addr: addr, proc: start(t, "docker-registry", nil, bin, "serve", cfgFile)}
	eventually(t, 30*time.Second, "the registry answers", func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// push uploads a docker save tarball to the registry as repo:tag and
// returns the manifest's digest.
func (r *registry) push(t *testing.T, saved []byte, repo, tag string) string {
	t.Helper()
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(saved)), nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(r.addr + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return desc.Digest.String()
}

// TestPublishByReference publishes images from an OCI registry by tag and
// by digest: the manager resolves the reference, records the registry's
// manifest digest, and copies the image into the object store, so the
// node runs it with the registry gone.
func TestPublishByReference(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	reg := startRegistry(t)
	base := image(t, s.rt, testimages.TestService)
	s.node(nodeName("site-a"), map[string]string{"d": dataset(t, map[string]string{"x.txt": "x"})})

	byTag := s.freshImage(base, map[string]string{"eudat.gef.service.version": "4.0.0"})
	tagDigest := reg.push(t, s.save(byTag), "gef/testsvc", "4.0.0")
	byDigest := s.freshImage(base, map[string]string{"eudat.gef.service.version": "4.0.1"})
	pinned := reg.push(t, s.save(byDigest), "gef/testsvc", "moving")
	repo := reg.addr + "/gef/testsvc"

	svc, created, err := s.admin.PublishRef(ctx, repo+":4.0.0")
	if err != nil || !created {
		t.Fatalf("publish by tag: created %v, %v", created, err)
	}
	// The image ID survives the registry round trip: the config is the
	// same bytes, whatever the layers' compression.
	if svc.Digest != byTag || svc.Version != "4.0.0" || svc.RepoDigest != repo+"@"+tagDigest {
		t.Fatalf("published by tag: digest %s repo digest %s; want %s and %s@%s", svc.Digest, svc.RepoDigest, byTag, repo, tagDigest)
	}
	svc2, created, err := s.admin.PublishRef(ctx, repo+"@"+pinned)
	if err != nil || !created || svc2.Digest != byDigest || svc2.RepoDigest != repo+"@"+pinned || svc2.Version != "4.0.1" {
		t.Fatalf("publish by digest: created %v, %+v, %v", created, svc2, err)
	}
	if _, created, err := s.admin.PublishRef(ctx, repo+":4.0.0"); err != nil || created {
		t.Fatalf("publishing the same reference again: created %v, %v; want 200", created, err)
	}
	// The tag moves to another image; 4.0.0 stays bound to the first.
	reg.push(t, s.save(s.freshImage(base, map[string]string{"eudat.gef.service.version": "4.0.0"})), "gef/testsvc", "4.0.0")
	if _, _, err := s.admin.PublishRef(ctx, repo+":4.0.0"); !errors.Is(err, gef.ErrConflict) {
		t.Fatalf("publishing a moved tag: %v, want 409", err)
	}

	for _, tc := range []struct{ name, ref, says string }{
		{"no tag or digest", repo, "not a full image reference"},
		{"unknown tag", repo + ":9.9.9", "is not in its registry"},
		{"unknown repository", reg.addr + "/nothing/here:1", "is not in its registry"},
		{"unreachable registry", "127.0.0.1:1/gef/x:1", "could not be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.admin.PublishRef(ctx, tc.ref)
			wantInvalid(t, err, "image_ref", tc.says)
		})
	}

	// Nodes never need the registry: stop it and run both images on a
	// node that has neither.
	reg.proc.stop(syscall.SIGTERM, 10*time.Second)
	for _, v := range []gef.Service{svc, svc2} {
		s.removeImage(v.Digest)
		j := s.run(s.admin, gef.JobRequest{Service: v.Name, Version: v.Version, Dataset: "d"})
		if j.State != gef.JobSucceeded || j.ImageDigest != v.Digest || j.Timestamps.FetchingImage == nil {
			t.Fatalf("job on %s %s: %s %s, fetched at %v", v.Version, v.Digest, j.State, j.Reason, j.Timestamps.FetchingImage)
		}
	}
	// What was stored is a loadable docker save tarball of the image.
	if info, err := s.s3.StatObject(ctx, s.bucket, gef.ImageKey(byTag), minio.StatObjectOptions{}); err != nil || info.Size == 0 {
		t.Fatalf("blob of the image published by tag: %+v %v", info, err)
	}
	if !strings.HasPrefix(svc.RepoDigest, reg.addr) {
		t.Fatalf("repo digest %q", svc.RepoDigest)
	}
}
