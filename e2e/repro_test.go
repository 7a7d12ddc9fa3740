package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/rocrate"
	"github.com/eudat-gef/gef/internal/testimages"
	"github.com/eudat-gef/gef/volumes"
)

// TestReproducibleReruns cites, reruns, reuses and reproduces runs on the
// real stack: a deterministic run reruns identical; one that writes the
// time differs in that file; an identical request is served by reuse
// without a container; the RO-Crate is JSON-LD that names every digest
// and reproduces the run on its own; a public job reads anonymously and a
// private one is not found; and a changed byte of data makes a rerun
// refuse, naming both digests, until the change is accepted.
func TestReproducibleReruns(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.TestService)
	data := dataset(t, map[string]string{"a.txt": "alpha\n", "sub/b.csv": "x,y\n1,2\n"})
	siteA := s.node("site-a", map[string]string{"climate": data})
	svc := s.publish(imageID)
	ctx := context.Background()
	wait := func(j gef.Job, err error) gef.Job {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		j, err = s.admin.Wait(wctx, j.ID, nil)
		if err != nil {
			t.Fatalf("wait for %s: %v", j.ID, err)
		}
		return j
	}

	req := gef.JobRequest{Service: svc.Name, Dataset: "climate", Params: map[string]any{"lines": 3}}
	orig := s.run(s.admin, req)
	local, err := volumes.DigestDir(ctx, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if orig.State != gef.JobSucceeded || orig.DatasetDigests["data"] != local.Digest {
		t.Fatalf("original ended %s with digests %v; the dataset's digest is %s", orig.State, orig.DatasetDigests, local.Digest)
	}
	if !strings.HasPrefix(orig.URL, s.url+"/jobs/") {
		t.Fatalf("job URL %q", orig.URL)
	}

	t.Run("a deterministic rerun is identical", func(t *testing.T) {
		re := wait(s.admin.Rerun(ctx, orig.ID, false))
		if re.State != gef.JobSucceeded || re.RerunOf == nil || *re.RerunOf != orig.ID || re.Verdict == nil ||
			*re.Verdict != gef.VerdictIdentical || len(re.Differences) != 0 || re.ImageDigest != orig.ImageDigest {
			t.Fatalf("rerun: %s verdict %v differences %v", re.State, re.Verdict, re.Differences)
		}
	})

	t.Run("a rerun of a run that writes the time differs in that file", func(t *testing.T) {
		timed := s.run(s.admin, gef.JobRequest{Service: svc.Name, Dataset: "climate", Params: map[string]any{"write_time": true}})
		if timed.State != gef.JobSucceeded {
			t.Fatalf("timed run: %s %s", timed.State, timed.Reason)
		}
		re := wait(s.admin.Rerun(ctx, timed.ID, false))
		want := []gef.Difference{{Path: "result/time.txt", Change: gef.ChangeChanged}}
		if re.Verdict == nil || *re.Verdict != gef.VerdictDiffers || fmt.Sprint(re.Differences) != fmt.Sprint(want) {
			t.Fatalf("verdict %v, differences %v; want differs in %v", re.Verdict, re.Differences, want)
		}
	})

	t.Run("an identical request is served by reuse without a container", func(t *testing.T) {
		since := time.Now()
		start := time.Now()
		j, err := s.admin.Submit(ctx, req)
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("reuse answered in %s", took)
		// Final in the answer to the submit itself: nothing was queued.
		if j.State != gef.JobSucceeded || j.ReuseOf == nil || *j.ReuseOf != orig.ID || j.Node != "" || j.Timestamps.Assigned != nil ||
			fmt.Sprint(j.Outputs) != fmt.Sprint(orig.Outputs) || j.DatasetDigests["data"] != local.Digest {
			t.Fatalf("reused job: %+v", j)
		}
		for _, o := range j.Outputs {
			rc, err := s.admin.Output(ctx, j.ID, o.Name, o.Path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != o.SHA256 {
				t.Fatalf("download of reused %s/%s: sha256 %x, record %s", o.Name, o.Path, sum, o.SHA256)
			}
		}
		// reuse false runs; the engine's events show its container, and
		// none for the reused job.
		no := false
		ran := s.run(s.admin, gef.JobRequest{Service: req.Service, Dataset: req.Dataset, Params: req.Params, Reuse: &no})
		if ran.ReuseOf != nil || ran.State != gef.JobSucceeded {
			t.Fatalf("reuse false: %+v", ran)
		}
		if n := containerEvents(t, since, ran.ID); n == 0 {
			t.Fatal("the engine shows no container event for a job that ran; the check below would prove nothing")
		}
		if n := containerEvents(t, since, j.ID); n != 0 {
			t.Fatalf("the engine saw %d container events for the reused job", n)
		}
		if cs, err := s.rt.Containers(ctx, map[string]string{agent.LabelJob: j.ID}); err != nil || len(cs) != 0 {
			t.Fatalf("containers of the reused job: %v %v", cs, err)
		}
	})

	t.Run("the RO-Crate is JSON-LD naming every digest, and reproduces the run", func(t *testing.T) {
		crate, err := s.admin.Provenance(ctx, orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		expanded, err := rocrate.Expand(crate)
		if err != nil {
			t.Fatalf("%v\n%s", err, crate)
		}
		const wfrun, schema = "https://w3id.org/ro/terms/workflow-run#", "http://schema.org/"
		if got := rocrate.Values(expanded, wfrun+"ContainerImage", schema+"identifier"); len(got) != 1 || got[0] != imageID {
			t.Fatalf("image %v, want %s", got, imageID)
		}
		if got := rocrate.Values(expanded, schema+"Dataset", schema+"identifier"); !strings.Contains(strings.Join(got, " "), local.Digest) {
			t.Fatalf("dataset identifiers %v lack %s", got, local.Digest)
		}
		sums := strings.Join(rocrate.Values(expanded, schema+"MediaObject", wfrun+"sha256"), " ")
		for _, o := range orig.Outputs {
			if !strings.Contains(sums, o.SHA256) {
				t.Fatalf("output sums %s lack %s/%s %s", sums, o.Name, o.Path, o.SHA256)
			}
		}
		// The crate alone, written to a file as a reader would keep it.
		file := filepath.Join(t.TempDir(), "ro-crate-metadata.json")
		if err := os.WriteFile(file, crate, 0o644); err != nil {
			t.Fatal(err)
		}
		kept, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		re := wait(s.admin.FromProvenance(ctx, kept, false))
		if re.State != gef.JobSucceeded || re.Verdict == nil || *re.Verdict != gef.VerdictIdentical || re.ReuseOf != nil ||
			re.RerunOf == nil || *re.RerunOf != orig.ID || fmt.Sprint(re.Argv) != fmt.Sprint(orig.Argv) {
			t.Fatalf("run from the crate: %s verdict %v argv %q (original %q)", re.State, re.Verdict, re.Argv, orig.Argv)
		}
	})

	t.Run("a public job reads anonymously, a private one is not found", func(t *testing.T) {
		anon := client.New(s.url, "")
		other, err := s.admin.Submit(ctx, gef.JobRequest{Service: svc.Name, Dataset: "climate", Params: map[string]any{"lines": 1}})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{orig.ID, other.ID} {
			if _, err := anon.Job(ctx, id); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("anonymous read of private job %s: %v, want 404", id, err)
			}
		}
		if _, err := s.admin.SetVisibility(ctx, orig.ID, gef.Public); err != nil {
			t.Fatal(err)
		}
		j, err := anon.Job(ctx, orig.ID)
		if err != nil || j.ID != orig.ID || j.Visibility != gef.Public {
			t.Fatalf("anonymous read of the public job: %+v %v", j, err)
		}
		if _, err := anon.Provenance(ctx, orig.ID); err != nil {
			t.Fatalf("anonymous provenance: %v", err)
		}
		rc, err := anon.Output(ctx, orig.ID, orig.Outputs[0].Name, orig.Outputs[0].Path)
		if err != nil {
			t.Fatalf("anonymous download: %v", err)
		}
		rc.Close()
		if _, err := anon.Job(ctx, other.ID); !isStatus(err, http.StatusNotFound) {
			t.Fatalf("anonymous read of a private job beside a public one: %v", err)
		}
		resp, err := http.Get(orig.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s anonymously: %s", orig.URL, resp.Status)
		}
		bib, err := anon.Citation(ctx, orig.ID, "bibtex")
		if err != nil || !strings.Contains(string(bib), orig.URL) {
			t.Fatalf("citation: %s %v", bib, err)
		}
		wait(other, nil)
	})

	t.Run("changed data is refused with both digests, until accepted", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(data, "a.txt"), []byte("alphb\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		changed, err := volumes.DigestDir(ctx, data, nil)
		if err != nil || changed.Digest == local.Digest {
			t.Fatalf("changed digest %s %v", changed.Digest, err)
		}
		// The node learns of the change when it scans again; a restart
		// scans at once.
		siteA.stop(syscall.SIGTERM, 20*time.Second)
		s.node("site-a", map[string]string{"climate": data})
		eventually(t, 30*time.Second, "the manager knows the new digest", func() bool {
			var ds gef.Dataset
			err := s.admin.Do(ctx, http.MethodGet, "/api/v1/datasets/climate", nil, &ds)
			return err == nil && len(ds.Digests) == 1 && ds.Digests[0] == changed.Digest
		})
		_, err = s.admin.Rerun(ctx, orig.ID, false)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusConflict || !strings.Contains(e.Message, local.Digest) ||
			!strings.Contains(e.Message, changed.Digest) || !strings.Contains(e.Message, "no node has held the bytes it ran on") {
			t.Fatalf("rerun on changed data: %v", err)
		}
		t.Logf("refusal: %s", e.Message)
		re := wait(s.admin.Rerun(ctx, orig.ID, true))
		if re.State != gef.JobSucceeded || !re.AcceptChangedData || re.DatasetDigests["data"] != changed.Digest || re.Verdict == nil {
			t.Fatalf("accepted rerun: %s accept=%v digests %v verdict %v", re.State, re.AcceptChangedData, re.DatasetDigests, re.Verdict)
		}
		rec, err := s.admin.ProvenanceRecord(ctx, re.ID)
		if err != nil || !rec.AcceptChangedData || rec.Inputs[0].Digest != changed.Digest || rec.RerunOf == nil {
			t.Fatalf("its record: %+v %v", rec, err)
		}
	})
}

// containerEvents counts the engine's container events since a time for
// containers labelled with the job.
func containerEvents(t *testing.T, since time.Time, job string) int {
	t.Helper()
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	until := time.Now()
	msgs, errs := cli.Events(ctx, events.ListOptions{
		Since:   fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()),
		Until:   fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", "container"), filters.Arg("label", agent.LabelJob+"="+job)),
	})
	n := 0
	for {
		select {
		case <-msgs:
			n++
		case err := <-errs:
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("docker events: %v", err)
			}
			return n
		}
	}
}

func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}
