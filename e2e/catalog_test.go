package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/internal/testimages"
)

// The service catalog end to end: publishing by tarball, immutability,
// typed parameters down to the container's argv, and images shipped to
// nodes that lack them, verified on arrival.

// nodeName is a node name no other test run uses. Nodes on one engine
// remove the containers a node of their name left behind, so two test runs
// sharing an engine must not share node names.
func nodeName(prefix string) string { return prefix + "-" + nonce()[:8] }

func nonce() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// contextTar packs files into a build context.
func contextTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// freshImage builds an image of this test's own on top of base, with extra
// labels and a nonce, so that its ID is new to the engine and removing it
// disturbs no other test. It is removed when the test ends.
func (s *stack) freshImage(base string, labels map[string]string) string {
	t := s.t
	t.Helper()
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	df := "FROM " + base + "\nLABEL eudat.gef.test.nonce=" + nonce() + "\n"
	for _, k := range keys {
		df += fmt.Sprintf("LABEL %q=%q\n", k, labels[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := s.rt.Build(ctx, bytes.NewReader(contextTar(t, map[string]string{"Dockerfile": df})), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.rt.RemoveImage(context.Background(), id) })
	return id
}

// save returns an image's `docker save` tarball.
func (s *stack) save(id string) []byte {
	s.t.Helper()
	var buf bytes.Buffer
	if err := s.rt.SaveImage(context.Background(), id, &buf); err != nil {
		s.t.Fatal(err)
	}
	return buf.Bytes()
}

// removeImage takes an image out of the engine, as on a node that never
// had it.
func (s *stack) removeImage(id string) {
	s.t.Helper()
	if err := s.rt.RemoveImage(context.Background(), id); err != nil {
		s.t.Fatalf("remove image %s: %v", id, err)
	}
	if _, err := s.rt.Image(context.Background(), id); !errors.Is(err, gef.ErrNotFound) {
		s.t.Fatalf("image %s still in the engine: %v", id, err)
	}
}

// publishTarball publishes an image by uploading its tarball.
func (s *stack) publishTarball(id string) gef.Service {
	s.t.Helper()
	svc, created, err := s.admin.PublishTarball(context.Background(), bytes.NewReader(s.save(id)))
	if err != nil || !created {
		s.t.Fatalf("publish %s by tarball: created %v, %v", id, created, err)
	}
	return svc
}

// blob returns the stored tarball of an image, or nil.
func (s *stack) blob(id string) []byte {
	s.t.Helper()
	obj, err := s.s3.GetObject(context.Background(), s.bucket, gef.ImageKey(id), minio.GetObjectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer obj.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil {
		return nil
	}
	return buf.Bytes()
}

func (s *stack) overwriteBlob(id string, data []byte) {
	s.t.Helper()
	_, err := s.s3.PutObject(context.Background(), s.bucket, gef.ImageKey(id), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
}

// wantInvalid checks err is a 422 naming field and saying says.
func wantInvalid(t *testing.T, err error, field, says string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || e.Field != field || !strings.Contains(e.Message, says) {
		t.Fatalf("got %v (field %q), want 422 on %q saying %q", err, fieldOf(e), field, says)
	}
}

// TestPublishByTarball publishes a service image as a docker save tarball
// and shows that a name and version stay bound to their image.
func TestPublishByTarball(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	base := image(t, s.rt, testimages.TestService)
	id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "2.0.0"})
	tarball := s.save(id)

	svc, created, err := s.admin.PublishTarball(ctx, bytes.NewReader(tarball))
	if err != nil || !created {
		t.Fatalf("publish: created %v, %v", created, err)
	}
	if svc.Name != "gef-test-service" || svc.Version != "2.0.0" || svc.Digest != id || svc.Publisher != "admin" ||
		svc.Entrypoint[0] != "/testsvc" || len(svc.Params) != 9 || svc.RepoDigest != "" {
		t.Fatalf("published %+v", svc)
	}
	// The blob is kept content-addressed, byte for byte as uploaded.
	if got := s.blob(id); !bytes.Equal(got, tarball) {
		t.Fatalf("stored blob has %d bytes, uploaded %d", len(got), len(tarball))
	}
	// The same image again changes nothing.
	again, created, err := s.admin.PublishTarball(ctx, bytes.NewReader(tarball))
	if err != nil || created || again.Digest != id || !again.CreatedAt.Equal(svc.CreatedAt) {
		t.Fatalf("republish of the same image: created %v, %+v, %v", created, again, err)
	}
	// Another image under the same name and version is refused.
	changed := s.freshImage(base, map[string]string{"eudat.gef.service.version": "2.0.0"})
	_, _, err = s.admin.PublishTarball(ctx, bytes.NewReader(s.save(changed)))
	if !errors.Is(err, gef.ErrConflict) || !strings.Contains(err.Error(), "already bound to image "+id) {
		t.Fatalf("republish with a changed image: %v, want 409 naming the bound image", err)
	}
	if got, err := s.admin.Service(ctx, svc.Name, "2.0.0"); err != nil || got.Digest != id {
		t.Fatalf("after the refused republish: %+v, %v", got, err)
	}
	if _, err := s.s3.StatObject(ctx, s.bucket, gef.ImageKey(changed), minio.StatObjectOptions{}); err == nil {
		t.Fatal("the refused image's blob was stored")
	}

	t.Run("bad labels name the key", func(t *testing.T) {
		bad := s.freshImage(base, map[string]string{"eudat.gef.service.version": "2.0.1", "eudat.gef.service.param.1.type": "complex"})
		_, _, err := s.admin.PublishTarball(ctx, bytes.NewReader(s.save(bad)))
		wantInvalid(t, err, "eudat.gef.service.param.1.type", "complex")
	})
	t.Run("path traversal is refused", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range []struct{ name, body string }{{"manifest.json", `[{"Config":"c.json","Layers":[]}]`}, {"../../etc/cron.d/evil", "x"}} {
			tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))})
			tw.Write([]byte(f.body))
		}
		tw.Close()
		_, _, err := s.admin.PublishTarball(ctx, &buf)
		wantInvalid(t, err, "image", "climbs out of the archive")
	})
	t.Run("not a tarball", func(t *testing.T) {
		_, _, err := s.admin.PublishTarball(ctx, strings.NewReader(strings.Repeat("not a tar ", 100)))
		wantInvalid(t, err, "image", "not a valid tar archive")
	})
	t.Run("neither field", func(t *testing.T) {
		err := s.admin.Do(ctx, http.MethodPost, "/api/v1/services", map[string]string{}, nil)
		wantInvalid(t, err, "image_ref", "is required")
	})
	t.Run("users may not publish", func(t *testing.T) {
		if _, err := s.admin.CreateUser(ctx, "ada", gef.RoleUser, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := s.admin.CreateToken(ctx, "ada", "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = client.New(s.url, tok.Secret).PublishTarball(ctx, bytes.NewReader(tarball))
		if !errors.Is(err, gef.ErrForbidden) {
			t.Fatalf("a user publishing: %v, want 403", err)
		}
	})
}

// TestTypedParams runs a published service with typed parameters and checks
// the exact argv the container got, and that bad values are refused by
// name before anything runs.
func TestTypedParams(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	s.node(nodeName("site-a"), map[string]string{"d": dataset(t, map[string]string{"x.txt": "x"})})
	svc := s.publishTarball(s.freshImage(image(t, s.rt, testimages.TestService), nil))

	j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{
		"message": "hello, world: 1.5", "lines": "3", "sleep": 0.25, "write_dataset": false, "exit": 0}})
	if j.State != gef.JobSucceeded {
		t.Fatalf("job ended %s: %s", j.State, j.Reason)
	}
	// Declared order, --name value pairs, a false bool left out, numbers
	// normalised, the string one argument with its spaces.
	want := []string{"/testsvc", "--exit", "0", "--sleep", "0.25", "--lines", "3", "--message", "hello, world: 1.5"}
	var argv []string
	if err := json.Unmarshal(outputs(t, s, j)["argv.json"], &argv); err != nil {
		t.Fatal(err)
	}
	if strings.Join(argv, "\x00") != strings.Join(want, "\x00") || strings.Join(j.Argv, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("container argv %q, record %q; want %q", argv, j.Argv, want)
	}
	if j.Params["lines"] != float64(3) || j.Params["write_dataset"] != false {
		t.Fatalf("recorded params %v", j.Params)
	}

	for _, tc := range []struct {
		name, param string
		value       any
		says        string
	}{
		{"wrong type", "lines", "many", "integer"},
		{"not a bool", "write_dataset", "perhaps", "true or false"},
		{"below min", "exit", -1, "between 0 and 255"},
		{"above max", "exit", 256, "between 0 and 255"},
		{"shell metacharacters in a patterned str", "message", "hi; rm -rf /", "must be a string matching"},
		{"command substitution", "message", "$(reboot)", "must be a string matching"},
		{"unknown parameter", "colour", "red", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "d", Params: map[string]any{tc.param: tc.value}})
			wantInvalid(t, err, tc.param, tc.says)
		})
	}
}

