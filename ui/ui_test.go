package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/server"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/objstore/local"
)

// The in-process tests here run the GUI over real HTTP against a manager
// on SQLite and a local object store. The browser tests in e2e/ drive it
// in Chromium on the real stack.

const (
	imageID  = "sha256:5f0c0b4c5b7f0f6e8f8e2d3c4b5a69788796a5b4c3d2e1f00112233445566778"
	password = "correct horse battery"
)

// statsLabels describe a small CSV statistics service, like csvstats.
var statsLabels = map[string]string{
	"eudat.gef.service.name":                "Table stats",
	"eudat.gef.service.version":             "1.0.0",
	"eudat.gef.service.description":         "Summarises one column.",
	"eudat.gef.service.input.1.name":        "tables",
	"eudat.gef.service.input.1.path":        "/data",
	"eudat.gef.service.output.1.name":       "stats",
	"eudat.gef.service.output.1.path":       "/out",
	"eudat.gef.service.param.1.name":        "column",
	"eudat.gef.service.param.1.type":        "str",
	"eudat.gef.service.param.1.required":    "true",
	"eudat.gef.service.param.1.pattern":     "[A-Za-z0-9_ .-]{1,64}",
	"eudat.gef.service.param.1.description": "The column to summarise",
	"eudat.gef.service.param.2.name":        "delimiter",
	"eudat.gef.service.param.2.type":        "enum",
	"eudat.gef.service.param.2.values":      "comma,tab,semicolon",
	"eudat.gef.service.param.2.default":     "comma",
	"eudat.gef.service.param.3.name":        "no_header",
	"eudat.gef.service.param.3.type":        "bool",
	"eudat.gef.service.param.4.name":        "bins",
	"eudat.gef.service.param.4.type":        "int",
	"eudat.gef.service.param.4.min":         "1",
	"eudat.gef.service.param.4.max":         "1000",
	"eudat.gef.service.param.4.default":     "10",
	"eudat.gef.service.param.4.description": "Histogram bins",
	"eudat.gef.service.resources.memory":    "512m",
	"org.opencontainers.image.source":       "https://example.org/stats",
	"org.opencontainers.image.licenses":     "Apache-2.0",
}

// bundle is a manager with the API and the GUI, served over HTTP, with a
// node holding the dataset "tables" and the image of statsLabels.
type bundle struct {
	url   string
	gui   *UI
	st    *store.Store
	m     *manager.Manager
	admin manager.Principal
	node  manager.Principal
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupOn(t, "")
}

