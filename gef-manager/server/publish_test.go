package server

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

// syntheticImage makes a `docker save` tarball of a one-layer image with
// labels, as the engine would, and returns it with the image ID.
func syntheticImage(t *testing.T, labels map[string]string) ([]byte, string) {
	t.Helper()
	pack := func(files map[string][]byte) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range []string{"svc", "manifest.json"} {
			if b, ok := files[name]; ok {
				tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b))})
				tw.Write(b)
				delete(files, name)
			}
		}
		for name, b := range files {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))})
			tw.Write(b)
		}
		tw.Close()
		return buf.Bytes()
	}
	layer := pack(map[string][]byte{"svc": []byte("#!/bin/true\n")})
	sum := sha256.Sum256(layer)
	config, _ := json.Marshal(map[string]any{"os": "linux", "architecture": "amd64",
		"config": map[string]any{"Labels": labels, "Entrypoint": []string{"/svc"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}}})
	csum := sha256.Sum256(config)
	id := hex.EncodeToString(csum[:])
	manifest, _ := json.Marshal([]map[string]any{{"Config": id + ".json", "Layers": []string{"l/layer.tar"}}})
	return pack(map[string][]byte{"l/layer.tar": layer, id + ".json": config, "manifest.json": manifest}), "sha256:" + id
}

func svcLabels(version string, extra ...string) map[string]string {
	l := map[string]string{"eudat.gef.service.name": "Synthetic", "eudat.gef.service.version": version,
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data"}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// multipartBody builds a multipart body with one file field.
func multipartBody(t *testing.T, field string, data []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile(field, "f.tar")
	w.Write(data)
	mw.Close()
	return &buf, mw.FormDataContentType()
}

func post(t *testing.T, url, token, contentType string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func errField(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func TestPublishRefusals(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *managerConfig) {
		*c = manager.Config{PollWait: 200 * time.Millisecond, NodeTimeout: time.Second,
			MaxImageBytes: 1 << 20, MaxContextBytes: 4 << 10}
	})
	tok := adminToken(t, b)
	img, _ := syntheticImage(t, svcLabels("1"))
	big := bytes.Repeat([]byte("x"), 2<<20)
	for _, tc := range []struct {
		name, path, contentType string
		body                    func() io.Reader
		status                  int
		code, field             string
	}{
		{"unknown multipart field", "/api/v1/services", "", func() io.Reader { r, _ := multipartBody(t, "file", img); return r }, 400, "bad_request", ""},
		{"image and ref", "/api/v1/services", "application/json", func() io.Reader {
			return strings.NewReader(`{"image_id":"sha256:` + strings.Repeat("a", 64) + `","image_ref":"x/y:1"}`)
		}, 422, "invalid", "image_ref"},
		{"no source", "/api/v1/services", "application/json", func() io.Reader { return strings.NewReader(`{}`) }, 422, "invalid", "image_ref"},
		{"ref without tag", "/api/v1/services", "application/json", func() io.Reader { return strings.NewReader(`{"image_ref":"ubuntu"}`) }, 422, "invalid", "image_ref"},
		{"tarball over the limit", "/api/v1/services", "application/x-tar", func() io.Reader { return bytes.NewReader(big) }, 413, "too_large", "image"},
		{"multipart over the limit", "/api/v1/services", "", func() io.Reader { r, _ := multipartBody(t, "image", big); return r }, 413, "too_large", ""},
		{"spec with an unknown field", "/api/v1/builds", "application/json", func() io.Reader { return strings.NewReader(`{"base":"x","packages":["a"]}`) }, 400, "bad_request", ""},
		{"context without Dockerfile", "/api/v1/builds", "application/x-tar", func() io.Reader {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "README", Mode: 0o644, Size: 2})
			tw.Write([]byte("hi"))
			tw.Close()
			return &buf
		}, 422, "invalid", "context"},
		{"context over the limit", "/api/v1/builds", "application/x-tar", func() io.Reader { return bytes.NewReader(big[:8<<10]) }, 413, "too_large", "context"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			body := tc.body()
			if ct == "" {
				var r io.Reader
				field := "file"
				if strings.Contains(tc.name, "limit") {
					field = "image"
				}
				data := img
				if field == "image" {
					data = big
				}
				r, ct = multipartBody(t, field, data)
				body = r
			}
			code, out := post(t, b.url+tc.path, tok, ct, body)
			if code != tc.status || errCode(out) != tc.code || (tc.field != "" && errField(out) != tc.field) {
				t.Fatalf("%d %v, want %d %s on %q", code, out, tc.status, tc.code, tc.field)
			}
		})
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"delete an unknown version", "DELETE", "/api/v1/services/nothing/1", 404},
		{"a bad build id", "GET", "/api/v1/builds/nope", 422},
		{"an unknown build", "GET", "/api/v1/builds/" + gef.NewID(), 404},
		{"image URLs are for nodes", "GET", "/api/v1/node/images/sha256:" + strings.Repeat("a", 64), 403},
		{"build reports are for nodes", "POST", "/api/v1/node/builds/" + gef.NewID() + "/report", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = `{"state":"failed"}`
			}
			if code, out := raw(t, tc.method, b.url+tc.path, tok, body); code != tc.status {
				t.Fatalf("%d %v, want %d", code, out, tc.status)
			}
		})
	}
}

