package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-manager/auth"
	"github.com/eudat-gef/gef/gef-manager/manager"
	"github.com/eudat-gef/gef/gef-manager/store"
	"github.com/eudat-gef/gef/objstore/local"
)

// bundle is an in-process manager on SQLite and a local object store,
// served over real HTTP.
type bundle struct {
	url   string
	admin *client.Client
	m     *manager.Manager
	srv   *Server
}

func setup(t testing.TB) *bundle { return setupWith(t, nil) }

type managerConfig = manager.Config

// setupWith is setup with the manager's configuration changed by tune.
func setupWith(t testing.TB, tune func(*managerConfig)) *bundle {
	t.Helper()
	return setupFull(t, tune, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// setupLogged is setup with the manager logging to log.
func setupLogged(t testing.TB, log *slog.Logger) *bundle {
	t.Helper()
	return setupFull(t, nil, log)
}

func setupFull(t testing.TB, tune func(*managerConfig), log *slog.Logger) *bundle {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "gef.db"), nil)
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
	// The object store's URLs point at the server, known only once it runs.
	var objects *local.Store
	h := http.NewServeMux()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	objects, err = local.New(filepath.Join(dir, "objects"), ts.URL+"/api/v1/blobs", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := manager.Config{PollWait: 200 * time.Millisecond, NodeTimeout: time.Second}
	if tune != nil {
		tune(&cfg)
	}
	m, err := manager.New(cfg, st, objects, issuer, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	srv := New(m, log, objects.Handler())
	srv.MountStableURL()
	h.Handle("/", srv)
	tok, err := m.Bootstrap(ctx, "admin", gef.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{url: ts.URL, admin: client.New(ts.URL, tok.Secret), m: m, srv: srv}
}

// raw sends a request and returns the status and decoded error, if any.
func raw(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestLogin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.admin.CreateUser(ctx, "ada", gef.RoleUser, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	c := client.New(b.url, "")
	sess, err := c.Login(ctx, "ada", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if sess.User.Name != "ada" || sess.ExpiresAt.Before(time.Now().Add(time.Hour)) {
		t.Fatalf("session = %+v", sess)
	}
	code, body := raw(t, http.MethodGet, b.url+"/api/v1/whoami", sess.Token, "")
	if code != http.StatusOK || body["name"] != "ada" {
		t.Fatalf("whoami with the session token: %d %v", code, body)
	}
	for _, bad := range [][2]string{{"ada", "wrong password!"}, {"nobody", "correct horse battery"}, {"admin", "anything-at-all"}} {
		_, err := c.Login(ctx, bad[0], bad[1])
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusUnauthorized || !strings.Contains(e.Message, "wrong user name or password") {
			t.Fatalf("login %v: %v", bad, err)
		}
	}
	if _, err := b.admin.CreateUser(ctx, "bob", gef.RoleUser, "short"); !isStatus(err, http.StatusUnprocessableEntity) {
		t.Fatalf("a short password: %v", err)
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// All at once, so a slow machine cannot refill the bucket between them.
	codes := make(chan int, 30)
	for range 30 {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, b.url+"/api/v1/login", strings.NewReader(`{"name":"x","password":"yyyyyyyyyyyy"}`))
			// A forged forwarding header must not buy a fresh limit.
			req.Header.Set("X-Forwarded-For", gef.NewID())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	limited := 0
	for range 30 {
		if <-codes == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 15 {
		t.Fatalf("30 sign-ins at once from one client: only %d limited", limited)
	}
}

func TestErrorShapes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := adminToken(t, b)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "GET", "/api/v1/jobs", "", "", 401, "unauthorized"},
		{"garbage token", "GET", "/api/v1/jobs", "garbage", "", 401, "unauthorized"},
		{"malformed JSON", "POST", "/api/v1/jobs", tok, `{"service":`, 400, "bad_request"},
		{"unknown field", "POST", "/api/v1/jobs", tok, `{"service":"x","parms":{}}`, 400, "bad_request"},
		{"wrong type", "POST", "/api/v1/jobs", tok, `{"service":7}`, 400, "bad_request"},
		{"two values", "POST", "/api/v1/jobs", tok, `{"service":"x"}{}`, 400, "bad_request"},
		{"empty body", "POST", "/api/v1/jobs", tok, ``, 400, "bad_request"},
		{"not an id", "GET", "/api/v1/jobs/../../etc", tok, "", 404, "not_found"},
		{"bad id", "GET", "/api/v1/jobs/nope", tok, "", 422, "invalid"},
		{"unknown job", "GET", "/api/v1/jobs/" + gef.NewID(), tok, "", 404, "not_found"},
		{"unknown path", "GET", "/api/v1/nothing", tok, "", 404, "not_found"},
		{"wrong method", "DELETE", "/api/v1/jobs", tok, "", 405, "method_not_allowed"},
		{"bad limit", "GET", "/api/v1/jobs?limit=-1", tok, "", 422, "invalid"},
		{"bad state", "GET", "/api/v1/jobs?state=sleeping", tok, "", 422, "invalid"},
		{"huge body", "POST", "/api/v1/jobs", tok, `{"service":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, tc.method, b.url+tc.path, tc.token, tc.body)
			if code != tc.status || errCode(body) != tc.code {
				t.Fatalf("%s %s: %d %v, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
			}
			e, _ := body["error"].(map[string]any)
			if msg, _ := e["message"].(string); msg == "" {
				t.Fatalf("no message in %v", body)
			}
		})
	}
}

func TestHealthAndSpec(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/api/v1/openapi.yaml": "openapi: 3", "/metrics": "gef_jobs_submitted_total"} {
		resp, err := http.Get(b.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(want)) {
			t.Fatalf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

func adminToken(t testing.TB, b *bundle) string {
	t.Helper()
	tok, err := b.admin.CreateToken(context.Background(), "", "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Secret
}

func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}
