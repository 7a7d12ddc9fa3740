package e2e

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/internal/testimages"
)

// TestBrowser drives the web GUI in Chromium against a gef-manager on
// PostgreSQL and MinIO with a real gef-node, as scientists, maintainers and
// administrators use it. Each subtest saves screenshots of its key pages
// under test-artifacts/screenshots/.
func TestBrowser(t *testing.T) {
	s := newStack(t)
	c := newChrome(t, s.url)
	ctx := context.Background()

	csvstats := image(t, s.rt, testimages.CSVStats)
	testsvc := image(t, s.rt, testimages.TestService)
	checksum := image(t, s.rt, testimages.Checksum)
	weather := dataset(t, map[string]string{
		"2024-01.csv": "station,day,temperature\nDE-BRE,1,3.5\nDE-BRE,2,4.1\nDE-ZUG,1,-12.0\nFI-SOD,1,-21.3\n",
		"2024-02.csv": "station,day,temperature\nDE-BRE,1,5.2\nDE-ZUG,1,-9.8\nFI-SOD,1,-18.1\nFI-SOD,2,-16.4\n",
		"README.txt":  "Daily temperatures at three stations.\n",
	})
	// Other test runs may share the Docker engine, and a starting node
	// removes the containers left under its name: this one is unique.
	node := "ui-" + strings.TrimPrefix(s.bucket, "gef-test-")
	s.node(node, map[string]string{"weather": weather})
	s.publish(csvstats)
	s.publish(testsvc)
	for name, role := range map[string]gef.Role{"ada": gef.RoleUser, "mae": gef.RoleMaintainer, "root": gef.RoleAdmin} {
		if _, err := s.admin.CreateUser(ctx, name, role, browserPassword); err != nil {
			t.Fatal(err)
		}
	}

	// Steps 1 to 5: sign in, open the catalog, run a parameterised service
	// from its generated form, watch it end without reloading, and fetch an
	// output, checking its sha256.
	t.Run("RunFromTheCatalog", func(t *testing.T) {
		tb := c.tab(t)
		tb.signIn("ada", browserPassword)
		tb.shot("home")

		tb.open("/services")
		if !tb.exists(`.card[data-service="csv-stats"]`) || !tb.exists(`.card[data-service="gef-test-service"]`) {
			t.Fatalf("the catalog lacks the published services:\n%s", tb.text("main"))
		}
		tb.shot("catalog")
		tb.docShot("catalog")
		tb.do("search the catalog", chromedp.SendKeys(chromedp.ID("q"), "histogram"))
		tb.submit(`form.filters button[type=submit]`)
		if !tb.exists(`.card[data-service="csv-stats"]`) || tb.exists(`.card[data-service="gef-test-service"]`) {
			t.Fatalf("searching for histogram shows:\n%s", tb.text(".cards"))
		}
		tb.submit(`.card[data-service="csv-stats"] a.button`)

		// The form is generated from the labels, every control labelled.
		if got := tb.text("h1"); !strings.HasPrefix(got, "Run CSV stats") {
			t.Fatalf("run page heading %q", got)
		}
		controls := eval[[]string](tb, `Array.from(document.querySelectorAll('.run-form input:not([type=hidden]), .run-form select, .run-form textarea'))
			.map(e => e.type + ':' + e.name + ':' + (e.labels.length > 0) + ':' + (e.min || '') + '-' + (e.max || ''))`)
		want := []string{"select-one:input.tables:true:-", "text:param.column:true:-", "select-one:param.delimiter:true:-",
			"checkbox:param.no_header:true:-", "number:param.bins:true:1-1000"}
		if strings.Join(controls, " ") != strings.Join(want, " ") {
			t.Fatalf("run form controls:\n%v\nwant\n%v", controls, want)
		}
		if v := eval[string](tb, `document.querySelector('[name="param.bins"]').value`); v != "10" {
			t.Fatalf("bins shows %q, not its default 10", v)
		}
		// Keyboard: from the dataset picker, Tab reaches every field and the Run button.
		tb.do("focus the dataset picker", chromedp.Focus(chromedp.CSS(`[name="input.tables"]`)))
		var path []string
		for i := 0; i < 12; i++ {
			tb.do("press Tab", chromedp.KeyEvent(kb.Tab))
			path = append(path, eval[string](tb, `document.activeElement.name || document.activeElement.textContent.trim()`))
			if path[len(path)-1] == "Run" {
				break
			}
		}
		if got := strings.Join(path, " "); got != "param.column param.delimiter param.no_header param.bins Run" {
			t.Fatalf("tabbing through the form visits: %s", got)
		}

		tb.do("fill in the run form",
			chromedp.SetValue(chromedp.CSS(`[name="input.tables"]`), "weather"),
			chromedp.SendKeys(chromedp.CSS(`[name="param.column"]`), "temperature"),
			chromedp.SetValue(chromedp.CSS(`[name="param.bins"]`), "4"))
		tb.shot("run-form")
		tb.docShot("run-form")
		if st := tb.submit(`.run-form button[type=submit]`); st != http.StatusOK {
			t.Fatalf("submitting the run form: %d\n%s", st, tb.text("main"))
		}
		if !tb.exists("#job[data-job]") {
			t.Fatalf("the run form did not lead to a job page:\n%s", tb.text("main"))
		}
		id := eval[string](tb, `document.getElementById('job').dataset.job`)
		eval[bool](tb, `window.gefSamePage = true`)

		tb.waitFor("the job succeeds on the page", endedBadly+` || (`+jobState+` === 'succeeded'
			&& document.getElementById('log').textContent.includes('temperature: n=8')
			&& document.querySelector('tr[data-output="stats/stats.json"]') !== null)`, 2*time.Minute)
		tb.succeeded()
		if !eval[bool](tb, `window.gefSamePage === true`) {
			t.Fatal("the job page reloaded to show the end of the job")
		}
		if got := tb.text(".timeline"); !strings.Contains(got, "running") || !strings.Contains(got, "succeeded") {
			t.Fatalf("timeline: %q", got)
		}
		tb.shot("job-succeeded")
		tb.docShot("job")

		// Step 5: download an output in the page with the session cookie and
		// check its sha256 against what the page and the job record say.
		got := eval[map[string]string](tb, `(async () => {
			const row = document.querySelector('tr[data-output="stats/stats.json"]');
			const r = await fetch(row.querySelector('a').href);
			const buf = await r.arrayBuffer();
			const sum = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', buf)))
				.map(b => b.toString(16).padStart(2, '0')).join('');
			return {status: String(r.status), computed: sum, header: r.headers.get('X-Content-SHA256') || '',
				shown: row.querySelector('.sha').textContent, size: String(buf.byteLength),
				body: new TextDecoder().decode(buf)};
		})()`)
		j, err := s.admin.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var rec gef.OutputFile
		for _, o := range j.Outputs {
			if o.Name == "stats" && o.Path == "stats.json" {
				rec = o
			}
		}
		if got["status"] != "200" || got["computed"] != rec.SHA256 || got["header"] != rec.SHA256 || got["shown"] != rec.SHA256 ||
			got["size"] != fmt.Sprint(rec.Size) || !strings.Contains(got["body"], `"column": "temperature"`) {
			t.Fatalf("downloaded stats.json: %v; the record says %+v", got, rec)
		}
		if j.Params["bins"] != float64(4) || j.Inputs["tables"] != "weather" || j.Owner != "ada" {
			t.Fatalf("the job ran with %v on %v for %s", j.Params, j.Inputs, j.Owner)
		}
		tb.noConsoleErrors()
	})

	// Step 4, strictly: the page is open while the job runs, the log
	// appears line by line, and the state reaches succeeded, all without a
	// reload.
	t.Run("LiveLogAndState", func(t *testing.T) {
		tb := c.tab(t)
		tb.signIn("ada", browserPassword)
		tb.open("/services/gef-test-service/run")
		tb.do("fill in the run form",
			chromedp.SetValue(chromedp.CSS(`[name="input.data"]`), "weather"),
			chromedp.SetValue(chromedp.CSS(`[name="param.lines"]`), "3"),
			chromedp.SetValue(chromedp.CSS(`[name="param.sleep"]`), "4"),
			chromedp.SendKeys(chromedp.CSS(`[name="param.message"]`), "hello from the browser"))
		tb.submit(`.run-form button[type=submit]`)
		first := eval[string](tb, `document.querySelector('#job [data-state]').dataset.state`)
		if gef.JobState(first).Final() {
			t.Fatalf("the job had ended (%s) before its page loaded", first)
		}
		eval[bool](tb, `window.gefSamePage = true`)
		tb.waitFor("the first lines appear in the log and the page says running", endedBadly+` || (
			document.getElementById('log').textContent.includes('testsvc: started') && `+jobState+` === 'running')`, time.Minute)
		if st := eval[string](tb, jobState); st != string(gef.JobRunning) {
			t.Fatalf("the job is %s: %s", st, tb.text(".status"))
		}
		if got := tb.text("#log"); !strings.Contains(got, "line 1\nline 2\nline 3") || !strings.Contains(got, "hello from the browser") || strings.Contains(got, "testsvc: done") {
			t.Fatalf("log while running: %q", got)
		}
		tb.shot("job-running")
		tb.waitFor("the job succeeds", endedBadly+` || (`+jobState+` === 'succeeded'
			&& document.getElementById('log').textContent.includes('testsvc: done')
			&& document.querySelector('tr[data-output="result/listing.txt"]') !== null)`, time.Minute)
		tb.succeeded()
		if !eval[bool](tb, `window.gefSamePage === true`) {
			t.Fatal("the page reloaded")
		}
		if got := tb.text("#log-status"); !strings.Contains(got, "ended") {
			t.Fatalf("the log's status line says %q after the end", got)
		}
		tb.shot("job-succeeded")
		tb.noConsoleErrors()
	})

	// Every page works without JavaScript: the form posts, and a running
	// job's page refreshes itself until the job ends.
	t.Run("WithoutJavaScript", func(t *testing.T) {
		tb := c.tab(t)
		if _, err := chromedp.Call(tb.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
			t.Fatal(err)
		}
		tb.signIn("ada", browserPassword)
		tb.open("/services/csv-stats/run")
		tb.do("fill in the run form",
			chromedp.SetValue(chromedp.CSS(`[name="input.tables"]`), "weather"),
			chromedp.SendKeys(chromedp.CSS(`[name="param.column"]`), "day"))
		if st := tb.submit(`.run-form button[type=submit]`); st != http.StatusOK {
			t.Fatalf("submitting the run form: %d", st)
		}
		if tb.exists("html.js") {
			t.Fatal("the page's script ran")
		}
		if first := eval[string](tb, `document.querySelector('#job [data-state]').dataset.state`); gef.JobState(first).Final() {
			t.Fatalf("the job had ended (%s) before its page loaded", first)
		}
		tb.eventually("the page refreshes itself until the job has succeeded", endedBadly+` || (`+jobState+` === 'succeeded'
			&& document.getElementById('log').textContent.includes('day: n=8'))`, time.Minute)
		tb.succeeded()
		tb.shot("job-without-js")
		tb.noConsoleErrors()
	})

	t.Run("CancelFromThePage", func(t *testing.T) {
		tb := c.tab(t)
		tb.signIn("ada", browserPassword)
		tb.open("/services/gef-test-service/run")
		tb.do("fill in the run form",
			chromedp.SetValue(chromedp.CSS(`[name="input.data"]`), "weather"),
			chromedp.SetValue(chromedp.CSS(`[name="param.sleep"]`), "600"))
		tb.submit(`.run-form button[type=submit]`)
		tb.waitFor("the job runs", `document.getElementById('log').textContent.includes('testsvc: started')`, time.Minute)
		tb.submit(`form[action$="/cancel"] button`)
		tb.waitFor("the job is canceled", `document.querySelector('#job [data-state]').dataset.state === 'canceled'`, time.Minute)
		if tb.exists(`form[action$="/cancel"]`) {
			t.Fatal("a canceled job still offers to cancel")
		}
		if got := tb.text(".status"); !strings.Contains(got, "canceled by ada") {
			t.Fatalf("status of the canceled job: %q", got)
		}
		tb.shot("job-canceled")
		tb.noConsoleErrors()
	})

	// Step 7: a bad parameter is shown inline, next to its field: first as
	// the browser's hint while typing, then as the server's refusal.
	t.Run("BadParameterInline", func(t *testing.T) {
		tb := c.tab(t)
		tb.signIn("ada", browserPassword)
		tb.open("/services/csv-stats/run")
		tb.do("fill in bad values",
			chromedp.SetValue(chromedp.CSS(`[name="input.tables"]`), "weather"),
			chromedp.SendKeys(chromedp.CSS(`[name="param.column"]`), "temp;rm"),
			chromedp.Clear(chromedp.CSS(`[name="param.bins"]`)),
			chromedp.SendKeys(chromedp.CSS(`[name="param.bins"]`), "5000"))
		hint := func(field string) string {
			return tb.text(fmt.Sprintf(`.field[data-field=%q] .error`, field))
		}
		if got := hint("param.bins"); !strings.Contains(got, "1000") {
			t.Fatalf("typing bins 5000 shows no hint; the hint is %q", got)
		}
		if got := hint("param.column"); !strings.Contains(got, "Must match") {
			t.Fatalf("typing a bad column shows %q", got)
		}
		tb.shot("hints-while-typing")

		// The browser would stop the post; the server must refuse it anyway.
		eval[bool](tb, `document.querySelector('.run-form').noValidate = true`)
		if st := tb.submit(`.run-form button[type=submit]`); st != http.StatusUnprocessableEntity {
			t.Fatalf("posting bad parameters answered %d", st)
		}
		if got := hint("param.bins"); got != "Must be an integer between 1 and 1000, got 5000." {
			t.Fatalf("the server's complaint about bins: %q", got)
		}
		if got := hint("param.column"); !strings.HasPrefix(got, "Must be a string matching") {
			t.Fatalf("the server's complaint about column: %q", got)
		}
		next := eval[bool](tb, `(() => {
			const f = document.querySelector('.field[data-field="param.bins"]');
			const input = f.querySelector('input'), err = f.querySelector('.error');
			return !err.hidden && input.getAttribute('aria-invalid') === 'true'
				&& input.getAttribute('aria-describedby').split(' ').includes(err.id)
				&& input.value === '5000'
				&& document.querySelector('.field[data-field="param.delimiter"] .error').hidden;
		})()`)
		if !next {
			t.Fatal("the bins error is not tied to its field, or another field shows one")
		}
		if !tb.exists("#form-errors") {
			t.Fatal("no summary above the refused form")
		}
		tb.shot("refused-inline")
		tb.noConsoleErrors()
		page, err := s.admin.Jobs(ctx, gef.JobFilter{Owner: "ada", Service: "csv-stats"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Items {
			if j.Params["bins"] == float64(5000) {
				t.Fatalf("the refused form started job %s", j.ID)
			}
		}
	})

	// A user without the role sees no publish or admin pages, and gets 403
	// (404 for others' jobs) by direct URL.
	t.Run("RolesAndDirectURLs", func(t *testing.T) {
		rootJob := s.run(s.admin, gef.JobRequest{Service: "csv-stats", Dataset: "weather", Params: map[string]any{"column": "day"}})

		user := c.tab(t)
		user.signIn("ada", browserPassword)
		user.open("/services")
		for _, sel := range []string{`a[href="/publish"]`, `a[href="/admin/users"]`, `a[href="/nodes"]`} {
			if user.exists(sel) {
				t.Errorf("a user's page shows %s", sel)
			}
		}
		user.open("/services/csv-stats")
		if user.exists(`form[action*="/deprecate"]`) {
			t.Error("a user is offered to deprecate a version")
		}
		for path, want := range map[string]int64{"/publish": 403, "/admin/users": 403, "/nodes": 403, "/nodes/" + node: 403,
			"/jobs/" + rootJob.ID: 404, "/jobs/" + rootJob.ID + "/live": 404} {
			if st := user.open(path); st != want {
				t.Errorf("a user on %s: %d, want %d", path, st, want)
			}
		}
		user.open("/admin/users")
		if got := user.text("h1"); got != "Not allowed" {
			t.Errorf("the 403 page says %q", got)
		}
		user.shot("forbidden")
		user.open("/jobs/" + rootJob.ID)
		user.shot("not-found")

		maint := c.tab(t)
		maint.signIn("mae", browserPassword)
		if !maint.exists(`a[href="/publish"]`) || maint.exists(`a[href="/admin/users"]`) || maint.exists(`a[href="/nodes"]`) {
			t.Error("a maintainer's menu is wrong")
		}
		if st := maint.open("/admin/users"); st != 403 {
			t.Errorf("a maintainer on /admin/users: %d", st)
		}

		admin := c.tab(t)
		admin.signIn("root", browserPassword)
		for _, sel := range []string{`a[href="/publish"]`, `a[href="/admin/users"]`, `a[href="/nodes"]`} {
			if !admin.exists(sel) {
				t.Errorf("an admin's page lacks %s", sel)
			}
		}
		admin.open("/nodes")
		if got := admin.text(`tr[data-node="` + node + `"]`); !strings.Contains(got, "ready") || !strings.Contains(got, "of 4") || !strings.Contains(got, "weather") {
			t.Errorf("the nodes page shows %s as %q", node, got)
		}
		admin.shot("nodes")
		admin.open("/jobs/" + rootJob.ID)
		admin.open("/datasets/weather")
		if !admin.exists(`tr[data-job="` + rootJob.ID + `"]`) {
			t.Error("the dataset page does not list the job that read it")
		}
		admin.shot("dataset")
		admin.noConsoleErrors()
	})

	t.Run("MaintainerAndAdmin", func(t *testing.T) {
		maint := c.tab(t)
		maint.signIn("mae", browserPassword)
		maint.open("/publish")
		maint.do("enter the image ID", chromedp.SendKeys(chromedp.ID("image_id"), checksum))
		maint.submit(`form.publish-node button[type=submit]`)
		if got := maint.text(".notice"); got != "The service is published." {
			t.Fatalf("after publishing: %q\n%s", got, maint.text("main"))
		}
		version := maint.text("tr.current td a")
		maint.shot("published")
		maint.submit(`tr.current form[action$="/deprecate"] button`)
		if got := maint.text(".notice"); !strings.Contains(got, "deprecated") || !maint.exists(`tr.current .badge.off`) {
			t.Fatalf("after deprecating: %q", got)
		}
		svc, err := s.admin.Services(ctx, "checksum")
		if err != nil || len(svc) != 1 || !svc[0].Deprecated || svc[0].Digest != checksum || svc[0].Version != version {
			t.Fatalf("the checksum service after deprecating: %+v %v", svc, err)
		}
		maint.shot("deprecated")
		maint.noConsoleErrors()

		admin := c.tab(t)
		admin.signIn("root", browserPassword)
		admin.open("/admin/users")
		admin.do("fill in a new user",
			chromedp.SendKeys(chromedp.ID("u-name"), "bea"),
			chromedp.SetValue(chromedp.ID("u-role"), "user"),
			chromedp.SendKeys(chromedp.ID("u-password"), browserPassword))
		admin.submit(`form.form button[type=submit]`)
		if !admin.exists(`tr[data-user="bea"]`) {
			t.Fatal("the new user is not listed")
		}
		admin.shot("users")
		admin.open("/tokens")
		admin.do("name a token", chromedp.SendKeys(chromedp.ID("t-name"), "portal"))
		admin.submit(`form.form button[type=submit]`)
		secret := eval[string](admin, `document.getElementById('secret').value`)
		if _, err := client.New(s.url, secret).Datasets(ctx); err != nil {
			t.Fatalf("the token the page showed does not work: %v", err)
		}
		admin.shot("token-made")
		admin.submit(`tr[data-token] form button`)
		if !admin.exists(`.badge.token-revoked`) {
			t.Fatal("the revoked token is not shown as revoked")
		}
		if _, err := client.New(s.url, secret).Datasets(ctx); err == nil {
			t.Fatal("the revoked token still works")
		}
		admin.noConsoleErrors()

		bea := c.tab(t)
		bea.signIn("bea", browserPassword)
		bea.noConsoleErrors()
	})

	// The features that came after the first GUI, in browser_repro_test.go.
	e := &browserEnv{s: s, c: c, node: node, testsvc: testsvc}
	t.Run("RerunFromThePage", e.rerunFromThePage)
	t.Run("PublicJobAnonymously", e.publicJob)
	t.Run("PublishByUpload", e.publishByUpload)
	t.Run("BuildFollowedLive", e.buildFollowedLive)
	t.Run("DatasetsAndGroups", e.datasetsAndGroups)
	t.Run("NewPagesByRole", e.newPagesByRole)

	// The pages stay usable at phone width: nothing makes the page scroll
	// sideways (wide tables scroll inside their own box).
	t.Run("PhoneWidth", func(t *testing.T) {
		tb := c.tab(t)
		tb.do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		tb.signIn("ada", browserPassword)
		page, err := s.admin.Jobs(ctx, gef.JobFilter{Owner: "ada", State: gef.JobSucceeded, Limit: 1})
		if err != nil || len(page.Items) == 0 {
			t.Fatalf("no succeeded job of ada: %v", err)
		}
		for _, p := range []string{"/", "/services", "/services/csv-stats", "/services/csv-stats/run", "/jobs", "/jobs/" + page.Items[0].ID, "/datasets",
			"/datasets/weather", "/tokens"} {
			tb.open(p)
			if w := eval[[]int](tb, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
				t.Errorf("%s is %d px wide on a %d px screen", p, w[0], w[1])
			}
			name := strings.Trim(strings.ReplaceAll(p, "/", "-"), "-")
			if strings.HasPrefix(p, "/jobs/") {
				name = "job"
			}
			tb.shot("phone-" + cmp.Or(name, "home"))
		}
		tb.noConsoleErrors()

		maint := e.tab(t, "mae")
		maint.do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		paths := []string{"/publish", "/builds/new", "/builds"}
		if builds, err := s.admin.Builds(ctx, client.BuildFilter{}); err == nil && len(builds.Items) > 0 {
			paths = append(paths, "/builds/"+builds.Items[0].ID)
		}
		for _, p := range paths {
			maint.open(p)
			if w := eval[[]int](maint, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
				t.Errorf("%s is %d px wide on a %d px screen", p, w[0], w[1])
			}
			name := strings.Trim(strings.ReplaceAll(p, "/", "-"), "-")
			if strings.Count(p, "/") == 2 && !strings.HasSuffix(p, "/new") {
				name = "build"
			}
			maint.shot("phone-" + name)
		}
		maint.noConsoleErrors()
	})
}

const browserPassword = "correct horse battery"

// jobState is the state a job's page shows; endedBadly holds when it shows
// an end other than success, so a wait for success stops at once.
const (
	jobState   = `document.querySelector('#job [data-state]').dataset.state`
	endedBadly = `['failed', 'system_error', 'canceled'].includes(` + jobState + `)`
)

// succeeded fails the test unless the job's page shows it succeeded.
func (tb *tab) succeeded() {
	tb.t.Helper()
	if st := eval[string](tb, jobState); st != string(gef.JobSucceeded) {
		tb.shot("job-" + st)
		tb.t.Fatalf("the job ended %s: %s", st, tb.text(".status"))
	}
}