// TestImageDistribution shows a node that lacks a job's image fetching it
// from the object store through the manager, once however many jobs need
// it, verifying its ID before running it, and refusing a tampered blob.
func TestImageDistribution(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	base := image(t, s.rt, testimages.TestService)
	nameA, nameB := nodeName("site-a"), nodeName("site-b")
	s.node(nameA, map[string]string{"a": dataset(t, map[string]string{"a.txt": "a"})})
	siteB := s.node(nameB, map[string]string{"b": dataset(t, map[string]string{"b.txt": "b"})})

	id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "3.0.0"})
	svc := s.publishTarball(id)
	// Both nodes share this machine's engine: take the image out of it, so
	// that the node the job goes to has no copy.
	s.removeImage(id)

	var jobs []gef.Job
	for range 3 {
		j, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "b", Params: map[string]any{"message": "fetched"}})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		j, err := s.admin.Wait(wctx, j.ID, nil)
		cancel()
		if err != nil || j.State != gef.JobSucceeded {
			t.Fatalf("job %s: %s %v: %s", j.ID, j.State, err, j.Reason)
		}
		if j.Node != nameB || j.ImageDigest != id || j.Timestamps.FetchingImage == nil || j.Timestamps.Running.Before(*j.Timestamps.FetchingImage) {
			t.Fatalf("job %s: node %s image %s timestamps %+v", j.ID, j.Node, j.ImageDigest, j.Timestamps)
		}
	}
	if img, err := s.rt.Image(ctx, id); err != nil || img.ID != id {
		t.Fatalf("after the fetch the engine has %+v, %v", img, err)
	}
	if n := strings.Count(siteB.output(), `msg="fetching image"`); n != 1 {
		t.Fatalf("site-b fetched the image %d times for 3 concurrent jobs, want once:\n%s", n, siteB.output())
	}
	// A node that has the image runs it without fetching.
	j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "a"})
	if j.State != gef.JobSucceeded || j.Node != nameA || j.Timestamps.FetchingImage != nil {
		t.Fatalf("job on site-a: %s on %s, fetching at %v: %s", j.State, j.Node, j.Timestamps.FetchingImage, j.Reason)
	}

	t.Run("a blob holding another image is refused", func(t *testing.T) {
		id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "3.0.1"})
		svc := s.publishTarball(id)
		s.removeImage(id)
		s.overwriteBlob(id, s.save(base))
		j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Version: svc.Version, Dataset: "b"})
		if j.State != gef.JobSystemError || !strings.Contains(j.Reason, "image digest mismatch") ||
			!strings.Contains(j.Reason, id) || !strings.Contains(j.Reason, base) {
			t.Fatalf("job on a tampered blob: %s: %q; want system_error naming both digests", j.State, j.Reason)
		}
		if _, err := s.rt.Image(ctx, id); !errors.Is(err, gef.ErrNotFound) {
			t.Fatalf("the refused image is in the engine: %v", err)
		}
	})
	t.Run("a corrupted blob is refused", func(t *testing.T) {
		id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "3.0.2"})
		svc := s.publishTarball(id)
		s.removeImage(id)
		s.overwriteBlob(id, []byte(strings.Repeat("corrupted ", 1000)))
		j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Version: svc.Version, Dataset: "b"})
		if j.State != gef.JobSystemError || !strings.Contains(j.Reason, "fetching image "+id) {
			t.Fatalf("job on a corrupted blob: %s: %q", j.State, j.Reason)
		}
	})
	t.Run("a blob gone from the store", func(t *testing.T) {
		id := s.freshImage(base, map[string]string{"eudat.gef.service.version": "3.0.3"})
		svc := s.publishTarball(id)
		if err := s.s3.RemoveObject(ctx, s.bucket, gef.ImageKey(id), minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		s.removeImage(id)
		j := s.run(s.admin, gef.JobRequest{Service: svc.Name, Version: svc.Version, Dataset: "b"})
		if j.State != gef.JobSystemError || !strings.Contains(j.Reason, "GEF keeps no copy") {
			t.Fatalf("job on an image with no blob: %s: %q", j.State, j.Reason)
		}
	})
}

