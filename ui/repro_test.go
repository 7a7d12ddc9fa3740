package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

func digestOf(n int) string { return "sha256:" + fmt.Sprintf("%064x", n) }

// holdDigest has the node report that its copy of "tables" has digest d.
func (b *bundle) holdDigest(t *testing.T, d string) {
	t.Helper()
	err := b.m.RegisterNode(context.Background(), b.node, gef.NodeRegistration{Name: "site-a", Capacity: 2,
		Datasets:      []gef.NodeDataset{{Name: "tables", Size: 123456, Files: 3, Digest: d}},
		Images:        []gef.NodeImage{{ID: imageID, Labels: statsLabels, Entrypoint: []string{"/stats"}}},
		EngineVersion: "20.10.24", EngineAPI: "1.41", Runtime: "runc 1.1.5", AgentVersion: gef.Version})
	if err != nil {
		t.Fatal(err)
	}
}

// runNext plays the node for the next queued job: it claims it, runs it
// on data of digest d, stages files (path in output "stats" → content)
// and reports it succeeded.
func (b *bundle) runNext(t *testing.T, d string, files map[string]string) gef.Job {
	t.Helper()
	ctx := context.Background()
	a, report := b.start(t, d)
	var manifest []gef.OutputFile
	for p := range files {
		manifest = append(manifest, gef.OutputFile{Name: "stats", Path: p})
	}
	if len(manifest) > 0 {
		urls, err := b.m.UploadURLs(ctx, b.node, a.JobID, gef.UploadRequest{Files: manifest})
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range manifest {
			body := files[f.Path]
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, urls.URLs["stats/"+f.Path], strings.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode/100 != 2 {
				t.Fatalf("upload %s: %v %v", f.Path, err, resp)
			}
			resp.Body.Close()
			sum := sha256.Sum256([]byte(body))
			manifest[i].Size, manifest[i].SHA256 = int64(len(body)), hex.EncodeToString(sum[:])
		}
	}
	code := 0
	return report(gef.JobReport{State: gef.JobSucceeded, ExitCode: &code, Outputs: manifest})
}

// start plays the node for the next queued job as far as running it on
// data of digest d, and returns its assignment and a way to report on it.
func (b *bundle) start(t *testing.T, d string) (gef.Assignment, func(gef.JobReport) gef.Job) {
	t.Helper()
	ctx := context.Background()
	var a gef.Assignment
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := b.m.Poll(ctx, b.node, gef.PollRequest{Free: 1, Running: []string{}, WaitMS: 200})
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
		t.Helper()
		r.Attempt, r.At = a.Attempt, time.Now()
		j, err := b.m.Report(ctx, b.node, a.JobID, r)
		if err != nil {
			t.Fatalf("report %s: %v", r.State, err)
		}
		return j
	}
	report(gef.JobReport{State: gef.JobRunning, ImageDigest: a.ImageDigest, DatasetDigests: map[string]string{"tables": d},
		Limits: &gef.Limits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 512, TimeoutSeconds: 3600}})
	return a, report
}