// setupOn is setup on the database dsn; empty means a fresh SQLite file.
func setupOn(t testing.TB, dsn string) *bundle {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(dir, "gef.db")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := auth.NewIssuer("gef", "gef-api", key)
	if err != nil {
		t.Fatal(err)
	}
	h := http.NewServeMux()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	objects, err := local.New(filepath.Join(dir, "objects"), ts.URL+"/api/v1/blobs", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{PollWait: 200 * time.Millisecond, NodeTimeout: time.Second}, st, objects, issuer, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	srv := server.New(m, log, objects.Handler())
	gui, err := New(m, Config{PublicURL: ts.URL, AllowLogin: srv.LoginLimit(), PageSize: 20}, log)
	if err != nil {
		t.Fatal(err)
	}
	gui.Mount(srv.Engine())
	h.Handle("/", srv)

	b := &bundle{url: ts.URL, m: m, gui: gui, st: st}
	b.admin = b.principal(t, "admin", gef.RoleAdmin)
	b.node = b.principal(t, "site-a", gef.RoleNode)
	err = m.RegisterNode(ctx, b.node, gef.NodeRegistration{Name: "site-a", Capacity: 2,
		Datasets:      []gef.NodeDataset{{Name: "tables", Size: 123456, Files: 3}},
		Images:        []gef.NodeImage{{ID: imageID, Labels: statsLabels, Entrypoint: []string{"/stats"}}},
		EngineVersion: "20.10.24", EngineAPI: "1.41", AgentVersion: gef.Version})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bundle) principal(t testing.TB, name string, role gef.Role) manager.Principal {
	t.Helper()
	tok, err := b.m.Bootstrap(context.Background(), name, role)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.m.Authenticate(context.Background(), tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// user makes a user with a password and a browser signed in as them.
func (b *bundle) user(t testing.TB, name string, role gef.Role) *browser {
	t.Helper()
	if _, err := b.m.CreateUser(context.Background(), b.admin, name, role, password); err != nil {
		t.Fatal(err)
	}
	br := b.browser(t)
	br.signIn(name, password)
	return br
}

func (b *bundle) publish(t testing.TB) gef.Service {
	t.Helper()
	svc, _, err := b.m.RegisterService(context.Background(), b.admin, imageID)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// browser is an HTTP client that keeps cookies, follows no redirects and
// sends Origin with posts, as a browser does.
type browser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func (b *bundle) browser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: b.url, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type answer struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (br *browser) do(req *http.Request) answer {
	br.t.Helper()
	resp, err := br.c.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		br.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
}

func (br *browser) get(path string) answer {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodGet, br.base+path, nil)
	if err != nil {
		br.t.Fatal(err)
	}
	return br.do(req)
}

func (br *browser) post(path string, form url.Values) answer {
	br.t.Helper()
	return br.postFrom(br.base, path, form)
}

func (br *browser) postFrom(origin, path string, form url.Values) answer {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, br.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return br.do(req)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token reads the form token from a page.
func (br *browser) token(page string) string {
	br.t.Helper()
	m := csrfInput.FindStringSubmatch(br.get(page).body)
	if m == nil {
		br.t.Fatalf("no form token on %s", page)
	}
	return m[1]
}

func (br *browser) signIn(name, pw string) {
	br.t.Helper()
	tok := br.token("/login")
	a := br.post("/login", url.Values{"csrf": {tok}, "name": {name}, "password": {pw}, "next": {"/"}})
	if a.status != http.StatusSeeOther || a.location != "/" {
		br.t.Fatalf("sign in as %s: %d %s\n%s", name, a.status, a.location, a.body)
	}
}

func TestSignInAndOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := b.m.CreateUser(context.Background(), b.admin, "ada", gef.RoleUser, password); err != nil {
		t.Fatal(err)
	}
	br := b.browser(t)

	// Anonymous visitors are sent to sign in, and back afterwards.
	a := br.get("/jobs?state=running")
	if a.status != http.StatusSeeOther || a.location != "/login?next="+url.QueryEscape("/jobs?state=running") {
		t.Fatalf("anonymous /jobs: %d %q", a.status, a.location)
	}
	login := br.get(a.location)
	if login.status != http.StatusOK || !strings.Contains(login.body, `name="next" value="/jobs?state=running"`) {
		t.Fatalf("sign-in page: %d\n%s", login.status, login.body)
	}
	tok := csrfInput.FindStringSubmatch(login.body)[1]

	wrong := br.post("/login", url.Values{"csrf": {tok}, "name": {"ada"}, "password": {"not the password"}, "next": {"/jobs"}})
	if wrong.status != http.StatusUnauthorized || !strings.Contains(wrong.body, "Wrong user name or password") {
		t.Fatalf("wrong password: %d\n%s", wrong.status, wrong.body)
	}
	noToken := br.post("/login", url.Values{"name": {"ada"}, "password": {password}})
	if noToken.status != http.StatusForbidden {
		t.Fatalf("sign-in without the form token: %d", noToken.status)
	}
	foreign := br.postFrom("https://evil.example", "/login", url.Values{"csrf": {tok}, "name": {"ada"}, "password": {password}})
	if foreign.status != http.StatusForbidden {
		t.Fatalf("sign-in posted from another origin: %d", foreign.status)
	}

	ok := br.post("/login", url.Values{"csrf": {tok}, "name": {"ada"}, "password": {password}, "next": {"/jobs?state=running"}})
	if ok.status != http.StatusSeeOther || ok.location != "/jobs?state=running" {
		t.Fatalf("sign in: %d %q", ok.status, ok.location)
	}
	var cookie *http.Cookie
	for _, c := range ok.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, server.SessionCookie+"=") {
			cookie, _ = http.ParseSetCookie(c)
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Secure {
		t.Fatalf("session cookie = %+v", cookie)
	}
	// The API takes the same cookie.
	if a := br.get("/api/v1/whoami"); a.status != http.StatusOK || !strings.Contains(a.body, `"name":"ada"`) {
		t.Fatalf("whoami with the session cookie: %d %s", a.status, a.body)
	}
	home := br.get("/")
	if home.status != http.StatusOK || !strings.Contains(home.body, "Welcome, ada") {
		t.Fatalf("home: %d", home.status)
	}
	if h := home.header.Get("Content-Security-Policy"); !strings.Contains(h, "script-src 'self'") {
		t.Fatalf("no content security policy: %q", h)
	}

	// Signing out needs the form token too.
	if a := br.post("/logout", url.Values{}); a.status != http.StatusForbidden {
		t.Fatalf("sign out without the token: %d", a.status)
	}
	out := br.post("/logout", url.Values{"csrf": {br.token("/")}})
	if out.status != http.StatusSeeOther || out.location != "/login?notice=signed-out" {
		t.Fatalf("sign out: %d %q", out.status, out.location)
	}
	if a := br.get("/services"); a.status != http.StatusSeeOther {
		t.Fatalf("after signing out, /services answered %d", a.status)
	}
}

func TestSignInIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	br := b.browser(t)
	tok := br.token("/login")
	// The attempts go out together: the limit is checked before the slow
	// password hash, so a loaded machine cannot spread them over enough
	// time for the limit to refill.
	const tries = 15
	statuses := make(chan int, tries)
	for i := 0; i < tries; i++ {
		go func() {
			form := url.Values{"csrf": {tok}, "name": {"nobody"}, "password": {"whatever-it-is"}}
			req, _ := http.NewRequest(http.MethodPost, b.url+"/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", b.url)
			resp, err := br.c.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	limited := 0
	for i := 0; i < tries; i++ {
		st := <-statuses
		if st != http.StatusTooManyRequests && st != http.StatusUnauthorized {
			t.Errorf("a sign-in attempt answered %d", st)
		}
		if st == http.StatusTooManyRequests {
			limited++
			if limited == 1 {
				// The API's sign-in shares the limit.
				req, _ := http.NewRequest(http.MethodPost, b.url+"/api/v1/login", strings.NewReader(`{"name":"nobody","password":"whatever-it-is"}`))
				if a := br.do(req); a.status != http.StatusTooManyRequests {
					t.Errorf("API sign-in after the GUI's attempts: %d", a.status)
				}
			}
		}
	}
	if limited == 0 {
		t.Fatalf("%d sign-in attempts at once were never refused", tries)
	}
}

func TestRolesSeeOnlyTheirPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	user := b.user(t, "ada", gef.RoleUser)
	maint := b.user(t, "mae", gef.RoleMaintainer)
	admin := b.user(t, "root", gef.RoleAdmin)

	for _, tc := range []struct {
		who   *browser
		path  string
		want  int
		links []string // menu links the page must show
		not   []string // and must not
	}{
		{user, "/services", 200, []string{`href="/jobs"`}, []string{`href="/publish"`, `href="/admin/users"`, `href="/nodes"`, `href="/builds"`, `href="/admin/groups"`, "Deprecate"}},
		{user, "/services/table-stats", 200, nil, []string{"Deprecate 1.0.0"}},
		{user, "/publish", 403, nil, nil},
		{user, "/admin/users", 403, nil, nil},
		{user, "/nodes", 403, nil, nil},
		{user, "/nodes/site-a", 403, nil, nil},
		{user, "/builds", 403, nil, nil},
		{user, "/builds/new", 403, nil, nil},
		{user, "/builds/01J0000000000000000000000Z", 403, nil, nil},
		{user, "/admin/groups", 403, nil, nil},
		{maint, "/admin/groups", 403, nil, nil},
		{maint, "/builds", 200, nil, nil},
		// The service is the admin's: another maintainer may not deprecate it.
		{maint, "/services/table-stats", 200, []string{`href="/publish"`, `href="/builds"`}, []string{`href="/admin/users"`, "Deprecate 1.0.0", "Delete 1.0.0"}},
		{admin, "/services/table-stats", 200, []string{"Deprecate 1.0.0", "Delete 1.0.0", "Build a new version"}, nil},
		{maint, "/publish", 200, nil, nil},
		{maint, "/admin/users", 403, nil, nil},
		{admin, "/services", 200, []string{`href="/publish"`, `href="/admin/users"`, `href="/nodes"`}, nil},
		{admin, "/nodes", 200, []string{"site-a", "20.10.24"}, nil},
		{admin, "/nodes/site-a", 200, []string{"tables"}, nil},
		{admin, "/admin/users", 200, []string{"ada", "mae", "maintainer"}, nil},
	} {
		a := tc.who.get(tc.path)
		if a.status != tc.want {
			t.Errorf("%s: %d, want %d", tc.path, a.status, tc.want)
		}
		for _, s := range tc.links {
			if !strings.Contains(a.body, s) {
				t.Errorf("%s lacks %s", tc.path, s)
			}
		}
		for _, s := range tc.not {
			if strings.Contains(a.body, s) {
				t.Errorf("%s shows %s", tc.path, s)
			}
		}
	}
	// Posting to a page of another role is refused just the same.
	if a := user.post("/publish", url.Values{"csrf": {user.token("/")}, "image_id": {imageID}}); a.status != http.StatusForbidden {
		t.Fatalf("a user publishing: %d", a.status)
	}
	// Someone else's job is not found, so its id does not leak.
	job, err := b.m.Submit(context.Background(), b.admin, gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if a := user.get("/jobs/" + job.ID); a.status != http.StatusNotFound {
		t.Fatalf("another user's job: %d", a.status)
	}
	if a := admin.get("/jobs/" + job.ID); a.status != http.StatusOK {
		t.Fatalf("admin on a job: %d", a.status)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	br := b.user(t, "ada", gef.RoleUser)
	a := br.get("/no/such/page")
	if a.status != http.StatusNotFound || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") || !strings.Contains(a.body, "Page not found") {
		t.Fatalf("unknown page: %d %s", a.status, a.header.Get("Content-Type"))
	}
	// Under /api/ the answer keeps the API's JSON shape.
	a = br.get("/api/v1/no/such/thing")
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || a.status != http.StatusNotFound || body.Error.Code != "not_found" {
		t.Fatalf("unknown API path: %d %s", a.status, a.body)
	}
	req, _ := http.NewRequest(http.MethodDelete, b.url+"/api/v1/jobs", nil)
	if a := br.do(req); a.status != http.StatusMethodNotAllowed || !strings.Contains(a.body, `"method_not_allowed"`) {
		t.Fatalf("wrong method on the API: %d %s", a.status, a.body)
	}
	for _, p := range []string{"/services/nothing", "/datasets/nothing", "/jobs/01J0000000000000000000000Z", "/jobs/not-an-id"} {
		if a := br.get(p); a.status != http.StatusNotFound {
			t.Errorf("%s: %d", p, a.status)
		}
	}
}

func TestRunForm(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	br := b.user(t, "ada", gef.RoleUser)

	form := br.get("/services/table-stats/run?dataset=tables")
	if form.status != http.StatusOK {
		t.Fatalf("run form: %d", form.status)
	}
	for _, want := range []string{
		`<input type="number" id="f-param-bins"`, `min="1" max="1000"`, `value="10"`, // int with bounds and default
		`<select id="f-param-delimiter"`, `<option value="semicolon"`, // enum
		`<input type="checkbox" id="f-param-no_header"`, // bool
		`data-pattern="[A-Za-z0-9_ .-]{1,64}"`,          // str with pattern
		`<option value="tables" selected>`,              // the dataset picker, preselected
		`<label for="f-param-column">`,                  // every control is labelled
		"Histogram bins", "A whole number from 1 to 1000. Default 10.",
	} {
		if !strings.Contains(form.body, want) {
			t.Errorf("the run form lacks %s", want)
		}
	}
	tok := csrfInput.FindStringSubmatch(form.body)[1]

	// A bad parameter comes back next to its field, the others keep their values.
	bad := br.post("/services/table-stats/run", url.Values{"csrf": {tok}, "version": {"1.0.0"},
		"input.tables": {"tables"}, "param.column": {"price;rm"}, "param.bins": {"5000"}, "param.delimiter": {"tab"}})
	if bad.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad parameters: %d", bad.status)
	}
	for _, want := range []string{
		`id="f-param-bins-error" role="alert">Must be an integer between 1 and 1000, got 5000.`,
		`id="f-param-column-error" role="alert">Must be a string matching`,
		`<option value="tab" selected>`, `value="price;rm"`,
	} {
		if !strings.Contains(bad.body, want) {
			t.Errorf("the refused form lacks %s", want)
		}
	}
	if strings.Contains(bad.body, `id="f-param-delimiter-error" role="alert">`+"M") {
		t.Error("a good field shows an error")
	}

	// A missing dataset is shown at its picker.
	missing := br.post("/services/table-stats/run", url.Values{"csrf": {tok}, "version": {"1.0.0"}, "param.column": {"price"}})
	if missing.status != http.StatusUnprocessableEntity || !strings.Contains(missing.body, `id="f-input-tables-error" role="alert">Is required.`) {
		t.Fatalf("missing dataset: %d\n%s", missing.status, missing.body)
	}

	// Without the form token nothing runs.
	if a := br.post("/services/table-stats/run", url.Values{"version": {"1.0.0"}, "input.tables": {"tables"}, "param.column": {"price"}}); a.status != http.StatusForbidden {
		t.Fatalf("run without the form token: %d", a.status)
	}
	if a := br.postFrom("http://evil.example", "/services/table-stats/run", url.Values{"csrf": {tok}, "version": {"1.0.0"},
		"input.tables": {"tables"}, "param.column": {"price"}}); a.status != http.StatusForbidden {
		t.Fatalf("run posted from another origin: %d", a.status)
	}

	good := br.post("/services/table-stats/run", url.Values{"csrf": {tok}, "version": {"1.0.0"},
		"input.tables": {"tables"}, "param.column": {"price"}, "param.no_header": {"true"}})
	if good.status != http.StatusSeeOther || !strings.HasPrefix(good.location, "/jobs/") {
		t.Fatalf("run: %d %q\n%s", good.status, good.location, good.body)
	}
	id := strings.TrimPrefix(good.location, "/jobs/")
	j, err := b.m.Job(context.Background(), b.admin, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Inputs["tables"] != "tables" || j.Params["column"] != "price" || j.Params["no_header"] != true ||
		j.Params["bins"] != float64(10) && j.Params["bins"] != int64(10) || j.Params["delimiter"] != "comma" {
		t.Fatalf("the job ran with %v %v", j.Inputs, j.Params)
	}

	page := br.get(good.location)
	for _, want := range []string{`data-final="false"`, `data-state="queued"`, "Cancel job", `data-logs="/api/v1/jobs/` + id + `/logs"`,
		"<code>price</code>", `<a href="/datasets/tables">tables</a>`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the job page lacks %s", want)
		}
	}
	live := br.get(good.location + "/live")
	if live.status != http.StatusOK || !strings.Contains(live.body, `data-live="status"`) || strings.Contains(live.body, "<html") {
		t.Fatalf("live part: %d\n%s", live.status, live.body)
	}

	// Cancel it from the page.
	cancel := br.post(good.location+"/cancel", url.Values{"csrf": {tok}})
	if cancel.status != http.StatusSeeOther || cancel.location != good.location+"?notice=canceled" {
		t.Fatalf("cancel: %d %q", cancel.status, cancel.location)
	}
	if page := br.get(good.location); !strings.Contains(page.body, `data-state="canceled"`) || strings.Contains(page.body, "Cancel job") {
		t.Fatal("the canceled job's page still offers to cancel it")
	}
}

func TestJobsPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	br := b.user(t, "ada", gef.RoleUser)
	ctx := context.Background()
	ada, err := b.m.Authenticate(ctx, b.sessionOf(t, "ada"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 45; i++ {
		if _, err := b.m.Submit(ctx, ada, gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "c"}}); err != nil {
			t.Fatal(err)
		}
	}
	// Someone else's job never shows.
	if _, err := b.m.Submit(ctx, b.admin, gef.JobRequest{Service: "table-stats", Dataset: "tables", Params: map[string]any{"column": "c"}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	next := "/jobs?state=queued&service=table-stats"
	pages := 0
	for next != "" {
		a := br.get(strings.ReplaceAll(next, "&amp;", "&"))
		if a.status != http.StatusOK {
			t.Fatalf("%s: %d", next, a.status)
		}
		pages++
		for _, m := range regexp.MustCompile(`<tr data-job="([0-9A-Z]+)">`).FindAllStringSubmatch(a.body, -1) {
			if seen[m[1]] {
				t.Fatalf("job %s on two pages", m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := regexp.MustCompile(`href="(/jobs\?[^"]+)" rel="next"`).FindStringSubmatch(a.body); m != nil {
			next = m[1]
			if !strings.Contains(next, "state=queued") || !strings.Contains(next, "service=table-stats") {
				t.Fatalf("the next page drops the filters: %s", next)
			}
		}
	}
	if pages != 3 || len(seen) != 45 {
		t.Fatalf("%d pages with %d jobs, want 3 pages with 45", pages, len(seen))
	}
	if a := br.get("/jobs?state=succeeded"); !strings.Contains(a.body, "No job matches") {
		t.Fatal("an empty filter result has no empty state")
	}
	if a := br.get("/jobs?page=nonsense"); a.status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad page token: %d", a.status)
	}
}

// sessionOf signs in through the API and returns the session token.
func (b *bundle) sessionOf(t *testing.T, name string) string {
	t.Helper()
	s, err := b.m.Login(context.Background(), name, password)
	if err != nil {
		t.Fatal(err)
	}
	return s.Token
}

func TestMaintainerAndAdminForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	maint := b.user(t, "mae", gef.RoleMaintainer)
	tok := maint.token("/publish")

	bad := maint.post("/publish", url.Values{"csrf": {tok}, "image_id": {"sha256:abc"}})
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(bad.body, `id="image_id-error" role="alert">Must be sha256:`) {
		t.Fatalf("publish a bad id: %d\n%s", bad.status, bad.body)
	}
	ok := maint.post("/publish", url.Values{"csrf": {tok}, "image_id": {imageID}})
	if ok.status != http.StatusSeeOther || ok.location != "/services/table-stats?version=1.0.0&notice=published" {
		t.Fatalf("publish: %d %q", ok.status, ok.location)
	}
	page := maint.get(ok.location)
	if !strings.Contains(page.body, "The service is published.") || !strings.Contains(page.body, "https://example.org/stats") {
		t.Fatal("the service page lacks the notice or the source link")
	}
	dep := maint.post("/services/table-stats/versions/1.0.0/deprecate", url.Values{"csrf": {tok}, "deprecated": {"true"}})
	if dep.status != http.StatusSeeOther || !strings.HasSuffix(dep.location, "notice=deprecated") {
		t.Fatalf("deprecate: %d %q", dep.status, dep.location)
	}
	if page := maint.get("/services/table-stats"); !strings.Contains(page.body, "Restore 1.0.0") {
		t.Fatal("a deprecated version offers no restore")
	}
	if a := maint.get("/services/table-stats/run"); a.status != http.StatusNotFound || !strings.Contains(a.body, "Every version of table-stats is deprecated") {
		t.Fatalf("run form of a retired service: %d", a.status)
	}

	admin := b.user(t, "root", gef.RoleAdmin)
	tok = admin.token("/admin/users")
	short := admin.post("/admin/users", url.Values{"csrf": {tok}, "name": {"bob"}, "role": {"user"}, "password": {"short"}})
	if short.status != http.StatusUnprocessableEntity || !strings.Contains(short.body, `id="u-password-error" role="alert">Must be 10 to 72`) {
		t.Fatalf("short password: %d\n%s", short.status, short.body)
	}
	made := admin.post("/admin/users", url.Values{"csrf": {tok}, "name": {"bob"}, "role": {"maintainer"}, "password": {password}})
	if made.status != http.StatusSeeOther {
		t.Fatalf("create user: %d\n%s", made.status, made.body)
	}
	twice := admin.post("/admin/users", url.Values{"csrf": {tok}, "name": {"bob"}, "role": {"user"}, "password": {password}})
	if twice.status != http.StatusConflict || !strings.Contains(twice.body, "exists already") {
		t.Fatalf("the same user twice: %d", twice.status)
	}
	bob := b.browser(t)
	bob.signIn("bob", password)
	if a := bob.get("/publish"); a.status != http.StatusOK {
		t.Fatalf("the new maintainer on /publish: %d", a.status)
	}

	// Tokens: make one for a node, see the secret once, revoke one of ours.
	nodeTok := admin.post("/tokens", url.Values{"csrf": {tok}, "name": {"site-b"}, "user": {"site-a"}, "days": {"0"}})
	secret := regexp.MustCompile(`<textarea id="secret" readonly rows="3" spellcheck="false">([^<]+)</textarea>`).FindStringSubmatch(nodeTok.body)
	if nodeTok.status != http.StatusOK || secret == nil {
		t.Fatalf("token for a node: %d\n%s", nodeTok.status, nodeTok.body)
	}
	if p, err := b.m.Authenticate(context.Background(), secret[1]); err != nil || p.Name != "site-a" {
		t.Fatalf("the shown token does not work: %v %v", p, err)
	}
	mine := admin.post("/tokens", url.Values{"csrf": {tok}, "name": {"laptop"}, "days": {"30"}})
	id := regexp.MustCompile(`<tr data-token="([0-9A-Z]+)">`).FindStringSubmatch(mine.body)
	if id == nil {
		t.Fatal("the new token is not listed")
	}
	if a := admin.post("/tokens/"+id[1]+"/revoke", url.Values{"csrf": {tok}}); a.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", a.status)
	}
	if a := admin.get("/tokens"); !strings.Contains(a.body, `token-revoked">revoked`) {
		t.Fatal("the revoked token is not shown as revoked")
	}
	if a := bob.post("/tokens/"+id[1]+"/revoke", url.Values{"csrf": {bob.token("/tokens")}}); a.status != http.StatusNotFound {
		t.Fatalf("revoking another's token: %d", a.status)
	}
}

func TestPagesRender(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t)
	admin := b.user(t, "root", gef.RoleAdmin)
	for _, p := range []string{"/", "/services", "/services?q=column&publisher=admin", "/services?q=nothing-like-it",
		"/services/table-stats", "/services/table-stats?version=1.0.0", "/services/table-stats/run", "/datasets",
		"/datasets/tables", "/nodes", "/nodes/site-a", "/jobs", "/jobs?node=site-a&state=queued", "/publish", "/admin/users", "/tokens",
		"/admin/groups", "/builds", "/builds?state=failed", "/builds/new", "/builds/new?base=table-stats:1.0.0"} {
		a := admin.get(p)
		if a.status != http.StatusOK {
			t.Errorf("%s: %d\n%s", p, a.status, a.body)
			continue
		}
		if !strings.Contains(a.body, "</html>") || strings.Contains(a.body, "<no value>") {
			t.Errorf("%s rendered badly", p)
		}
	}
	for _, f := range []string{"gef.css", "gef.js", "favicon.svg"} {
		a := admin.get("/static/" + f)
		if a.status != http.StatusOK || a.header.Get("ETag") == "" {
			t.Errorf("static %s: %d", f, a.status)
		}
	}
}

// TestJobPageSlots checks that the job page's slots are filled by the
// partials that define them: the page works without _job-repro.html, and
// another partial can fill a slot instead.
func TestJobPageSlots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fsys := fstest.MapFS{}
	err := fs.WalkDir(templateFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "templates/_job-repro.html" {
			return err
		}
		data, err := templateFS.ReadFile(p)
		fsys[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fsys["templates/_slots.html"] = &fstest.MapFile{Data: []byte(
		`{{define "job-provenance"}}<section id="prov">provenance of {{.Data.Job.ID}}</section>{{end}}`)}
	u, err := New(b.m, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	u.tmpl = loadTemplates(fsys, u.funcs())
	var out strings.Builder
	j := gef.Job{ID: "01J0000000000000000000000Z", State: gef.JobSucceeded, Timestamps: gef.Timestamps{Queued: time.Now()}}
	if err := u.page("job").ExecuteTemplate(&out, "layout", view{Data: jobData{Job: j}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `<section id="prov">provenance of 01J0000000000000000000000Z</section>`) {
		t.Fatalf("the slot stays empty:\n%s", out.String())
	}
	if strings.Contains(out.String(), `id="citation"`) {
		t.Fatal("a slot no partial fills rendered something")
	}
	// The embedded templates fill every slot, with nothing but zero values
	// to show.
	out.Reset()
	if err := b.gui.page("job").ExecuteTemplate(&out, "layout", view{Data: jobData{Job: j, CanChange: true, RerunOf: "01J0000000000000000000000Y"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="provenance"`, `id="citation"`, `id="verdict"`, `id="rerun-of"`, `action="/jobs/` + j.ID + `/visibility"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the job page lacks %s", want)
		}
	}
}

// TestMissingTemplateStopsStartUp checks that a handler whose template is
// missing fails when the routes are built, not on its first request.
func TestMissingTemplateStopsStartUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u, err := New(b.m, Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	delete(u.tmpl.pages, "jobs")
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "jobs.html") {
			t.Fatalf("Mount without jobs.html: recovered %v", r)
		}
	}()
	u.Mount(gin.New())
}