// TestDeprecateAndDelete shows a deprecated version hidden from new runs
// that name no version, still runnable when named, and a version kept while
// jobs reference it.
func TestDeprecateAndDelete(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	base := image(t, s.rt, testimages.TestService)
	s.node(nodeName("site-a"), map[string]string{"d": dataset(t, map[string]string{"x": "x"})})
	v1 := s.publishTarball(s.freshImage(base, map[string]string{"eudat.gef.service.version": "1.0.0"}))
	v2 := s.publishTarball(s.freshImage(base, map[string]string{"eudat.gef.service.version": "1.1.0"}))

	if j := s.run(s.admin, gef.JobRequest{Service: v1.Name, Dataset: "d"}); j.Version != "1.1.0" || j.State != gef.JobSucceeded {
		t.Fatalf("newest version: %s %s", j.Version, j.State)
	}
	if _, err := s.admin.Deprecate(ctx, v2.Name, v2.Version, true); err != nil {
		t.Fatal(err)
	}
	if j := s.run(s.admin, gef.JobRequest{Service: v1.Name, Dataset: "d"}); j.Version != "1.0.0" {
		t.Fatalf("with 1.1.0 deprecated a new run got %s", j.Version)
	}
	// A rerun naming the deprecated version still runs it.
	if j := s.run(s.admin, gef.JobRequest{Service: v2.Name, Version: v2.Version, Dataset: "d"}); j.Version != "1.1.0" || j.State != gef.JobSucceeded || j.ImageDigest != v2.Digest {
		t.Fatalf("rerun of the deprecated version: %s %s %s", j.Version, j.State, j.Reason)
	}
	// Jobs reference both versions: neither can go.
	for _, v := range []gef.Service{v1, v2} {
		if err := s.admin.DeleteService(ctx, v.Name, v.Version); !errors.Is(err, gef.ErrConflict) || !strings.Contains(err.Error(), "referenced by") {
			t.Fatalf("delete %s: %v, want 409", v.Version, err)
		}
	}
	// A version no job ran can be deleted, and its blob goes with it.
	v3 := s.publishTarball(s.freshImage(base, map[string]string{"eudat.gef.service.version": "1.2.0"}))
	if err := s.admin.DeleteService(ctx, v3.Name, v3.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.Service(ctx, v3.Name, v3.Version); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("deleted version: %v", err)
	}
	if _, err := s.s3.StatObject(ctx, s.bucket, gef.ImageKey(v3.Digest), minio.StatObjectOptions{}); err == nil {
		t.Fatal("the deleted version's blob is still stored")
	}
	if err := s.admin.DeleteService(ctx, v3.Name, v3.Version); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	list, err := s.admin.Services(ctx, v1.Name)
	if err != nil || len(list) != 2 {
		t.Fatalf("versions left: %+v %v", list, err)
	}
}
