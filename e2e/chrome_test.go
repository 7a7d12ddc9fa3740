package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/eudat-gef/gef/internal/testenv"
)

// The browser tests drive Debian's chromium, headless, over the DevTools
// protocol. Each user gets a tab in a browser context of its own, so their
// cookies never mix; every tab records what the page writes to its console.

const chromiumPath = "/usr/bin/chromium"

// chrome is one headless Chromium for a test.
type chrome struct {
	t       *testing.T
	browser context.Context
	base    string

	mu    sync.Mutex
	shots map[string]int // screenshots taken so far, by folder
}

func newChrome(t *testing.T, base string) *chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Unavailable(t, "chromium (Debian package chromium)", err)
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 800))
	t.Cleanup(cancel)
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return &chrome{t: t, browser: browser, base: base, shots: map[string]int{}}
}

// tab is one page of one user.
type tab struct {
	t     *testing.T
	c     *chrome
	ctx   context.Context
	base  string
	shots string // where its screenshots go
	who   string // the user signed in

	mu       sync.Mutex
	problems []string
	docs     map[string]bool // URLs that were loaded as pages
}

// artifacts is the folder of the test artifacts the README names.
func artifacts() string {
	if d := os.Getenv("GEF_TEST_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join("..", "test-artifacts")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// tab opens a tab in a fresh browser context, 1280 px wide.
func (c *chrome) tab(t *testing.T) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(c.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, c: c, ctx: ctx, base: c.base, docs: map[string]bool{},
		shots: filepath.Join(artifacts(), "screenshots", unsafeName.ReplaceAllString(t.Name(), "_"))}
	c.mu.Lock()
	_, seen := c.shots[tb.shots]
	c.shots[tb.shots] += 0
	c.mu.Unlock()
	if !seen { // drop the screenshots of an earlier run
		if err := os.RemoveAll(tb.shots); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(tb.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument {
				tb.docs[ev.Response.URL] = true
			}
		case *runtime.EventExceptionThrown:
			tb.problems = append(tb.problems, "exception: "+ev.ExceptionDetails.Text+" "+exceptionDescription(ev))
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				tb.problems = append(tb.problems, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *log.EventEntryAdded:
			e := ev.Entry
			if e.Level != log.EntryLevelError {
				return
			}
			// A page's own status (403, 404, 422) is logged as a failed
			// load; the tests assert those statuses themselves. Any other
			// failed load, of a script, a style or a fetch, is a defect.
			if e.Source == log.EntrySourceNetwork && tb.docs[e.URL] {
				return
			}
			tb.problems = append(tb.problems, fmt.Sprintf("%s %s: %s (%s)", e.Source, e.Level, e.Text, e.URL))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func exceptionDescription(ev *runtime.EventExceptionThrown) string {
	if ev.ExceptionDetails.Exception != nil {
		return ev.ExceptionDetails.Exception.Description
	}
	return ""
}

// noConsoleErrors fails the test if a page logged an error or threw.
func (tb *tab) noConsoleErrors() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if len(tb.problems) > 0 {
		tb.t.Fatalf("the browser console shows errors:\n%s", strings.Join(tb.problems, "\n"))
	}
}

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// open loads a page and returns its HTTP status.
func (tb *tab) open(path string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(tb.base+path))
	if err != nil {
		tb.t.Fatalf("open %s: %v", path, err)
	}
	return resp.Status
}

// submit clicks sel and waits for the page it leads to; it returns that
// page's status.
func (tb *tab) submit(sel string) int64 {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("click %s: %v", sel, err)
	}
	return resp.Status
}

// eval runs JavaScript in the page, awaiting a promise it returns.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor waits until the JavaScript condition holds in the page.
func (tb *tab) waitFor(what, cond string, timeout time.Duration) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		tb.shot("timeout")
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		tb.t.Fatalf("waiting until %s: %v\npage text:\n%s", what, err, body)
	}
}

// eventually waits until the JavaScript condition holds, checking it
// afresh each time, so the page may reload itself in between.
func (tb *tab) eventually(what, cond string, timeout time.Duration) {
	tb.t.Helper()
	eventually(tb.t, timeout, what, func() bool {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		return err == nil && ok
	})
}

// text returns the visible text of the first element matching sel.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`(function(){ var e = document.querySelector(%q); return e ? e.innerText : "<none>"; })()`, sel))
}

func (tb *tab) exists(sel string) bool {
	tb.t.Helper()
	return eval[bool](tb, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
}

// shot saves a screenshot of the whole page as a test artifact.
func (tb *tab) shot(name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	tb.c.mu.Lock()
	tb.c.shots[tb.shots]++
	n := tb.c.shots[tb.shots]
	tb.c.mu.Unlock()
	p := filepath.Join(tb.shots, fmt.Sprintf("%02d-%s-%s.png", n, cmp.Or(tb.who, "anonymous"), name))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	return p
}

// docShot saves the page for the README, when asked to with
// GEF_DOCS_SCREENSHOTS=1.
func (tb *tab) docShot(name string) {
	tb.t.Helper()
	if os.Getenv("GEF_DOCS_SCREENSHOTS") == "" {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, time.Minute)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// signIn signs in through the form and lands on the home page.
func (tb *tab) signIn(name, password string) {
	tb.t.Helper()
	if st := tb.open("/login"); st != 200 {
		tb.t.Fatalf("sign-in page: %d", st)
	}
	tb.do("fill in the sign-in form",
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("password"), password))
	if st := tb.submit(`form button[type=submit]`); st != 200 {
		tb.t.Fatalf("sign in as %s: status %d, %s", name, st, tb.text("main"))
	}
	if got := tb.text(".who .user"); !strings.HasPrefix(got, name) {
		tb.t.Fatalf("after signing in as %s the page shows %q", name, got)
	}
	tb.who = name
}
