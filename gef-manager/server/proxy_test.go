package server

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/gef-manager/manager"
)

func TestConfineCookies(t *testing.T) {
	t.Parallel()
	const prefix = "/s/lab"
	for _, tc := range []struct{ set, want string }{
		{"app=1; Path=/", "app=1; Path=/s/lab/"},
		{"app=1; Path=/deep/er; HttpOnly", "app=1; Path=/s/lab/deep/er; HttpOnly"},
		{"app=1", "app=1"}, // the browser scopes it to the request's folder, inside the prefix
		{"app=1; Path=relative", "app=1; Path=/s/lab/relative"},
		{"wide=2; Domain=example.org; Path=/", "wide=2; Path=/s/lab/"},
		{"gef_session=forged; Path=/", ""},
		{"gef_access=forged; Path=/s/lab/", ""},
		{"=nameless", ""},
	} {
		h := http.Header{"Set-Cookie": {tc.set}}
		confineCookies(h, prefix)
		if got := strings.Join(h.Values("Set-Cookie"), "|"); got != tc.want {
			t.Errorf("Set-Cookie %q became %q, want %q", tc.set, got, tc.want)
		}
	}
}

func TestConfineLocation(t *testing.T) {
	t.Parallel()
	const prefix, host = "/s/lab", "gef.example.org"
	for _, tc := range []struct{ loc, want string }{
		{"/login", "/s/lab/login"},
		{"/", "/s/lab/"},
		{"/s/lab/already", "/s/lab/already"},
		{"/s/lab", "/s/lab"},
		{"/s/labrador", "/s/lab/s/labrador"},
		{"next", "next"},
		{"../up", "../up"},
		{"//evil.example/x", "//evil.example/x"},
		{"https://other.example/x", "https://other.example/x"},
		{"http://gef.example.org/login?a=b", "http://gef.example.org/s/lab/login?a=b"},
		{"http://gef.example.org", "http://gef.example.org/s/lab/"},
		{"http://gef.example.org/s/lab/x", "http://gef.example.org/s/lab/x"},
		{"http://gef.example.org/a%2Fb", "http://gef.example.org/s/lab/a%2Fb"},
	} {
		if got := confineLocation(tc.loc, prefix, host); got != tc.want {
			t.Errorf("Location %q became %q, want %q", tc.loc, got, tc.want)
		}
	}
}

func TestWithoutParam(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, rest, value string }{
		{"", "", ""},
		{"gef_token=abc", "", "abc"},
		{"a=1&gef_token=abc&b=2", "a=1&b=2", "abc"},
		{"b=%20x&gef%5Ftoken=abc&gef_token=second", "b=%20x", "abc"},
		{"a=1&b", "a=1&b", ""},
		{"gef_tokens=1", "gef_tokens=1", ""},
	} {
		rest, value := withoutParam(tc.raw, "gef_token")
		if rest != tc.rest || value != tc.value {
			t.Errorf("withoutParam(%q) = %q, %q; want %q, %q", tc.raw, rest, value, tc.rest, tc.value)
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	h := http.Header{
		"Authorization":    {"Bearer secret"},
		"X-Gef-User":       {"mallory"},
		"x-gef-anything":   {"x"}, // not canonical, as a raw header map may hold
		"X-Forwarded-User": {"mallory"},
		"Remote-User":      {"mallory"},
		"Cookie":           {"gef_session=secret; app=1", "gef_access=secret;other=2"},
		"Accept":           {"text/html"},
	}
	scrub(h)
	want := http.Header{"Cookie": {"app=1; other=2"}, "Accept": {"text/html"}}
	if len(h) != len(want) || h.Get("Cookie") != want.Get("Cookie") || h.Get("Accept") != "text/html" {
		t.Errorf("scrubbed headers = %v, want %v", h, want)
	}
}

func TestRestOfPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/s/ID/":         "/",
		"/s/ID":          "/",
		"/s/ID/a/b%2Fc":  "/a/b%2Fc",
		"/s/%49D/x":      "/x",
		"/s/lab//double": "//double",
	} {
		if got := restOfPath(in); got != want {
			t.Errorf("restOfPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// What a container answers is untrusted: whatever it sets, its cookies
// stay within its prefix and never shadow GEF's own.
func FuzzConfineCookies(f *testing.F) {
	for _, s := range []string{"a=1; Path=/", "gef_session=x", "w=2; Domain=.example.org; Path=/../x", "x=y; Path=//evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Set-Cookie": {line}}
		confineCookies(h, "/s/lab")
		for _, v := range h.Values("Set-Cookie") {
			c, err := http.ParseSetCookie(v)
			if err != nil {
				t.Fatalf("%q gave an unparsable %q", line, v)
			}
			if c.Domain != "" || c.Name == SessionCookie || c.Name == ProxyCookie {
				t.Fatalf("%q gave %q", line, v)
			}
			if c.Path != "" && !strings.HasPrefix(c.Path, "/s/lab/") {
				t.Fatalf("%q gave a cookie for path %q", line, c.Path)
			}
		}
	})
}

func FuzzConfineLocation(f *testing.F) {
	for _, s := range []string{"/x", "//evil", "http://h/x", "x", "/s/lab/y", "http://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		got := confineLocation(loc, "/s/lab", "h")
		if strings.HasPrefix(got, "/") && !strings.HasPrefix(got, "//") && got != "/s/lab" && !strings.HasPrefix(got, "/s/lab/") {
			t.Fatalf("%q became %q, outside the prefix", loc, got)
		}
	})
}

