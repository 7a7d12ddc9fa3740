package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/internal/rocrate"
)

const reproImage = "sha256:" + "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"

func digestOf(n int) string { return "sha256:" + fmt.Sprintf("%064x", n) }

// fakeNode speaks the node protocol over HTTP as gef-node does, running
// jobs by writing the files a test tells it to.
type fakeNode struct {
	c    *client.Client
	name string
}

func newFakeNode(t testing.TB, b *bundle, name string, digest string) *fakeNode {
	ctx := context.Background()
	if _, err := b.admin.CreateUser(ctx, name, gef.RoleNode, ""); err != nil && !isStatus(err, http.StatusConflict) {
		t.Fatal(err)
	}
	tok, err := b.admin.CreateToken(ctx, name, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{c: client.New(b.url, tok.Secret), name: name}
	n.register(t, digest)
	return n
}

func (n *fakeNode) register(t testing.TB, digest string) {
	t.Helper()
	labels := map[string]string{
		"eudat.gef.service.name": "Repro test", "eudat.gef.service.version": "1.0",
		"eudat.gef.service.input.1.name": "data", "eudat.gef.service.input.1.path": "/data",
		"eudat.gef.service.output.1.name": "out", "eudat.gef.service.output.1.path": "/out",
		"eudat.gef.service.param.1.name": "n", "eudat.gef.service.param.1.type": "int",
	}
	reg := gef.NodeRegistration{Name: n.name, Capacity: 4, EngineVersion: "20.10.24", EngineAPI: "1.41", Runtime: "runc 1.1.5",
		AgentVersion: gef.Version, Datasets: []gef.NodeDataset{{Name: "alpha", Size: 10, Files: 1, Digest: digest}},
		Images: []gef.NodeImage{{ID: reproImage, Labels: labels, Entrypoint: []string{"/svc"}}}}
	if err := n.c.Register(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
}

// run takes the next job and runs it: files maps paths in output "out" to
// their content.
func (n *fakeNode) run(t testing.TB, digest string, files map[string]string) gef.Job {
	t.Helper()
	ctx := context.Background()
	var a gef.Assignment
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := n.c.Poll(ctx, gef.PollRequest{Free: 1, Running: []string{}, WaitMS: 500})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Jobs) > 0 {
			a = resp.Jobs[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no job came")
		}
	}
	report := func(r gef.JobReport) gef.Job {
		r.Attempt, r.At = a.Attempt, time.Now()
		j, err := n.c.Report(ctx, a.JobID, r)
		if err != nil {
			t.Fatalf("report %s: %v", r.State, err)
		}
		return j
	}
	report(gef.JobReport{State: gef.JobRunning, ImageDigest: a.ImageDigest, DatasetDigests: map[string]string{"data": digest},
		Limits: &gef.Limits{MemoryBytes: 256 << 20, CPUs: 1, Pids: 512, TimeoutSeconds: 3600}})
	var manifest []gef.OutputFile
	for path := range files {
		manifest = append(manifest, gef.OutputFile{Name: "out", Path: path})
	}
	urls, err := n.c.UploadURLs(ctx, a.JobID, a.Attempt, manifest)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range manifest {
		body := files[f.Path]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, urls["out/"+f.Path], strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("upload %s: %v %v", f.Path, err, resp)
		}
		resp.Body.Close()
		sum := sha256.Sum256([]byte(body))
		manifest[i].Size, manifest[i].SHA256 = int64(len(body)), hex.EncodeToString(sum[:])
	}
	code := 0
	return report(gef.JobReport{State: gef.JobSucceeded, ExitCode: &code, Outputs: manifest})
}

