package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/docker/docker/api/types/network"

	"github.com/eudat-gef/gef"
	"github.com/eudat-gef/gef/client"
	"github.com/eudat-gef/gef/gef-node/agent"
	"github.com/eudat-gef/gef/internal/testimages"
)

// user makes a user with a password and returns a client holding an API
// token of theirs, and the token.
func (s *stack) user(name string) (*client.Client, string) {
	s.t.Helper()
	ctx := context.Background()
	if _, err := s.admin.CreateUser(ctx, name, gef.RoleUser, "password-"+name); err != nil {
		s.t.Fatal(err)
	}
	tok, err := s.admin.CreateToken(ctx, name, "e2e", 0)
	if err != nil {
		s.t.Fatal(err)
	}
	return client.New(s.url, tok.Secret), tok.Secret
}

// startSession starts a session and waits until it answers.
func (s *stack) startSession(c *client.Client, req gef.SessionRequest) gef.Session {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess, err := c.StartSession(ctx, req)
	if err != nil {
		s.t.Fatalf("start session %+v: %v", req, err)
	}
	sess, err = c.WaitSession(ctx, sess.ID, func(x gef.Session) bool {
		return x.State == gef.SessionRunning || x.State.Final()
	})
	if err != nil || sess.State != gef.SessionRunning {
		s.t.Fatalf("session %s: %s %v: %s", sess.ID, sess.State, err, sess.Reason)
	}
	return sess
}

// waitEnded waits for a session to end.
func waitEnded(t *testing.T, c *client.Client, id string, within time.Duration) gef.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	sess, err := c.WaitSession(ctx, id, func(x gef.Session) bool { return x.State.Final() })
	if err != nil {
		t.Fatalf("session %s did not end within %s: %s %v", id, within, sess.State, err)
	}
	return sess
}

// browser sends requests as a browser would, but follows no redirects,
// so that a test sees each answer.
var browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// call sends a request to the manager and returns the answer, its body
// read whole.
func (s *stack) call(method, path, token string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := browser.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, b
}

// echo is what the web test service says it received.
type echo struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
	Cookies map[string]string   `json:"cookies"`
}

func (s *stack) echo(path, token string, hdr http.Header) echo {
	s.t.Helper()
	resp, b := s.call(http.MethodGet, path, token, hdr, nil)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		s.t.Fatalf("GET %s: %v: %s", path, err, b)
	}
	return e
}

// listening returns the local addresses on which process pid accepts TCP
// connections, from /proc.
func listening(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			sockets[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && sockets[f[9]] { // 0A: LISTEN
				addrs = append(addrs, f[1])
			}
		}
	}
	return addrs
}

// peakRSS is the most memory process pid has held since its peak was
// last reset, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// resetPeakRSS starts a new peak, where the kernel allows it.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// sessionContainer returns the ID of the container running a session.
func (s *stack) sessionContainer(id string) string {
	s.t.Helper()
	cs, err := s.rt.Containers(context.Background(), map[string]string{agent.LabelSession: id})
	if err != nil || len(cs) != 1 {
		s.t.Fatalf("containers of session %s: %+v %v", id, cs, err)
	}
	return cs[0].ID
}