func FuzzScrub(f *testing.F) {
	f.Add("gef_session=a; b=c", "X-Gef-User")
	f.Add(" gef_access = x ;;", "x-gef-user")
	f.Fuzz(func(t *testing.T, cookie, header string) {
		h := http.Header{"Cookie": {cookie}}
		h[header] = []string{"v"}
		scrub(h)
		for _, part := range strings.Split(h.Get("Cookie"), ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if n := strings.TrimSpace(name); n == SessionCookie || n == ProxyCookie {
				t.Fatalf("cookie %q kept %q", cookie, part)
			}
		}
		for k := range h {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), "X-Gef-") {
				t.Fatalf("header %q kept", k)
			}
		}
	})
}

func TestSessionRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	admin, err := b.m.Authenticate(ctx, adminToken(t, b))
	if err != nil {
		t.Fatal(err)
	}
	// A batch service and a long-lived one, both published without a node.
	labels := func(name string, port string) map[string]string {
		l := map[string]string{"eudat.gef.service.name": name, "eudat.gef.service.version": "1.0"}
		if port != "" {
			l["eudat.gef.service.http.port"] = port
		}
		return l
	}
	for i, img := range []gef.NodeImage{
		{ID: "sha256:" + strings.Repeat("1", 64), Labels: labels("batch", ""), Entrypoint: []string{"/b"}},
		{ID: "sha256:" + strings.Repeat("2", 64), Labels: labels("web", "8080"), Entrypoint: []string{"/w"}},
	} {
		if _, _, err := b.m.PublishImage(ctx, admin, img); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if _, err := b.admin.CreateUser(ctx, "ada", gef.RoleUser, ""); err != nil {
		t.Fatal(err)
	}
	tok := adminToken(t, b)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"anonymous", "POST", "/api/v1/sessions", "", `{"service":"web"}`, 401, ""},
		{"unknown field", "POST", "/api/v1/sessions", tok, `{"service":"web","acess":"public"}`, 400, ""},
		{"batch service", "POST", "/api/v1/sessions", tok, `{"service":"batch"}`, 422, "service"},
		{"unknown service", "POST", "/api/v1/sessions", tok, `{"service":"nope"}`, 422, "service"},
		{"bad name", "POST", "/api/v1/sessions", tok, `{"service":"web","name":"Not A Name"}`, 422, "name"},
		{"name like an id", "POST", "/api/v1/sessions", tok, `{"service":"web","name":"` + strings.ToLower(gef.NewID()) + `"}`, 422, "name"},
		{"bad access", "POST", "/api/v1/sessions", tok, `{"service":"web","access":"friends"}`, 422, "access"},
		{"users without access users", "POST", "/api/v1/sessions", tok, `{"service":"web","users":["ada"]}`, 422, "users"},
		{"access users without users", "POST", "/api/v1/sessions", tok, `{"service":"web","access":"users"}`, 422, "users"},
		{"unknown user", "POST", "/api/v1/sessions", tok, `{"service":"web","access":"users","users":["nobody"]}`, 422, "users"},
		{"unknown group", "POST", "/api/v1/sessions", tok, `{"service":"web","access":"users","groups":["nobody"]}`, 422, "groups"},
		{"groups without access users", "POST", "/api/v1/sessions", tok, `{"service":"web","groups":["g"]}`, 422, "groups"},
		{"idle too long", "POST", "/api/v1/sessions", tok, `{"service":"web","idle_timeout_seconds":99999999}`, 422, "idle_timeout_seconds"},
		{"negative lifetime", "POST", "/api/v1/sessions", tok, `{"service":"web","max_lifetime_seconds":-1}`, 422, "max_lifetime_seconds"},
		{"bad state", "GET", "/api/v1/sessions?state=asleep", tok, "", 422, "state"},
		{"bad id", "GET", "/api/v1/sessions/nope", tok, "", 422, "id"},
		{"unknown session", "GET", "/api/v1/sessions/" + gef.NewID(), tok, "", 404, ""},
		{"stop unknown", "POST", "/api/v1/sessions/" + gef.NewID() + "/stop", tok, "", 404, ""},
		{"bad wait", "POST", "/api/v1/services/batch/run?wait=soon", tok, "", 422, "wait"},
		{"wait too long", "POST", "/api/v1/services/batch/run?wait=301", tok, "", 422, "wait"},
		{"call unknown service", "POST", "/api/v1/services/nope/run", tok, "", 422, "service"},
		{"tunnel for a user", "GET", "/api/v1/node/tunnel", tok, "", 403, ""},
		{"tunnel anonymous", "GET", "/api/v1/node/tunnel", "", "", 401, ""},
		{"no such session", "GET", "/s/nothing-here/", "", "", 404, ""},
		{"no such session id", "GET", "/s/" + gef.NewID() + "/x", tok, "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, tc.method, b.url+tc.path, tc.token, tc.body)
			e, _ := body["error"].(map[string]any)
			if field, _ := e["field"].(string); code != tc.status || field != tc.field {
				t.Fatalf("%s %s: %d %v, want %d on %q", tc.method, tc.path, code, body, tc.status, tc.field)
			}
		})
	}

	// No node holds the data, but the session needs none: it queues.
	sess, err := b.admin.StartSession(ctx, gef.SessionRequest{JobRequest: gef.JobRequest{Service: "web"}, Name: "lab"})
	if err != nil || sess.State != gef.SessionQueued || sess.URL != b.m.PublicURL()+"/s/lab/" {
		t.Fatalf("start: %+v %v", sess, err)
	}
	// A queued session answers 503 until it runs, and says when to retry.
	resp, err := http.Get(b.url + "/s/lab/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous at a private session: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, b.url+"/s/lab/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a queued session: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// /s/REF without its slash moves to it.
	req, _ = http.NewRequest(http.MethodGet, b.url+"/s/lab?a=b", nil)
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "/s/lab/?a=b" {
		t.Fatalf("/s/lab: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	stopped, err := b.admin.StopSession(ctx, sess.ID)
	if err != nil || stopped.State != gef.SessionStopped || stopped.Reason != "stopped by admin" {
		t.Fatalf("stop a queued session: %+v %v", stopped, err)
	}
	if _, err := b.admin.StopSession(ctx, sess.ID); !isStatus(err, http.StatusConflict) {
		t.Fatalf("stop twice: %v", err)
	}
	page, err := b.admin.Sessions(ctx, gef.SessionFilter{})
	if err != nil || len(page.Items) != 1 || !slices.Contains([]string{sess.ID}, page.Items[0].ID) {
		t.Fatalf("sessions: %+v %v", page, err)
	}
	if ok, err := b.m.MayReach(ctx, manager.Principal{}, gef.Session{Access: gef.AccessPublic}); !ok || err != nil {
		t.Fatalf("a public session is closed to anonymous callers: %v", err)
	}
}

// With a host name of their own, sessions are served only there, away
// from the cookies of the API and the GUI.
func TestSessionsOnTheirOwnHost(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *managerConfig) {
		*c = manager.Config{PollWait: 200 * time.Millisecond, NodeTimeout: time.Second,
			Sessions: manager.SessionConfig{PublicURL: "https://sessions.example.org", OwnHost: true}}
	})
	if got := b.m.SessionHost(); got != "sessions.example.org" {
		t.Fatalf("SessionHost = %q", got)
	}
	req, _ := http.NewRequest(http.MethodGet, b.url+"/s/lab/x?y=1", nil)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://sessions.example.org/s/lab/x?y=1" {
		t.Fatalf("/s/ on the API's host: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// On the sessions' host, the proxy answers.
	req.Host = "sessions.example.org"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/s/ on the sessions' host: %d, want 404 for a session that does not exist", resp.StatusCode)
	}
	if _, err := manager.New(manager.Config{Sessions: manager.SessionConfig{PublicURL: "not a url", OwnHost: true}}, nil, nil, nil, nil); err == nil {
		t.Fatal("a sessions host without a URL was taken")
	}
}