func TestRerunReuseVisibilityAndProvenance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	d1, d2 := digestOf(1), digestOf(2)
	node := newFakeNode(t, b, "n1", d1)
	if _, err := b.admin.RegisterImage(ctx, reproImage); err != nil {
		t.Fatal(err)
	}
	req := gef.JobRequest{Service: "repro-test", Dataset: "alpha", Params: map[string]any{"n": 3}}
	first, err := b.admin.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Visibility != gef.Private || first.RerunOf != nil || first.Verdict != nil || !strings.HasSuffix(first.URL, "/jobs/"+first.ID) {
		t.Fatalf("new job: %+v", first)
	}
	if _, err := b.admin.ProvenanceRecord(ctx, first.ID); !isStatus(err, http.StatusConflict) {
		t.Fatalf("provenance of a running job: %v, want 409", err)
	}
	orig := node.run(t, d1, map[string]string{"r.txt": "result", "log/t.txt": "12:00"})
	if orig.State != gef.JobSucceeded || orig.DatasetDigests["data"] != d1 {
		t.Fatalf("original: %+v", orig)
	}

	t.Run("provenance", func(t *testing.T) {
		rec, err := b.admin.ProvenanceRecord(ctx, orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rec.ImageDigest != reproImage || string(rec.Params) != `{"n":3}` || rec.Argv[0] != "/svc" || len(rec.Outputs) != 2 ||
			rec.Inputs[0].Digest != d1 || rec.Node != "n1" || rec.EngineVersion != "20.10.24" || rec.Runtime != "runc 1.1.5" ||
			rec.ManagerVersion != gef.Version || rec.Limits == nil || rec.Limits.Pids != 512 || rec.Owner != "admin" ||
			rec.Timestamps.Running == nil || rec.ExitCode == nil || rec.ServiceTitle != "Repro test" {
			t.Fatalf("record: %+v", rec)
		}
		crate, err := b.admin.Provenance(ctx, orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkCrate(t, crate, reproImage, map[string]string{"data": d1}, orig.Outputs)
	})

	t.Run("rerun identical", func(t *testing.T) {
		// A rerun runs the pinned image even after its version was
		// deprecated.
		if _, err := b.admin.Deprecate(ctx, "repro-test", "1.0", true); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := b.admin.Deprecate(ctx, "repro-test", "1.0", false); err != nil {
				t.Error(err)
			}
		}()
		re, err := b.admin.Rerun(ctx, orig.ID, false)
		if err != nil || re.State != gef.JobQueued || re.RerunOf == nil || *re.RerunOf != orig.ID {
			t.Fatalf("rerun: %+v %v", re, err)
		}
		done := node.run(t, d1, map[string]string{"r.txt": "result", "log/t.txt": "12:00"})
		if done.ID != re.ID || done.Verdict == nil || *done.Verdict != gef.VerdictIdentical || len(done.Differences) != 0 {
			t.Fatalf("identical rerun: %+v", done)
		}
	})

	t.Run("rerun differs", func(t *testing.T) {
		if _, err := b.admin.Rerun(ctx, orig.ID, false); err != nil {
			t.Fatal(err)
		}
		done := node.run(t, d1, map[string]string{"r.txt": "result", "log/t.txt": "12:01", "extra": "x"})
		want := []gef.Difference{{Path: "out/extra", Change: gef.ChangeAdded}, {Path: "out/log/t.txt", Change: gef.ChangeChanged}}
		if done.Verdict == nil || *done.Verdict != gef.VerdictDiffers || fmt.Sprint(done.Differences) != fmt.Sprint(want) {
			t.Fatalf("differing rerun: %v %+v", done.Verdict, done.Differences)
		}
	})

	t.Run("reuse", func(t *testing.T) {
		j, err := b.admin.Submit(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != gef.JobSucceeded || j.ReuseOf == nil || *j.ReuseOf != orig.ID || len(j.Outputs) != 2 || j.DatasetDigests["data"] != d1 {
			t.Fatalf("reused: %+v", j)
		}
		rc, err := b.admin.Output(ctx, j.ID, "out", "r.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != "result" {
			t.Fatalf("reused output = %q", got)
		}
		no := false
		ran, err := b.admin.Submit(ctx, gef.JobRequest{Service: req.Service, Dataset: "alpha", Params: req.Params, Reuse: &no})
		if err != nil || ran.State != gef.JobQueued || ran.ReuseOf != nil {
			t.Fatalf("reuse off: %+v %v", ran, err)
		}
		node.run(t, d1, map[string]string{"r.txt": "result"})
		other, err := b.admin.Submit(ctx, gef.JobRequest{Service: req.Service, Dataset: "alpha", Params: map[string]any{"n": 4}})
		if err != nil || other.State != gef.JobQueued {
			t.Fatalf("other params: %+v %v", other, err)
		}
		node.run(t, d1, map[string]string{"r.txt": "other"})
	})

	t.Run("visibility and citation", func(t *testing.T) {
		anon := client.New(b.url, "")
		if _, err := b.admin.CreateUser(ctx, "eve", gef.RoleUser, ""); err != nil {
			t.Fatal(err)
		}
		tok, err := b.admin.CreateToken(ctx, "eve", "t", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		eve := client.New(b.url, tok.Secret)
		for who, c := range map[string]*client.Client{"anonymous": anon, "another user": eve} {
			if _, err := c.Job(ctx, orig.ID); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("%s reads a private job: %v", who, err)
			}
			if _, err := c.Provenance(ctx, orig.ID); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("%s reads a private provenance: %v", who, err)
			}
		}
		if _, err := eve.SetVisibility(ctx, orig.ID, gef.Public); !isStatus(err, http.StatusNotFound) {
			t.Fatalf("another user publishes: %v", err)
		}
		if j, err := b.admin.SetVisibility(ctx, orig.ID, gef.Public); err != nil || j.Visibility != gef.Public {
			t.Fatalf("publish: %+v %v", j, err)
		}
		if j, err := anon.Job(ctx, orig.ID); err != nil || j.ID != orig.ID {
			t.Fatalf("anonymous read of a public job: %v", err)
		}
		if _, err := anon.Output(ctx, orig.ID, "out", "r.txt"); err != nil {
			t.Fatalf("anonymous download: %v", err)
		}
		if _, err := anon.Logs(ctx, orig.ID); err != nil {
			t.Fatalf("anonymous logs: %v", err)
		}
		bib, err := anon.Citation(ctx, orig.ID, "bibtex")
		if err != nil || !bytes.Contains(bib, []byte("@misc{gef-"+orig.ID)) || !bytes.Contains(bib, []byte("/jobs/"+orig.ID)) {
			t.Fatalf("bibtex: %s %v", bib, err)
		}
		csl, err := anon.Citation(ctx, orig.ID, "csl")
		var items []map[string]any
		if err != nil || json.Unmarshal(csl, &items) != nil || len(items) != 1 || items[0]["type"] != "dataset" {
			t.Fatalf("csl: %s %v", csl, err)
		}
		if _, err := anon.Cancel(ctx, orig.ID); !isStatus(err, http.StatusUnauthorized) {
			t.Fatalf("anonymous cancel: %v", err)
		}
		if _, err := eve.SetVisibility(ctx, orig.ID, gef.Private); !isStatus(err, http.StatusForbidden) {
			t.Fatalf("another user hides a public job: %v", err)
		}
		if _, err := anon.Rerun(ctx, orig.ID, false); !isStatus(err, http.StatusUnauthorized) {
			t.Fatalf("anonymous rerun: %v", err)
		}
		code, body := raw(t, http.MethodGet, b.url+"/jobs/"+orig.ID, "", "")
		if code != http.StatusOK || body["id"] != orig.ID {
			t.Fatalf("stable URL: %d %v", code, body)
		}
		if code, _ := raw(t, http.MethodGet, b.url+"/jobs/"+first.ID+"x", "", ""); code != http.StatusUnprocessableEntity {
			t.Fatalf("stable URL of a bad id: %d", code)
		}
	})

	t.Run("changed data", func(t *testing.T) {
		node.register(t, d2)
		_, err := b.admin.Rerun(ctx, orig.ID, false)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusConflict || !strings.Contains(e.Message, d1) || !strings.Contains(e.Message, d2) ||
			!strings.Contains(e.Message, "no node has held the bytes it ran on") || !strings.Contains(e.Message, "accept_changed_data") {
			t.Fatalf("rerun on changed data: %v", err)
		}
		// Nothing to reuse either: the data is not what the earlier run read.
		j, err := b.admin.Submit(ctx, req)
		if err != nil || j.State != gef.JobQueued {
			t.Fatalf("submit on changed data: %+v %v", j, err)
		}
		node.run(t, d2, map[string]string{"r.txt": "result"})
		re, err := b.admin.Rerun(ctx, orig.ID, true)
		if err != nil || !re.AcceptChangedData {
			t.Fatalf("accepted: %+v %v", re, err)
		}
		done := node.run(t, d2, map[string]string{"r.txt": "result", "log/t.txt": "12:00"})
		if !done.AcceptChangedData || done.DatasetDigests["data"] != d2 || done.Verdict == nil || *done.Verdict != gef.VerdictIdentical {
			t.Fatalf("rerun on accepted changed data: %+v", done)
		}
		rec, err := b.admin.ProvenanceRecord(ctx, done.ID)
		if err != nil || !rec.AcceptChangedData || rec.RerunOf == nil {
			t.Fatalf("its record: %+v %v", rec, err)
		}
		var ds gef.Dataset
		err = b.admin.Do(ctx, http.MethodGet, "/api/v1/datasets/alpha", nil, &ds)
		if err != nil || len(ds.Versions) != 2 || ds.Versions[1].GoneSince == nil {
			t.Fatalf("dataset versions: %+v %v", ds, err)
		}
	})

	t.Run("crate round trip", func(t *testing.T) {
		crate, err := b.admin.Provenance(ctx, orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The data changed since; the crate names the old digest.
		if _, err := b.admin.FromProvenance(ctx, crate, false); !isStatus(err, http.StatusConflict) {
			t.Fatalf("crate on changed data: %v", err)
		}
		node.register(t, d1)
		j, err := b.admin.FromProvenance(ctx, crate, false)
		if err != nil || j.RerunOf == nil || *j.RerunOf != orig.ID || j.Params["n"] == nil {
			t.Fatalf("from crate: %+v %v", j, err)
		}
		done := node.run(t, d1, map[string]string{"r.txt": "result", "log/t.txt": "12:00"})
		if done.ID != j.ID || done.Verdict == nil || *done.Verdict != gef.VerdictIdentical {
			t.Fatalf("crate rerun: %+v", done)
		}
		for _, bad := range []string{`{}`, `{"@graph":[{"@id":"x"}]}`, `not json`} {
			if _, err := b.admin.FromProvenance(ctx, []byte(bad), false); !isStatus(err, http.StatusUnprocessableEntity) {
				t.Fatalf("crate %q: %v", bad, err)
			}
		}
	})

	t.Run("image retention", func(t *testing.T) {
		objects := b.m.Objects()
		key := "images/" + reproImage + "/image.tar"
		if err := objects.Put(ctx, key, strings.NewReader("img"), 3); err != nil {
			t.Fatal(err)
		}
		if err := objects.Delete(ctx, key); !errors.Is(err, gef.ErrConflict) {
			t.Fatalf("deleting an image jobs ran: %v", err)
		}
		unused := "images/" + digestOf(77) + "/image.tar"
		if err := objects.Put(ctx, unused, strings.NewReader("img"), 3); err != nil {
			t.Fatal(err)
		}
		if err := objects.Delete(ctx, unused); err != nil {
			t.Fatalf("deleting an unused image: %v", err)
		}
	})
}

// checkCrate expands a crate as JSON-LD, offline, and checks it names the
// image digest, the dataset digests and the outputs' sha256.
func checkCrate(t *testing.T, crate []byte, image string, digests map[string]string, outputs []gef.OutputFile) {
	t.Helper()
	expanded, err := rocrate.Expand(crate)
	if err != nil {
		t.Fatalf("%v\n%s", err, crate)
	}
	const wfrun, schema = "https://w3id.org/ro/terms/workflow-run#", "http://schema.org/"
	if got := rocrate.Values(expanded, wfrun+"ContainerImage", schema+"identifier"); len(got) != 1 || got[0] != image {
		t.Fatalf("container image identifier %v, want %s", got, image)
	}
	if got := rocrate.Values(expanded, wfrun+"ContainerImage", wfrun+"sha256"); len(got) != 1 || "sha256:"+got[0] != image {
		t.Fatalf("container image sha256 %v", got)
	}
	ids := strings.Join(rocrate.Values(expanded, schema+"Dataset", schema+"identifier"), " ")
	for _, d := range digests {
		if !strings.Contains(ids, d) {
			t.Fatalf("dataset digests %s lack %s", ids, d)
		}
	}
	sums := strings.Join(rocrate.Values(expanded, schema+"MediaObject", wfrun+"sha256"), " ")
	for _, o := range outputs {
		if !strings.Contains(sums, o.SHA256) {
			t.Fatalf("output sums %s lack %s", sums, o.SHA256)
		}
	}
	if got := rocrate.Values(expanded, "", "http://purl.org/dc/terms/conformsTo"); !strings.Contains(strings.Join(got, " "), "https://w3id.org/ro/wfrun/workflow/0.5") {
		t.Fatalf("conformsTo %v", got)
	}
}

// BenchmarkReuseSubmit measures a submit answered by reuse, over HTTP on
// SQLite: validation, the match and the new job's record.
func BenchmarkReuseSubmit(b *testing.B) {
	bd := setup(b)
	ctx := context.Background()
	node := newFakeNode(b, bd, "n1", digestOf(1))
	if _, err := bd.admin.RegisterImage(ctx, reproImage); err != nil {
		b.Fatal(err)
	}
	req := gef.JobRequest{Service: "repro-test", Dataset: "alpha", Params: map[string]any{"n": 3}}
	if _, err := bd.admin.Submit(ctx, req); err != nil {
		b.Fatal(err)
	}
	node.run(b, digestOf(1), map[string]string{"r.txt": "result"})
	for b.Loop() {
		j, err := bd.admin.Submit(ctx, req)
		if err != nil || j.ReuseOf == nil || j.State != gef.JobSucceeded {
			b.Fatalf("not reused: %+v %v", j, err)
		}
	}
}

func TestReproErrorShapes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := adminToken(t, b)
	id := gef.NewID()
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"rerun of an unknown job", "POST", "/api/v1/jobs/" + id + "/rerun", tok, "", 404, "not_found"},
		{"rerun with a bad id", "POST", "/api/v1/jobs/nope/rerun", tok, "", 422, "invalid"},
		{"rerun with an unknown field", "POST", "/api/v1/jobs/" + id + "/rerun", tok, `{"accept":true}`, 400, "bad_request"},
		{"rerun with a wrong type", "POST", "/api/v1/jobs/" + id + "/rerun", tok, `{"accept_changed_data":"yes"}`, 400, "bad_request"},
		{"anonymous rerun", "POST", "/api/v1/jobs/" + id + "/rerun", "", "", 401, "unauthorized"},
		{"anonymous job", "GET", "/api/v1/jobs/" + id, "", "", 404, "not_found"},
		{"anonymous list", "GET", "/api/v1/jobs", "", "", 401, "unauthorized"},
		{"provenance of an unknown job", "GET", "/api/v1/jobs/" + id + "/provenance", tok, "", 404, "not_found"},
		{"provenance in a bad format", "GET", "/api/v1/jobs/" + id + "/provenance?format=zip", tok, "", 422, "invalid"},
		{"citation in a bad format", "GET", "/api/v1/jobs/" + id + "/citation?format=ris", tok, "", 422, "invalid"},
		{"bad visibility", "POST", "/api/v1/jobs/" + id + "/visibility", tok, `{"visibility":"secret"}`, 422, "invalid"},
		{"no visibility body", "POST", "/api/v1/jobs/" + id + "/visibility", tok, ``, 400, "bad_request"},
		{"empty crate", "POST", "/api/v1/jobs/from-provenance", tok, ``, 400, "bad_request"},
		{"crate that is not JSON", "POST", "/api/v1/jobs/from-provenance", tok, `<xml/>`, 422, "invalid"},
		{"crate without a run", "POST", "/api/v1/jobs/from-provenance", tok, `{"@graph":[{"@id":"./"}]}`, 422, "invalid"},
		{"crate with a bad flag", "POST", "/api/v1/jobs/from-provenance?accept_changed_data=maybe", tok, `{}`, 422, "invalid"},
		{"anonymous crate", "POST", "/api/v1/jobs/from-provenance", "", `{"@graph":[]}`, 401, "unauthorized"},
		{"stable URL of an unknown job", "GET", "/jobs/" + id, "", "", 404, "not_found"},
		{"bad reuse flag", "POST", "/api/v1/jobs", tok, `{"service":"x","reuse":"no"}`, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, tc.method, b.url+tc.path, tc.token, tc.body)
			if code != tc.status || errCode(body) != tc.code {
				t.Fatalf("%s %s: %d %v, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
			}
		})
	}
}
