package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-manager/server"
)

// The browser tests of the features that came after the first GUI:
// reruns with their verdict, public jobs, publishing by upload, builds
// followed live, dataset versions and access, groups. TestBrowser runs
// them on its stack.

// browserEnv is what TestBrowser's subtests share.
type browserEnv struct {
	s       *stack
	c       *chrome
	node    string
	testsvc string            // the image ID of the published test service
	tokens  map[string]string // API tokens, by user
}

// token returns an API token of user.
func (e *browserEnv) token(t *testing.T, user string) string {
	t.Helper()
	if tok, ok := e.tokens[user]; ok {
		return tok
	}
	tok, err := e.s.admin.CreateToken(context.Background(), user, "e2e", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if e.tokens == nil {
		e.tokens = map[string]string{}
	}
	e.tokens[user] = tok.Secret
	return tok.Secret
}

// clientOf returns an API client acting for a user.
func (e *browserEnv) clientOf(t *testing.T, user string) *client.Client {
	t.Helper()
	return client.New(e.s.url, e.token(t, user))
}

// tab opens a tab signed in as user without the sign-in form, which the
// other tests use and whose attempts are limited per address: its session
// cookie holds an API token of the user, which the GUI takes as it takes a
// session token.
func (e *browserEnv) tab(t *testing.T, user string) *tab {
	t.Helper()
	tb := e.c.tab(t)
	httpOnly := true
	if _, err := chromedp.Call(tb.ctx, network.SetCookie, network.SetCookieParams{Name: server.SessionCookie, Value: e.token(t, user),
		URL: e.s.url + "/", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteLax}); err != nil {
		t.Fatal(err)
	}
	tb.open("/")
	if got := tb.text(".who .user"); !strings.HasPrefix(got, user) {
		t.Fatalf("a tab with %s's session shows %q", user, got)
	}
	tb.who = user
	return tb
}

// rerunFromThePage is issue 5's step 6: rerun a job from its page and see
// the rerun reach succeeded, judged identical, without reloading.
func (e *browserEnv) rerunFromThePage(t *testing.T) {
	orig := e.s.run(e.clientOf(t, "ada"), gef.JobRequest{Service: "csv-stats", Dataset: "weather", Params: map[string]any{"column": "temperature", "bins": 3}})
	if orig.State != gef.JobSucceeded {
		t.Fatalf("the original ended %s: %s", orig.State, orig.Reason)
	}
	tb := e.tab(t, "ada")
	tb.open("/jobs/" + orig.ID)
	tb.waitFor("the ended job's page shows its provenance and citation", `document.querySelector('#provenance dl') !== null
		&& document.getElementById('bibtex').textContent.startsWith('@misc{gef-')`, 10*time.Second)
	if got := tb.text("#provenance"); !strings.Contains(got, orig.ImageDigest) || !strings.Contains(got, orig.DatasetDigests["tables"]) {
		t.Fatalf("the provenance panel lacks the image or the dataset digest:\n%s", got)
	}
	tb.shot("job-ended")
	if st := tb.submit(`form.rerun button`); st != http.StatusOK {
		t.Fatalf("rerun: %d\n%s", st, tb.text("main"))
	}
	if got := tb.text(".notice"); !strings.HasPrefix(got, "This is a rerun") {
		t.Fatalf("after rerunning the page says %q", got)
	}
	id := eval[string](tb, `document.getElementById('job').dataset.job`)
	if id == orig.ID || !strings.Contains(tb.text("#rerun-of"), orig.ID) {
		t.Fatalf("the rerun's page (%s) does not link the original", id)
	}
	eval[bool](tb, `window.gefSamePage = true`)
	tb.waitFor("the rerun succeeds and is judged identical", endedBadly+` || (`+jobState+` === 'succeeded'
		&& document.querySelector('#verdict [data-verdict]') !== null && document.querySelector('#provenance dl') !== null)`, 2*time.Minute)
	tb.succeeded()
	if v := eval[string](tb, `document.querySelector('#verdict [data-verdict]').dataset.verdict`); v != "identical" {
		t.Fatalf("the rerun's verdict: %s\n%s", v, tb.text("#verdict"))
	}
	if !eval[bool](tb, `window.gefSamePage === true`) {
		t.Fatal("the page reloaded to show the verdict")
	}
	j, err := e.s.admin.Job(context.Background(), id)
	if err != nil || j.RerunOf == nil || *j.RerunOf != orig.ID || j.Verdict == nil || *j.Verdict != gef.VerdictIdentical || j.Owner != "ada" {
		t.Fatalf("the rerun's record: %+v %v", j, err)
	}
	tb.shot("rerun-identical")
	tb.noConsoleErrors()
}

// publicJob makes a job public from its page and reads it in a fresh
// browser that never signed in.
func (e *browserEnv) publicJob(t *testing.T) {
	ctx := context.Background()
	j := e.s.run(e.clientOf(t, "ada"), gef.JobRequest{Service: "csv-stats", Dataset: "weather", Params: map[string]any{"column": "day"}, Reuse: new(bool)})
	if j.State != gef.JobSucceeded {
		t.Fatalf("the job ended %s: %s", j.State, j.Reason)
	}
	anon := e.c.tab(t)
	anon.open("/jobs/" + j.ID)
	if loc := eval[string](anon, `location.pathname`); loc != "/login" {
		t.Fatalf("an anonymous visitor on a private job is at %s", loc)
	}

	owner := e.tab(t, "ada")
	owner.open("/jobs/" + j.ID)
	if got := owner.text("#visibility"); got != "private" {
		t.Fatalf("a new job shows as %q", got)
	}
	owner.submit(`form.visibility button`)
	if got := owner.text(".notice"); !strings.HasPrefix(got, "The job is public") || owner.text("#visibility") != "public" {
		t.Fatalf("after making it public: %q", got)
	}
	if j, err := e.s.admin.Job(ctx, j.ID); err != nil || j.Visibility != gef.Public {
		t.Fatalf("the job's record: %s %v", j.Visibility, err)
	}
	owner.noConsoleErrors()

	anon.open("/jobs/" + j.ID)
	if got := anon.text(".status"); !strings.Contains(got, "succeeded") {
		t.Fatalf("the public job's status, anonymously: %q", got)
	}
	if n := eval[int](anon, `document.querySelectorAll('main form, .menu').length`); n != 0 {
		t.Fatalf("an anonymous visitor sees %d forms or menus", n)
	}
	if !anon.exists(`.who a[href^="/login"]`) || !anon.exists(`#provenance dl`) || !strings.Contains(anon.text("#stable-url"), "/jobs/"+j.ID) {
		t.Fatal("the public page lacks the sign-in link, the provenance or the stable URL")
	}
	// Its outputs and its RO-Crate download without signing in.
	got := eval[map[string]string](anon, `(async () => {
		const out = await fetch(document.querySelector('tr[data-output] a').href);
		const crate = await fetch(document.getElementById('crate').href);
		return {output: String(out.status), crate: String(crate.status), type: crate.headers.get('Content-Type') || '', body: await crate.text()};
	})()`)
	if got["output"] != "200" || got["crate"] != "200" || !strings.HasPrefix(got["type"], "application/ld+json") || !strings.Contains(got["body"], j.ImageDigest) {
		t.Fatalf("anonymous downloads: %v", got)
	}
	anon.shot("public-job")
	anon.noConsoleErrors()
}

// publishByUpload publishes a fresh image through the upload form.
func (e *browserEnv) publishByUpload(t *testing.T) {
	version := "4.0.0-" + nonce()[:6]
	id := e.s.freshImage(e.testsvc, map[string]string{"eudat.gef.service.name": "Browser upload", "eudat.gef.service.version": version})
	file := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(file, e.s.save(id), 0o644); err != nil {
		t.Fatal(err)
	}
	tb := e.tab(t, "mae")
	tb.open("/publish")
	tb.shot("publish")
	tb.do("choose the tarball", chromedp.SetUploadFiles(chromedp.ID("p-image"), []string{file}))
	if st := tb.submit(`form.publish-tarball button`); st != http.StatusOK {
		t.Fatalf("upload: %d\n%s", st, tb.text("main"))
	}
	if got := tb.text(".notice"); got != "The service is published." || !strings.HasPrefix(tb.text("h1"), "Browser upload "+version) {
		t.Fatalf("after uploading: %q, %q\n%s", got, tb.text("h1"), tb.text("main"))
	}
	svc, err := e.s.admin.Service(context.Background(), "browser-upload", version)
	if err != nil || svc.Digest != id || svc.Publisher != "mae" {
		t.Fatalf("the uploaded service: %+v %v", svc, err)
	}
	if blob := e.s.blob(id); len(blob) == 0 {
		t.Fatal("GEF kept no copy of the uploaded image")
	}
	tb.shot("published-by-upload")
	tb.noConsoleErrors()
}

// buildFollowedLive builds an image from a Dockerfile typed into the form
// and follows the build's output on its page until it is done.
func (e *browserEnv) buildFollowedLive(t *testing.T) {
	tb := e.tab(t, "mae")
	tb.open("/builds/new")
	dockerfile := "FROM " + e.testsvc + "\nLABEL eudat.gef.service.name=\"Browser build\"\nLABEL eudat.gef.service.version=1.0.0\n" +
		"LABEL eudat.gef.test.nonce=" + nonce() + "\n"
	tb.do("type a Dockerfile", chromedp.SetValue(chromedp.ID("b-dockerfile"), dockerfile))
	tb.shot("build-form")
	if st := tb.submit(`form.build-dockerfile button`); st != http.StatusOK {
		t.Fatalf("build: %d\n%s", st, tb.text("main"))
	}
	if !tb.exists("#build[data-build]") {
		t.Fatalf("the build form did not lead to a build's page:\n%s", tb.text("main"))
	}
	id := eval[string](tb, `document.getElementById('build').dataset.build`)
	first := eval[string](tb, `document.querySelector('#build [data-state]').dataset.state`)
	if gef.BuildState(first).Final() {
		t.Fatalf("the build had ended (%s) before its page loaded", first)
	}
	eval[bool](tb, `window.gefSamePage = true`)
	t.Cleanup(func() {
		if b, err := e.s.admin.Build(context.Background(), id); err == nil && b.ImageDigest != "" {
			_ = e.s.rt.RemoveImage(context.Background(), b.ImageDigest)
		}
	})
	const buildState = `document.querySelector('#build [data-state]').dataset.state`
	tb.waitFor("the build's output appears", buildState+` === 'failed' || document.getElementById('log').textContent.includes('Step 1/')`, 2*time.Minute)
	tb.shot("build-running")
	tb.waitFor("the build is done and names its service", buildState+` === 'failed' || (`+buildState+` === 'done'
		&& document.querySelector('#published a') !== null)`, 3*time.Minute)
	if st := eval[string](tb, buildState); st != string(gef.BuildDone) {
		tb.shot("build-" + st)
		t.Fatalf("the build ended %s: %s\n%s", st, tb.text(".status"), tb.text("#log"))
	}
	if !eval[bool](tb, `window.gefSamePage === true`) {
		t.Fatal("the build's page reloaded")
	}
	log := tb.text("#log")
	b, err := e.s.admin.Build(context.Background(), id)
	if err != nil || b.State != gef.BuildDone || b.Service != "browser-build" || !strings.Contains(log, "gef: built image "+b.ImageDigest) ||
		!strings.Contains(tb.text("#log-status"), "ended") {
		t.Fatalf("the build: %+v %v\nthe page's log:\n%s", b, err, log)
	}
	tb.shot("build-done")
	tb.open("/builds")
	if got := tb.text(`tr[data-build="` + id + `"]`); !strings.Contains(got, "done") || !strings.Contains(got, "browser-build 1.0.0") {
		t.Fatalf("the builds list shows the build as %q", got)
	}
	tb.shot("builds")
	tb.noConsoleErrors()
}

// datasetsAndGroups has an admin make a group and restrict a dataset to
// it, then lift the restriction.
func (e *browserEnv) datasetsAndGroups(t *testing.T) {
	ctx := context.Background()
	admin := e.tab(t, "root")
	admin.open("/admin/groups")
	admin.do("name a group", chromedp.SendKeys(chromedp.ID("g-name"), "climate-lab"))
	admin.submit(`form[action="/admin/groups"] button`)
	admin.do("name a member", chromedp.SendKeys(chromedp.CSS(`#group-climate-lab input[name=user]`), "ada"))
	admin.submit(`#group-climate-lab form.add-member button`)
	if !admin.exists(`#group-climate-lab li[data-member="ada"]`) {
		t.Fatalf("the group does not list its new member:\n%s", admin.text("main"))
	}
	admin.shot("groups")

	admin.open("/datasets/weather")
	ds, err := e.s.admin.Dataset(ctx, "weather")
	if err != nil || len(ds.Digests) != 1 {
		t.Fatalf("dataset weather: %+v %v", ds, err)
	}
	if !strings.Contains(admin.text("#digest"), ds.Digests[0]) || !admin.exists(`#versions tr[data-version="`+ds.Digests[0]+`"]`) {
		t.Fatalf("the dataset page lacks its digest or version:\n%s", admin.text("main"))
	}
	admin.do("restrict it to the group", chromedp.Click(chromedp.ID("a-restricted")),
		chromedp.Click(chromedp.CSS(`input[name=group][value="climate-lab"]`)))
	admin.submit(`form.access-form button`)
	if got := admin.text("#access p"); !strings.Contains(got, "Only the members of climate-lab and the administrators") {
		t.Fatalf("after restricting: %q", got)
	}
	admin.shot("dataset-access")
	if ds, err := e.s.admin.Dataset(ctx, "weather"); err != nil || !ds.Access.Restricted || strings.Join(ds.Access.Groups, ",") != "climate-lab" {
		t.Fatalf("the access stored: %+v %v", ds.Access, err)
	}
	// ada is in the group: the run form still offers her the dataset.
	ada := e.tab(t, "ada")
	ada.open("/services/csv-stats/run")
	if !ada.exists(`select[name="input.tables"] option[value="weather"]`) {
		t.Fatal("a member of the group is not offered the dataset")
	}
	admin.open("/datasets/weather")
	admin.do("lift the restriction", chromedp.Click(chromedp.ID("a-restricted")))
	admin.submit(`form.access-form button`)
	if ds, err := e.s.admin.Dataset(ctx, "weather"); err != nil || ds.Access.Restricted {
		t.Fatalf("the access after lifting it: %+v %v", ds.Access, err)
	}
	admin.noConsoleErrors()
	ada.noConsoleErrors()
}

// newPagesByRole checks that the maintainer and admin pages added since
// the first GUI are neither linked for nor open to those without the role.
func (e *browserEnv) newPagesByRole(t *testing.T) {
	page, err := e.s.admin.Builds(context.Background(), client.BuildFilter{})
	if err != nil || len(page.Items) == 0 {
		t.Fatalf("no build to try: %v", err)
	}
	build := page.Items[0].ID
	user := e.tab(t, "ada")
	for _, sel := range []string{`a[href="/builds"]`, `a[href="/admin/groups"]`, `a[href="/publish"]`} {
		if user.exists(sel) {
			t.Errorf("a user's page links %s", sel)
		}
	}
	for path, want := range map[string]int64{"/builds": 403, "/builds/new": 403, "/builds/" + build: 403, "/admin/groups": 403} {
		if st := user.open(path); st != want {
			t.Errorf("a user on %s: %d, want %d", path, st, want)
		}
	}
	user.open("/datasets/weather")
	if user.exists(`#access`) {
		t.Error("a user sees the dataset's access form")
	}
	// Posting the admin's form, made by hand with the user's own token, is
	// refused too.
	eval[bool](user, `(() => {
		const f = document.createElement('form');
		f.method = 'post'; f.action = '/datasets/weather/access'; f.id = 'probe';
		f.innerHTML = '<input type="hidden" name="restricted" value="true"><button type="submit">probe</button>';
		f.prepend(document.querySelector('input[name=csrf]').cloneNode());
		document.querySelector('main').append(f);
		return true;
	})()`)
	if st := user.submit(`#probe button`); st != http.StatusForbidden {
		t.Errorf("a user posting a dataset's access: %d", st)
	}
	user.noConsoleErrors()

	other := "max"
	if _, err := e.s.admin.CreateUser(context.Background(), other, gef.RoleMaintainer, browserPassword); err != nil {
		t.Fatal(err)
	}
	maint := e.tab(t, other)
	if !maint.exists(`a[href="/builds"]`) || maint.exists(`a[href="/admin/groups"]`) {
		t.Error("a maintainer's menu is wrong")
	}
	for path, want := range map[string]int64{"/admin/groups": 403, "/builds/" + build: 404, "/builds": 200} {
		if st := maint.open(path); st != want {
			t.Errorf("another maintainer on %s: %d, want %d", path, st, want)
		}
	}
	maint.open("/services/browser-build")
	if maint.exists(`form[action*="/delete"]`) || maint.exists(`form[action*="/deprecate"]`) {
		t.Error("a maintainer is offered to delete or deprecate another's service")
	}
	maint.noConsoleErrors()
}