// TestSessionBrowsesItsDataset runs the dataset browser example service as
// a session and browses its dataset through the manager. The node is
// reachable only through the connection it opened: it listens on no port,
// and the container's port is published nowhere.
func TestSessionBrowsesItsDataset(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.Browse)
	data := dataset(t, map[string]string{"a.txt": "alpha\n", "sub/b.csv": "x,y\n1,2\n"})
	node := s.node("site-browse", map[string]string{"climate": data})
	svc := s.publish(imageID)
	if svc.Name != "dataset-browser" || svc.HTTP == nil || svc.HTTP.Port != 8080 || svc.HTTP.Path != "/" {
		t.Fatalf("published %+v", svc)
	}
	ada, adaTok := s.user("ada")
	sess := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "climate",
		Params: map[string]any{"title": "Climate data"}}})
	if sess.Node != "site-browse" || sess.Owner != "ada" || sess.Access != gef.AccessOwner ||
		sess.URL != s.url+"/s/"+sess.ID+"/" || sess.Timestamps.Started == nil || sess.ExpiresAt == nil {
		t.Fatalf("session record: %+v", sess)
	}

	resp, b := s.call(http.MethodGet, "/s/"+sess.ID+"/?format=json", adaTok, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("listing: %d %s", resp.StatusCode, b)
	}
	var listing struct {
		Path     string `json:"path"`
		ReadOnly bool   `json:"read_only"`
		Entries  []struct {
			Name string `json:"name"`
			Dir  bool   `json:"dir"`
			Size int64  `json:"size"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &listing); err != nil {
		t.Fatal(err)
	}
	if listing.Path != "/" || !listing.ReadOnly || len(listing.Entries) != 2 || listing.Entries[0].Name != "sub" ||
		!listing.Entries[0].Dir || listing.Entries[1].Name != "a.txt" || listing.Entries[1].Size != 6 {
		t.Fatalf("listing of /: %s", b)
	}
	if resp, b := s.call(http.MethodGet, "/s/"+sess.ID+"/", adaTok, http.Header{"Accept": {"text/html"}}, nil); resp.StatusCode != http.StatusOK ||
		!strings.Contains(string(b), "Climate data") || !strings.Contains(string(b), `href="sub/"`) {
		t.Fatalf("the page of /: %d %s", resp.StatusCode, b)
	}
	if resp, b := s.call(http.MethodGet, "/s/"+sess.ID+"/sub/b.csv", adaTok, http.Header{"Range": {"bytes=4-"}}, nil); resp.StatusCode != http.StatusPartialContent || string(b) != "1,2\n" {
		t.Fatalf("a range of sub/b.csv: %d %q", resp.StatusCode, b)
	}
	if resp, _ := s.call(http.MethodPut, "/s/"+sess.ID+"/a.txt", adaTok, nil, strings.NewReader("overwritten")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	if got, _ := os.ReadFile(filepath.Join(data, "a.txt")); string(got) != "alpha\n" {
		t.Fatalf("the dataset changed: %q", got)
	}

	// The container runs in the job sandbox, with the dataset read-only,
	// on an internal network, and no port published on the host.
	ctx := context.Background()
	dc := dockerAPI(t)
	c, err := dc.ContainerInspect(ctx, s.sessionContainer(sess.ID))
	if err != nil {
		t.Fatal(err)
	}
	h := c.HostConfig
	if !h.ReadonlyRootfs || !slices.Equal(h.CapDrop, []string{"ALL"}) || !slices.Contains(h.SecurityOpt, "no-new-privileges:true") ||
		c.Config.User == "" || c.Config.User == "root" || strings.HasPrefix(c.Config.User, "0") || h.Memory == 0 || h.PidsLimit == nil {
		t.Errorf("sandbox: rootfs ro %v, caps %v, security %v, user %q, memory %d", h.ReadonlyRootfs, h.CapDrop, h.SecurityOpt, c.Config.User, h.Memory)
	}
	for _, m := range c.Mounts {
		if m.Destination == "/data" && m.RW {
			t.Error("the dataset is mounted writable")
		}
	}
	for port, bindings := range c.NetworkSettings.Ports {
		if len(bindings) > 0 {
			t.Errorf("port %s is published on the host: %v", port, bindings)
		}
	}
	if len(h.PortBindings) > 0 {
		t.Errorf("port bindings: %v", h.PortBindings)
	}
	n, err := dc.NetworkInspect(ctx, string(h.NetworkMode), network.InspectOptions{})
	if err != nil || !n.Internal || n.Options["com.docker.network.bridge.enable_icc"] != "false" {
		t.Errorf("network %s: internal %v, options %v, %v", h.NetworkMode, n.Internal, n.Options, err)
	}
	// The node accepts no connection at all; the manager does.
	if l := listening(t, s.manager.cmd.Process.Pid); len(l) == 0 {
		t.Fatal("found no listening socket of the manager; the check cannot see sockets")
	}
	if l := listening(t, node.cmd.Process.Pid); len(l) != 0 {
		t.Errorf("the node listens on %v", l)
	}

	stopped, err := ada.StopSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	ended := waitEnded(t, ada, stopped.ID, time.Minute)
	if ended.State != gef.SessionStopped || ended.Reason != "stopped by ada" || ended.ExitCode == nil || *ended.ExitCode != 0 {
		t.Fatalf("stopped session: %s exit %v: %s", ended.State, ended.ExitCode, ended.Reason)
	}
	if resp, _ := s.call(http.MethodGet, "/s/"+sess.ID+"/", adaTok, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after stop: %d, want 404", resp.StatusCode)
	}
	eventually(t, 30*time.Second, "the session's container is removed", func() bool {
		cs, err := s.rt.Containers(ctx, map[string]string{agent.LabelSession: sess.ID})
		return err == nil && len(cs) == 0
	})

	// A session serves its data for as long as it runs: when its owner may
	// no longer use the data, it ends.
	again := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "climate"}})
	if _, err := s.admin.SetDatasetAccess(ctx, "climate", gef.DatasetAccess{Restricted: true, Users: []string{"admin"}}); err != nil {
		t.Fatal(err)
	}
	ended = waitEnded(t, ada, again.ID, time.Minute)
	if ended.State != gef.SessionStopped || ended.Reason != `ada may no longer use dataset "climate"` {
		t.Fatalf("after ada lost access to the data: %s: %s", ended.State, ended.Reason)
	}
}

// TestSessionProxy checks what passes through the proxy and the tunnel,
// both ways: who may connect, which headers and cookies reach the
// container, websockets, streaming, large transfers, and a friendly name
// across a restart.
func TestSessionProxy(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.WebService)
	s.node("site-web", map[string]string{"web": dataset(t, map[string]string{"hello.txt": "hello\n"})})
	svc := s.publish(imageID)
	ada, adaTok := s.user("ada")
	bob, bobTok := s.user("bob")
	_, eveTok := s.user("eve")
	_, carolTok := s.user("carol")
	ctx := context.Background()
	if err := s.admin.CreateGroup(ctx, "lab-members"); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.SetGroupMember(ctx, "lab-members", "carol", true); err != nil {
		t.Fatal(err)
	}

	sess := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
		Name: "lab", Access: gef.AccessUsers, Users: []string{"bob"}, Groups: []string{"lab-members"}})
	base := "/s/lab"
	if sess.URL != s.url+base+"/echo" {
		t.Fatalf("url = %q", sess.URL)
	}

	t.Run("who may connect", func(t *testing.T) {
		for _, tc := range []struct {
			who, token string
			want       int
		}{{"anonymous", "", 401}, {"eve", eveTok, 403}, {"a bad token", "not-a-token", 401}, {"bob", bobTok, 200},
			{"ada", adaTok, 200}, {"carol, through her group", carolTok, 200}} {
			for _, ref := range []string{"/s/" + sess.ID, base} {
				if resp, b := s.call(http.MethodGet, ref+"/echo", tc.token, nil, nil); resp.StatusCode != tc.want {
					t.Errorf("%s at %s: %d %s, want %d", tc.who, ref, resp.StatusCode, b, tc.want)
				}
			}
		}
		if e := s.echo(base+"/echo", bobTok, nil); !slices.Equal(e.Headers["X-Gef-User"], []string{"bob"}) {
			t.Errorf("bob reached the container as %v", e.Headers["X-Gef-User"])
		}
		// Access is checked on every request: carol, out of the group, is out.
		if err := s.admin.SetGroupMember(ctx, "lab-members", "carol", false); err != nil {
			t.Fatal(err)
		}
		if resp, _ := s.call(http.MethodGet, base+"/echo", carolTok, nil, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("carol, out of the group: %d, want 403", resp.StatusCode)
		}
		// Only its owner and admins see a session's record.
		if _, err := bob.Session(ctx, sess.ID); !errors.Is(err, gef.ErrNotFound) {
			t.Errorf("bob read ada's session record: %v", err)
		}
		if _, err := bob.StopSession(ctx, sess.ID); !errors.Is(err, gef.ErrNotFound) {
			t.Errorf("bob stopped ada's session: %v", err)
		}
	})

	t.Run("GEF's credentials and forged identities never reach the container", func(t *testing.T) {
		login, err := client.New(s.url, "").Login(ctx, "ada", "password-ada")
		if err != nil {
			t.Fatal(err)
		}
		forged := http.Header{
			"X-GEF-User":       {"mallory"},
			"x-gef-user":       {"mallory2"},
			"X-Gef-Role":       {"admin"},
			"X-Forwarded-User": {"mallory"},
			"X-Forwarded-For":  {"6.6.6.6"},
			"Cookie":           {"gef_session=" + login.Token + "; app=kept; gef_access=junk"},
		}
		for name, tok := range map[string]string{"bearer": adaTok, "session cookie": ""} {
			e := s.echo(base+"/echo?x=1", tok, forged)
			if !slices.Equal(e.Headers["X-Gef-User"], []string{"ada"}) {
				t.Errorf("%s: X-GEF-User = %v, want [ada]", name, e.Headers["X-Gef-User"])
			}
			for _, h := range []string{"Authorization", "X-Gef-Role", "X-Forwarded-User"} {
				if v, ok := e.Headers[h]; ok {
					t.Errorf("%s: the container got %s: %v", name, h, v)
				}
			}
			if _, ok := e.Cookies["gef_session"]; ok {
				t.Errorf("%s: the container got the gef_session cookie", name)
			}
			if _, ok := e.Cookies["gef_access"]; ok {
				t.Errorf("%s: the container got the gef_access cookie", name)
			}
			if e.Cookies["app"] != "kept" || e.Path != "/echo" || e.Query != "x=1" {
				t.Errorf("%s: echo = %+v", name, e)
			}
			if xff := e.Headers["X-Forwarded-For"]; len(xff) != 1 || strings.Contains(xff[0], "6.6.6.6") {
				t.Errorf("%s: X-Forwarded-For = %v", name, xff)
			}
			if p := e.Headers["X-Forwarded-Prefix"]; len(p) != 1 || p[0] != base {
				t.Errorf("%s: X-Forwarded-Prefix = %v", name, p)
			}
			for k, vs := range e.Headers {
				for _, v := range vs {
					if strings.Contains(v, adaTok) || strings.Contains(v, login.Token) {
						t.Errorf("%s: header %s carries a GEF token", name, k)
					}
				}
			}
		}
	})

	t.Run("a link signs a browser in", func(t *testing.T) {
		link, err := bob.SessionLink(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(link.URL)
		if u.Path != base+"/echo" || u.Query().Get("gef_token") == "" {
			t.Fatalf("link = %s", link.URL)
		}
		resp, _ := s.call(http.MethodGet, u.RequestURI(), "", nil, nil)
		loc := resp.Header.Get("Location")
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "gef_access" {
				ck = c
			}
		}
		if resp.StatusCode != http.StatusSeeOther || loc != base+"/echo" || ck == nil || !ck.HttpOnly || ck.Path != base+"/" {
			t.Fatalf("following the link: %d, Location %q, cookie %+v", resp.StatusCode, loc, ck)
		}
		// The token opens this session only.
		if resp, _ := s.call(http.MethodGet, "/api/v1/whoami", ck.Value, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the session's access token on the API: %d, want 401", resp.StatusCode)
		}
		e := s.echo(loc, "", http.Header{"Cookie": {ck.Name + "=" + ck.Value}})
		if !slices.Equal(e.Headers["X-Gef-User"], []string{"bob"}) || len(e.Cookies) != 0 {
			t.Errorf("with the cookie: user %v, cookies %v", e.Headers["X-Gef-User"], e.Cookies)
		}
		// A browser with a cookie jar ends up on the clean URL.
		jar, _ := cookiejar.New(nil)
		b := &http.Client{Jar: jar}
		resp2, err := b.Get(link.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusOK || resp2.Request.URL.RawQuery != "" {
			t.Errorf("browser: %d at %s", resp2.StatusCode, resp2.Request.URL)
		}
		if resp, _ := s.call(http.MethodGet, base+"/echo?gef_token=forged", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a forged link: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("what the container sends back stays in its path", func(t *testing.T) {
		resp, _ := s.call(http.MethodGet, base+"/setcookie", adaTok, nil, nil)
		got := map[string]*http.Cookie{}
		for _, c := range resp.Cookies() {
			got[c.Name] = c
		}
		if got["app"] == nil || got["app"].Path != base+"/" || got["wide"] == nil || got["wide"].Domain != "" ||
			got["gef_session"] != nil || got["gef_access"] != nil {
			t.Errorf("cookies set through the proxy: %v", resp.Header.Values("Set-Cookie"))
		}
		resp, _ = s.call(http.MethodGet, base+"/redirect", adaTok, nil, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != base+"/echo?from=redirect" {
			t.Errorf("redirect: %d to %q", resp.StatusCode, loc)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		wsURL := "ws" + strings.TrimPrefix(s.url, "http") + base + "/ws"
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(wctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + adaTok}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		big := make([]byte, 300<<10)
		for i := range big {
			big[i] = byte(i * 13)
		}
		for _, m := range []struct {
			typ  websocket.MessageType
			data []byte
		}{{websocket.MessageText, []byte("hello through the tunnel")}, {websocket.MessageBinary, big}, {websocket.MessageText, []byte("bye")}} {
			if err := c.Write(wctx, m.typ, m.data); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(wctx)
			if err != nil || typ != m.typ || string(got) != string(m.data) {
				t.Fatalf("echo of a %d-byte message: type %v, %d bytes, %v", len(m.data), typ, len(got), err)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("close: %v", err)
		}
		if _, _, err := websocket.Dial(wctx, wsURL, nil); err == nil {
			t.Error("an anonymous websocket was let through")
		}
	})

	t.Run("streaming responses are not buffered", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.url+base+"/stream?id=s1", nil)
		req.Header.Set("Authorization", "Bearer "+adaTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines := make(chan string)
		go func() {
			r := bufio.NewReader(resp.Body)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					close(lines)
					return
				}
				lines <- l
			}
		}()
		// The service sends "second" only once released, so "first" can
		// arrive only if the proxy passes it on at once.
		select {
		case l := <-lines:
			if l != "first\n" {
				t.Fatalf("first line %q", l)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the first line of a streaming response was held back")
		}
		if resp, b := s.call(http.MethodGet, base+"/release?id=s1", adaTok, nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("release: %d %s", resp.StatusCode, b)
		}
		if l := <-lines; l != "second\n" {
			t.Fatalf("second line %q", l)
		}
	})

	t.Run("large transfers stream with bounded memory", func(t *testing.T) {
		pid := s.manager.cmd.Process.Pid
		const size = 200 << 20
		before := peakRSS(t, pid)
		reset := resetPeakRSS(pid)
		req, _ := http.NewRequest(http.MethodGet, s.url+base+"/bytes?n="+strconv.Itoa(size), nil)
		req.Header.Set("Authorization", "Bearer "+adaTok)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || n != size || resp.StatusCode != http.StatusOK {
			t.Fatalf("download: %d, %d bytes, %v", resp.StatusCode, n, err)
		}
		want := sha256.New()
		buf := make([]byte, 1<<20)
		for off := 0; off < size; off += len(buf) {
			for j := range buf {
				i := int64(off + j)
				buf[j] = byte(i*31 + i>>9 + i>>17)
			}
			want.Write(buf)
		}
		if !slices.Equal(h.Sum(nil), want.Sum(nil)) {
			t.Fatal("the download differs from what the service sent")
		}
		peak := peakRSS(t, pid)
		t.Logf("200 MiB download through the manager: %s, %.0f MiB/s; manager peak RSS %d MiB (before: %d MiB, peak reset: %v)",
			took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds(), peak>>20, before>>20, reset)
		if peak > 100<<20 {
			t.Errorf("the manager's memory peaked at %d MiB during a 200 MiB download; want it well below", peak>>20)
		}

		// An upload streams the other way.
		const up = 64 << 20
		pr, pw := io.Pipe()
		sent := sha256.New()
		go func() {
			chunk := make([]byte, 1<<20)
			for off := 0; off < up; off += len(chunk) {
				for j := range chunk {
					chunk[j] = byte((off + j) * 7)
				}
				sent.Write(chunk)
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ = http.NewRequest(http.MethodPost, s.url+base+"/upload", pr)
		req.Header.Set("Authorization", "Bearer "+adaTok)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Bytes  int64  `json:"bytes"`
			SHA256 string `json:"sha256"`
		}
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if got.Bytes != up || got.SHA256 != hex.EncodeToString(sent.Sum(nil)) {
			t.Errorf("upload: the service got %d bytes, sha256 %s", got.Bytes, got.SHA256)
		}
	})

	t.Run("a public session is open to all", func(t *testing.T) {
		pub := s.startSession(bob, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
			Access: gef.AccessPublic})
		e := s.echo("/s/"+pub.ID+"/echo", "", http.Header{"X-GEF-User": {"mallory"}})
		if _, ok := e.Headers["X-Gef-User"]; ok {
			t.Errorf("an anonymous caller reached the container as %v", e.Headers["X-Gef-User"])
		}
		if e := s.echo("/s/"+pub.ID+"/echo", eveTok, nil); !slices.Equal(e.Headers["X-Gef-User"], []string{"eve"}) {
			t.Errorf("eve reached it as %v", e.Headers["X-Gef-User"])
		}
		if _, err := bob.StopSession(ctx, pub.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("stop and restart under the same name", func(t *testing.T) {
		if _, err := ada.StopSession(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
		if resp, b := s.call(http.MethodGet, base+"/echo", adaTok, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("right after stop: %d %s, want 404", resp.StatusCode, b)
		}
		ended := waitEnded(t, ada, sess.ID, time.Minute)
		if ended.State != gef.SessionStopped || ended.Reason != "stopped by ada" {
			t.Fatalf("stopped: %s: %s", ended.State, ended.Reason)
		}
		for _, ref := range []string{base, "/s/" + sess.ID} {
			if resp, _ := s.call(http.MethodGet, ref+"/echo", adaTok, nil, nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s after the end: %d, want 404", ref, resp.StatusCode)
			}
		}
		// Another user cannot take the name.
		if _, err := bob.StartSession(ctx, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
			Name: "lab"}); !errors.Is(err, gef.ErrConflict) {
			t.Errorf("bob took ada's name: %v", err)
		}
		again := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
			Name: "lab", Access: gef.AccessUsers, Users: []string{"bob"}})
		if again.ID == sess.ID || again.URL != sess.URL {
			t.Fatalf("restarted: %s at %s; was %s at %s", again.ID, again.URL, sess.ID, sess.URL)
		}
		if e := s.echo(base+"/echo", bobTok, nil); !slices.Equal(e.Headers["X-Gef-User"], []string{"bob"}) {
			t.Errorf("after the restart bob reached it as %v", e.Headers["X-Gef-User"])
		}
		list, err := ada.Sessions(ctx, gef.SessionFilter{Name: "lab"})
		if err != nil || len(list.Items) != 2 || list.Items[0].ID != again.ID || list.Items[1].State != gef.SessionStopped {
			t.Fatalf("ada's sessions named lab: %+v %v", list.Items, err)
		}
	})
}

// TestSessionsEndOnTime shows a session ends once idle for longer than its
// idle timeout, and at its maximum lifetime however busy it is, and that
// the engine keeps no more of its output than the node's cap.
func TestSessionsEndOnTime(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.WebService)
	s.node("site-time", map[string]string{"web": dataset(t, map[string]string{"x": "x"})},
		"-session-log-size", "256", "-session-log-files", "2", "-stop-grace", "2s")
	svc := s.publish(imageID)
	ada, adaTok := s.user("ada")
	ctx := context.Background()

	// The busy session is kept busy from the start until it ends.
	const lifetime = 8 * time.Second
	busy := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
		IdleTimeoutSeconds: 3600, MaxLifetimeSeconds: int64(lifetime / time.Second)})
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
				req, _ := http.NewRequest(http.MethodGet, s.url+"/s/"+busy.ID+"/echo", nil)
				req.Header.Set("Authorization", "Bearer "+adaTok)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	defer close(done)

	const idle = 4 * time.Second
	quiet := s.startSession(ada, gef.SessionRequest{JobRequest: gef.JobRequest{Service: svc.Name, Dataset: "web"},
		IdleTimeoutSeconds: int64(idle / time.Second), MaxLifetimeSeconds: 3600})
	// 4 MiB of output, against a cap of 2 files of 256 KiB.
	for range 4 {
		if resp, b := s.call(http.MethodGet, "/s/"+quiet.ID+"/log?kib=1024", adaTok, nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("log: %d %s", resp.StatusCode, b)
		}
	}
	lastTraffic := time.Now()
	dc := dockerAPI(t)
	c, err := dc.ContainerInspect(ctx, s.sessionContainer(quiet.ID))
	if err != nil {
		t.Fatal(err)
	}
	if lc := c.HostConfig.LogConfig; lc.Type != "json-file" || lc.Config["max-size"] != "262144" || lc.Config["max-file"] != "2" {
		t.Fatalf("log config %+v", lc)
	}
	var kept int64
	for _, p := range []string{c.LogPath, c.LogPath + ".1", c.LogPath + ".2"} {
		if fi, err := os.Stat(p); err == nil {
			kept += fi.Size()
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the engine's log file: %v", err)
		}
	}
	t.Logf("the engine keeps %d KiB of the session's 4 MiB of output", kept>>10)
	if kept == 0 || kept > 2*(256<<10+4<<10) {
		t.Errorf("the engine keeps %d bytes of output; the cap is 2 x 256 KiB", kept)
	}

	q := waitEnded(t, ada, quiet.ID, time.Minute)
	if q.State != gef.SessionStopped || !strings.Contains(q.Reason, "idle for more than 4s") || q.Timestamps.LastActive == nil {
		t.Fatalf("idle session: %s: %s (last active %v)", q.State, q.Reason, q.Timestamps.LastActive)
	}
	// Ended is when the node had stopped the container, within its grace.
	after := q.Timestamps.Ended.Sub(*q.Timestamps.LastActive)
	t.Logf("the idle session ended %s after its last traffic (idle timeout %s)", after.Round(time.Millisecond), idle)
	if after < idle || after > idle+10*time.Second || q.Timestamps.LastActive.Before(lastTraffic.Add(-time.Second)) {
		t.Errorf("ended %s after its last traffic at %s (the test's last request ended at %s); want %s to %s",
			after, q.Timestamps.LastActive, lastTraffic, idle, idle+10*time.Second)
	}

	b := waitEnded(t, ada, busy.ID, time.Minute)
	lived := b.Timestamps.Ended.Sub(*b.Timestamps.Started)
	t.Logf("the busy session lived %s (maximum lifetime %s), last active %s after its start", lived.Round(time.Millisecond),
		lifetime, b.Timestamps.LastActive.Sub(*b.Timestamps.Started).Round(time.Millisecond))
	if b.State != gef.SessionStopped || !strings.Contains(b.Reason, "maximum lifetime of 8s") {
		t.Fatalf("busy session: %s: %s", b.State, b.Reason)
	}
	if lived < lifetime || lived > lifetime+10*time.Second {
		t.Errorf("the busy session lived %s; want %s to %s", lived, lifetime, lifetime+10*time.Second)
	}
	// It carried traffic until its lifetime was up (its end also counts the
	// time its container took to stop).
	if b.Timestamps.LastActive.Before(b.Timestamps.Started.Add(lifetime - 3*time.Second)) {
		t.Errorf("the busy session was idle before its lifetime was up: started %s, last active %s",
			b.Timestamps.Started, b.Timestamps.LastActive)
	}
}

// TestCall runs a short service synchronously: its JSON output comes back
// within the wait; one that outlives the wait gives back its job to follow.
func TestCall(t *testing.T) {
	s := newStack(t)
	imageID := image(t, s.rt, testimages.JSONService)
	s.node("site-call", map[string]string{"tables": dataset(t, map[string]string{"a.csv": "1\n", "b/c.csv": "22\n"})})
	svc := s.publish(imageID)
	ada, _ := s.user("ada")
	ctx := context.Background()

	start := time.Now()
	res, err := ada.Call(ctx, gef.JobRequest{Service: svc.Name, Dataset: "tables", Params: map[string]any{"label": "quick"}}, 60*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a synchronous run took %s", took.Round(time.Millisecond))
	out, _ := res.Stdout.(map[string]any)
	if !res.Done || res.Job.State != gef.JobSucceeded || !res.StdoutIsJSON || out["label"] != "quick" || out["bytes"] != float64(5) ||
		fmt.Sprint(out["files"]) != "[a.csv b/c.csv]" || took > 60*time.Second {
		t.Fatalf("call: %+v", res)
	}
	// It is a normal job, with its record.
	j, err := ada.Job(ctx, res.Job.ID)
	if err != nil || j.State != gef.JobSucceeded || j.Owner != "ada" || j.Params["label"] != "quick" {
		t.Fatalf("the call's job: %+v %v", j, err)
	}

	// The same call again reuses the result, and still answers its output.
	again, err := ada.Call(ctx, gef.JobRequest{Service: svc.Name, Dataset: "tables", Params: map[string]any{"label": "quick"}}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out2, _ := again.Stdout.(map[string]any); !again.Done || again.Job.State != gef.JobSucceeded || out2["label"] != "quick" ||
		again.Job.ReuseOf == nil || *again.Job.ReuseOf != res.Job.ID {
		t.Fatalf("the same call again: %+v", again)
	}

	start = time.Now()
	slow, err := ada.Call(ctx, gef.JobRequest{Service: svc.Name, Dataset: "tables", Params: map[string]any{"sleep": 120}}, 2*time.Second)
	took = time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if slow.Done || slow.Job.ID == "" || slow.Job.State.Final() || took < 2*time.Second || took > 10*time.Second {
		t.Fatalf("a call that outlives its wait: %+v after %s", slow, took)
	}
	if j, err := ada.Job(ctx, slow.Job.ID); err != nil || j.State.Final() {
		t.Fatalf("the slow call's job: %s %v", j.State, err)
	}
	if _, err := ada.Cancel(ctx, slow.Job.ID); err != nil {
		t.Fatal(err)
	}

	_, err = ada.Call(ctx, gef.JobRequest{Service: svc.Name, Dataset: "tables"}, 301*time.Second)
	var e *client.Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || e.Field != "wait" {
		t.Fatalf("a wait of 301 s: %v", err)
	}
}