// as returns the manager principal of a user signed in through the API.
func (b *bundle) as(t *testing.T, name string) manager.Principal {
	t.Helper()
	p, err := b.m.Authenticate(context.Background(), b.sessionOf(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var jobLocation = regexp.MustCompile(`^/jobs/([0-9A-Z]{26})\?notice=rerun$`)

func TestRerunFromTheJobPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	ctx := context.Background()
	d1, d2 := digestOf(1), digestOf(2)
	b.holdDigest(t, d1)
	ada := b.user(t, "ada", gef.RoleUser)
	orig, err := b.m.Submit(ctx, b.as(t, "ada"), gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "price"}})
	if err != nil {
		t.Fatal(err)
	}

	// A job that has not ended offers no rerun, and refuses one.
	page := ada.get("/jobs/" + orig.ID)
	if strings.Contains(page.body, `class="inline rerun"`) || !strings.Contains(page.body, "When the job ends, GEF seals its provenance record") {
		t.Fatal("a queued job offers a rerun or shows a provenance record")
	}
	tok := csrfInput.FindStringSubmatch(page.body)[1]
	if a := ada.post("/jobs/"+orig.ID+"/rerun", url.Values{"csrf": {tok}}); a.status != http.StatusConflict ||
		!strings.Contains(a.body, `id="rerun-refused"`) || !strings.Contains(a.body, "rerun it once it has ended") || strings.Contains(a.body, "accept-changed") {
		t.Fatalf("rerun of a queued job: %d\n%s", a.status, a.body)
	}
	b.runNext(t, d1, map[string]string{"stats.json": `{"n": 3}`})

	page = ada.get("/jobs/" + orig.ID)
	for _, want := range []string{
		`<form method="post" action="/jobs/` + orig.ID + `/rerun" class="inline rerun">`,
		`<form method="post" action="/jobs/` + orig.ID + `/visibility" class="inline visibility">`,
		`id="visibility" title="Only its owner and the administrators can read this job">private</span>`,
		// The provenance record, sealed.
		"Sealed when the job ended", imageID, "tables: <code class=\"digest\">" + d1 + "</code>",
		"Docker 20.10.24, API 1.41; runtime runc 1.1.5", "512 MiB memory · 1 CPU · 512 processes · at most 1 h · network off",
		`<code class="canonical">{&#34;bins&#34;:10,&#34;column&#34;:&#34;price&#34;,&#34;delimiter&#34;:&#34;comma&#34;}</code>`,
		`href="/api/v1/jobs/` + orig.ID + `/provenance" download="ro-crate-metadata.json"`,
		// The citation.
		`<pre class="snippet" id="bibtex" tabindex="0" aria-label="BibTeX">@misc{gef-` + orig.ID + `,`,
		`&#34;id&#34;: &#34;gef-` + orig.ID + `&#34;`, "This job is private", "Make it public so that readers can.",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the ended job's page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Fatal(page.body)
	}
	// The live part carries the parts that appear at the end.
	if live := ada.get("/jobs/" + orig.ID + "/live"); !strings.Contains(live.body, `data-live="provenance"`) || !strings.Contains(live.body, `data-live="citation"`) ||
		!strings.Contains(live.body, "@misc{gef-") {
		t.Fatalf("the live part lacks the provenance or the citation:\n%s", live.body)
	}

	// Rerun: the form token is needed, then the new job is shown.
	if a := ada.post("/jobs/"+orig.ID+"/rerun", url.Values{}); a.status != http.StatusForbidden {
		t.Fatalf("rerun without the form token: %d", a.status)
	}
	rerun := func() string {
		t.Helper()
		a := ada.post("/jobs/"+orig.ID+"/rerun", url.Values{"csrf": {tok}})
		m := jobLocation.FindStringSubmatch(a.location)
		if a.status != http.StatusSeeOther || m == nil {
			t.Fatalf("rerun: %d %q\n%s", a.status, a.location, a.body)
		}
		return m[1]
	}
	same := rerun()
	page = ada.get("/jobs/" + same + "?notice=rerun")
	for _, want := range []string{"This is a rerun", `id="rerun-of">Rerun of job <a href="/jobs/` + orig.ID + `">`, `id="verdict"`, "When the rerun ends, its outputs are compared"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the new rerun's page lacks %s", want)
		}
	}
	b.runNext(t, d1, map[string]string{"stats.json": `{"n": 3}`})
	if page := ada.get("/jobs/" + same); !strings.Contains(page.body, `data-verdict="identical">identical</span> Every output file has the same`) {
		t.Fatalf("the identical rerun's page:\n%s", page.body)
	}

	other := rerun()
	b.runNext(t, d1, map[string]string{"stats.json": `{"n": 4}`, "extra.txt": "new"})
	page = ada.get("/jobs/" + other)
	for _, want := range []string{`data-verdict="differs">differs</span> 2 output files differ`,
		`<tr data-difference="stats/extra.txt"><td><code>stats/extra.txt</code></td><td><span class="change change-added">only in this rerun`,
		`<tr data-difference="stats/stats.json"><td><code>stats/stats.json</code></td><td><span class="change change-changed">other bytes`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the differing rerun's page lacks %s", want)
		}
	}

	// The data changed: the rerun is refused naming both digests, and the
	// page offers to accept the change.
	b.holdDigest(t, d2)
	refused := ada.post("/jobs/"+orig.ID+"/rerun", url.Values{"csrf": {tok}})
	if refused.status != http.StatusConflict || !strings.Contains(refused.body, `id="rerun-refused"`) ||
		!strings.Contains(refused.body, "<li>Dataset tables (input tables) changed since job "+orig.ID+" ran: it ran on "+d1+", the nodes hold "+d2+" now; no node has held the bytes") ||
		!strings.Contains(refused.body, `<input type="hidden" name="accept_changed_data" value="true"><button type="submit">Rerun on the changed data</button>`) {
		t.Fatalf("rerun on changed data: %d\n%s", refused.status, refused.body)
	}
	a := ada.post("/jobs/"+orig.ID+"/rerun", url.Values{"csrf": {tok}, "accept_changed_data": {"true"}})
	m := jobLocation.FindStringSubmatch(a.location)
	if a.status != http.StatusSeeOther || m == nil {
		t.Fatalf("rerun accepting changed data: %d %q", a.status, a.location)
	}
	if page := ada.get("/jobs/" + m[1]); !strings.Contains(page.body, "run on data that had changed since, as its owner accepted") {
		t.Fatal("the rerun on changed data does not say so")
	}
	b.runNext(t, d2, map[string]string{"stats.json": `{"n": 3}`})

	// An identical request reuses the original: its page says nothing ran.
	reused, err := b.m.Submit(ctx, b.as(t, "ada"), gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "price"}})
	if err != nil || reused.ReuseOf == nil {
		t.Fatalf("identical request: %+v %v", reused, err)
	}
	if page := ada.get("/jobs/" + reused.ID); !strings.Contains(page.body, `id="reuse-of">Nothing ran for this job: it reused the results of job <a href="/jobs/`+*reused.ReuseOf+`">`) {
		t.Fatal("the reused job's page does not link the job it reused")
	}

	// Someone else, or no one, gets no such job.
	bob := b.user(t, "bob", gef.RoleUser)
	if a := bob.post("/jobs/"+orig.ID+"/rerun", url.Values{"csrf": {bob.token("/")}}); a.status != http.StatusNotFound {
		t.Fatalf("another user's rerun of a private job: %d", a.status)
	}
	if a := ada.post("/jobs/not-a-job/rerun", url.Values{"csrf": {tok}}); a.status != http.StatusNotFound {
		t.Fatalf("rerun of no job: %d", a.status)
	}
}

func TestPublicJobPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	ctx := context.Background()
	b.holdDigest(t, digestOf(1))
	ada := b.user(t, "ada", gef.RoleUser)
	bob := b.user(t, "bob", gef.RoleUser)
	anon := b.browser(t)
	ended, err := b.m.Submit(ctx, b.as(t, "ada"), gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	b.runNext(t, digestOf(1), map[string]string{"stats.json": "{}"})
	running, err := b.m.Submit(ctx, b.as(t, "ada"), gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	tok := ada.token("/")

	if a := anon.get("/jobs/" + ended.ID); a.status != http.StatusSeeOther || !strings.HasPrefix(a.location, "/login?next=") {
		t.Fatalf("an anonymous visitor on a private job: %d %q", a.status, a.location)
	}
	// Only the owner may share it; the form token is needed.
	if a := bob.post("/jobs/"+ended.ID+"/visibility", url.Values{"csrf": {bob.token("/")}, "visibility": {"public"}}); a.status != http.StatusNotFound {
		t.Fatalf("another user making a private job public: %d", a.status)
	}
	if a := ada.post("/jobs/"+ended.ID+"/visibility", url.Values{"visibility": {"public"}}); a.status != http.StatusForbidden {
		t.Fatalf("visibility without the form token: %d", a.status)
	}
	if a := ada.post("/jobs/"+ended.ID+"/visibility", url.Values{"csrf": {tok}, "visibility": {"everyone"}}); a.status != http.StatusUnprocessableEntity {
		t.Fatalf("an unknown visibility: %d", a.status)
	}
	for _, id := range []string{running.ID, ended.ID} {
		a := ada.post("/jobs/"+id+"/visibility", url.Values{"csrf": {tok}, "visibility": {"public"}})
		if a.status != http.StatusSeeOther || a.location != "/jobs/"+id+"?notice=made-public" {
			t.Fatalf("make public: %d %q", a.status, a.location)
		}
	}

	// Anyone reads it, and sees no control that is not theirs.
	owner := ada.get("/jobs/" + running.ID)
	if !strings.Contains(owner.body, "Cancel job") || !strings.Contains(owner.body, "Make private") {
		t.Fatal("the owner's page of a public running job lacks its controls")
	}
	for _, tc := range []struct {
		who  string
		br   *browser
		want []string
		not  []string
	}{
		{"anonymous", anon, []string{`id="visibility"`, "Sign in to rerun it", `id="provenance"`, "@misc{gef-" + ended.ID, `href="/login?next=/jobs/` + ended.ID + `"`},
			[]string{"<form", `href="/jobs"`, `href="/datasets/tables"`, "This job is private"}},
		{"another user", bob, []string{`class="inline rerun"`, "@misc{gef-"},
			[]string{"Make private", "Cancel job", "Sign in to rerun it"}},
	} {
		for _, id := range []string{running.ID, ended.ID} {
			a := tc.br.get("/jobs/" + id)
			if a.status != http.StatusOK {
				t.Fatalf("%s on public job %s: %d", tc.who, id, a.status)
			}
			if live := tc.br.get("/jobs/" + id + "/live"); live.status != http.StatusOK || strings.Contains(live.body, "Cancel job") {
				t.Fatalf("%s on the live part of public job %s: %d", tc.who, id, live.status)
			}
			for _, s := range tc.not {
				if strings.Contains(a.body, s) {
					t.Errorf("%s sees %s on job %s", tc.who, s, id)
				}
			}
			if id != ended.ID {
				continue
			}
			for _, s := range tc.want {
				if !strings.Contains(a.body, s) {
					t.Errorf("%s does not see %s on the ended job", tc.who, s)
				}
			}
		}
	}
	// Nor may they use the controls by posting.
	if a := bob.post("/jobs/"+running.ID+"/cancel", url.Values{"csrf": {bob.token("/")}}); a.status != http.StatusForbidden {
		t.Fatalf("another user canceling a public job: %d", a.status)
	}
	if a := bob.post("/jobs/"+ended.ID+"/visibility", url.Values{"csrf": {bob.token("/")}, "visibility": {"private"}}); a.status != http.StatusForbidden {
		t.Fatalf("another user making a public job private: %d", a.status)
	}
	if a := anon.post("/jobs/"+ended.ID+"/rerun", url.Values{}); a.status != http.StatusSeeOther || a.location != "/login" {
		t.Fatalf("an anonymous rerun: %d %q", a.status, a.location)
	}
	// A signed-in user may rerun a public job, as a job of their own.
	a := bob.post("/jobs/"+ended.ID+"/rerun", url.Values{"csrf": {bob.token("/")}})
	if m := jobLocation.FindStringSubmatch(a.location); a.status != http.StatusSeeOther || m == nil {
		t.Fatalf("another user's rerun of a public job: %d %q", a.status, a.location)
	} else if j, err := b.m.Job(ctx, b.admin, m[1]); err != nil || j.Owner != "bob" {
		t.Fatalf("the rerun: %+v %v", j, err)
	}
	// Not when the data is not theirs to use: no button, and a refusal.
	if _, err := b.m.SetDatasetAccess(ctx, b.admin, "tables", gef.DatasetAccess{Restricted: true, Users: []string{"ada"}}); err != nil {
		t.Fatal(err)
	}
	if page := bob.get("/jobs/" + ended.ID); strings.Contains(page.body, `class="inline rerun"`) {
		t.Fatal("a user who may not use the data is offered a rerun")
	}
	if a := bob.post("/jobs/"+ended.ID+"/rerun", url.Values{"csrf": {bob.token("/")}}); a.status != http.StatusUnprocessableEntity ||
		!strings.Contains(a.body, `Dataset &#34;tables&#34; is not known.`) {
		t.Fatalf("a rerun on data the user may not use: %d\n%s", a.status, a.body)
	}

	// Private again: anonymous visitors are sent to sign in.
	if a := ada.post("/jobs/"+ended.ID+"/visibility", url.Values{"csrf": {tok}, "visibility": {"private"}}); a.location != "/jobs/"+ended.ID+"?notice=made-private" {
		t.Fatalf("make private: %d %q", a.status, a.location)
	}
	if a := anon.get("/jobs/" + ended.ID); a.status != http.StatusSeeOther {
		t.Fatalf("an anonymous visitor on a job made private: %d", a.status)
	}
}

func TestRetriedJobPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	ctx := context.Background()
	b.holdDigest(t, digestOf(1))
	ada := b.user(t, "ada", gef.RoleUser)
	j, err := b.m.Submit(ctx, b.as(t, "ada"), gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if page := ada.get("/jobs/" + j.ID); strings.Contains(page.body, `id="attempt"`) || strings.Contains(page.body, "<h2>Attempts</h2>") {
		t.Fatal("a first attempt shows attempts")
	}
	_, report := b.start(t, digestOf(1))
	if again := report(gef.JobReport{State: gef.JobSystemError, Reason: "the engine failed: disk full"}); again.State.Final() {
		t.Fatalf("after a system error the job is %s", again.State)
	}
	page := ada.get("/jobs/" + j.ID)
	for _, want := range []string{"attempt 1 failed: the engine failed: disk full; retrying (attempt 2 of 3)", "<h2>Attempts</h2>", `<tr data-attempt="1">`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the retried job's page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Fatal(page.body)
	}
	b.runNext(t, digestOf(1), map[string]string{"stats.json": "{}"})
	page = ada.get("/jobs/" + j.ID)
	if !strings.Contains(page.body, `data-state="succeeded"`) || !strings.Contains(page.body, `<tr data-attempt="2">`) ||
		!strings.Contains(page.body, `id="attempt">attempt 2 of 3</span>`) {
		t.Fatalf("the retried job's page once it succeeded:\n%s", page.body)
	}
}
