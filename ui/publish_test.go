package ui

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/eudat-gef/gef"
)

// part is one field of a multipart form; a file if filename is set.
type part struct {
	name, filename string
	content        []byte
}

// postMultipart posts a form as multipart/form-data, its parts in order,
// as a browser sends a form with a file input.
func (br *browser) postMultipart(path string, parts ...part) answer {
	br.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" || p.content == nil {
			w, err = mw.CreateFormFile(p.name, p.filename)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			br.t.Fatal(err)
		}
		w.Write(p.content)
	}
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, br.base+path, &body)
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", br.base)
	return br.do(req)
}

// tarOf packs files (name → content) in name order.
func tarOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// savedImage returns a `docker save` tarball of a one-layer image with
// labels, and the image's ID.
func savedImage(t testing.TB, labels map[string]string) ([]byte, string) {
	t.Helper()
	layer := tarOf(t, map[string]string{"svc": "#!/bin/true\n"})
	sum := sha256.Sum256(layer)
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": labels, "Entrypoint": []string{"/svc"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum[:])}}})
	id := sha256.Sum256(cfg)
	hexID := hex.EncodeToString(id[:])
	manifest, _ := json.Marshal([]map[string]any{{"Config": hexID + ".json", "RepoTags": []string{"x/y:1"}, "Layers": []string{"layer/layer.tar"}}})
	return tarOf(t, map[string]string{hexID + ".json": string(cfg), "layer/layer.tar": string(layer), "manifest.json": string(manifest)}), "sha256:" + hexID
}

func withLabels(extra map[string]string) map[string]string {
	l := maps.Clone(statsLabels)
	maps.Copy(l, extra)
	return l
}

func TestPublishByUploadAndReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	maint := b.user(t, "mae", gef.RoleMaintainer)
	ada := b.user(t, "ada", gef.RoleUser)
	page := maint.get("/publish")
	for _, want := range []string{`<form method="post" action="/publish/tarball" enctype="multipart/form-data"`, `<input type="file" id="p-image" name="image"`,
		`action="/publish/ref"`, `action="/publish"`, `href="/builds/new"`, "at most 8.0 GiB"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the publish page lacks %s", want)
		}
	}
	tok := csrfInput.FindStringSubmatch(page.body)[1]
	tarball, id := savedImage(t, withLabels(map[string]string{"eudat.gef.service.version": "2.0.0"}))

	// The form token comes first, or nothing is read.
	for name, parts := range map[string][]part{
		"no token":        {{name: "image", filename: "image.tar", content: tarball}},
		"a wrong token":   {{name: "csrf", content: []byte("nope")}, {name: "image", filename: "image.tar", content: tarball}},
		"the token later": {{name: "image", filename: "image.tar", content: tarball}, {name: "csrf", content: []byte(tok)}},
	} {
		if a := maint.postMultipart("/publish/tarball", parts...); a.status != http.StatusForbidden {
			t.Errorf("upload with %s: %d", name, a.status)
		}
	}
	if a := ada.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(ada.token("/"))}, part{name: "image", filename: "i.tar", content: tarball}); a.status != http.StatusForbidden {
		t.Fatalf("a user uploading: %d", a.status)
	}
	if a := maint.post("/publish/tarball", url.Values{"csrf": {tok}}); a.status != http.StatusBadRequest {
		t.Fatalf("an upload form sent urlencoded: %d", a.status)
	}
	none := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image"})
	if none.status != http.StatusUnprocessableEntity || !strings.Contains(none.body, `id="p-image-error" role="alert">Choose the image`) {
		t.Fatalf("an upload without a file: %d\n%s", none.status, none.body)
	}
	junk := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image", filename: "x.tar", content: []byte("not a tarball")})
	if junk.status != http.StatusUnprocessableEntity || !strings.Contains(junk.body, `id="p-image-error" role="alert">`) {
		t.Fatalf("an upload of junk: %d\n%s", junk.status, junk.body)
	}

	ok := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image", filename: "image.tar", content: tarball})
	if ok.status != http.StatusSeeOther || ok.location != "/services/table-stats?version=2.0.0&notice=published" {
		t.Fatalf("upload: %d %q\n%s", ok.status, ok.location, ok.body)
	}
	if svc, err := b.m.Service(context.Background(), b.admin, "table-stats", "2.0.0"); err != nil || svc.Digest != id || svc.Publisher != "mae" {
		t.Fatalf("published by upload: %+v %v", svc, err)
	}
	again := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image", filename: "image.tar", content: tarball})
	if again.status != http.StatusSeeOther || !strings.HasSuffix(again.location, "notice=already") {
		t.Fatalf("the same upload again: %d %q", again.status, again.location)
	}
	// Another image under the same name and version is refused.
	other, _ := savedImage(t, withLabels(map[string]string{"eudat.gef.service.version": "2.0.0", "eudat.gef.service.description": "changed"}))
	taken := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image", filename: "other.tar", content: other})
	if taken.status != http.StatusConflict || !strings.Contains(taken.body, "is already bound to image "+id) {
		t.Fatalf("rebinding a version: %d\n%s", taken.status, taken.body)
	}
	// Bad labels are listed, each with its key.
	bad, _ := savedImage(t, withLabels(map[string]string{"eudat.gef.service.version": "3.0.0", "eudat.gef.service.output.1.path": "out",
		"eudat.gef.service.param.4.type": "number"}))
	refused := maint.postMultipart("/publish/tarball", part{name: "csrf", content: []byte(tok)}, part{name: "image", filename: "bad.tar", content: bad})
	if refused.status != http.StatusUnprocessableEntity || !strings.Contains(refused.body, `id="label-errors"`) ||
		!strings.Contains(refused.body, "eudat.gef.service.output.1.path") || !strings.Contains(refused.body, "eudat.gef.service.param.4.type") {
		t.Fatalf("bad labels: %d\n%s", refused.status, refused.body)
	}

	// By reference: a bad one is named at its field; no registry is asked.
	for ref, says := range map[string]string{"": "Give an image reference", "not a reference!": "is not a full image reference"} {
		a := maint.post("/publish/ref", url.Values{"csrf": {tok}, "image_ref": {ref}})
		if a.status != http.StatusUnprocessableEntity || !regexp.MustCompile(`id="p-ref-error" role="alert">[^<]*`+regexp.QuoteMeta(says)).MatchString(a.body) {
			t.Errorf("reference %q: %d\n%s", ref, a.status, a.body)
		}
	}
	if a := maint.post("/publish/ref", url.Values{"image_ref": {"example.org/x:1"}}); a.status != http.StatusForbidden {
		t.Fatalf("a reference without the form token: %d", a.status)
	}
}

func TestDeleteVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	ctx := context.Background()
	tarball, _ := savedImage(t, withLabels(map[string]string{"eudat.gef.service.version": "2.0.0"}))
	if _, _, err := b.m.PublishTarball(ctx, b.admin, bytes.NewReader(tarball)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.m.Submit(ctx, b.admin, gef.JobRequest{Service: "table-stats", Version: "1.0.0", Dataset: "tables", Params: map[string]any{"column": "x"}}); err != nil {
		t.Fatal(err)
	}
	admin := b.user(t, "root", gef.RoleAdmin)
	tok := admin.token("/services/table-stats")
	refused := admin.post("/services/table-stats/versions/1.0.0/delete", url.Values{"csrf": {tok}})
	if refused.status != http.StatusConflict || !strings.Contains(refused.body, `id="delete-refused"`) ||
		!strings.Contains(refused.body, "Service table-stats 1.0.0 is referenced by 1 jobs; deprecate it instead.") {
		t.Fatalf("deleting a version a job ran: %d\n%s", refused.status, refused.body)
	}
	if a := admin.post("/services/table-stats/versions/2.0.0/delete", url.Values{}); a.status != http.StatusForbidden {
		t.Fatalf("delete without the form token: %d", a.status)
	}
	ok := admin.post("/services/table-stats/versions/2.0.0/delete", url.Values{"csrf": {tok}})
	if ok.status != http.StatusSeeOther || ok.location != "/services/table-stats?notice=deleted" {
		t.Fatalf("delete: %d %q", ok.status, ok.location)
	}
	if page := admin.get(ok.location); strings.Contains(page.body, `data-version="2.0.0"`) || !strings.Contains(page.body, "The version is deleted.") {
		t.Fatal("the deleted version is still listed")
	}
}

func TestServiceNetwork(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	admin := b.user(t, "root", gef.RoleAdmin)
	maint := b.user(t, "mae", gef.RoleMaintainer)
	page := admin.get("/services/table-stats")
	if !strings.Contains(page.body, `<dd id="network">none`) || !strings.Contains(page.body, "Allow the network") {
		t.Fatalf("the service page lacks its network:\n%s", page.body)
	}
	if strings.Contains(maint.get("/services/table-stats").body, "Allow the network") {
		t.Fatal("a maintainer is offered to allow the network")
	}
	if a := maint.post("/services/table-stats/versions/1.0.0/network", url.Values{"csrf": {maint.token("/")}, "network": {"true"}}); a.status != http.StatusForbidden {
		t.Fatalf("a maintainer allowing the network: %d", a.status)
	}
	tok := csrfInput.FindStringSubmatch(page.body)[1]
	if a := admin.post("/services/table-stats/versions/1.0.0/network", url.Values{"network": {"true"}}); a.status != http.StatusForbidden {
		t.Fatalf("allow the network without the form token: %d", a.status)
	}
	a := admin.post("/services/table-stats/versions/1.0.0/network", url.Values{"csrf": {tok}, "network": {"true"}})
	if a.status != http.StatusSeeOther || !strings.HasSuffix(a.location, "notice=network-allowed") {
		t.Fatalf("allow the network: %d %q", a.status, a.location)
	}
	if page := admin.get(a.location); !strings.Contains(page.body, `<dd id="network">allowed by an administrator`) {
		t.Fatal("the page does not show the network allowed")
	}
	if a := admin.post("/services/table-stats/versions/1.0.0/network", url.Values{"csrf": {tok}, "network": {"false"}}); !strings.HasSuffix(a.location, "notice=network-none") {
		t.Fatalf("take the network away: %d %q", a.status, a.location)
	}
}