// nodeClient makes a node credential and registers the node.
func nodeClient(t *testing.T, b *bundle, name string) *client.Client {
	t.Helper()
	ctx := context.Background()
	if _, err := b.admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil {
		t.Fatal(err)
	}
	tok, err := b.admin.CreateToken(ctx, name, "n", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(b.url, tok.Secret)
	if err := c.Register(ctx, gef.NodeRegistration{Name: name, Capacity: 2, Datasets: []gef.NodeDataset{{Name: "d"}}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func fetch(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestBuildProtocol plays a node's side of a build against the manager,
// with no engine: it claims the build on its poll, reads the generated
// context, uploads an image and reports it.
func TestBuildProtocol(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	node := nodeClient(t, b, "n1")
	img, id := syntheticImage(t, svcLabels("1.0"))
	svc, created, err := b.admin.PublishTarball(ctx, bytes.NewReader(img))
	if err != nil || !created || svc.Digest != id || svc.Name != "synthetic" {
		t.Fatalf("publish: %+v %v %v", svc, created, err)
	}

	// The node fetches a published image through a presigned URL.
	d, err := node.ImageDownload(ctx, id)
	if err != nil || d.Size != int64(len(img)) {
		t.Fatalf("ImageDownload = %+v, %v", d, err)
	}
	if code, got := fetch(t, http.MethodGet, d.URL, nil); code != 200 || !bytes.Equal(got, img) {
		t.Fatalf("GET image URL: %d, %d bytes", code, len(got))
	}
	if _, err := node.ImageDownload(ctx, "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, gef.ErrNotFound) {
		t.Fatalf("ImageDownload of an unpublished image: %v", err)
	}

	spec := gef.BuildSpec{Base: "synthetic", Apt: []string{"zlib1g", "cdo", "cdo"}, Files: map[string]string{"/usr/bin/run": "#!/bin/sh\necho hi\n"},
		Entrypoint: []string{"/usr/bin/run"}, Labels: map[string]string{"eudat.gef.service.version": "1.1", "note": `a "quoted" $HOME`}}
	build, reused, err := b.admin.SubmitBuild(ctx, spec)
	if err != nil || reused || build.State != gef.BuildQueued || build.Spec.Base != id || strings.Join(build.Spec.Apt, ",") != "cdo,zlib1g" {
		t.Fatalf("SubmitBuild = %+v %v %v", build, reused, err)
	}
	resp, err := node.Poll(ctx, gef.PollRequest{Free: 2, WaitMS: 1000})
	if err != nil || len(resp.Builds) != 1 || resp.Builds[0].BuildID != build.ID || resp.Builds[0].BaseImage != id {
		t.Fatalf("poll = %+v, %v", resp, err)
	}
	code, ctxTar := fetch(t, http.MethodGet, resp.Builds[0].ContextURL, nil)
	if code != 200 {
		t.Fatalf("GET context: %d", code)
	}
	files := map[string]string{}
	modes := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(ctxTar))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		data, _ := io.ReadAll(tr)
		files[h.Name], modes[h.Name] = string(data), h.Mode
	}
	df := files["Dockerfile"]
	for _, want := range []string{"FROM " + id + "\n", "&& apt-get update && apt-get install", `"sh","cdo","zlib1g"]`, "COPY files/ /\n",
		`ENTRYPOINT ["/usr/bin/run"]`, `LABEL "note"="a \"quoted\" \$HOME"`} {
		if !strings.Contains(df, want) {
			t.Fatalf("generated Dockerfile lacks %q:\n%s", want, df)
		}
	}
	if files["files/usr/bin/run"] != spec.Files["/usr/bin/run"] || modes["files/usr/bin/run"] != 0o755 {
		t.Fatalf("generated context files: %v %v", files, modes)
	}

	// The build moves on as the node reports; its output is kept.
	if err := node.AppendBuildLog(ctx, build.ID, 1, 0, "stdout", []byte("Step 1/5\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.admin.Build(ctx, build.ID); got.State != gef.BuildBuilding || got.Node != "n1" {
		t.Fatalf("claimed build = %+v", got)
	}
	// The build holds a slot: with capacity 2 and one build, one job fits.
	next, err := node.Poll(ctx, gef.PollRequest{Free: 2, WaitMS: 10, Builds: []string{build.ID}})
	if err != nil || len(next.Builds) != 0 {
		t.Fatalf("second poll = %+v, %v", next, err)
	}
	upload, err := node.BuildUploadURL(ctx, build.ID)
	if err != nil {
		t.Fatal(err)
	}
	built, builtID := syntheticImage(t, map[string]string{"eudat.gef.service.name": "Synthetic", "eudat.gef.service.version": "1.1",
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data", "note": `a "quoted" $HOME`})
	if code, _ := fetch(t, http.MethodPut, upload, built); code != 200 {
		t.Fatalf("PUT image: %d", code)
	}
	done, err := node.ReportBuild(ctx, build.ID, gef.BuildReport{State: gef.BuildPublishing, ImageID: builtID})
	if err != nil || done.State != gef.BuildDone || done.Service != "synthetic" || done.Version != "1.1" || done.ImageDigest != builtID {
		t.Fatalf("publishing report = %+v, %v", done, err)
	}
	if logs, err := b.admin.BuildLogs(ctx, build.ID); err != nil || string(logs) != "Step 1/5\n" {
		t.Fatalf("build logs = %q, %v", logs, err)
	}
	// Reports are idempotent.
	if again, err := node.ReportBuild(ctx, build.ID, gef.BuildReport{State: gef.BuildFailed, Reason: "late"}); err != nil || again.State != gef.BuildDone {
		t.Fatalf("a late report = %+v, %v", again, err)
	}
	// The same spec is the same build. "synthetic" now means 1.1, so name
	// the base the build resolved it to: the hash is of the resolved spec.
	spec.Base = "synthetic:1.0"
	if again, reused, err := b.admin.SubmitBuild(ctx, spec); err != nil || !reused || again.ID != build.ID {
		t.Fatalf("resubmitting = %+v %v %v", again, reused, err)
	}

	t.Run("an upload of another image fails the build", func(t *testing.T) {
		spec := gef.BuildSpec{Base: "synthetic:1.0", Labels: map[string]string{"eudat.gef.service.version": "1.2"}}
		build, _, err := b.admin.SubmitBuild(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := node.Poll(ctx, gef.PollRequest{Free: 2, WaitMS: 1000}); err != nil || len(resp.Builds) != 1 {
			t.Fatalf("poll = %+v, %v", resp, err)
		}
		upload, err := node.BuildUploadURL(ctx, build.ID)
		if err != nil {
			t.Fatal(err)
		}
		fetch(t, http.MethodPut, upload, built)
		done, err := node.ReportBuild(ctx, build.ID, gef.BuildReport{State: gef.BuildPublishing, ImageID: id})
		if err != nil || done.State != gef.BuildFailed || !strings.Contains(done.Reason, "uploaded a tarball of "+builtID) {
			t.Fatalf("report = %+v, %v", done, err)
		}
	})
	t.Run("a build the node no longer runs is lost", func(t *testing.T) {
		build, _, err := b.admin.SubmitBuild(ctx, gef.BuildSpec{Base: "synthetic:1.0", Labels: map[string]string{"eudat.gef.service.version": "1.3"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := node.Poll(ctx, gef.PollRequest{Free: 2, WaitMS: 1000}); err != nil || len(resp.Builds) != 1 {
			t.Fatalf("poll = %+v, %v", resp, err)
		}
		if _, err := node.Poll(ctx, gef.PollRequest{Free: 2, WaitMS: 10}); err != nil {
			t.Fatal(err)
		}
		got, _ := b.admin.Build(ctx, build.ID)
		if got.State != gef.BuildFailed || !strings.Contains(got.Reason, "no longer runs the build") {
			t.Fatalf("lost build = %+v", got)
		}
	})
}

// A maintainer publishes new versions of their own services only, however
// the image arrives.
func TestPublishByTarballRespectsTheMaintainer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	token := func(name string) string {
		t.Helper()
		if _, err := b.admin.CreateUser(ctx, name, gef.RoleMaintainer, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := b.admin.CreateToken(ctx, name, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Secret
	}
	alice, mallory := token("alice"), token("mallory")
	v1, _ := syntheticImage(t, svcLabels("1.0"))
	body, ct := multipartBody(t, "image", v1)
	if code, out := post(t, b.url+"/api/v1/services", alice, ct, body); code != http.StatusCreated {
		t.Fatalf("alice publishing: %d %v", code, out)
	}
	v2, _ := syntheticImage(t, svcLabels("2.0"))
	body, ct = multipartBody(t, "image", v2)
	if code, out := post(t, b.url+"/api/v1/services", mallory, ct, body); code != http.StatusForbidden {
		t.Fatalf("mallory adding a version to alice's service: %d %v", code, out)
	}
	body, ct = multipartBody(t, "image", v2)
	if code, out := post(t, b.url+"/api/v1/services", alice, ct, body); code != http.StatusCreated {
		t.Fatalf("alice adding a version: %d %v", code, out)
	}
}
