package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/internal/testimages"
)

// TestBrowserSessions starts a session of a service that answers HTTP from
// its form, lists it, opens it, and stops it, all in the browser.
func TestBrowserSessions(t *testing.T) {
	s := newStack(t)
	c := newChrome(t, s.url)
	browse := image(t, s.rt, testimages.Browse)
	data := dataset(t, map[string]string{"notes.txt": "hello\n", "tables/t.csv": "a,b\n1,2\n"})
	s.node(nodeName("ui-sessions"), map[string]string{"lab": data})
	svc := s.publish(browse)
	if _, err := s.admin.CreateUser(t.Context(), "ada", gef.RoleUser, browserPassword); err != nil {
		t.Fatal(err)
	}

	tb := c.tab(t)
	tb.signIn("ada", browserPassword)
	if !tb.exists(`nav a[href="/sessions"]`) {
		t.Fatalf("the menu has no sessions link:\n%s", tb.text("nav"))
	}
	tb.open("/services/" + svc.Name + "/run?dataset=lab")
	if got := tb.text("h1"); !strings.HasPrefix(got, "Start Dataset browser") {
		t.Fatalf("the form of a service that answers HTTP is headed %q", got)
	}
	tb.do("name the session", chromedp.SendKeys(chromedp.ID("session_name"), "lab-browser"))
	tb.shot("start-session")
	if bad := eval[string](tb, `Array.from(document.querySelectorAll('.run-form :invalid')).map(e => e.name + ':' + e.validationMessage).join('; ')`); bad != "" {
		t.Fatalf("the form is invalid in the browser: %s", bad)
	}
	if st := tb.submit(`.run-form button[type=submit]`); st != 200 {
		t.Fatalf("starting the session: %d %s", st, tb.text("main"))
	}
	if !strings.Contains(tb.text(".notice"), "starting") {
		t.Fatalf("after starting, the page says %q", tb.text("main"))
	}
	// The list is a plain page: look again until the session runs.
	tb.eventually("the session runs", `(function(){
		if (!document.querySelector('tr[data-session] [data-state="running"]')) { location.reload(); return false }
		return true })()`, 2*time.Minute)
	tb.shot("sessions")
	href := eval[string](tb, `document.querySelector('tr[data-session] a.button').href`)
	if !strings.Contains(href, "/s/lab-browser/") {
		t.Fatalf("the open link is %q, want the session's name in it", href)
	}

	// Opening it shows the dataset, read-only, through the manager; the
	// browser's own GEF session is what lets it in.
	tb.open(strings.TrimPrefix(href, s.url))
	tb.waitFor("the dataset's listing", `document.body && document.body.innerText.includes("notes.txt")`, 30*time.Second)
	if !strings.Contains(tb.text("body"), "tables") {
		t.Fatalf("the session shows:\n%s", tb.text("body"))
	}
	tb.shot("session-open")

	tb.open("/sessions")
	if st := tb.submit(`tr[data-session] form button.danger`); st != 200 {
		t.Fatalf("stopping: %d", st)
	}
	tb.eventually("the session ends", `(function(){
		var s = document.querySelector('tr[data-session] [data-state]');
		if (!s || s.dataset.state !== "stopped") { location.reload(); return false }
		return true })()`, 2*time.Minute)
	if tb.exists(`tr[data-session] a.button`) || tb.exists(`tr[data-session] form button.danger`) {
		t.Fatal("a stopped session still offers open or stop")
	}
	tb.shot("session-stopped")

	// Someone else sees neither the session nor a way to stop it.
	if _, err := s.admin.CreateUser(t.Context(), "bob", gef.RoleUser, browserPassword); err != nil {
		t.Fatal(err)
	}
	other := c.tab(t)
	other.signIn("bob", browserPassword)
	other.open("/sessions")
	if other.exists(`tr[data-session]`) {
		t.Fatal("another user sees ada's session")
	}
}
